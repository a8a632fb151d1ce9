"""The Ray executor: one streaming Ray task per pack (one run, or runs of one cell trained in
lockstep), on any node of a cluster or a local instance.

The task trains into a temporary folder on whichever node it lands and streams back each run's
progress, each checkpoint a run saves and, as each run ends, its files; the runner writes them
into the results folder, so the nodes need trbench installed but no shared filesystem. A pack lost
to the system (its worker process or node died) is submitted again, at most
``SYSTEM_FAILURE_RETRIES`` times, with those of its runs that had not ended, each resuming from the
last checkpoint that reached the runner; a run that fails by its own error is not retried. ray is an optional extra, so it is imported where it is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trbench.algos.library_warnings import silence_env_building_warnings
from trbench.base.errors import UsageError
from trbench.base.files import atomic_write_bytes
from trbench.base.run_folder import CHECKPOINT_FILE, run_files_to_send, store_run_files

from .execute import execute_run
from .execute_pack import execute_pack
from .executors import SINGLE_THREAD_ENV, TICK_S, Tracker, one_line, record_failure
from .run_spec import ResolvedRun, RunSpec, resolve

# Times a Ray run lost to the system (its worker or node died) is submitted again before it is
# recorded as failed: enough to ride out a node lost now and then, while a run that kills its
# worker every time (out of memory, a segfault) still ends, after 1 + 3 attempts.
SYSTEM_FAILURE_RETRIES = 3


def ray_available() -> bool:
    try:
        import ray  # noqa: F401, PLC0415 - ray is an optional extra
    except ImportError:
        return False
    return True


def _ray_task(specs: list[RunSpec], checkpoints: list[bytes | None]) -> Iterator[tuple]:
    """A pack as one streaming Ray task: one run, or runs of one cell trained in lockstep
    (suites/packing.py), as a local worker trains them. For run k of the pack it yields
    ``("step", k, step)`` per iteration, ``("checkpoint", k, data)`` each time the run saved a
    checkpoint, and last ``("done", k, result, files)``, or ``("error", k, text)`` when the run
    could not record a result itself (an unusable folder, say). A checkpoint handed in (one a
    lost attempt sent back) is where its run resumes."""
    torch.set_num_threads(1)
    silence_env_building_warnings()  # the runner showed them when it read the suite
    runs = [resolve(spec) for spec in specs]
    messages: queue.SimpleQueue = queue.SimpleQueue()
    with tempfile.TemporaryDirectory(prefix="trbench-") as scratch:
        folders = [Path(scratch) / run.run_id for run in runs]
        for folder, checkpoint in zip(folders, checkpoints):
            if checkpoint is not None:
                atomic_write_bytes(folder / CHECKPOINT_FILE, checkpoint)
        # a generator can only yield from its own frame, not from inside the runs' callbacks: the
        # pack trains in a thread and this frame passes on what it reports, as it comes
        trainer = threading.Thread(target=_train_and_report, args=(runs, folders, messages), daemon=True)
        trainer.start()
        while True:
            message = messages.get()
            if message[0] == "raised":
                raise message[1]
            if message[0] == "trained":
                break
            yield message
        trainer.join()


def _train_and_report(runs: list[ResolvedRun], folders: list[Path], messages: queue.SimpleQueue) -> None:
    def ended(k: int, end: dict[str, Any] | Exception) -> None:
        if isinstance(end, dict):
            messages.put(("done", k, end, run_files_to_send(folders[k])))
        else:
            messages.put(("error", k, one_line(end)))

    try:
        if len(runs) == 1:
            try:
                result: dict[str, Any] | Exception = execute_run(
                    runs[0],
                    folders[0],
                    on_iteration=lambda row: messages.put(("step", 0, row["step"])),
                    on_checkpoint=lambda path: messages.put(("checkpoint", 0, path.read_bytes())),
                )
            except Exception as exc:  # noqa: BLE001 - the run's own failure, recorded by the runner
                result = exc
            ended(0, result)
        else:
            execute_pack(
                runs,
                folders,
                on_iteration=lambda k, row: messages.put(("step", k, row["step"])),
                on_end=ended,
                on_checkpoint=lambda k, path: messages.put(("checkpoint", k, path.read_bytes())),
            )
        messages.put(("trained",))
    except BaseException as exc:  # noqa: BLE001 - raised again by the task, in its own frame
        messages.put(("raised", exc))


def is_system_failure(exc: BaseException) -> bool:
    """Whether Ray lost a task to the system (its worker process or its node died, or what it
    sent back was lost with a node) rather than the task failing by its own error, which Ray
    reports as a RayTaskError. A killed worker is a WorkerCrashedError in Ray 2.60."""
    from ray import exceptions  # noqa: PLC0415 - ray is an optional extra

    return isinstance(
        exc,
        (
            exceptions.WorkerCrashedError,
            exceptions.NodeDiedError,
            exceptions.LocalRayletDiedError,
            exceptions.ObjectLostError,
            exceptions.OutOfMemoryError,
            exceptions.RaySystemError,
        ),
    )


def _failure_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    return f"{type(cause).__name__}: {cause}".splitlines()[0]


def _authentication_refused(exc: BaseException) -> bool:
    """Whether a failed connection was refused for its token: Ray reports that as an
    AuthenticationError, raised as it is or inside the message of the error it causes."""
    from ray.exceptions import AuthenticationError  # noqa: PLC0415 - ray is an optional extra

    seen: BaseException | None = exc
    while seen is not None:
        if (
            isinstance(seen, AuthenticationError)
            or "InvalidAuthToken" in str(seen)
            or "AuthenticationError" in str(seen)
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def start_ray(address: str | None, workers: int) -> None:
    import ray  # noqa: PLC0415 - ray is an optional extra
    from ray.exceptions import AuthenticationError  # noqa: PLC0415 - ray is an optional extra

    env_vars = dict(SINGLE_THREAD_ENV)
    try:
        if address:
            ray.init(address=address, runtime_env={"env_vars": env_vars}, logging_level=logging.WARNING)
        else:
            # workers of a local instance import what this process can: algorithms given as an
            # import path from the current project, for instance
            env_vars["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
            ray.init(
                num_cpus=workers,
                include_dashboard=False,
                runtime_env={"env_vars": env_vars},
                logging_level=logging.WARNING,
            )
    except (ConnectionError, ValueError, RuntimeError, AuthenticationError) as exc:
        where = address or "a new local instance"
        if _authentication_refused(exc):
            raise UsageError(
                f"--address: cannot connect to Ray at {where}: the cluster uses token authentication "
                f"and refused this client's token; set RAY_AUTH_MODE=token and give the cluster's "
                f"token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token "
                f"(`ray get-auth-token` on the head node prints it)"
            ) from None
        raise UsageError(
            f"--address: cannot connect to Ray at {where}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None


@contextlib.contextmanager
def ray_session(address: str | None, workers: int):
    """Connected to Ray (a cluster at `address`, or a new local instance) for the block."""
    import ray  # noqa: PLC0415 - ray is an optional extra

    start_ray(address, workers)
    try:
        yield
    finally:
        ray.shutdown()


@dataclass
class _RayAttempt:
    """One submission of a pack: its message stream, the runs of it whose end has not come yet
    (by their place in the pack) and how many times the pack was lost before."""

    pack: list[ResolvedRun]
    open: set[int]
    stream: Any  # ray.ObjectRefGenerator
    started_at: float
    losses: int


def run_ray(
    packs: list[list[ResolvedRun]],
    runs_dir: Path,
    workers: int | None,
    address: str | None,
    tracker: Tracker,
    system_retries: int = SYSTEM_FAILURE_RETRIES,
) -> None:
    """Run `packs` (suites/packing.py; a pack of one is a lone run) on Ray, one task of one CPU
    per pack; `workers` caps the tasks in flight (None: as many as the cluster schedules).

    Uses the Ray session this process holds (the runner connects to a cluster before it writes
    anything), else connects to `address` or starts a local instance for these runs.

    A pack lost to the system is submitted again, up to `system_retries` times, with the runs of
    it that had not ended, each resuming from the last checkpoint of it that reached the runner:
    each one a task sends back is written into the run's folder at once. A run that fails by its
    own error is recorded as failed, not retried."""
    import ray  # noqa: PLC0415 - ray is an optional extra

    session = contextlib.nullcontext() if ray.is_initialized() else ray_session(address, workers or os.cpu_count() or 1)
    with session:
        _run_streaming_tasks(packs, runs_dir, workers or len(packs), tracker, system_retries)


def _run_streaming_tasks(
    packs: list[list[ResolvedRun]], runs_dir: Path, limit: int, tracker: Tracker, system_retries: int
) -> None:
    import ray  # noqa: PLC0415 - ray is an optional extra

    task = ray.remote(num_cpus=1, max_retries=0, num_returns="streaming")(_ray_task)
    pending: deque[tuple[list[ResolvedRun], int]] = deque((pack, 0) for pack in packs)
    in_flight: list[_RayAttempt] = []

    def submit(pack: list[ResolvedRun], losses: int) -> None:
        checkpoints = []
        for run in pack:
            path = runs_dir / run.run_id / CHECKPOINT_FILE
            checkpoints.append(path.read_bytes() if path.is_file() else None)
        stream = task.remote([run.spec for run in pack], checkpoints)
        in_flight.append(_RayAttempt(pack, set(range(len(pack))), stream, time.perf_counter(), losses))
        for run in pack:
            tracker.started(run)

    while pending or in_flight:
        while pending and len(in_flight) < limit:
            submit(*pending.popleft())
        ready, _ = ray.wait([attempt.stream for attempt in in_flight], num_returns=1, timeout=TICK_S)
        for attempt in [a for a in in_flight if any(a.stream is stream for stream in ready)]:
            try:
                ended = _read_ready_messages(attempt, runs_dir, tracker)
            except ray.exceptions.RayError as exc:
                ended = True
                _settle_failed_attempt(attempt, exc, runs_dir, system_retries, pending, tracker)
            if ended:
                in_flight.remove(attempt)
        tracker.tick()


def _read_ready_messages(attempt: _RayAttempt, runs_dir: Path, tracker: Tracker) -> bool:
    """Handle the messages the attempt's task has sent so far; True once every run of it has
    ended."""
    import ray  # noqa: PLC0415 - ray is an optional extra

    while attempt.open and ray.wait([attempt.stream], num_returns=1, timeout=0)[0]:
        try:
            message = ray.get(next(attempt.stream))  # the task's error, if it failed, is raised here
        except StopIteration:  # the task ended without an end for every run: not this code's tasks
            raise ray.exceptions.RaySystemError("the task ended before all of its runs") from None
        kind, k = message[0], message[1]
        run = attempt.pack[k]
        folder = runs_dir / run.run_id
        if kind == "step":
            tracker.stepped(run, message[2])
        elif kind == "checkpoint":
            atomic_write_bytes(folder / CHECKPOINT_FILE, message[2])
        elif kind == "done":
            store_run_files(folder, message[3])
            attempt.open.discard(k)
            tracker.finished(run, message[2])
        elif kind == "error":
            attempt.open.discard(k)
            tracker.finished(run, record_failure(run, folder, message[2], time.perf_counter() - attempt.started_at))
    return not attempt.open


def _settle_failed_attempt(
    attempt: _RayAttempt,
    exc: BaseException,
    runs_dir: Path,
    system_retries: int,
    pending: deque[tuple[list[ResolvedRun], int]],
    tracker: Tracker,
) -> None:
    """Resubmit the runs of a pack lost to the system that had not ended (first in line) while
    retries are left; record them failed otherwise."""
    import ray  # noqa: PLC0415 - ray is an optional extra

    with contextlib.suppress(ray.exceptions.RayError):
        ray.cancel(attempt.stream, force=True)  # nothing more of this attempt is read
    reason = _failure_text(exc)
    losses = attempt.losses + 1
    unfinished = [attempt.pack[k] for k in sorted(attempt.open)]
    if is_system_failure(exc) and losses <= system_retries:
        for run in unfinished:
            start = "from its last checkpoint" if (runs_dir / run.run_id / CHECKPOINT_FILE).is_file() else "from step 0"
            tracker.resubmitted(
                run, f"lost to the system ({reason}); submitted again, retry {losses} of {system_retries}, {start}"
            )
        pending.appendleft((unfinished, losses))
        return
    if is_system_failure(exc):
        reason = f"{reason} (lost to the system {losses} times; not retried again)"
    for run in unfinished:
        result = record_failure(run, runs_dir / run.run_id, reason, time.perf_counter() - attempt.started_at)
        tracker.finished(run, result)

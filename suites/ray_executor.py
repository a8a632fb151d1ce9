"""The Ray executor: one streaming Ray task per run, on any node of a cluster or a local instance.

The task trains into a temporary folder on whichever node it lands and streams back its progress,
each checkpoint the run saves and, last, the run's files; the runner writes them into the results
folder, so the nodes need trbench installed but no shared filesystem. A run lost to the system
(its worker process or node died) is submitted again, at most ``SYSTEM_FAILURE_RETRIES`` times,
and resumes from the last checkpoint that reached the runner; a run that fails by its own error is
not retried. ray is an optional extra, so it is imported where it is used.
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
from .executors import SINGLE_THREAD_ENV, TICK_S, Tracker, record_failure
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


def _ray_task(spec: RunSpec, checkpoint: bytes | None) -> Iterator[tuple]:
    """One run as a streaming Ray task; it yields, in order, ``("step", step)`` per iteration,
    ``("checkpoint", data)`` each time the run saved a checkpoint, and last ``("done", result,
    files)``. A `checkpoint` handed in (one a lost attempt sent back) is where the run resumes."""
    torch.set_num_threads(1)
    silence_env_building_warnings()  # the runner showed them when it read the suite
    run = resolve(spec)
    messages: queue.SimpleQueue = queue.SimpleQueue()
    with tempfile.TemporaryDirectory(prefix="trbench-") as scratch:
        folder = Path(scratch) / run.run_id
        if checkpoint is not None:
            atomic_write_bytes(folder / CHECKPOINT_FILE, checkpoint)
        # a generator can only yield from its own frame, not from inside execute_run's callbacks:
        # the run trains in a thread and this frame passes on what it reports, as it comes
        trainer = threading.Thread(target=_train_and_report, args=(run, folder, messages), daemon=True)
        trainer.start()
        while True:
            message = messages.get()
            if message[0] == "raised":
                raise message[1]
            yield message
            if message[0] == "done":
                break
        trainer.join()


def _train_and_report(run: ResolvedRun, folder: Path, messages: queue.SimpleQueue) -> None:
    try:
        result = execute_run(
            run,
            folder,
            on_iteration=lambda row: messages.put(("step", row["step"])),
            on_checkpoint=lambda path: messages.put(("checkpoint", path.read_bytes())),
        )
        files = run_files_to_send(folder)
        messages.put(("done", result, files))
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
    """One submission of a run: its message stream and how many times the run was lost before."""

    run: ResolvedRun
    stream: Any  # ray.ObjectRefGenerator
    started_at: float
    losses: int


def run_ray(
    runs: list[ResolvedRun],
    runs_dir: Path,
    workers: int | None,
    address: str | None,
    tracker: Tracker,
    system_retries: int = SYSTEM_FAILURE_RETRIES,
) -> None:
    """Run on Ray; `workers` caps the runs in flight (None: as many as the cluster schedules).

    Uses the Ray session this process holds (the runner connects to a cluster before it writes
    anything), else connects to `address` or starts a local instance for these runs.

    A run lost to the system is submitted again, up to `system_retries` times, and resumes from
    the last checkpoint that reached the runner: each one the task sends back is written into the
    run's folder at once. A run that fails by its own error is recorded as failed, not retried."""
    import ray  # noqa: PLC0415 - ray is an optional extra

    session = contextlib.nullcontext() if ray.is_initialized() else ray_session(address, workers or os.cpu_count() or 1)
    with session:
        _run_streaming_tasks(runs, runs_dir, workers or len(runs), tracker, system_retries)


def _run_streaming_tasks(
    runs: list[ResolvedRun], runs_dir: Path, limit: int, tracker: Tracker, system_retries: int
) -> None:
    import ray  # noqa: PLC0415 - ray is an optional extra

    task = ray.remote(num_cpus=1, max_retries=0, num_returns="streaming")(_ray_task)
    pending: deque[tuple[ResolvedRun, int]] = deque((run, 0) for run in runs)
    in_flight: list[_RayAttempt] = []

    def submit(run: ResolvedRun, losses: int) -> None:
        checkpoint_path = runs_dir / run.run_id / CHECKPOINT_FILE
        checkpoint = checkpoint_path.read_bytes() if checkpoint_path.is_file() else None
        in_flight.append(_RayAttempt(run, task.remote(run.spec, checkpoint), time.perf_counter(), losses))
        tracker.started(run)

    while pending or in_flight:
        while pending and len(in_flight) < limit:
            submit(*pending.popleft())
        ready, _ = ray.wait([attempt.stream for attempt in in_flight], num_returns=1, timeout=TICK_S)
        for attempt in [a for a in in_flight if any(a.stream is stream for stream in ready)]:
            folder = runs_dir / attempt.run.run_id
            try:
                ended = _read_ready_messages(attempt, folder, tracker)
            except ray.exceptions.RayError as exc:
                ended = True
                _settle_failed_attempt(attempt, exc, folder, system_retries, pending, tracker)
            if ended:
                in_flight.remove(attempt)
        tracker.tick()


def _read_ready_messages(attempt: _RayAttempt, folder: Path, tracker: Tracker) -> bool:
    """Handle the messages the attempt's task has sent so far; True once the run has ended."""
    import ray  # noqa: PLC0415 - ray is an optional extra

    while ray.wait([attempt.stream], num_returns=1, timeout=0)[0]:
        message = ray.get(next(attempt.stream))  # the task's error, if it failed, is raised here
        if message[0] == "step":
            tracker.stepped(attempt.run, message[1])
        elif message[0] == "checkpoint":
            atomic_write_bytes(folder / CHECKPOINT_FILE, message[1])
        elif message[0] == "done":
            _, result, files = message
            store_run_files(folder, files)
            tracker.finished(attempt.run, result)
            return True
    return False


def _settle_failed_attempt(
    attempt: _RayAttempt,
    exc: BaseException,
    folder: Path,
    system_retries: int,
    pending: deque[tuple[ResolvedRun, int]],
    tracker: Tracker,
) -> None:
    """Resubmit a run lost to the system (first in line) while retries are left; record it failed otherwise."""
    import ray  # noqa: PLC0415 - ray is an optional extra

    with contextlib.suppress(ray.exceptions.RayError):
        ray.cancel(attempt.stream, force=True)  # nothing more of this attempt is read
    reason = _failure_text(exc)
    losses = attempt.losses + 1
    if is_system_failure(exc) and losses <= system_retries:
        start = "from its last checkpoint" if (folder / CHECKPOINT_FILE).is_file() else "from step 0"
        tracker.resubmitted(
            attempt.run, f"lost to the system ({reason}); submitted again, retry {losses} of {system_retries}, {start}"
        )
        pending.appendleft((attempt.run, losses))
        return
    if is_system_failure(exc):
        reason = f"{reason} (lost to the system {losses} times; not retried again)"
    result = record_failure(attempt.run, folder, reason, time.perf_counter() - attempt.started_at)
    tracker.finished(attempt.run, result)

"""Executors: run a list of resolved runs into their folders, locally or on Ray.

Both report to a tracker with ``started(run)``, ``stepped(run, step)`` and
``finished(run, result)``, and Ray with ``resubmitted(run, reason)`` too. A run's folder only
ever gains a result.json through an atomic rename, so killing the runner at any moment leaves
every folder finished or recognisably unfinished (and redone next time).

local
    A pool of worker processes started with ``spawn``, each limited to one torch thread. Each
    worker is handed one run at a time over its own pipe, so the runner always knows which run a
    worker holds: a worker that dies (out of memory, a segfault, a kill) has its run recorded as
    failed and is replaced, and the grid goes on. Workers die with the runner (on Linux by
    ``PR_SET_PDEATHSIG``, elsewhere at the next iteration), so a rerun never races an orphan.
ray
    One Ray task per run. The task trains into a temporary folder on whichever node it lands and
    streams back its progress, each checkpoint the run saves and, last, the run's files; the
    runner writes them into the results folder. The nodes therefore need trbench installed but
    no shared filesystem. A run lost to the system (its worker process or node died) is
    submitted again, at most ``SYSTEM_FAILURE_RETRIES`` times, and resumes from the last
    checkpoint that reached the runner; a run that fails by its own error is not retried.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol

import torch

from trbench.algos.library_warnings import silence_env_building_warnings
from trbench.algos.registry import BUILTIN, resolve_algorithm
from trbench.base.errors import UsageError
from trbench.base.files import atomic_write_bytes, atomic_write_json
from trbench.base.processes import die_with_parent
from trbench.base.run_folder import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    RESULT_FILE,
    last_logged_step,
    run_files_to_send,
    salvage_progress,
    store_run_files,
)

from .execute import config_record, execute_run
from .run_spec import ResolvedRun, RunSpec, resolve

# every BLAS/OpenMP pool in a worker gets one thread: N workers on N cores, no oversubscription
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
TICK_S = 0.5
# Times a Ray run lost to the system (its worker or node died) is submitted again before it is
# recorded as failed: enough to ride out a node lost now and then, while a run that kills its
# worker every time (out of memory, a segfault) still ends, after 1 + 3 attempts.
SYSTEM_FAILURE_RETRIES = 3


class Tracker(Protocol):
    def started(self, run: ResolvedRun) -> None: ...
    def stepped(self, run: ResolvedRun, step: int) -> None: ...
    def finished(self, run: ResolvedRun, result: dict[str, Any]) -> None: ...
    def resubmitted(self, run: ResolvedRun, reason: str) -> None: ...
    def tick(self) -> None: ...


# --- recording runs that could not record themselves -----------------------------------------------


def record_failure(run: ResolvedRun, folder: Path, error: str, wall_time_s: float | None = None) -> dict[str, Any]:
    """Mark a run failed when its process could not (it died, or failed outside training).

    What it logged before dying is kept as progress.csv, cut to its complete rows.
    """
    folder.mkdir(parents=True, exist_ok=True)
    steps = last_logged_step(salvage_progress(folder))
    if not (folder / CONFIG_FILE).exists():
        atomic_write_json(folder / CONFIG_FILE, config_record(run, run.config.device))
    result = {
        "status": "failed",
        "error": error,
        "final_eval_return": None,
        "final_eval_return_std": None,
        "final_eval_episodes": 0,
        "steps": steps,
        "wall_time_s": wall_time_s,
        "steps_per_second": steps / wall_time_s if wall_time_s else None,
    }
    atomic_write_json(folder / RESULT_FILE, result)
    return result


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "worker process died"
    if exitcode < 0:
        try:
            return f"worker process killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"worker process killed by signal {-exitcode}"
    return f"worker process exited with code {exitcode}"


# --- local process pool ----------------------------------------------------------------------------


class _Orphaned(SystemExit):
    """Raised inside a run when the runner is gone: a BaseException, so execute_run leaves the
    folder unfinished (no result.json) instead of recording a failure."""


def _worker_main(conn: Connection, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    torch.set_num_threads(1)
    # the runner built every env of the grid when it read the suite, and showed their warnings
    silence_env_building_warnings()
    # A worker lives for the whole grid. Importing every built-in algorithm now, rather than at
    # its first run, makes the worker's code one snapshot: a source edit during a long grid can
    # then not pair an old config module with a new algorithm module in one process.
    for name in BUILTIN:
        resolve_algorithm(name)

    def send(message: tuple) -> None:
        if os.getppid() != parent_pid:
            raise _Orphaned(1)
        try:
            conn.send(message)
        except OSError:
            raise _Orphaned(1) from None

    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        spec, folder = task
        try:
            result = execute_run(resolve(spec), Path(folder), on_iteration=lambda row: send(("step", row["step"])))
            send(("done", result))
        except Exception as exc:  # noqa: BLE001 - reported to the runner, which records the run as failed
            send(("error", f"{type(exc).__name__}: {exc}".splitlines()[0]))


class _Worker:
    def __init__(self, context, index: int):
        self.conn, child_conn = context.Pipe(duplex=True)
        self.process = context.Process(
            target=_worker_main, args=(child_conn, os.getpid()), name=f"trbench-worker-{index}", daemon=True
        )
        # Ctrl-C reaches the whole process group; the runner alone decides what happens to the
        # workers. A child that starts with SIGINT ignored keeps it ignored, even while importing.
        with environment_set_to(SINGLE_THREAD_ENV), _sigint_ignored():
            self.process.start()
        child_conn.close()
        self.run: ResolvedRun | None = None
        self.folder: Path | None = None
        self.started_at = 0.0

    def assign(self, run: ResolvedRun, folder: Path) -> None:
        self.run, self.folder, self.started_at = run, folder, time.perf_counter()
        self.conn.send((run.spec, str(folder)))

    def release(self) -> None:
        self.run = self.folder = None

    def stop(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


@contextlib.contextmanager
def _sigint_ignored():
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def environment_set_to(values: dict[str, str]):
    """Set environment variables for the block (e.g. for spawned children), then restore them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_local(runs: list[ResolvedRun], runs_dir: Path, workers: int, tracker: Tracker) -> None:
    context = multiprocessing.get_context("spawn")
    pending = deque(runs)
    pool: list[_Worker] = []
    next_index = 0
    try:
        while pending or any(w.run is not None for w in pool):
            for worker in [w for w in pool if w.run is None and not w.process.is_alive()]:
                worker.kill()  # died while idle: nothing to record, just replace it
                pool.remove(worker)
            while pending and len(pool) < workers:
                pool.append(_Worker(context, next_index))
                next_index += 1
            for worker in list(pool):
                if worker.run is None and pending:
                    run = pending.popleft()
                    try:
                        worker.assign(run, runs_dir / run.run_id)
                    except OSError:  # it died since the check above; the next round replaces it
                        pending.appendleft(run)
                        worker.kill()
                        pool.remove(worker)
                        continue
                    tracker.started(run)
            busy = [w for w in pool if w.run is not None]
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=TICK_S))
            for worker in busy:
                if worker.conn in ready or not worker.process.is_alive():
                    _drain(worker, tracker)  # including what a dead worker sent before it died
                if worker.run is not None and not worker.process.is_alive():
                    worker.process.join()
                    run, folder = worker.run, worker.folder
                    result = record_failure(
                        run, folder, _exit_reason(worker.process.exitcode), time.perf_counter() - worker.started_at
                    )
                    tracker.finished(run, result)
                    worker.kill()
                    pool.remove(worker)
            tracker.tick()
        for worker in pool:
            worker.stop()
        pool.clear()
    finally:
        for worker in pool:
            worker.kill()


def _drain(worker: _Worker, tracker: Tracker) -> None:
    while worker.run is not None:
        try:
            if not worker.conn.poll():
                return
            kind, payload = worker.conn.recv()
        except (EOFError, OSError):
            return
        run = worker.run
        if kind == "step":
            tracker.stepped(run, payload)
        elif kind == "done":
            worker.release()
            tracker.finished(run, payload)
        elif kind == "error":
            result = record_failure(run, worker.folder, payload, time.perf_counter() - worker.started_at)
            worker.release()
            tracker.finished(run, result)


# --- Ray ---------------------------------------------------------------------------------------------


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
            ray.init(address=address, runtime_env={"env_vars": env_vars}, logging_level="WARNING")
        else:
            # workers of a local instance import what this process can: algorithms given as an
            # import path from the current project, for instance
            env_vars["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
            ray.init(
                num_cpus=workers, include_dashboard=False, runtime_env={"env_vars": env_vars}, logging_level="WARNING"
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

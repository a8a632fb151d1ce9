"""Executors: run a list of resolved runs into their folders, locally or on Ray.

Both report to a tracker with ``started(run)``, ``stepped(run, step)`` and
``finished(run, result)``. A run's folder only ever gains a result.json through an atomic
rename, so killing the runner at any moment leaves every folder finished or recognisably
unfinished (and redone next time).

local
    A pool of worker processes started with ``spawn``, each limited to one torch thread. Each
    worker is handed one run at a time over its own pipe, so the runner always knows which run a
    worker holds: a worker that dies (out of memory, a segfault, a kill) has its run recorded as
    failed and is replaced, and the grid goes on. Workers die with the runner (on Linux by
    ``PR_SET_PDEATHSIG``, elsewhere at the next iteration), so a rerun never races an orphan.
ray
    One Ray task per run. The task trains into a temporary folder on whichever node it lands and
    returns the files; the runner writes them into the results folder. The nodes therefore need
    trbench installed but no shared filesystem.
"""

from __future__ import annotations

import contextlib
import csv
import io
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol

from trbench.errors import UsageError
from trbench.runs import (ResolvedRun, RunSpec, atomic_write_bytes, atomic_write_json, atomic_write_text,
                          clear_unfinished, config_record)

# every BLAS/OpenMP pool in a worker gets one thread: N workers on N cores, no oversubscription
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
TICK_S = 0.5
# the order a run folder's files are written in; result.json last marks the run finished
RUN_FILES_ORDER = ("config.json", "progress.csv", "model.pt", "result.json")


class Tracker(Protocol):
    def started(self, run: ResolvedRun) -> None: ...
    def stepped(self, run: ResolvedRun, step: int) -> None: ...
    def finished(self, run: ResolvedRun, result: dict[str, Any]) -> None: ...
    def tick(self) -> None: ...


# --- recording runs that could not record themselves -----------------------------------------------

def record_failure(run: ResolvedRun, folder: Path, error: str, wall_time_s: float | None = None) -> dict[str, Any]:
    """Mark a run failed when its process could not (it died, or failed outside training).

    What it logged before dying is kept as progress.csv, cut to its complete rows.
    """
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / "progress.csv.partial"
    rows_text = ""
    if partial.exists():
        text = partial.read_text(errors="replace")
        rows_text = text[: text.rfind("\n") + 1]
    for name in ("progress.csv.partial", "model.pt", "result.json"):
        (folder / name).unlink(missing_ok=True)
    for leftover in folder.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    steps = 0
    rows = list(csv.DictReader(io.StringIO(rows_text)))
    if rows and rows[-1].get("step", "").isdigit():
        steps = int(rows[-1]["step"])
    if rows_text or not (folder / "progress.csv").exists():
        atomic_write_text(folder / "progress.csv", rows_text)
    if not (folder / "config.json").exists():
        atomic_write_json(folder / "config.json", config_record(run, run.config.device))
    result = {"status": "failed", "error": error, "final_eval_return": None, "final_eval_return_std": None,
              "final_eval_episodes": 0, "steps": steps, "wall_time_s": wall_time_s,
              "steps_per_second": steps / wall_time_s if wall_time_s else None}
    atomic_write_json(folder / "result.json", result)
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

def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class _Orphaned(SystemExit):
    """Raised inside a run when the runner is gone: a BaseException, so execute_run leaves the
    folder unfinished (no result.json) instead of recording a failure."""


def _worker_main(conn: Connection, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    import torch

    from trbench.algos.library_warnings import silence_env_building_warnings
    from trbench.algos.registry import BUILTIN, resolve_algorithm
    from trbench.runs import execute_run, resolve

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
        self.process = context.Process(target=_worker_main, args=(child_conn, os.getpid()),
                                       name=f"trbench-worker-{index}", daemon=True)
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
                    result = record_failure(run, folder, _exit_reason(worker.process.exitcode),
                                            time.perf_counter() - worker.started_at)
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
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _ray_task(spec: RunSpec, progress_queue) -> tuple[dict[str, Any], dict[str, bytes]]:
    import torch

    from trbench.algos.library_warnings import silence_env_building_warnings
    from trbench.runs import execute_run, resolve

    torch.set_num_threads(1)
    silence_env_building_warnings()  # the runner showed them when it read the suite
    run = resolve(spec)

    def report(row: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # progress is best effort; the result is what counts
            progress_queue.put_nowait((run.run_id, row["step"]))

    with tempfile.TemporaryDirectory(prefix="trbench-") as scratch:
        folder = Path(scratch) / run.run_id
        result = execute_run(run, folder, on_iteration=report)
        files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    return result, files


def store_run_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write a run's files with result.json last, each atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    clear_unfinished(folder)
    names = sorted(files, key=lambda n: RUN_FILES_ORDER.index(n) if n in RUN_FILES_ORDER else -1)
    for name in names:
        atomic_write_bytes(folder / name, files[name])


def start_ray(address: str | None, workers: int) -> None:
    import ray

    env_vars = dict(SINGLE_THREAD_ENV)
    try:
        if address:
            ray.init(address=address, runtime_env={"env_vars": env_vars}, logging_level="WARNING")
        else:
            # workers of a local instance import what this process can: algorithms given as an
            # import path from the current project, for instance
            env_vars["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
            ray.init(num_cpus=workers, include_dashboard=False, runtime_env={"env_vars": env_vars},
                     logging_level="WARNING")
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UsageError(f"--address: cannot connect to Ray at {address or 'a new local instance'}: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def run_ray(runs: list[ResolvedRun], runs_dir: Path, workers: int | None, address: str | None,
            tracker: Tracker) -> None:
    """Run on Ray; `workers` caps the runs in flight (None: as many as the cluster schedules)."""
    import ray
    from ray.util.queue import Empty, Queue

    start_ray(address, workers or os.cpu_count() or 1)
    try:
        progress = Queue(actor_options={"num_cpus": 0})
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
        pending = deque(runs)
        in_flight: dict[Any, tuple[ResolvedRun, float]] = {}
        by_id = {run.run_id: run for run in runs}
        limit = workers or len(runs)
        while pending or in_flight:
            while pending and len(in_flight) < limit:
                run = pending.popleft()
                in_flight[task.remote(run.spec, progress)] = (run, time.perf_counter())
                tracker.started(run)
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=TICK_S)
            with contextlib.suppress(Empty):
                for run_id, step in progress.get_nowait_batch(progress.qsize()):
                    if run_id in by_id:
                        tracker.stepped(by_id[run_id], step)
            for ref in done:
                run, started_at = in_flight.pop(ref)
                folder = runs_dir / run.run_id
                try:
                    result, files = ray.get(ref)
                    store_run_files(folder, files)
                except ray.exceptions.RayError as exc:
                    cause = getattr(exc, "cause", None) or exc
                    message = f"{type(cause).__name__}: {cause}".splitlines()[0]
                    result = record_failure(run, folder, message, time.perf_counter() - started_at)
                tracker.finished(run, result)
            tracker.tick()
    finally:
        ray.shutdown()

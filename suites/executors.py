"""Executors: run a list of resolved runs into their folders, locally or on Ray (the Ray
executor is in :mod:`.ray_executor`).

Both report to a tracker with ``started(run)``, ``stepped(run, step)`` and
``finished(run, result)``, and Ray with ``resubmitted(run, reason)`` too. A run's folder only
ever gains a result.json through an atomic rename, so killing the runner at any moment leaves
every folder finished or recognisably unfinished (and redone next time).

local
    A pool of worker processes started with ``spawn``, each limited to one torch thread. Each
    worker is handed one pack at a time over its own pipe: one run, or up to ``seeds_per_worker``
    runs of one cell trained in lockstep (:mod:`.packing`, :mod:`.execute_pack`), each run's result
    sent as soon as that run ends. The runner always knows which runs a worker holds: a worker
    that dies (out of memory, a segfault, a kill) has its unfinished runs recorded as failed and
    is replaced, and the grid goes on. Workers die with the runner (on Linux by
    ``PR_SET_PDEATHSIG``, elsewhere at the next iteration), so a rerun never races an orphan.
ray
    One Ray task of one CPU per pack, packed as for the local pool. The task trains into a
    temporary folder on whichever node it lands and streams back each run's progress, each
    checkpoint a run saves and, as each run ends, its files; the runner writes them into the
    results folder. The nodes therefore need trbench installed but no shared filesystem. A pack
    lost to the system (its worker process or node died) is submitted again, at most
    ``SYSTEM_FAILURE_RETRIES`` times, with its runs that had not ended, each resuming from the
    last checkpoint that reached the runner; a run that fails by its own error is not retried.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol

import torch

from trbench.algos.library_warnings import silence_env_building_warnings
from trbench.algos.registry import BUILTIN, resolve_algorithm
from trbench.base.files import atomic_write_json
from trbench.base.processes import die_with_parent
from trbench.base.run_folder import (
    CONFIG_FILE,
    RESULT_FILE,
    last_logged_step,
    salvage_progress,
)

from .execute import config_record, execute_run
from .execute_pack import execute_pack
from .run_spec import ResolvedRun, resolve

# every BLAS/OpenMP pool in a worker gets one thread: N workers on N cores, no oversubscription
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
TICK_S = 0.5


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
        if len(task) == 1:
            spec, folder = task[0]
            try:
                result = execute_run(
                    resolve(spec), Path(folder), on_iteration=lambda row: send(("step", 0, row["step"]))
                )
                send(("done", 0, result))
            except Exception as exc:  # noqa: BLE001 - reported to the runner, which records the run as failed
                send(("error", 0, one_line(exc)))
            continue
        _train_pack(task, send)


def _train_pack(task: list, send: Callable[[tuple], None]) -> None:
    """A pack in lockstep, each run's end sent as it comes."""
    reported: set[int] = set()

    def report(k: int, end: dict[str, Any] | Exception) -> None:
        reported.add(k)
        send(("done", k, end) if isinstance(end, dict) else ("error", k, one_line(end)))

    try:
        execute_pack(
            [resolve(spec) for spec, _ in task],
            [Path(folder) for _, folder in task],
            on_iteration=lambda k, row: send(("step", k, row["step"])),
            on_end=report,
        )
    except Exception as exc:  # noqa: BLE001 - outside any one run: the runs not yet ended failed
        for k in range(len(task)):
            if k not in reported:
                report(k, exc)


def one_line(exc: BaseException) -> str:
    """An exception as the one line a failed run's result.json records."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


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
        # the pack it trains: run k of the task is slot k, None once its result is in
        self.slots: list[tuple[ResolvedRun, Path] | None] = []
        self.started_at = 0.0

    @property
    def busy(self) -> bool:
        return any(slot is not None for slot in self.slots)

    def assign(self, pack: list[ResolvedRun], runs_dir: Path) -> None:
        self.slots = [(run, runs_dir / run.run_id) for run in pack]
        self.started_at = time.perf_counter()
        self.conn.send([(run.spec, str(runs_dir / run.run_id)) for run in pack])

    def unfinished(self) -> list[tuple[ResolvedRun, Path]]:
        return [slot for slot in self.slots if slot is not None]

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


def run_local(packs: list[list[ResolvedRun]], runs_dir: Path, workers: int, tracker: Tracker) -> None:
    """Train `packs` (suites/packing.py; a pack of one is a lone run) on a pool of `workers`
    processes, one pack per worker at a time."""
    context = multiprocessing.get_context("spawn")
    pending = deque(packs)
    pool: list[_Worker] = []
    next_index = 0
    try:
        while pending or any(w.busy for w in pool):
            for worker in [w for w in pool if not w.busy and not w.process.is_alive()]:
                worker.kill()  # died while idle: nothing to record, just replace it
                pool.remove(worker)
            while pending and len(pool) < workers:
                pool.append(_Worker(context, next_index))
                next_index += 1
            for worker in list(pool):
                if not worker.busy and pending:
                    pack = pending.popleft()
                    try:
                        worker.assign(pack, runs_dir)
                    except OSError:  # it died since the check above; the next round replaces it
                        pending.appendleft(pack)
                        worker.slots = []
                        worker.kill()
                        pool.remove(worker)
                        continue
                    for run in pack:
                        tracker.started(run)
            busy = [w for w in pool if w.busy]
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=TICK_S))
            for worker in busy:
                if worker.conn in ready or not worker.process.is_alive():
                    _drain(worker, tracker)  # including what a dead worker sent before it died
                if worker.busy and not worker.process.is_alive():
                    worker.process.join()
                    reason = _exit_reason(worker.process.exitcode)
                    for run, folder in worker.unfinished():
                        result = record_failure(run, folder, reason, time.perf_counter() - worker.started_at)
                        tracker.finished(run, result)
                    worker.slots = []
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
    while worker.busy:
        try:
            if not worker.conn.poll():
                return
            kind, slot, payload = worker.conn.recv()
        except (EOFError, OSError):
            return
        entry = worker.slots[slot]
        if entry is None:
            continue
        run, folder = entry
        if kind == "step":
            tracker.stepped(run, payload)
        elif kind == "done":
            worker.slots[slot] = None
            tracker.finished(run, payload)
        elif kind == "error":
            result = record_failure(run, folder, payload, time.perf_counter() - worker.started_at)
            worker.slots[slot] = None
            tracker.finished(run, result)

"""Run a suite's grid into its results folder, resumably.

The folder (format: ``results/README.md``) holds a copy of the suite file, the manifest of the
grid and one folder per run. Rerunning the same command skips complete runs and redoes the
rest; a run folder is only ever finished by the atomic rename of its result.json, so a runner
killed at any moment (SIGKILL included) leaves nothing half-written that a rerun would trust.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import TextIO

from trbench.base.errors import UsageError, check_output_folder
from trbench.base.files import atomic_write_json, atomic_write_text, remove_temporary_files
from trbench.base.results_folder import LOCK_FILE, MANIFEST_FILE, RUNS_DIR, SUITE_FILE, SUPERSEDED_DIR, take_lock
from trbench.base.run_folder import CHECKPOINT_FILE, is_imported_run, read_result, run_state

from .executors import run_local
from .grid import Suite
from .packing import DEFAULT_SEEDS_PER_WORKER, packs_for_slots, unpacked_notes
from .progress import Progress, format_duration
from .ray_executor import ray_available, ray_session, run_ray
from .run_spec import ResolvedRun, rounding_note

EXECUTORS = ("local", "ray")


def default_workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_out(suite: Suite) -> Path:
    return Path("results") / suite.name


def check_out_dir(out: Path, suite: Suite) -> None:
    """Refuse a folder that holds something other than this suite's results, before writing."""
    check_output_folder(out)
    manifest_path = out / MANIFEST_FILE
    if manifest_path.exists():
        try:
            previous = json.loads(manifest_path.read_text()).get("suite")
        except (OSError, ValueError, AttributeError):
            raise UsageError(f"--out: {manifest_path} is unreadable; choose another folder or remove it") from None
        if previous != suite.name:
            raise UsageError(
                f"--out: {out} holds the results of suite {previous!r}, not {suite.name!r}; choose another folder"
            )
    elif out.is_dir() and any(out.iterdir()) and not holds_only_imported_runs(out):
        raise UsageError(
            f"--out: {out} is not empty and holds no suite results (no manifest.json); choose a new or empty folder"
        )


def holds_only_imported_runs(out: Path) -> bool:
    """A folder `trbench import` made: a suite may run into it, beside the imported runs."""
    runs_dir = out / RUNS_DIR
    return (
        {path.name for path in out.iterdir()} <= {RUNS_DIR, LOCK_FILE}
        and runs_dir.is_dir()
        and all(is_imported_run(folder) for folder in runs_dir.iterdir())
    )


def check_results_readable(out: Path, suite: Suite) -> None:
    """Read every result.json of the grid (in runs/, or in superseded/ to be brought back) before
    writing anything, so that a damaged one stops the runner with its name (see read_result)."""
    for run in suite.runs:
        for folder in (out / RUNS_DIR / run.run_id, out / SUPERSEDED_DIR / run.run_id):
            read_result(folder)


def check_executor(executor: str, address: str | None, workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise UsageError(f"--workers: must be >= 1, got {workers}")
    if address and executor != "ray":
        raise UsageError("--address: only used with --executor ray")
    if address and address.startswith("ray://"):
        raise UsageError(
            f"--address: {address}: Ray Client (ray://) cannot stream a run's checkpoints back; run "
            "trbench on a node of the cluster with --address auto or --address HEAD_HOST:PORT"
        )
    if executor == "ray" and not ray_available():
        raise UsageError("--executor ray: ray is not installed; install the extra: pip install 'trbench[ray]'")


@contextlib.contextmanager
def connected_to_cluster(executor: str, address: str | None, workers: int | None):
    """Connected to the Ray cluster at `address` for the block, when one is given. Connecting
    before the results folder is written means a refused connection (a wrong address, a missing
    token) leaves it as it was; a new local Ray instance starts later, only if there is work."""
    if executor != "ray" or not address:
        yield
        return
    with ray_session(address, workers or default_workers()):
        yield


@contextlib.contextmanager
def exclusive(out: Path):
    """One runner per results folder (created here); the lock goes away with the process, even
    on SIGKILL."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "w") as handle:
        take_lock(handle, out)
        yield


def sort_run_folders(out: Path, suite: Suite) -> tuple[int, int]:
    """Keep runs/ to exactly the suite's grid, so reports never mix in runs of an earlier version
    of the suite: folders not in the grid move to superseded/, and come back if the grid names
    them again. Returns (moved out, moved back)."""
    runs_dir, superseded = out / RUNS_DIR, out / SUPERSEDED_DIR
    wanted = {run.run_id for run in suite.runs}
    moved_out = moved_back = 0
    if runs_dir.is_dir():
        for folder in runs_dir.iterdir():
            # imported runs belong to no grid: they stay beside the suite's runs for its reports
            if folder.is_dir() and folder.name not in wanted and not is_imported_run(folder):
                superseded.mkdir(exist_ok=True)
                target = superseded / folder.name
                if target.exists():
                    shutil.rmtree(target)
                os.replace(folder, target)
                moved_out += 1
    if superseded.is_dir():
        for run_id in wanted:
            source = superseded / run_id
            if source.is_dir() and not (runs_dir / run_id).exists():
                runs_dir.mkdir(exist_ok=True)
                os.replace(source, runs_dir / run_id)
                moved_back += 1
    return moved_out, moved_back


def remove_finished_checkpoints(runs_dir: Path, suite: Suite) -> None:
    """A run killed between writing its result.json and removing its checkpoint is complete with
    a checkpoint left over; remove it, as the run would have (unless the run keeps it)."""
    for run in suite.runs:
        folder = runs_dir / run.run_id
        if not run.config.keep_checkpoint and (folder / CHECKPOINT_FILE).is_file() and run_state(folder) == "complete":
            (folder / CHECKPOINT_FILE).unlink()


def remove_stale_temp_files(out: Path) -> None:
    remove_temporary_files(out)


ORDERS = ("seeds", "cells")


def check_selection(suite: Suite, order: str, only_envs: tuple[str, ...]) -> None:
    if order not in ORDERS:
        raise UsageError(f"--order: {order!r} is not an order; allowed: {', '.join(ORDERS)}")
    for env_id in only_envs:
        if env_id not in suite.envs:
            raise UsageError(
                f"--env: {suite.path}: {env_id!r} is not in the suite's envs; allowed: {', '.join(suite.envs)}"
            )


def selected_runs(suite: Suite, only_envs: tuple[str, ...]) -> list[ResolvedRun]:
    """The grid's runs on `only_envs` (all of them when it is empty), in the suite's order."""
    return [run for run in suite.runs if not only_envs or run.spec.env_id in only_envs]


def runs_to_do(
    suite: Suite, runs_dir: Path, redo_failed: bool, order: str = "seeds", only_envs: tuple[str, ...] = ()
) -> list[ResolvedRun]:
    """The runs not complete, in the order they should start.

    `seeds` (the suite's order, seeds outermost) leaves an interrupted grid with every cell at
    its first seeds; `cells` finishes all seeds of one (arm, env) cell before the next, so that
    cells reach the seed count a verdict needs one by one. `only_envs` restricts this call to
    those envs, in that order for `cells`; the rest of the grid stays as it is."""
    todo = []
    for run in selected_runs(suite, only_envs):
        state = run_state(runs_dir / run.run_id)
        if state == "missing" or (state == "failed" and redo_failed):
            todo.append(run)
    if order == "cells":
        env_rank = {env_id: i for i, env_id in enumerate(only_envs or suite.envs)}
        arm_rank = {arm.name: i for i, arm in enumerate(suite.arms)}
        # a stable sort keeps the suite's seed order inside each cell
        todo.sort(key=lambda run: (env_rank[run.spec.env_id], arm_rank[run.spec.arm]))
    return todo


def worker_slots(executor: str, workers: int | None, address: str | None) -> int:
    """How many packs can train at once: --workers, else the CPUs of the Ray cluster this process
    is connected to, else the cores here (a local pool, or the local Ray instance it starts)."""
    if workers:
        return workers
    if executor == "ray" and address:
        import ray  # noqa: PLC0415 - ray is an optional extra

        if ray.is_initialized():
            return max(1, int(ray.cluster_resources().get("CPU", 1)))
    return default_workers()


def resolved_seeds_per_worker(suite: Suite, override: int | None) -> int:
    """--seeds-per-worker, else the suite's seeds_per_worker, else the measured default."""
    if override is not None:
        if override < 1:
            raise UsageError(f"--seeds-per-worker: must be >= 1 (1: one seed per worker), got {override}")
        return override
    return suite.seeds_per_worker if suite.seeds_per_worker is not None else DEFAULT_SEEDS_PER_WORKER


def dry_run(
    suite: Suite,
    out: Path,
    redo_failed: bool,
    stream: TextIO,
    order: str = "seeds",
    only_envs: tuple[str, ...] = (),
    seeds_per_worker: int | None = None,
    workers: int | None = None,
) -> int:
    check_selection(suite, order, only_envs)
    runs_dir = out / RUNS_DIR
    # position in which each run to do would start, so that --order and --env can be checked
    todo = {
        run.run_id: position
        for position, run in enumerate(runs_to_do(suite, runs_dir, redo_failed, order, only_envs), start=1)
    }
    id_width = max(len(run.run_id) for run in suite.runs)
    stream.write(f"{'run_id':<{id_width}}  {'state':<8}  {'steps':>10}  {'starts':>6}\n")
    states = {}
    for run in suite.runs:
        states[run.run_id] = run_state(runs_dir / run.run_id)
        starts = str(todo.get(run.run_id, "-"))
        stream.write(f"{run.run_id:<{id_width}}  {states[run.run_id]:<8}  {run.steps_taken:>10,}  {starts:>6}\n")
    todo_steps = sum(run.steps_taken for run in suite.runs if run.run_id in todo)
    complete = sum(state == "complete" for state in states.values())
    failed = sum(state == "failed" for state in states.values())
    shape = f"{len(suite.arms)} arms x {len(suite.envs)} envs x {len(suite.seeds)} seeds"
    if len(suite.runs) != len(suite.arms) * len(suite.envs) * len(suite.seeds):
        shape += ", times the grid axes"
    todo_runs = [run for run in suite.runs if run.run_id in todo]
    packs, packing = packs_for_slots(
        todo_runs, resolved_seeds_per_worker(suite, seeds_per_worker), workers or default_workers()
    )
    packed = ""
    if packing > 1 and todo_runs:
        packed = (
            f"; in {len(packs)} worker tasks (up to {packing} "
            "seeds of one cell in lockstep, each run's files and numbers as alone)"
        )
    unpacked = "".join(f"; {note}" for note in unpacked_notes(todo_runs, packing))
    stream.write(
        f"suite {suite.name!r}: {len(suite.runs)} runs ({shape}), {suite.total_steps:,} steps in all; "
        f"{complete} complete, {failed} failed, {len(todo)} to run ({todo_steps:,} steps) into {out}"
        f"{packed}{unpacked}\n"
    )
    if note := rounding_note(suite.runs):
        stream.write(note + "\n")
    return 0


def run_suite(
    suite: Suite,
    out: Path,
    *,
    workers: int | None,
    executor: str,
    address: str | None,
    redo_failed: bool,
    stream: TextIO,
    order: str = "seeds",
    only_envs: tuple[str, ...] = (),
    seeds_per_worker: int | None = None,
) -> int:
    """Run what is not yet done (of `only_envs` when given, in `order`, see :func:`runs_to_do`);
    exit code 0 when every run of the grid is complete, else 1."""
    check_out_dir(out, suite)
    check_selection(suite, order, only_envs)
    check_executor(executor, address, workers)
    check_results_readable(out, suite)
    with connected_to_cluster(executor, address, workers), exclusive(out):
        remove_stale_temp_files(out)
        atomic_write_text(out / SUITE_FILE, suite.text)
        atomic_write_json(out / MANIFEST_FILE, suite.manifest())
        moved_out, moved_back = sort_run_folders(out, suite)
        runs_dir = out / RUNS_DIR
        runs_dir.mkdir(exist_ok=True)
        remove_finished_checkpoints(runs_dir, suite)
        todo = runs_to_do(suite, runs_dir, redo_failed, order, only_envs)
        packs, packing = packs_for_slots(
            todo, resolved_seeds_per_worker(suite, seeds_per_worker), worker_slots(executor, workers, address)
        )
        if executor == "local":
            workers = min(workers or default_workers(), max(len(packs), 1))
        where = (
            f"{workers} local workers"
            if executor == "local"
            else (f"Ray at {address}" if address else f"a local Ray instance with {workers or default_workers()} CPUs")
        )
        if packing > 1:
            where += (
                f", up to {packing} seeds of one cell per {'worker' if executor == 'local' else 'task'} in lockstep"
            )
        # with --env, progress counts the selected envs' runs only, not the rest of the grid
        selected = selected_runs(suite, only_envs)
        already_done = len(selected) - len(todo)
        scope = f", {len(selected)} of them on {', '.join(only_envs)}" if only_envs else ""
        resuming = sum((runs_dir / run.run_id / CHECKPOINT_FILE).is_file() for run in todo)
        resume_note = f", {resuming} resume from a checkpoint" if resuming else ""
        stream.write(
            f"suite {suite.name!r}: {len(suite.runs)} runs{scope}, {already_done} already done, "
            f"{len(todo)} to run{resume_note} ({sum(r.steps_taken for r in todo):,} steps) on {where} -> {out}\n"
        )
        if note := rounding_note(todo):
            stream.write(note + "\n")
        for note in unpacked_notes(todo, packing):
            stream.write(f"note: {note}\n")
        if moved_out or moved_back:
            stream.write(
                f"{moved_out} run folder(s) no longer in the suite moved to {SUPERSEDED_DIR}/, "
                f"{moved_back} brought back from it\n"
            )
        stream.flush()
        progress = Progress(todo, stream, live=stream.isatty(), already_done=already_done)
        try:
            if todo and executor == "local":
                run_local(packs, runs_dir, workers or default_workers(), progress)
            elif todo:
                run_ray(packs, runs_dir, workers or (None if address else default_workers()), address, progress)
        finally:
            progress.close()
        states = [run_state(runs_dir / run.run_id) for run in suite.runs]
    complete = states.count("complete")
    elapsed = format_duration(progress.elapsed_s())
    stream.write(
        f"suite {suite.name!r}: {complete}/{len(states)} runs complete, {states.count('failed')} failed, "
        f"{states.count('missing')} missing; this session ran {len(todo)} in {elapsed}; results in {out}\n"
    )
    stream.flush()
    return 0 if complete == len(states) else 1

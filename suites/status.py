"""The state of a suite's results folder: which runs are complete, failed, started or missing, how
much of the grid's budget is trained, and whether a runner is at work on it now."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TextIO

from trbench.base.results_folder import MANIFEST_FILE, imported_folders, read_manifest, runner_holds
from trbench.base.run_folder import (
    CHECKPOINT_FILE,
    PARTIAL_PROGRESS_FILE,
    read_config_or_empty,
    read_result,
    run_state,
)

# started: no result.json yet, but a checkpoint or logged iterations (in training now, or
# interrupted); missing: nothing of it yet
STATES = ("complete", "failed", "started", "missing")


def steps_logged(folder: Path) -> int:
    """The env steps of the last whole row of an unfinished run's streamed progress table (0
    without one). A resumed run goes on from its last checkpoint, which may be a few rows earlier."""
    try:
        lines = (folder / PARTIAL_PROGRESS_FILE).read_text(errors="replace").split("\n")
    except OSError:
        return 0
    header, rows = lines[0].split(","), lines[1:-1]  # the text after the last newline is a torn row
    if "step" not in header or not rows:
        return 0
    column = header.index("step")
    try:
        return int(float(rows[-1].split(",")[column]))
    except (IndexError, ValueError):
        return 0


def unfinished_state(folder: Path) -> str:
    """started or missing, for a run folder without a result."""
    started = (folder / CHECKPOINT_FILE).is_file() or (folder / PARTIAL_PROGRESS_FILE).is_file()
    return "started" if started else "missing"


def print_imported(folders: list[Path], stream: TextIO) -> bool:
    """Table of the imported runs by arm and env; whether every one is complete."""
    counts: dict[tuple[str, str], Counter] = {}
    for folder in folders:
        config = read_config_or_empty(folder)
        counts.setdefault((str(config.get("algo")), str(config.get("env_id"))), Counter())[run_state(folder)] += 1
    algo_width = max([len("algo")] + [len(algo) for algo, _ in counts])
    env_width = max([len("env")] + [len(env) for _, env in counts])
    stream.write(f"{len(folders)} imported run(s) (trbench import; no suite runs them):\n")
    stream.write(f"{'algo':<{algo_width}}  {'env':<{env_width}}  {'complete':>8}  {'failed':>8}\n")
    for (algo, env), counter in sorted(counts.items()):
        stream.write(f"{algo:<{algo_width}}  {env:<{env_width}}  {counter['complete']:>8}  {counter['failed']:>8}\n")
    return all(counter["failed"] == 0 for counter in counts.values())


def print_status(out: Path, stream: TextIO) -> int:
    """Table of runs by algorithm and env, then the imported runs; exit code 0 when every run is
    complete, else 1. A folder of imported runs alone needs no manifest."""
    runs_dir = out / "runs"
    imported = imported_folders(runs_dir)
    if imported and not (out / MANIFEST_FILE).exists():
        return 0 if print_imported(imported, stream) else 1
    manifest = read_manifest(out)
    counts: dict[tuple[str, str], Counter] = {}
    totals: Counter = Counter()
    problems: list[str] = []
    listed = set()
    budget = trained = resumable = 0
    for entry in manifest["runs"]:
        run_id = entry.get("run_id", "")
        listed.add(run_id)
        folder = runs_dir / run_id
        state = run_state(folder)
        if state == "missing":
            state = unfinished_state(folder)
        steps = int(entry.get("steps") or 0)
        budget += steps
        if state in ("complete", "failed"):
            trained += steps  # an ended run trains no further
        elif state == "started":
            trained += min(steps_logged(folder), steps)
            resumable += (folder / CHECKPOINT_FILE).is_file()
        counts.setdefault((str(entry.get("algo")), str(entry.get("env_id"))), Counter())[state] += 1
        totals[state] += 1
        if state == "failed":
            result = read_result(runs_dir / run_id) or {}
            problems.append(f"  {result.get('status')}: {run_id}: {result.get('error')}")

    algo_width = max([len("algo")] + [len(algo) for algo, _ in counts])
    env_width = max([len("env")] + [len(env) for _, env in counts])
    stream.write(f"suite {manifest.get('suite')!r} in {out}: {len(manifest['runs'])} runs\n")
    header = f"{'algo':<{algo_width}}  {'env':<{env_width}}  " + "  ".join(f"{s:>8}" for s in STATES)
    stream.write(header + "\n")
    for (algo, env), counter in counts.items():
        stream.write(
            f"{algo:<{algo_width}}  {env:<{env_width}}  " + "  ".join(f"{counter[s]:>8}" for s in STATES) + "\n"
        )
    stream.write(f"{'total':<{algo_width}}  {'':<{env_width}}  " + "  ".join(f"{totals[s]:>8}" for s in STATES) + "\n")
    if budget:
        started_note = (
            f"; {totals['started']} started, {resumable} of them with a checkpoint to resume from"
            if totals["started"]
            else ""
        )
        stream.write(f"trained: {trained:,} of the grid's {budget:,} steps ({trained / budget:.1%}){started_note}\n")
    holds = runner_holds(out)
    if holds is not None:
        stream.write("a runner is working on this folder now\n" if holds else "no runner is working on this folder\n")
    if problems:
        stream.write("not complete:\n" + "\n".join(problems) + "\n")
    imported_complete = print_imported(imported, stream) if imported else True
    if runs_dir.is_dir():
        unlisted = sorted(
            p.name for p in runs_dir.iterdir() if p.is_dir() and p.name not in listed and p not in imported
        )
        if unlisted:
            stream.write(
                f"{len(unlisted)} run folder(s) in runs/ are not in the manifest "
                "(left by an earlier version of the suite); reports read them too\n"
            )
    return 0 if totals["complete"] == len(manifest["runs"]) and imported_complete else 1

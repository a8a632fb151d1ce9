"""The state of a suite's results folder: which runs are complete, failed or missing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TextIO

from trbench.base.results_folder import MANIFEST_FILE, imported_folders, read_manifest
from trbench.base.run_folder import read_config_or_empty, read_result, run_state

STATES = ("complete", "failed", "missing")


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
    for entry in manifest["runs"]:
        run_id = entry.get("run_id", "")
        listed.add(run_id)
        state = run_state(runs_dir / run_id)
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

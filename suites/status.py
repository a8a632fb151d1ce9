"""The state of a suite's results folder: which runs are complete, failed or missing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from trbench.errors import UsageError
from trbench.importers.writer import is_imported_run

STATES = ("complete", "failed", "missing")


def read_result(folder: Path) -> dict[str, Any] | None:
    """A run's result record, or None when it has none yet (never run, or interrupted).

    result.json is only ever written whole (by rename), so one that does not parse was damaged
    after the fact: a UsageError names it rather than counting the run as missing, which would
    have the runner overwrite it unseen."""
    path = folder / "result.json"
    try:
        result = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable result.json ({str(exc).splitlines()[0]}); "
                         "remove it to have `trbench run` redo the run") from None
    if not isinstance(result, dict) or not isinstance(result.get("status"), str):
        raise UsageError(f"{path}: not a run result (a JSON object with a status); "
                         "remove it to have `trbench run` redo the run")
    return result


def run_state(folder: Path) -> str:
    """complete; failed (failed, diverged or pruned, recorded in result.json); missing (never run, or
    interrupted: no result.json)."""
    result = read_result(folder)
    if result is None:
        return "missing"
    return "complete" if result.get("status") == "complete" else "failed"


def read_manifest(out: Path) -> dict[str, Any]:
    path = out / "manifest.json"
    if not out.is_dir():
        raise UsageError(f"{out}: no such folder; give a suite's results folder (e.g. results/quickstart)")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{out}: no manifest.json, so not a suite's results folder; "
                         "`trbench run SUITE --out DIR` creates one") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable manifest: {exc}".splitlines()[0]) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("runs"), list):
        raise UsageError(f"{path}: runs: missing or not a list; not a manifest written by `trbench run`")
    return manifest


def imported_folders(runs_dir: Path) -> list[Path]:
    """The run folders `trbench import` wrote: no suite's grid names them."""
    if not runs_dir.is_dir():
        return []
    return sorted(folder for folder in runs_dir.iterdir() if folder.is_dir() and is_imported_run(folder))


def print_imported(folders: list[Path], stream: TextIO) -> bool:
    """Table of the imported runs by arm and env; whether every one is complete."""
    counts: dict[tuple[str, str], Counter] = {}
    for folder in folders:
        config = json.loads((folder / "config.json").read_text())
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
    if imported and not (out / "manifest.json").exists():
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
        stream.write(f"{algo:<{algo_width}}  {env:<{env_width}}  " + "  ".join(f"{counter[s]:>8}" for s in STATES) + "\n")
    stream.write(f"{'total':<{algo_width}}  {'':<{env_width}}  " + "  ".join(f"{totals[s]:>8}" for s in STATES) + "\n")
    if problems:
        stream.write("not complete:\n" + "\n".join(problems) + "\n")
    imported_complete = print_imported(imported, stream) if imported else True
    if runs_dir.is_dir():
        unlisted = sorted(p.name for p in runs_dir.iterdir()
                          if p.is_dir() and p.name not in listed and p not in imported)
        if unlisted:
            stream.write(f"{len(unlisted)} run folder(s) in runs/ are not in the manifest "
                         "(left by an earlier version of the suite); reports read them too\n")
    return 0 if totals["complete"] == len(manifest["runs"]) and imported_complete else 1

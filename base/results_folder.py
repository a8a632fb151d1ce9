"""A suite's results folder: ``suite.toml`` (the suite as it ran), ``manifest.json`` (its runs),
``runs/<run_id>/`` (one run folder each, see :mod:`.run_folder`) and ``superseded/`` (run folders
a later edit of the suite no longer names, kept rather than deleted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import UsageError
from .run_folder import is_imported_run

RUNS_DIR = "runs"
SUPERSEDED_DIR = "superseded"
SUITE_FILE = "suite.toml"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".runner.lock"  # held by the runner writing into the folder


def read_manifest(out: Path) -> dict[str, Any]:
    """The manifest of a suite's results folder; a UsageError when it is absent or damaged."""
    path = out / MANIFEST_FILE
    if not out.is_dir():
        raise UsageError(f"{out}: no such folder; give a suite's results folder (e.g. results/quickstart)")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(
            f"{out}: no manifest.json, so not a suite's results folder; `trbench run SUITE --out DIR` creates one"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable manifest: {exc}".splitlines()[0]) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("runs"), list):
        raise UsageError(f"{path}: runs: missing or not a list; not a manifest written by `trbench run`")
    return manifest


def run_folders(results_dir: Path) -> list[Path]:
    """The run folders under ``runs/``, sorted by name (none when there is no runs/)."""
    runs_dir = Path(results_dir) / RUNS_DIR
    if not runs_dir.is_dir():
        return []
    return sorted(path for path in runs_dir.iterdir() if path.is_dir())


def imported_folders(runs_dir: Path) -> list[Path]:
    """The run folders `trbench import` wrote: no suite's grid names them."""
    if not runs_dir.is_dir():
        return []
    return sorted(folder for folder in runs_dir.iterdir() if folder.is_dir() and is_imported_run(folder))

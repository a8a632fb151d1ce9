"""A suite's results folder: ``suite.toml`` (the suite as it ran), ``manifest.json`` (its runs),
``runs/<run_id>/`` (one run folder each, see :mod:`.run_folder`) and ``superseded/`` (run folders
a later edit of the suite no longer names, kept rather than deleted)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .errors import UsageError
from .run_folder import is_imported_run

RUNS_DIR = "runs"
SUPERSEDED_DIR = "superseded"
SUITE_FILE = "suite.toml"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".runner.lock"  # held by the runner writing into the folder
# a status probe holds the lock for microseconds; a runner starting at that instant waits this
# long for it rather than refusing the folder as busy
LOCK_WAIT_S = 1.0


def runner_holds(out: Path) -> bool | None:
    """Whether a runner (`trbench run`) is writing into the results folder `out` now: its lock is
    held. None where this platform has no advisory locks. The probe takes the lock shared and
    lets it go at once, so it never blocks a runner for longer than :data:`LOCK_WAIT_S`."""
    try:
        import fcntl  # noqa: PLC0415 - POSIX only
    except ImportError:
        return None
    try:
        handle = open(out / LOCK_FILE)
    except OSError:  # never locked (no file), or unreadable: no runner of ours holds it
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def take_lock(handle, out: Path) -> None:
    """Hold `out`'s runner lock through the open `handle` for as long as it stays open; a
    UsageError when another runner holds it (waiting :data:`LOCK_WAIT_S` for a status probe to
    let go). Without advisory locks on this platform, the user is trusted."""
    try:
        import fcntl  # noqa: PLC0415 - POSIX only
    except ImportError:
        return

    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise UsageError(
                    f"--out: {out} is in use by another trbench run; wait for it or choose another folder"
                ) from None
            time.sleep(0.01)


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

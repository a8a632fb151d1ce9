"""Compact results trees: each finished run's progress.csv becomes progress.csv.xz.

    .venv/bin/python scripts/archive_results.py results/            # every run under results/
    .venv/bin/python scripts/archive_results.py results/quickstart  # one suite's results folder

A finished run folder is one with result.json (complete, failed or diverged alike), under runs/,
superseded/ or anywhere deeper. Its progress.csv is replaced by progress.csv.xz holding the same
bytes (checked by decompressing before the original goes, see
``trbench.base.run_folder.archive_progress``); every reader (``trbench report``, ``status``, the
reproduction table) reads either. Unfinished runs are left alone, so a runner still training one
is not disturbed; a run the runner redoes later writes a plain progress.csv again. Running it a
second time archives nothing more.

Prints one line per folder given: how many tables it archived, how many were archived already,
and the bytes of the archived tables before and after. Bad input (a path that is not a folder, or
a folder holding no finished run) is refused with one line and exit code 2, before anything is
archived.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trbench.base.run_folder import ARCHIVED_PROGRESS_FILE, PROGRESS_FILE, RESULT_FILE, archive_progress

USAGE = "usage: archive_results.py RESULTS_DIR..."


def finished_run_folders(root: Path) -> list[Path]:
    """Every folder under ``root`` (``root`` itself included) that holds result.json, sorted."""
    return sorted(path.parent for path in root.rglob(RESULT_FILE) if path.is_file())


def archive_tree(root: Path) -> tuple[int, int, int, int]:
    """Archive every finished run under ``root``: (archived, already archived, bytes before, after)."""
    archived = already = before = after = 0
    for folder in finished_run_folders(root):
        plain = folder / PROGRESS_FILE
        size = plain.stat().st_size if plain.is_file() else 0
        if archive_progress(folder):
            archived += 1
            before += size
            after += (folder / ARCHIVED_PROGRESS_FILE).stat().st_size
        elif (folder / ARCHIVED_PROGRESS_FILE).is_file():
            already += 1
    return archived, already, before, after


def main(argv: list[str]) -> int:
    if not argv or any(arg.startswith("-") for arg in argv):
        print(f"archive_results: error: give one or more results folders ({USAGE})", file=sys.stderr)
        return 2
    roots = [Path(arg) for arg in argv]
    for root in roots:  # every folder is checked before any is touched
        if not root.is_dir():
            print(f"archive_results: error: {root}: not a folder; give a results folder", file=sys.stderr)
            return 2
        if not finished_run_folders(root):
            print(
                f"archive_results: error: {root}: holds no finished run folder (one with {RESULT_FILE})",
                file=sys.stderr,
            )
            return 2
    for root in roots:
        archived, already, before, after = archive_tree(root)
        print(
            f"{root}: archived {archived} progress table(s) ({already} already archived): "
            f"{before:,} bytes of progress.csv -> {after:,} bytes of progress.csv.xz"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The committed results tree: its run folders are whole, the images README.md shows are tracked,
a committed report rebuilt from its runs with its recorded options gives the committed tables
byte for byte (the bootstrap streams are seeded, so any difference is a change in the numbers or
in the report's format, and the committed reports must then be rebuilt with the change), and
scripts/archive_results.py, which compacted the tree, keeps every byte of a progress table."""

from __future__ import annotations

import json
import lzma
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from analysis_fixtures import RunSpec, write_run

from trbench.analysis.report import ReportOptions, build_report
from trbench.base.run_folder import ARCHIVED_PROGRESS_FILE, CONFIG_FILE, PROGRESS_FILE, RESULT_FILE

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
# the committed report that rebuilds fastest (5 runs, one env): rebuilt whole by the test
REBUILT_REPORT = RESULTS / "reproduction" / "rlzoo-trpo" / "report"
OPTIONS_FILE = "report_options.json"  # results/README.md: the options a report was built with
RUN_PARENTS = {"runs", "superseded"}  # results/README.md: where a results folder keeps run folders
ARCHIVE_SCRIPT = ROOT / "scripts" / "archive_results.py"


def tracked_files(under: str) -> list[str]:
    """The files git tracks under ``under`` (relative to the repository root)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout: the test is about what is tracked")
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--", under], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [name for name in listing.stdout.split("\0") if name]


def test_every_tracked_run_folder_is_whole():
    folders: dict[Path, set[str]] = {}
    for name in tracked_files("results"):
        path = Path(name)
        if len(path.parts) >= 3 and path.parts[-3] in RUN_PARENTS:  # .../runs/<run_id>/<file>
            folders.setdefault(path.parent, set()).add(path.name)
    assert folders, "no tracked run folder under results/"
    problems = []
    for folder, files in sorted(folders.items()):
        missing = {CONFIG_FILE, RESULT_FILE} - files
        tables = files & {PROGRESS_FILE, ARCHIVED_PROGRESS_FILE}
        if missing or len(tables) != 1:
            problems.append(f"{folder}: missing {sorted(missing)}, progress tables {sorted(tables)}")
    assert not problems, "\n".join(problems)


def test_the_readme_images_are_tracked():
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", (ROOT / "README.md").read_text())
    local = [image for image in images if "://" not in image]
    assert local, "README.md shows no image of the repository"
    tracked = set(tracked_files("."))
    absent = [image for image in local if image not in tracked or not (ROOT / image).is_file()]
    assert not absent, f"README.md shows images that are not tracked: {absent}"


def test_a_committed_report_rebuilds_byte_identical(tmp_path):
    recorded = json.loads((REBUILT_REPORT / OPTIONS_FILE).read_text())
    options = ReportOptions(**recorded)  # every option the committed report was built with
    out = build_report(REBUILT_REPORT.parent, tmp_path / "report", options)
    committed = sorted(
        path.name for path in REBUILT_REPORT.iterdir() if path.suffix in {".csv", ".md"} or path.name == OPTIONS_FILE
    )
    assert {"report.md", "summary.csv", "reproduction.md", "reproduction.csv"} <= set(committed)
    changed = [name for name in committed if (out / name).read_bytes() != (REBUILT_REPORT / name).read_bytes()]
    assert not changed, (
        f"rebuilt from its runs, {REBUILT_REPORT} differs in {changed}; if the report code changed on "
        "purpose, rebuild the committed reports (results/README.md, 'Rebuilding the committed reports')"
    )


def archive(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, ARCHIVE_SCRIPT, *map(str, args)], capture_output=True, text=True)


def test_archive_results_keeps_every_byte_and_leaves_unfinished_runs(tmp_path):
    rng = np.random.default_rng(0)
    runs = tmp_path / "suite" / "runs"
    finished = [write_run(runs, RunSpec("trpo", "Hopper-v5", seed), rng) for seed in (0, 1)]
    unfinished = write_run(runs, RunSpec("trpo", "Hopper-v5", 2), rng, with_result=False)
    tables = {folder: (folder / PROGRESS_FILE).read_bytes() for folder in finished}

    done = archive(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{tmp_path}: archived 2 progress table(s) (0 already archived): ")
    for folder, data in tables.items():
        assert not (folder / PROGRESS_FILE).exists()
        assert lzma.decompress((folder / ARCHIVED_PROGRESS_FILE).read_bytes()) == data
    assert (unfinished / PROGRESS_FILE).exists() and not (unfinished / ARCHIVED_PROGRESS_FILE).exists()
    again = archive(tmp_path / "suite")
    assert again.returncode == 0 and "archived 0 progress table(s) (2 already archived)" in again.stdout


@pytest.mark.parametrize("bad", ["", "--help", "missing", "a-file", "empty"])
def test_archive_results_refuses_bad_input_with_one_line(tmp_path, bad):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    good = tmp_path / "suite"
    write_run(good / "runs", RunSpec("trpo", "Hopper-v5", 0), np.random.default_rng(0))
    refused = archive(good, tmp_path / bad) if bad not in {"", "--help"} else archive(*([bad] if bad else []))
    assert refused.returncode == 2
    assert len(refused.stderr.splitlines()) == 1 and refused.stderr.startswith("archive_results: error: ")
    assert (good / "runs" / "trpo-Hopper-v5-s0" / PROGRESS_FILE).exists()  # nothing archived before the refusal

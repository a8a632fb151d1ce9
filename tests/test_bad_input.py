"""Bad input to every command, and every damaged file it reads, gives one line on stderr naming
the file or option and what is allowed, exit code 2, no traceback, and leaves the working folder
exactly as it was: nothing written, changed or deleted. A report is the exception for damage
inside one run folder: that run is listed as excluded with its reason and the rest is analysed.

Every case runs the command in-process in an empty working folder, so the default output folders
(results/...) would land inside the snapshot too. Nothing here trains or spawns a process, except
the one end-to-end report build, which is marked slow.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
from analysis_fixtures import grid_specs, make_results

from trbench.analysis import report, tables
from trbench.analysis.load import load_results
from trbench.analysis.render import render_markdown
from trbench.analysis.report_sections import document
from trbench.cli import main
from trbench.suites.grid import load_suite

RESULTS = Path("results") / "small"
BINARY = b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary, not text"
SUITE = """
name = "small"
steps = 512
seeds = [0, 1]
envs = ["InvertedPendulum-v5"]
algos = ["trpo"]
"""
# a cut-down reproduction preset: its name is one the published reference sets know
PRESET = SUITE.replace('name = "small"', 'name = "baselines-mujoco1m"')
TRAIN = ["train", "--env", "InvertedPendulum-v5", "--steps", "1024", "--out", "run"]
TUNE = ["tune", "--env", "InvertedPendulum-v5", "--steps", "512", "--trials", "2"]
BENCH = ["bench", "--env", "InvertedPendulum-v5", "--algo", "trpo"]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here, so --device cuda is allowed")


# --- what the working folder holds before a case runs ------------------------------------------------


def truncate(path: Path) -> None:
    """Keep the first half of the file, as a full disk or an interrupted copy would."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def results_folder(root: Path) -> Path:
    """A small suite results folder: ppo and trpo on InvertedPendulum-v5, 3 seeds each."""
    return make_results(root / RESULTS, grid_specs(envs=("InvertedPendulum-v5",), seeds=(0, 1, 2)), suite="small")


def first_run(results: Path) -> Path:
    return sorted((results / "runs").iterdir())[0]


def write(root: Path, name: str, text: str | bytes) -> str:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text))
    return name


def suite_results(root: Path, suite_text: str) -> tuple[str, Path]:
    """A suite file and its results folder with every run complete; returns (suite file, folder)."""
    name = write(root, "suite.toml", suite_text)
    suite = load_suite(root / name)
    folder = root / RESULTS
    (folder / "runs").mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(suite.manifest()))
    for run in suite.runs:
        run_dir = folder / "runs" / run.run_id
        run_dir.mkdir()
        (run_dir / "result.json").write_text(json.dumps({"status": "complete", "final_eval_return": 900.0}))
    return name, folder


def with_truncated_result(root: Path, suite_text: str) -> str:
    name, folder = suite_results(root, suite_text)
    truncate(first_run(folder) / "result.json")
    return name


def with_truncated_manifest(root: Path, suite_text: str) -> str:
    name, folder = suite_results(root, suite_text)
    truncate(folder / "manifest.json")
    return name


# --- the cases: command x failure kind -----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    setup: Callable[[Path], list[str]]  # builds the working folder, returns the argv
    names: str  # what the error line must name: the file or the option


def report_on(
    damage: Callable[[Path], None], *options: str, files: dict[str, str | bytes] | None = None
) -> Callable[[Path], list[str]]:
    """`trbench report` on a damaged results folder; ``files`` are written next to it first."""

    def setup(root: Path) -> list[str]:
        for name, text in (files or {}).items():
            write(root, name, text)
        damage(results_folder(root))
        return ["report", str(RESULTS), *options]

    return setup


def status_on(damage: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        damage(results_folder(root))
        return ["status", str(RESULTS)]

    return setup


def run_suite_text(text: str | bytes, *options: str) -> Callable[[Path], list[str]]:
    return lambda root: ["run", write(root, "suite.toml", text), "--workers", "1", *options]


def with_file(name: str, text: str | bytes, argv: list[str]) -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        write(root, name, text)
        return argv

    return setup


def undamaged(results: Path) -> None:
    """The results folder as written: the case is about an option, not about a file."""


CASES: dict[str, Case] = {
    # report: a damaged suite-level file stops it; a damaged run is excluded (see the tests below)
    "report/truncated manifest.json": Case(report_on(lambda r: truncate(r / "manifest.json")), "manifest.json"),
    "report/binary manifest.json": Case(
        report_on(lambda r: (r / "manifest.json").write_bytes(BINARY)), "manifest.json"
    ),
    "report/manifest.json not an object": Case(
        report_on(lambda r: (r / "manifest.json").write_text("[1, 2]")), "manifest.json"
    ),
    "report/binary suite.toml": Case(report_on(lambda r: (r / "suite.toml").write_bytes(BINARY)), "suite.toml"),
    "report/--reference without manifest.json": Case(
        report_on(lambda r: (r / "manifest.json").unlink(), "--reference"), "--reference"
    ),
    "report/--reference unknown preset": Case(report_on(undamaged, "--reference", "no-such-preset"), "--reference"),
    "report/--reference malformed TOML": Case(
        report_on(undamaged, "--reference", "ref.toml", files={"ref.toml": "name = = 1\n"}), "ref.toml"
    ),
    "report/--reference binary file": Case(
        report_on(undamaged, "--reference", "ref.toml", files={"ref.toml": BINARY}), "ref.toml"
    ),
    "report/unknown --metric": Case(report_on(undamaged, "--metric", "best"), "--metric"),
    "report/--min-diff 0": Case(report_on(undamaged, "--min-diff", "0"), "--min-diff"),
    "report/--out is a file": Case(report_on(undamaged, "--out", "taken", files={"taken": "a file"}), "--out"),
    "report/--out under a file": Case(
        report_on(undamaged, "--out", "taken/report", files={"taken": "a file"}), "--out"
    ),
    "report/not a results folder": Case(lambda root: ["report", "nowhere"], "nowhere"),
    "report/wrong --seed type": Case(report_on(undamaged, "--seed", "one"), "--seed"),
    # status
    "status/truncated result.json": Case(status_on(lambda r: truncate(first_run(r) / "result.json")), "result.json"),
    "status/binary result.json": Case(
        status_on(lambda r: (first_run(r) / "result.json").write_bytes(BINARY)), "result.json"
    ),
    "status/result.json without status": Case(
        status_on(lambda r: (first_run(r) / "result.json").write_text("{}")), "result.json"
    ),
    "status/truncated manifest.json": Case(status_on(lambda r: truncate(r / "manifest.json")), "manifest.json"),
    "status/missing manifest.json": Case(status_on(lambda r: (r / "manifest.json").unlink()), "manifest.json"),
    # run
    "run/binary file as suite": Case(run_suite_text(BINARY), "suite.toml"),
    "run/malformed TOML": Case(run_suite_text(SUITE + "steps = = 3\n"), "suite.toml"),
    "run/duplicated seed": Case(run_suite_text(SUITE.replace("[0, 1]", "[0, 1, 0]")), "seeds[2]"),
    "run/unknown key": Case(run_suite_text(SUITE + "colour = 3\n"), "colour"),
    "run/wrong type": Case(run_suite_text(SUITE.replace("steps = 512", 'steps = "many"')), "steps"),
    "run/Discrete-action env": Case(run_suite_text(SUITE.replace("InvertedPendulum-v5", "CartPole-v1")), "envs[0]"),
    "run/--workers 0": Case(run_suite_text(SUITE, "--workers", "0"), "--workers"),
    "run/truncated result.json in --out": Case(
        lambda root: ["run", with_truncated_result(root, SUITE), "--out", str(RESULTS)], "result.json"
    ),
    "run/--dry-run, truncated result.json": Case(
        lambda root: ["run", with_truncated_result(root, SUITE), "--out", str(RESULTS), "--dry-run"], "result.json"
    ),
    "run/truncated manifest.json in --out": Case(
        lambda root: ["run", with_truncated_manifest(root, SUITE), "--out", str(RESULTS)], "manifest.json"
    ),
    "run/--out is a file": Case(
        lambda root: ["run", write(root, "suite.toml", SUITE), "--out", write(root, "taken", "a file")], "--out"
    ),
    # train
    "train/unknown algorithm": Case(lambda root: [*TRAIN, "--algo", "sac"], "algo"),
    "train/unknown env": Case(
        lambda root: ["train", "--algo", "trpo", "--env", "Hoper-v5", "--steps", "1024", "--out", "run"], "env"
    ),
    "train/Discrete-action env": Case(
        lambda root: ["train", "--algo", "trpo", "--env", "CartPole-v1", "--steps", "1024", "--out", "run"], "env"
    ),
    "train/unknown setting": Case(lambda root: [*TRAIN, "--algo", "trpo", "--set", "no_such_key=1"], "no_such_key"),
    "train/wrong type": Case(lambda root: [*TRAIN, "--algo", "trpo", "--set", "max_kl=big"], "max_kl"),
    "train/max_kl 0": Case(lambda root: [*TRAIN, "--algo", "trpo", "--set", "max_kl=0"], "max_kl"),
    "train/max_kl < 0": Case(lambda root: [*TRAIN, "--algo", "trpo", "--set", "max_kl=-0.01"], "max_kl"),
    "train/--steps not a number": Case(lambda root: [*TRAIN, "--algo", "trpo", "--steps", "ten"], "--steps"),
    "train/--seed < 0": Case(lambda root: [*TRAIN, "--algo", "trpo", "--seed", "-1"], "--seed"),
    "train/--out is a file": Case(with_file("run", "a file", [*TRAIN, "--algo", "trpo"]), "--out"),
    "train/--out under a file": Case(
        with_file("taken", "a file", [*TRAIN, "--algo", "trpo", "--out", "taken/run"]), "--out"
    ),
    "train/--out holds a finished run": Case(
        with_file("run/result.json", '{"status": "complete"}', [*TRAIN, "--algo", "trpo"]), "--out"
    ),
    # config
    "config/unknown algorithm": Case(lambda root: ["config", "sac"], "algo"),
    # tune
    "tune/--param low >= high": Case(lambda root: [*TUNE, "--param", "max_kl=0.1:0.01"], "--param"),
    "tune/--param unknown setting": Case(lambda root: [*TUNE, "--param", "no_such_key=1:2"], "--param"),
    "tune/--param without a range": Case(lambda root: [*TUNE, "--param", "max_kl"], "--param"),
    "tune/--param log range from 0": Case(lambda root: [*TUNE, "--param", "max_kl=0:0.1:log"], "--param"),
    "tune/--storage not a URL": Case(lambda root: [*TUNE, "--storage", "study.db"], "--storage"),
    "tune/--storage that cannot be opened": Case(
        lambda root: [*TUNE, "--storage", "sqlite:///no/such/dir/study.db"], "--storage"
    ),
    "tune/--suite binary file": Case(lambda root: [*TUNE, "--suite", write(root, "suite.toml", BINARY)], "suite.toml"),
    "tune/--suite malformed TOML": Case(
        lambda root: [*TUNE, "--suite", write(root, "suite.toml", "a = = 1\n")], "suite.toml"
    ),
    "tune/Discrete-action env": Case(
        lambda root: ["tune", "--env", "CartPole-v1", "--steps", "512", "--trials", "2"], "env"
    ),
    "tune/--out is a file": Case(with_file("taken", "a file", [*TUNE, "--out", "taken"]), "--out"),
    # bench
    "bench/--num-envs 0": Case(lambda root: [*BENCH, "--num-envs", "0"], "--num-envs"),
    "bench/--repeats 0": Case(lambda root: [*BENCH, "--repeats", "0"], "--repeats"),
    "bench/--hidden not integers": Case(lambda root: [*BENCH, "--hidden", "wide"], "--hidden"),
    "bench/unknown --algo": Case(lambda root: ["bench", "--algo", "sac"], "--algo"),
    "bench/Discrete-action env": Case(lambda root: ["bench", "--env", "CartPole-v1", "--algo", "trpo"], "env"),
    "bench/--out is a file": Case(with_file("taken", "a file", [*BENCH, "--out", "taken"]), "--out"),
    # reproduce
    "reproduce/unknown preset": Case(lambda root: ["reproduce", "no-such-preset"], "PRESET"),
    "reproduce/binary preset file": Case(lambda root: ["reproduce", write(root, "preset.toml", BINARY)], "preset.toml"),
    "reproduce/suite without published numbers": Case(
        lambda root: ["reproduce", write(root, "suite.toml", SUITE)], "PRESET"
    ),
    "reproduce/truncated result.json in --out": Case(
        lambda root: ["reproduce", with_truncated_result(root, PRESET), "--out", str(RESULTS), "--workers", "1"],
        "result.json",
    ),
    "reproduce/--report-only, truncated manifest.json": Case(
        lambda root: ["reproduce", with_truncated_manifest(root, PRESET), "--out", str(RESULTS), "--report-only"],
        "manifest.json",
    ),
    "reproduce/--report-only without runs": Case(
        lambda root: ["reproduce", write(root, "preset.toml", PRESET), "--out", str(RESULTS), "--report-only"],
        "--report-only",
    ),
}
CUDA_CASES: dict[str, Case] = {
    "train/--device cuda without CUDA": Case(lambda root: [*TRAIN, "--algo", "trpo", "--device", "cuda"], "device"),
    "tune/device=cuda without CUDA": Case(lambda root: [*TUNE, "--set", "device=cuda"], "device"),
    "bench/--device cuda without CUDA": Case(lambda root: [*BENCH, "--device", "cuda"], "device"),
}
ALL_CASES = [pytest.param(name, id=name) for name in CASES] + [
    pytest.param(name, id=name, marks=NO_CUDA) for name in CUDA_CASES
]


def snapshot(root: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every file's bytes and every entry's modification time, by relative path; a folder's
    time changes when anything is created or removed in it, even a temporary file."""
    return {
        path.relative_to(root).as_posix(): (path.read_bytes() if path.is_file() else None, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", ALL_CASES)
def test_bad_input_is_one_line_exit_2_and_nothing_changes(name, tmp_path, monkeypatch, capsys):
    case = CASES.get(name) or CUDA_CASES[name]
    monkeypatch.chdir(tmp_path)
    argv = case.setup(tmp_path)
    before = snapshot(tmp_path)

    code, out, err = run_cli(argv, capsys)

    assert "Traceback" not in out + err
    assert code == 2, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("trbench: error: ") and err.endswith("\n"), err
    assert case.names in lines[0], (case.names, lines[0])
    assert out == ""
    assert snapshot(tmp_path) == before, "the command wrote, changed or deleted something"


def test_there_are_enough_cases():
    commands = {name.split("/")[0] for name in CASES}
    assert commands == {"report", "status", "run", "train", "config", "tune", "bench", "reproduce"}
    assert len(CASES) + len(CUDA_CASES) >= 30


# --- a report over a damaged run folder excludes that run and analyses the rest ----------------------

DAMAGE = {
    "truncated result.json": (lambda run: truncate(run / "result.json"), "result.json unreadable"),
    "binary result.json": (lambda run: (run / "result.json").write_bytes(BINARY), "result.json unreadable"),
    "truncated progress.csv": (lambda run: truncate(run / "progress.csv"), "progress.csv truncated"),
    "binary progress.csv": (lambda run: (run / "progress.csv").write_bytes(BINARY), "progress.csv unreadable"),
    "truncated config.json": (lambda run: truncate(run / "config.json"), "config.json unreadable"),
}


def damaged_results(root: Path) -> tuple[Path, dict[str, str]]:
    """ppo and trpo on InvertedPendulum-v5 with 6 seeds each; trpo's seeds 0-4 each damaged
    in one way. Returns the folder and, by damaged run id, the reason the report must give."""
    results = make_results(root, grid_specs(envs=("InvertedPendulum-v5",), seeds=tuple(range(6))), suite="small")
    trpo_runs = sorted(path for path in (results / "runs").iterdir() if path.name.startswith("trpo"))
    reasons = {}
    for run_dir, (damage, reason) in zip(trpo_runs, DAMAGE.values()):
        damage(run_dir)
        reasons[run_dir.name] = reason
    return results, reasons


def assert_excluded_with_reasons(excluded: pd.DataFrame, reasons: dict[str, str]) -> None:
    by_run = dict(zip(excluded["run_id"], excluded["reason"]))
    assert set(by_run) == set(reasons)
    for run_id, reason in reasons.items():
        assert reason in by_run[run_id], (run_id, by_run[run_id])


def test_report_excludes_each_damaged_run_with_its_reason_and_analyses_the_rest(tmp_path):
    results, reasons = damaged_results(tmp_path / "small")
    analysis = tables.analyse(load_results(results), report.ReportOptions(n_resamples=200))

    assert_excluded_with_reasons(analysis.excluded, reasons)
    runs_per_algo = dict(zip(analysis.summary["algo"], analysis.summary["n_runs"]))
    assert runs_per_algo == {"ppo": 6, "trpo": 1}
    text = render_markdown("t", document(analysis))
    for run_id in reasons:
        assert run_id in text


@pytest.mark.slow
def test_report_command_builds_over_damaged_runs(tmp_path, capsys):
    results, reasons = damaged_results(tmp_path / "small")
    code, out, err = run_cli(["report", str(results)], capsys)

    assert code == 0 and err == "", err
    assert_excluded_with_reasons(pd.read_csv(results / "report" / "excluded_runs.csv"), reasons)
    summary = pd.read_csv(results / "report" / "summary.csv")
    assert dict(zip(summary["algo"], summary["n_runs"])) == {"ppo": 6, "trpo": 1}

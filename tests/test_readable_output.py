"""Output a person can read: the setup script, library warnings, step counts, config sources,
tune's progress lines, the report's closing table and folders, its figures, and byte-identical
rebuilds of a report."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
import pytest
from analysis_fixtures import grid_specs, make_results
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from trbench.algos import library_warnings
from trbench.algos.registry import BUILTIN, resolve_algorithm
from trbench.algos.rollout import make_vector_env
from trbench.analysis import plots, report, tables
from trbench.analysis.load import load_results
from trbench.analysis.render import render_markdown
from trbench.analysis.report_sections import document, headline_lines
from trbench.analysis.stats import IntervalEstimate
from trbench.cli import main
from trbench.suites.run_spec import RunSpec, resolve, rounding_note
from trbench.tune.settings import TuneSettings
from trbench.tune.space import parse_space
from trbench.tune.storage import default_storage
from trbench.tune.trials import COUNTED_FAIL_ATTR, PRUNED_ATTR
from trbench.tune.workers import trial_line

REPO = Path(__file__).resolve().parent.parent
FAST = report.ReportOptions(n_resamples=200)
# a tiny training run: whole iterations of 64 steps, so a 100-step budget becomes 128 steps
TINY_RUN = [
    "--set",
    "num_envs=2",
    "--set",
    "steps_per_iteration=64",
    "--set",
    "critic_minibatch_size=32",
    "--set",
    "eval_interval_steps=0",
    "--set",
    "save_model=false",
]
V4_WARNING = "Hopper-v4 is out of date"


# --- scripts/setup.sh: install only when something changed ----------------------------------------

FAKE_PYTHON = """#!/bin/sh
# records every call; pip does nothing, anything else runs in the real interpreter
echo "$*" >> "{log}"
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then exit 0; fi
exec "{python}" "$@"
"""


def fake_setup(tmp_path: Path):
    """A copy of setup.sh and pyproject.toml, and a venv whose python logs its calls; returns a
    function that runs setup.sh with extras and gives the pip commands of that run."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup.sh", project / "scripts" / "setup.sh")
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    log = tmp_path / "calls.log"
    log.touch()
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON.format(log=log, python=sys.executable))
    python.chmod(python.stat().st_mode | stat.S_IEXEC)

    def setup(*extras: str) -> tuple[list[str], str]:
        before = len(log.read_text().splitlines())
        completed = subprocess.run(
            ["bash", str(project / "scripts" / "setup.sh"), *extras],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "TRBENCH_VENV": str(tmp_path / "venv")},
        )
        assert completed.returncode == 0, completed.stderr
        calls = log.read_text().splitlines()[before:]
        return [call for call in calls if call.startswith("-m pip install")], completed.stdout

    return setup, project


@pytest.mark.slow
def test_setup_installs_only_when_pyproject_or_the_extras_change(tmp_path):
    setup, project = fake_setup(tmp_path)
    pip, _ = setup()
    assert pip[-1] == "-m pip install --quiet -e .[dev]"
    pip, out = setup()
    assert pip == [] and "nothing to install" in out
    pip, _ = setup("ray")
    assert pip[-1] == "-m pip install --quiet -e .[dev,ray]"
    assert setup()[0] == []  # dev is installed already, with ray
    with open(project / "pyproject.toml", "a") as handle:
        handle.write("# a changed dependency\n")
    pip, _ = setup()
    assert pip[-1] == "-m pip install --quiet -e .[dev,ray]"  # the extras installed before stay
    assert setup("ray")[0] == []


@pytest.mark.slow
def test_package_data_is_declared_so_the_build_does_not_warn_and_ships_it(tmp_path):
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in filter(None, tracked.stdout.split("\0")):
        if (REPO / name).is_file() and not name.startswith("results/"):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, source / name)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-v",
            "--wheel-dir",
            str(tmp_path / "wheel"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert "BuildBackendWarning" not in completed.stdout + completed.stderr
    [wheel] = (tmp_path / "wheel").glob("trbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "trbench/analysis/data/normalization.csv",
        "trbench/analysis/data/reference_sets.toml",
        "trbench/suites/presets/variants.toml",
        "trbench/suites/reproduction/algos_v5.toml",
        "trbench/suites/checks/acting_backend.toml",
        "trbench/suites/quickstart.toml",
    ):
        assert shipped in names, shipped


# --- library warnings: once per command, outside the table ------------------------------------------


def test_env_building_shows_a_library_warning_once_and_not_the_settotalmass_one(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(library_warnings, "_shown", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            make_vector_env("HalfCheetah-v5", 2).close()
            make_vector_env("Hopper-v4", 2).close()
    texts = [str(w.message) for w in caught]
    assert sum(V4_WARNING in text for text in texts) == 1
    assert not any("settotalmass" in text for text in texts)
    out, err = capfd.readouterr()
    assert "settotalmass" not in out + err
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()  # MuJoCo's messages go through Python


def test_a_worker_shows_no_env_building_warning(monkeypatch):
    monkeypatch.setattr(library_warnings, "_shown", set())
    monkeypatch.setattr(library_warnings, "_quiet_building", False)
    library_warnings.silence_env_building_warnings()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        make_vector_env("Hopper-v4", 1).close()
    assert not [w for w in caught if V4_WARNING in str(w.message)]


def run_command(*argv: str, cwd: Path) -> str:
    """stdout and stderr of a trbench command, interleaved as a terminal shows them."""
    completed = subprocess.run(
        [sys.executable, "-m", "trbench.cli", *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout
    return completed.stdout


@pytest.mark.slow
def test_train_says_the_rounding_once_and_shows_a_v4_warning_once_before_the_table(tmp_path):
    out = run_command(
        "train",
        "--algo",
        "trpo",
        "--env",
        "Hopper-v4",
        "--steps",
        "100",
        "--out",
        str(tmp_path / "r"),
        *TINY_RUN,
        cwd=tmp_path,
    )
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["step", "train_return"])
    assert out.count(V4_WARNING) == 1 and V4_WARNING in "\n".join(lines[:header])
    assert any(line.startswith("trpo on Hopper-v4, 128 steps, seed 0") for line in lines[:header])
    assert out.count("the budget of 100 becomes 128 steps") == 1
    rows = lines[header + 1 : -1]
    assert [row.split()[0] for row in rows] == ["64", "128"]  # the step column: integers
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


@pytest.mark.slow
def test_a_suite_shows_each_library_warning_once_in_all(tmp_path):
    (tmp_path / "w.toml").write_text(
        textwrap.dedent("""
        name = "w"
        steps = 64
        seeds = 1
        envs = ["Hopper-v4", "HalfCheetah-v5"]
        algos = ["trpo"]
        [hparams.all]
        num_envs = 2
        steps_per_iteration = 64
        critic_minibatch_size = 32
        eval_interval_steps = 0
        save_model = false
    """)
    )
    out = run_command("run", "w.toml", "--workers", "2", cwd=tmp_path)
    assert out.count(V4_WARNING) == 1
    assert "settotalmass" not in out
    assert "2/2 runs complete" in out


# --- step counts: the rounding said once, integers everywhere ----------------------------------------


def test_rounding_note_says_how_budgets_are_rounded():
    rounded = resolve(RunSpec("trpo", "InvertedPendulum-v5", 20_000, 0))
    exact = resolve(RunSpec("trpo", "InvertedPendulum-v5", 20_480, 0))
    assert rounded.steps_taken == exact.steps_taken == 20_480
    assert rounding_note([exact]) == ""
    assert rounding_note([rounded]) == (
        "note: training collects whole iterations of steps_per_iteration = 2,048 "
        "steps, so the budget of 20,000 becomes 20,480 steps"
    )
    assert rounding_note([rounded, exact]).endswith("(1 of 2 runs)")


def test_report_prints_step_counts_as_integers(tmp_path):
    root = make_results(tmp_path / "s", grid_specs(seeds=(0, 1), steps=51_200))
    text = render_markdown("t", document(tables.analyse(load_results(root), FAST)))
    assert "| 51,200 |" in text and "e+04" not in text


# --- trbench config: sources a user can look up ---------------------------------------------------------


def test_config_names_its_sources(capsys):
    for name in BUILTIN:
        assert main(["config", name]) == 0
        out = capsys.readouterr().out
        assert "§" not in out, name
    fields = {row["name"]: row["source"] for row in resolve_algorithm("trpo").Config.describe()}
    for name in ("gamma", "activation", "max_kl"):
        assert "Spinning Up" in fields[name] and "Baselines" in fields[name], name


# --- trbench tune: a line per finished trial ---------------------------------------------------------------


def tune_settings(tmp_path: Path, trials: int, workers: int = 1) -> TuneSettings:
    space = parse_space([], resolve_algorithm("trpo").Config)
    return TuneSettings(
        algorithm="trpo",
        envs=("InvertedPendulum-v5",),
        steps=1024,
        seeds=1,
        space=tuple(space),
        fixed={},
        env_fixed={},
        trials=trials,
        out=tmp_path,
        storage=default_storage(tmp_path),
        study_name="lines",
        workers=workers,
    )


def test_trial_line_gives_outcome_value_params_time_and_eta(tmp_path):
    settings = tune_settings(tmp_path, trials=5, workers=2)
    study = optuna.create_study(direction="maximize")
    distributions = {"max_kl": FloatDistribution(1e-3, 1e-1, log=True), "damping": FloatDistribution(1e-4, 1, log=True)}
    params = {"max_kl": 0.0123456, "damping": 0.1}
    complete = create_trial(state=TrialState.COMPLETE, value=812.345, params=params, distributions=distributions)
    pruned = create_trial(
        state=TrialState.PRUNED,
        params=params,
        distributions=distributions,
        intermediate_values={512: 20.5, 1024: 31.25},
        user_attrs={PRUNED_ATTR: "patient pruner at trial step 1024"},
    )
    failed = create_trial(
        state=TrialState.FAIL,
        params=params,
        distributions=distributions,
        user_attrs={COUNTED_FAIL_ATTR: "run failed: InvertedPendulum-v5 seed 0: boom"},
    )
    interrupted = create_trial(state=TrialState.FAIL, params=params, distributions=distributions)
    for trial in (complete, pruned, failed, interrupted):
        study.add_trial(trial)
    trials = study.get_trials()
    line = trial_line(settings, study, trials[0])
    assert line.startswith("trial 0 complete, value 812.3: max_kl=0.01235, damping=0.1; took ")
    # 3 of 5 counted, so 2 left, run by 2 workers: one mean duration each
    assert line.endswith("3/5 trials done, ETA 0s")
    assert "pruned (patient pruner at trial step 1024), value 31.25 when pruned" in trial_line(
        settings, study, trials[1]
    )
    assert "failed (run failed: InvertedPendulum-v5 seed 0: boom)" in trial_line(settings, study, trials[2])
    assert trial_line(settings, study, trials[3]) is None  # interrupted: enqueued again, not counted


@pytest.mark.slow
def test_tune_prints_a_line_per_finished_trial(tmp_path, capsys):
    argv = [
        "tune",
        "--env",
        "InvertedPendulum-v5",
        "--steps",
        "1000",
        "--trials",
        "2",
        "--seeds",
        "1",
        "--study-name",
        "lines",
        "--sampler-seed",
        "0",
        "--pruner",
        "none",
        "--out",
        str(tmp_path / "t"),
        "--set",
        "steps_per_iteration=512",
        "--set",
        "num_envs=4",
        "--set",
        "eval_interval_steps=0",
        "--set",
        "save_model=false",
        "--set",
        "critic_epochs=2",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    trial_lines = [line for line in out if line.startswith("trial ")]
    assert [line.split()[:3] for line in trial_lines] == [["trial", "0", "complete,"], ["trial", "1", "complete,"]]
    assert "1/2 trials done, ETA " in trial_lines[0] and trial_lines[1].endswith("2/2 trials done, ETA 0s")
    assert all("max_kl=" in line and "damping=" in line and "took " in line for line in trial_lines)
    assert sum("the budget of 1,000 becomes 1,024 steps" in line for line in out) == 1


# --- trbench report: the closing table, and reports with other options kept apart ---------------------------


def test_headline_lines_give_each_algorithm_its_mean_and_ci():
    summary = pd.DataFrame(
        {
            "algo": ["npg", "vpg"],
            "env": ["InvertedPendulum-v5"] * 2,
            "n_runs": [3, 1],
            "mean": [1000.0, 35.33],
            "ci_low": [990.0, np.nan],
            "ci_high": [1000.0, np.nan],
        }
    )
    lines = headline_lines(summary, "final")
    assert lines[0].startswith("final eval return per algorithm (mean over runs, 95% bootstrap CI")
    assert lines[2].split() == ["InvertedPendulum-v5", "npg", "3", "1000", "[990,", "1000]"]
    assert lines[3].split()[:4] == ["InvertedPendulum-v5", "vpg", "1", "35.33"] and "one run" in lines[3]


@pytest.mark.slow
def test_report_ends_with_the_results_table_and_the_report_path(tmp_path, capsys):
    root = make_results(tmp_path / "s", grid_specs(envs=("InvertedPendulum-v5",), seeds=(0, 1, 2)))
    assert main(["report", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    summary = pd.read_csv(root / "report" / "summary.csv")
    assert out[-len(summary) - 3].startswith("final eval return per algorithm")
    for line, row in zip(out[-len(summary) - 1 : -1], summary.itertuples()):
        assert line.split()[:3] == [row.env, row.algo, str(row.n_runs)] and "[" in line
    assert out[-1].startswith(f"report: {root / 'report' / 'report.html'}")


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.slow
def test_reports_with_other_options_are_kept_apart_and_never_replaced(tmp_path, capsys):
    root = make_results(tmp_path / "s", grid_specs(seeds=(0, 1)))
    default = report.build_report(root, options=FAST)
    before = folder_bytes(default)
    auc = report.build_report(root, options=report.ReportOptions(n_resamples=200, metric="auc", seed=3))
    assert default == root / "report" and auc == root / "report-auc-seed3"
    assert folder_bytes(default) == before
    assert "mean evaluation return over training" in (auc / "report.md").read_text()

    # the same folder asked for by --out with other options: refused before any work, nothing changed
    assert main(["report", str(root), "--metric", "auc", "--out", str(default)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--metric final" in err and "--metric auc" in err and str(default) in err
    assert folder_bytes(default) == before
    # a folder that holds something else is not replaced either
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "paper.tex").write_text("mine")
    assert main(["report", str(root), "--out", str(tmp_path / "notes")]) == 2
    assert "holds no trbench report" in capsys.readouterr().err
    assert (tmp_path / "notes" / "paper.tex").read_text() == "mine"


@pytest.mark.slow
def test_rebuilding_a_report_gives_byte_identical_files(tmp_path):
    root = make_results(tmp_path / "s", grid_specs(seeds=(0, 1, 2)))
    out = report.build_report(root, options=FAST)
    first = folder_bytes(out)
    assert report.build_report(root, options=FAST) == out
    second = folder_bytes(out)
    assert sorted(first) == sorted(second)
    assert {"report.html", "figures/score_distributions.png", "figures/learning_curves.pdf"} <= set(first)
    assert [name for name in first if first[name] != second[name]] == []
    assert folder_bytes(report.build_report(root, tmp_path / "elsewhere", FAST)) == first


# --- figures: every algorithm visible, axes that show zero and one --------------------------------------------


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions draw, kept open instead of saved."""
    figures: list[plt.Figure] = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, out_dir, name: figures.append(fig) or [])
    yield figures
    for figure in figures:
        plt.close(figure)


def test_identical_curves_stay_visible_by_line_style_and_marker(drawn, tmp_path):
    algos = ["npg", "ppo", "trpo", "vpg", "my variant"]
    styles = plots.algorithm_styles(algos)
    assert len({(s.linestyle, s.marker) for s in styles.values()}) == len(algos)
    assert len({s.marker for s in styles.values()}) == len(algos)
    x = np.linspace(0, 1, 100)
    same = plots.Band(x, x, x - 0.1, x + 0.1)
    plots.plot_learning_curves({"InvertedPendulum-v5": {"trpo": same, "npg": same}}, styles, tmp_path)
    plots.plot_performance_profiles({"trpo": same, "npg": same}, styles, tmp_path)
    for figure in drawn:
        lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
        trpo, npg = lines["trpo"], lines["npg"]
        assert (trpo.get_linestyle(), trpo.get_marker()) != (npg.get_linestyle(), npg.get_marker())
        assert npg.get_zorder() > trpo.get_zorder()  # the dashed line on top shows the solid one in its gaps
        assert trpo.get_markevery() != npg.get_markevery()  # markers of identical curves at other places


def test_interval_axes_show_zero_and_keep_marks_at_one_off_the_frame(drawn, tmp_path):
    styles = plots.algorithm_styles(["trpo", "vpg"])
    near_zero = IntervalEstimate(0.03, 0.026, 0.035)
    at_one = IntervalEstimate(1.0, 1.0, 1.0)
    plots.plot_aggregate_intervals({"iqm": {"trpo": at_one, "vpg": near_zero}}, styles, tmp_path, {"iqm": "IQM"})
    plots.plot_probability_of_improvement([("trpo", "vpg", at_one)], styles, tmp_path)
    aggregate, improvement = (figure.axes[0] for figure in drawn)
    low, high = aggregate.get_xlim()
    assert low < 0 < 0.026 and 1.0 < high
    assert 0.0 in aggregate.get_xticks()
    low, high = improvement.get_xlim()
    assert low < 0 and high > 1.0
    # each row shows its estimate with the algorithm's marker, also when its CI has no width
    assert {line.get_marker() for line in aggregate.get_lines()} == {styles["trpo"].marker, styles["vpg"].marker}

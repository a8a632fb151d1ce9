"""The report end to end: files, figures, CSV columns, edge cases, the CLI and atomic writing.

Building a whole report costs a few seconds (mostly matplotlib saving twelve files), so the
complete builds are marked slow; the fast tests check the same edge cases on the computed
tables and the rendered document without drawing.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import RunSpec, grid_specs, make_results

from trbench.analysis import bands, plots, report, tables
from trbench.analysis.load import load_results
from trbench.analysis.render import render_markdown
from trbench.analysis.report_sections import document
from trbench.cli import main as trbench_main

FIGURES = (
    "learning_curves",
    "score_distributions",
    "aggregate_intervals",
    "performance_profiles",
    "probability_of_improvement",
    "sample_efficiency",
)
FILES = (
    "report.md",
    "report.html",
    "summary.csv",
    "pairwise.csv",
    "aggregate.csv",
    "power.csv",
    "excluded_runs.csv",
    "summary.tex",
    "aggregate.tex",
    "pairwise.tex",
)
FAST = report.ReportOptions(n_resamples=200)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def analysed(root: Path, options: report.ReportOptions = FAST) -> tuple[tables.Analysis, str]:
    """Tables and the Markdown text of a report, without drawing figures."""
    analysis = tables.analyse(load_results(root), options)
    return analysis, render_markdown("t", document(analysis))


def assert_complete_report(out: Path, figures: tuple[str, ...] = FIGURES) -> None:
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    for name in figures:
        png = (out / "figures" / f"{name}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 5_000, name
        assert (out / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF"), name
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures)
    assert html.count("<img") == len(figures) and 'src="figures/' not in html  # self-contained
    assert not list(out.parent.glob(f".{out.name}-partial-*")), "staging folder left behind"


# --- fast: tables and document ---------------------------------------------------------------


def test_csv_tables_have_the_issue_columns(tmp_path):
    analysis, _ = analysed(make_results(tmp_path / "s", grid_specs()))
    assert list(analysis.summary.columns) == [
        "algo",
        "env",
        "n_runs",
        "mean",
        "std",
        "median",
        "iqm",
        "ci_low",
        "ci_high",
    ]
    assert list(analysis.pairwise.columns) == [
        "env",
        "algo_a",
        "algo_b",
        "mean_diff",
        "welch_t",
        "welch_p",
        "mannwhitney_p",
        "p_holm",
        "hedges_g",
        "prob_improvement",
        "pi_ci_low",
        "pi_ci_high",
    ]
    assert set(analysis.aggregate["metric"]) == {
        "iqm",
        "median",
        "mean",
        "optimality_gap",
        "probability_of_improvement",
    }


def test_summary_values_match_the_runs(tmp_path):
    root = make_results(tmp_path / "s", grid_specs())
    analysis, _ = analysed(root)
    runs = load_results(root).runs
    hopper_trpo = runs[(runs["env_id"] == "Hopper-v5") & (runs["algo"] == "trpo")]["final"].to_numpy()
    row = analysis.summary[(analysis.summary["env"] == "Hopper-v5") & (analysis.summary["algo"] == "trpo")].iloc[0]
    assert row["n_runs"] == 5
    assert row["mean"] == pytest.approx(hopper_trpo.mean())
    assert row["std"] == pytest.approx(hopper_trpo.std(ddof=1))
    assert row["ci_low"] < row["mean"] < row["ci_high"]


def test_holm_runs_over_every_pairwise_row(tmp_path):
    analysis, _ = analysed(make_results(tmp_path / "s", grid_specs(algos=("npg", "ppo", "trpo"))))
    table = analysis.pairwise
    assert len(table) == 6  # 3 pairs × 2 envs
    from trbench.analysis.stats import holm_adjust

    np.testing.assert_allclose(table["p_holm"], holm_adjust(table["welch_p"].to_numpy()))


def test_aggregate_uses_fixed_constants_not_the_loaded_runs(tmp_path):
    """Adding another algorithm's runs must not change an algorithm's normalised scores."""
    alone, _ = analysed(make_results(tmp_path / "a", grid_specs(algos=("trpo",))))
    together, _ = analysed(make_results(tmp_path / "b", grid_specs(algos=("trpo", "ppo"))))
    mean_alone = alone.aggregate.query("metric == 'mean' and algo_a == 'trpo'")["estimate"].item()
    mean_together = together.aggregate.query("metric == 'mean' and algo_a == 'trpo'")["estimate"].item()
    assert mean_alone == pytest.approx(mean_together)


def test_same_seed_same_tables_other_seed_other_cis(tmp_path):
    root = make_results(tmp_path / "s", grid_specs())
    first, _ = analysed(root)
    again, _ = analysed(root)
    other, _ = analysed(root, report.ReportOptions(n_resamples=200, seed=1))
    pd.testing.assert_frame_equal(first.summary, again.summary)
    pd.testing.assert_frame_equal(first.aggregate, again.aggregate)
    assert not np.allclose(first.summary["ci_low"], other.summary["ci_low"])


def test_intervals_of_a_cell_do_not_move_when_another_algorithm_is_added(tmp_path):
    """Every estimate bootstraps from its own stream: adding VPG's runs leaves the PPO and TRPO
    rows (and curve bands) of the summary and pairwise tables unchanged to the last bit."""
    base = grid_specs(algos=("ppo", "trpo"))
    alone_root = make_results(tmp_path / "a", base)
    together_root = make_results(tmp_path / "b", base + grid_specs(algos=("vpg",)))
    alone, _ = analysed(alone_root)
    together, _ = analysed(together_root)
    kept = together.summary[together.summary["algo"] != "vpg"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone.summary.reset_index(drop=True), kept)
    pair = together.pairwise[(together.pairwise["algo_a"] == "ppo") & (together.pairwise["algo_b"] == "trpo")]
    interval_columns = ["env", "mean_diff", "welch_p", "prob_improvement", "pi_ci_low", "pi_ci_high"]
    pd.testing.assert_frame_equal(
        alone.pairwise[interval_columns].reset_index(drop=True), pair[interval_columns].reset_index(drop=True)
    )
    bands_alone = bands.learning_curve_bands(load_results(alone_root).curves, FAST)
    bands_together = bands.learning_curve_bands(load_results(together_root).curves, FAST)
    for env, per_algo in bands_alone.items():
        for algo, band in per_algo.items():
            np.testing.assert_array_equal(band.low, bands_together[env][algo].low)
            np.testing.assert_array_equal(band.high, bands_together[env][algo].high)


def test_one_run_per_cell(tmp_path):
    analysis, text = analysed(make_results(tmp_path / "s", grid_specs(seeds=(0,))))
    assert analysis.summary["ci_low"].isna().all() and analysis.summary["std"].isna().all()
    assert analysis.pairwise["welch_p"].isna().all()
    assert analysis.pairwise["mannwhitney_p"].notna().all()
    assert "No CI or std for cells with a single run" in text
    # a bootstrap over one run per env has zero width; no interval is reported instead
    assert analysis.pairwise["pi_ci_low"].isna().all()
    assert analysis.aggregate["ci_low"].isna().all() and analysis.aggregate["estimate"].notna().all()
    assert "Rows without a CI" in text
    assert "n/a" in text  # power needs a spread


def test_single_algorithm(tmp_path):
    analysis, text = analysed(make_results(tmp_path / "s", grid_specs(algos=("trpo",))))
    assert isinstance(analysis.pairwise, tables.Unavailable)
    assert "Not computed: no env has runs of two or more algorithms" in text
    assert "Probability of improvement: not computed, it needs at least two algorithms" in text
    assert set(analysis.aggregate["algo_a"]) == {"trpo"}


def test_single_env(tmp_path):
    analysis, _ = analysed(make_results(tmp_path / "s", grid_specs(envs=("Hopper-v5",))))
    assert analysis.aggregate_envs == ["Hopper-v5"]
    assert (analysis.aggregate["n_tasks"] == 1).all()
    assert len(analysis.pairwise) == 1


def test_env_without_constants_and_algo_missing_an_env_are_left_out_of_aggregates(tmp_path):
    specs = grid_specs(envs=("Hopper-v5", "CustomEnv-v0")) + [RunSpec("trpo", "Swimmer-v5", 0)]
    analysis, text = analysed(make_results(tmp_path / "s", specs))
    assert analysis.aggregate_envs == ["Hopper-v5"]
    assert "CustomEnv-v0: left out, no normalisation constants" in text
    assert "Swimmer-v5: left out, no scored runs of ppo" in text
    power = analysis.power.set_index("env")
    assert np.isnan(power.loc["CustomEnv-v0", "min_diff"])


def test_all_runs_failed_still_documents_why(tmp_path):
    specs = [RunSpec("trpo", "Hopper-v5", seed, status="failed") for seed in range(2)]
    analysis, text = analysed(make_results(tmp_path / "s", specs))
    assert analysis.summary.empty
    assert "no complete run has a 'final' score" in text
    assert text.count("synthetic failed run") == 2


def test_score_strips_with_one_and_several_runs_per_cell(tmp_path):
    summaries = {
        "Hopper-v5": {
            "trpo": plots.ScoreSummary(np.array([1.0, 2.0, 3.0]), 2.0, 1.0, 3.0),
            "my variant+": plots.ScoreSummary(np.array([2.0]), 2.0, np.nan, np.nan),
        }
    }
    styles = plots.algorithm_styles(["trpo", "my variant+"])
    paths = plots.plot_score_distributions(summaries, styles, tmp_path, "Return")
    assert [p.suffix for p in paths] == [".pdf", ".png"]
    assert paths[1].read_bytes().startswith(PNG_MAGIC)


def test_algorithm_colors_are_fixed_per_name():
    assert plots.algorithm_colors(["trpo", "ppo"])["trpo"] == plots.algorithm_colors(["trpo"])["trpo"]
    colors = plots.algorithm_colors(["trpo", "z", "a", "npg", "vpg", "ppo"])
    assert len(set(colors.values())) == 6


def test_the_whole_trust_region_family_takes_chosen_colours_only():
    """The family suite's twelve arms all get a colour of the fixed palettes (none generated, whose
    first one is a pink next to VPG's), each its own."""
    family = tomllib.loads((Path(__file__).parents[1] / "suites" / "trust_region_family.toml").read_text())["algos"]
    colors = plots.algorithm_colors(family)
    chosen = set(plots.KNOWN_ALGORITHM_COLORS.values()) | set(plots.EXTRA_COLORS)
    assert len(family) == 12 and len(set(colors.values())) == 12 and set(colors.values()) <= chosen


@pytest.mark.parametrize("count", [3, 12])
def test_score_strip_labels_never_touch(tmp_path, monkeypatch, count):
    """Three names stay level; a dozen (the family grid) slant rather than run into each other."""
    algos = ["trpl-frob", "truly_ppo", "ppo_kl", "acktr", "mdpo", "npg", "ppo", "spo", "trpl-kl", "trpl-w2"]
    algos = (algos + ["trpo", "vpg"])[:count] if count > 3 else ["trpo", "ppo", "npg"]
    summary = plots.ScoreSummary(np.array([1.0, 2.0, 3.0]), 2.0, 1.0, 3.0)
    scores = {env: {algo: summary for algo in algos} for env in ("Hopper-v5", "HalfCheetah-v5")}
    seen = {}
    save = plots.save_figure

    def measuring_save(fig, out_dir, name):
        renderer = fig.canvas.get_renderer()
        seen["rotations"] = {label.get_rotation() for ax in fig.axes for label in ax.get_xticklabels()}
        seen["overlaps"] = []
        for ax in fig.axes:
            labels = ax.get_xticklabels()
            for a, b in zip(labels, labels[1:]):
                box_a, box_b = a.get_window_extent(renderer), b.get_window_extent(renderer)
                if a.get_rotation() == 0:
                    touch = box_a.overlaps(box_b)
                else:  # parallel slanted lines of text: their distance across must exceed a line's height
                    spacing = ax.transData.transform((1, 0))[0] - ax.transData.transform((0, 0))[0]
                    line_height = a.get_fontsize() * fig.dpi / 72
                    touch = spacing * math.sin(math.radians(a.get_rotation())) < line_height
                if touch:
                    seen["overlaps"].append((a.get_text(), b.get_text()))
        return save(fig, out_dir, name)

    monkeypatch.setattr(plots, "save_figure", measuring_save)
    plots.plot_score_distributions(scores, plots.algorithm_styles(algos), tmp_path, "Return")
    assert seen["overlaps"] == []
    assert seen["rotations"] == ({0.0} if count == 3 else {35.0})


def _many_bands(algos: list[str]) -> dict[str, plots.Band]:
    x = np.linspace(0, 1e6, 20)
    return {algo: plots.Band(x, x / 1e3, x / 1e3 - 50, x / 1e3 + 50) for algo in algos}


ENVS = ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5")


@pytest.mark.parametrize(
    "draw, rows",
    [
        (lambda algos, d: plots.plot_learning_curves({env: _many_bands(algos) for env in ENVS}, *d), 3),
        (lambda algos, d: plots.plot_performance_profiles(_many_bands(algos), *d), 4),
        (lambda algos, d: plots.plot_sample_efficiency(_many_bands(algos), *d), 4),
    ],
    ids=["learning_curves", "performance_profiles", "sample_efficiency"],
)
def test_the_legend_of_many_curves_hangs_below_the_axis_labels(tmp_path, monkeypatch, draw, rows):
    """With 12 algorithms the legend takes rows of its own below the panels; it must not cover a
    curve, the x label or the steps' x10^n of any panel."""
    algos = [f"algo{i:02d}" for i in range(12)]
    seen = {}
    save = plots.save_figure

    def measuring_save(fig, out_dir, name):
        renderer = fig.canvas.get_renderer()
        (legend,) = fig.legends + [legend for ax in fig.axes if (legend := ax.get_legend())]
        seen["legend_top"] = legend.get_window_extent(renderer).y1
        seen["axes_bottom"] = min(ax.get_tightbbox(renderer).y0 for ax in fig.axes if ax.get_visible())
        seen["rows"] = -(-len(legend.get_texts()) // legend._ncols)
        return save(fig, out_dir, name)

    monkeypatch.setattr(plots, "save_figure", measuring_save)
    draw(algos, (plots.algorithm_styles(algos), tmp_path))
    assert seen["rows"] == rows
    assert seen["legend_top"] <= seen["axes_bottom"]


# --- CLI errors (fast: they stop before any work) ---------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trbench.cli", "report", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert trbench_main(["report", str(missing)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(missing) in error

    root = make_results(tmp_path / "s", grid_specs(seeds=(0,)))
    assert trbench_main(["report", str(root), "--metric", "best"]) == 2
    error = capsys.readouterr().err
    assert "--metric: must be one of final, auc, last100, got 'best'" in error and error.count("\n") == 1

    (tmp_path / "empty" / "runs").mkdir(parents=True)
    assert trbench_main(["report", str(tmp_path / "empty")]) == 2
    assert "no run folders" in capsys.readouterr().err
    assert not (root / "report").exists()


# --- slow: whole reports ----------------------------------------------------------------------


@pytest.mark.slow
def test_full_report_on_synthetic_suite(tmp_path):
    specs = grid_specs() + [RunSpec("trpo", "Hopper-v5", 9, status="diverged")]
    root = make_results(tmp_path / "suite", specs, incomplete=[RunSpec("ppo", "Hopper-v5", 8)])
    out = report.build_report(root)
    assert out == root / "report"
    assert_complete_report(out)
    markdown = (out / "report.md").read_text()
    for heading in (
        "Setup",
        "Per-task results",
        "Aggregate results",
        "Pairwise tests",
        "Figures",
        "How many seeds",
        "Failed and excluded runs",
    ):
        assert f"## {heading}" in markdown
    assert "trpo-Hopper-v5-s9" in markdown and "ppo-Hopper-v5-s8" in markdown
    assert pd.read_csv(out / "summary.csv").shape == (4, 9)
    assert "\\toprule" in (out / "summary.tex").read_text()


@pytest.mark.slow
def test_report_is_reproducible_for_a_seed(tmp_path):
    root = make_results(tmp_path / "s", grid_specs(seeds=(0, 1, 2)))
    first = report.build_report(root, tmp_path / "one", FAST)
    second = report.build_report(root, tmp_path / "two", FAST)
    for name in ("summary.csv", "pairwise.csv", "aggregate.csv", "power.csv"):
        assert (first / name).read_text() == (second / name).read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    ["one_run_per_cell", "single_algo", "single_env", "ragged", "auc_metric", "all_failed"],
)
def test_report_survives_edge_cases(tmp_path, case):
    specs = {
        "one_run_per_cell": grid_specs(seeds=(0,)),
        "single_algo": grid_specs(algos=("trpo",)),
        "single_env": grid_specs(envs=("InvertedPendulum-v5",)),
        "ragged": grid_specs(seeds=(0, 1))
        + [
            RunSpec("trpo", "Hopper-v5", 5, steps=6_000, eval_every=1_500),
            RunSpec("ppo", "Hopper-v5", 6, steps=14_000, eval_every=700),
        ],
        "auc_metric": grid_specs(seeds=(0, 1, 2)),
        "all_failed": [RunSpec("trpo", "Hopper-v5", 0, status="failed")],
    }[case]
    root = make_results(tmp_path / "s", specs)
    options = report.ReportOptions(n_resamples=200, metric="auc" if case == "auc_metric" else "final")
    out = report.build_report(root, tmp_path / "out", options)
    expected_figures = {
        "single_algo": tuple(f for f in FIGURES if f != "probability_of_improvement"),
        "all_failed": (),
    }.get(case, FIGURES)
    assert_complete_report(out, expected_figures)
    if case == "auc_metric":
        assert "mean evaluation return over training" in (out / "report.md").read_text()


@pytest.mark.slow
def test_failed_build_leaves_previous_report_untouched(tmp_path, monkeypatch):
    root = make_results(tmp_path / "s", grid_specs(seeds=(0, 1)))
    out = report.build_report(root, options=FAST)
    before = (out / "summary.csv").read_text()

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "write_outputs", crash)
    shutil.rmtree(root / "runs" / "trpo-Hopper-v5-s1")  # so that the new report would differ
    with pytest.raises(RuntimeError, match="disk full"):
        report.build_report(root, options=FAST)
    assert (out / "summary.csv").read_text() == before
    assert sorted(p.name for p in root.iterdir()) == ["manifest.json", "report", "runs", "suite.toml"]


@pytest.mark.slow
def test_cli_report_subcommand(tmp_path):
    root = make_results(tmp_path / "s", grid_specs(seeds=(0, 1, 2)))
    completed = run_cli(str(root), "--out", str(tmp_path / "r"), "--metric", "auc", "--seed", "3")
    assert completed.returncode == 0, completed.stderr
    assert_complete_report(tmp_path / "r")


TRAIN_OVERRIDES = (
    "num_envs=2",
    "steps_per_iteration=500",
    "eval_interval_steps=500",
    "eval_episodes=2",
    "critic_epochs=2",
    "save_model=false",
)


@pytest.mark.slow
def test_report_on_a_real_tiny_suite(tmp_path):
    """Two real `trbench train` runs (TRPO and PPO, InvertedPendulum-v5, 1000 steps)."""
    for algo in ("trpo", "ppo"):
        command = [
            sys.executable,
            "-m",
            "trbench.cli",
            "train",
            "--algo",
            algo,
            "--env",
            "InvertedPendulum-v5",
            "--steps",
            "1000",
            "--seed",
            "0",
            "--quiet",
            "--out",
            str(tmp_path / "runs" / f"{algo}-s0"),
        ]
        for override in TRAIN_OVERRIDES:
            command += ["--set", override]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert completed.returncode == 0, completed.stderr
    out = report.build_report(tmp_path, options=report.ReportOptions(n_resamples=500))
    # runs that log kl_max or record their trust region also get the KL figure (trust_region.py)
    carries_trust_region = any(
        "trust_region" in json.loads((run / "config.json").read_text())
        or "kl_max" in pd.read_csv(run / "progress.csv", nrows=0).columns
        for run in (tmp_path / "runs").iterdir()
    )
    assert_complete_report(out, FIGURES + (("trust_region_kl",) if carries_trust_region else ()))
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["algo"]) == ["ppo", "trpo"] and (summary["n_runs"] == 1).all()
    config = json.loads((tmp_path / "runs" / "trpo-s0" / "config.json").read_text())
    assert config["versions"]["gymnasium"] in (out / "report.md").read_text()


@pytest.mark.slow
def test_analysis_reads_results_only_and_never_imports_training_code():
    code = (
        "import sys, trbench.analysis.report, trbench.report_cli; "
        "print(sorted(m for m in sys.modules if m.startswith(('trbench.algos', 'trbench.suites', 'torch', 'gymnasium'))))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"

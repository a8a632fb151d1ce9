"""The report's two trust-region parts (analysis/trust_region.py, radius_sensitivity.py): the KL
statistics against hand-computed numbers, runs without the new data, the sweep detection, the
intervals against the project's own bootstrap, and the parts in a built report."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import RunSpec, grid_specs, make_results

from trbench.analysis import plots, report, report_figures, stats, tables, trust_region_plots
from trbench.analysis.load import load_results, scored_runs
from trbench.analysis.normalization import load_normalization
from trbench.analysis.radius_sensitivity import radius_sensitivity, sweep_runs
from trbench.analysis.render import render_markdown
from trbench.analysis.report_options import STREAM_RADIUS_SENSITIVITY
from trbench.analysis.report_sections import document
from trbench.analysis.trust_region import (
    ALL_ENVS,
    kl_boxes,
    kl_summary_table,
    parse_trust_region,
    swept_arm,
    trust_region_kl,
    update_table,
)
from trbench.analysis.trust_region_sections import trust_region_sections

FAST = report.ReportOptions(n_resamples=200)
KL_HEADING, SENSITIVITY_HEADING = "## Is the trust region kept?", "## Sensitivity to the radius"


def block(setting="max_kl", radius=0.01, default=0.01, measure="kl_old_new", scope="mean", kl_radius=0.01) -> dict:
    return {
        "setting": setting,
        "radius": radius,
        "default": default,
        "measure": measure,
        "scope": scope,
        "kl_radius": kl_radius,
    }


def runs_table(*rows: tuple[str, str, str]) -> pd.DataFrame:
    """(run_id, algo, env_id) rows as the loaded runs table has them."""
    return pd.DataFrame(
        [{"run_id": r, "algo": a, "algorithm": a, "env_id": e, "seed": i} for i, (r, a, e) in enumerate(rows)]
    )


def analysed(root, options=FAST) -> tuple[tables.Analysis, str]:
    """The whole analysis and its Markdown, without drawing."""
    analysis = tables.analyse(load_results(root), options)
    return analysis, render_markdown("t", document(analysis))


def trust_region_parts(root, options=FAST) -> tuple[SimpleNamespace, str]:
    """Only what the two parts read of an analysis (the other tables cost seconds per case), and
    the Markdown of their sections."""
    loaded = load_results(root)
    scored, _ = scored_runs(loaded, options.metric)
    normalization = load_normalization()
    parts = SimpleNamespace(
        options=options,
        algos=sorted(scored["algo"].unique()),
        normalization=normalization,
        trust_region_kl=trust_region_kl(scored, loaded.progress, loaded.configs),
        radius_sensitivity=radius_sensitivity(scored, loaded.configs, normalization, options),
        figures=[],
        figure_notes=[],
    )
    return parts, render_markdown("t", trust_region_sections(parts))


# --- Part 1: the KL statistics ----------------------------------------------------------------


def test_kl_statistics_equal_hand_computed_numbers():
    kl = [0.001, 0.002, 0.004, 0.012, 0.020]
    kl_max = [0.003, 0.005, 0.012, 0.030, 0.050]
    progress = {"a": pd.DataFrame({"kl": kl, "kl_max": kl_max})}
    part = trust_region_kl(runs_table(("a", "trpo", "Hopper-v5")), progress, {"a": {"trust_region": block()}})
    assert part is not None
    row = part.table.iloc[0]
    assert (row["arm"], row["env"], row["runs"], row["updates"]) == ("trpo", "Hopper-v5", 1, 5)
    # median: the middle value; p95 with linear interpolation: position 0.95 * (5 - 1) = 3.8
    assert row["mean_kl_median"] == pytest.approx(0.004)
    assert row["mean_kl_p95"] == pytest.approx(0.012 + 0.8 * (0.020 - 0.012))
    assert row["max_kl_median"] == pytest.approx(0.012)
    assert row["max_kl_p95"] == pytest.approx(0.030 + 0.8 * (0.050 - 0.030))
    # above 1.5 x 0.01 = 0.015: one of five mean KLs (0.020; 0.012 is above the radius, not 1.5 x it),
    # two of five max KLs (0.030, 0.050)
    assert row["frac_mean_kl_above"] == pytest.approx(1 / 5)
    assert row["frac_max_kl_above"] == pytest.approx(2 / 5)
    assert (row["setting"], row["radius"], row["kl_radius"], row["measure"]) == ("max_kl", 0.01, 0.01, "kl_old_new")
    boxes = kl_boxes(part.updates)["Hopper-v5"]["trpo"]
    assert boxes.mean_kl is not None and boxes.mean_kl.p50 == pytest.approx(0.004)
    assert boxes.mean_kl.p95 == pytest.approx(row["mean_kl_p95"]) and boxes.kl_radius == 0.01


def test_updates_pool_seeds_per_env_and_over_envs_each_against_its_own_radius():
    progress = {
        "h0": pd.DataFrame({"kl": [0.01, 0.02]}),
        "h1": pd.DataFrame({"kl": [0.03, np.nan]}),  # an update without a kl (skipped) counts not
        "p0": pd.DataFrame({"kl": [0.001, 0.009]}),
    }
    configs = {"h0": {"trust_region": block()}, "h1": {"trust_region": block()}, "p0": {"trust_region": block()}}
    runs = runs_table(("h0", "trpo", "Hopper-v5"), ("h1", "trpo", "Hopper-v5"), ("p0", "trpo", "Pendulum-v1"))
    table = trust_region_kl(runs, progress, configs).table.set_index("env")
    assert list(table.index) == ["Hopper-v5", "Pendulum-v1", ALL_ENVS]
    assert table.loc["Hopper-v5", "updates"] == 3 and table.loc["Hopper-v5", "runs"] == 2
    assert table.loc["Hopper-v5", "mean_kl_median"] == pytest.approx(0.02)
    assert table.loc[ALL_ENVS, "updates"] == 5
    assert table.loc[ALL_ENVS, "mean_kl_median"] == pytest.approx(0.01)
    assert table.loc[ALL_ENVS, "frac_mean_kl_above"] == pytest.approx(2 / 5)  # 0.02 and 0.03 > 0.015


def test_only_a_radius_on_the_logged_direction_gets_a_fraction():
    progress = {name: pd.DataFrame({"kl": [0.5], "kl_max": [0.9]}) for name in ("fwd", "rev", "clip")}
    configs = {
        "fwd": {"trust_region": block(kl_radius=0.1)},
        "rev": {"trust_region": block("eps_mu", 0.1, 0.1, "kl_new_old", "per_state", kl_radius=0.1)},
        "clip": {"trust_region": block("clip_range", 0.2, 0.2, "other", kl_radius=None)},
    }
    runs = runs_table(("fwd", "trpo", "E-v0"), ("rev", "trpl", "E-v0"), ("clip", "ppo", "E-v0"))
    table = trust_region_kl(runs, progress, configs).table.set_index("arm")
    assert table.loc["trpo", "frac_mean_kl_above"] == 1.0 and table.loc["trpo", "frac_max_kl_above"] == 1.0
    assert math.isnan(table.loc["trpl", "frac_mean_kl_above"]) and table.loc["trpl", "kl_radius"] == 0.1
    assert math.isnan(table.loc["ppo", "frac_mean_kl_above"]) and math.isnan(table.loc["ppo", "kl_radius"])
    assert table.loc["ppo", "radius"] == 0.2 and table.loc["ppo", "measure"] == "other"


def test_runs_without_kl_max_or_trust_region_leave_their_cells_empty(tmp_path):
    specs = [RunSpec("trpo", "Hopper-v5", seed, trust_region=json.dumps(block()), kl=(0.004, 0.02)) for seed in (0, 1)]
    specs += [RunSpec("npg", "Hopper-v5", seed, kl_max=(0.03,)) for seed in (0, 1)]  # no trust_region key
    specs += [RunSpec("vpg", "Hopper-v5", seed, trust_region="null") for seed in (0, 1)]  # no radius
    specs += [RunSpec("ppo", "Hopper-v5", seed) for seed in (0, 1)]  # an older run: neither
    analysis, markdown = analysed(make_results(tmp_path / "s", specs))
    table = analysis.trust_region_kl.table.set_index("arm")
    assert sorted(table.index) == ["npg", "ppo", "trpo", "vpg"]
    assert table.loc["trpo", "frac_mean_kl_above"] == pytest.approx(0.5)  # every other row logs 0.02 > 0.015
    assert math.isnan(table.loc["trpo", "max_kl_median"]) and math.isnan(table.loc["trpo", "frac_max_kl_above"])
    assert table.loc["npg", "max_kl_median"] == pytest.approx(0.03) and math.isnan(table.loc["npg", "kl_radius"])
    assert math.isnan(table.loc["npg", "frac_max_kl_above"])
    assert table.loc["vpg", "measure"] == "" and table.loc["ppo", "updates"] == 40
    assert analysis.radius_sensitivity is None  # no algorithm varies its radius
    section = markdown[markdown.index(KL_HEADING) : markdown.index("## Figures")]
    assert "| trpo | Hopper-v5 | 2 | 40 |" in section and "50.0%" in section
    assert "| nan" not in section.lower() and SENSITIVITY_HEADING not in markdown
    assert "| vpg | Hopper-v5 |" in section and "| none |" in section


def test_older_runs_with_kl_only_get_neither_part(tmp_path):
    analysis, markdown = analysed(make_results(tmp_path / "s", grid_specs(seeds=(0, 1))))
    assert analysis.trust_region_kl is None and analysis.radius_sensitivity is None
    assert KL_HEADING not in markdown and SENSITIVITY_HEADING not in markdown


def test_a_garbled_block_costs_only_its_own_cells():
    parsed = parse_trust_region({"setting": 3, "radius": "big", "default": -1, "measure": "js", "kl_radius": True})
    assert parsed is not None and parsed.setting == "" and parsed.measure == "other"
    assert all(math.isnan(value) for value in (parsed.radius, parsed.default, parsed.kl_radius))
    assert parse_trust_region(None) is None and parse_trust_region([0.01]) is None


def test_an_arm_of_several_radii_is_split_by_radius():
    progress = {name: pd.DataFrame({"kl": [0.01]}) for name in ("a", "b")}
    configs = {"a": {"trust_region": block(radius=0.01)}, "b": {"trust_region": block(radius=0.05, kl_radius=0.05)}}
    updates = update_table(runs_table(("a", "trpo", "E-v0"), ("b", "trpo", "E-v0")), progress, configs)
    assert sorted(kl_summary_table(updates)["arm"]) == ["trpo (max_kl=0.01)", "trpo (max_kl=0.05)"]


def drawn_kl_figure(monkeypatch, tmp_path, updates: pd.DataFrame) -> SimpleNamespace:
    """What plot_trust_region_kl draws of ``updates`` (its visible axes, their titles and tick
    labels, the figure size), styled per algorithm as the report does, and the files it wrote."""
    drawn = SimpleNamespace()
    save = trust_region_plots.save_figure

    def recording_save(fig, out_dir, name):
        axes = [ax for ax in fig.axes if ax.get_visible()]
        drawn.size = tuple(fig.get_size_inches())
        drawn.titles = [ax.get_title() for ax in axes]
        drawn.ticks = [[label.get_text() for label in ax.get_xticklabels()] for ax in axes]
        drawn.log = {ax.get_yscale() for ax in axes}
        drawn.shared = all(ax.get_shared_y_axes().joined(axes[0], ax) for ax in axes)
        drawn.legend = [text.get_text() for legend in fig.legends for text in legend.get_texts()]
        return save(fig, out_dir, name)

    monkeypatch.setattr(trust_region_plots, "save_figure", recording_save)
    algorithm_of = dict(zip(updates["group"], updates["algorithm"]))
    by_algorithm = plots.algorithm_styles(sorted(set(algorithm_of.values())))
    styles = {group: by_algorithm[algorithm] for group, algorithm in algorithm_of.items()}
    drawn.paths = trust_region_plots.plot_trust_region_kl(kl_boxes(updates), styles, tmp_path)
    return drawn


def radius_grid(algorithms: list[str], radii: list[float], env="Hopper-v5") -> pd.DataFrame:
    """The update table of one run per algorithm and radius, each arm split by its radius."""
    rows, progress, configs = [], {}, {}
    for algorithm in algorithms:
        for radius in radii:
            run_id = f"{algorithm}-{radius}"
            rows.append((run_id, algorithm, env))
            progress[run_id] = pd.DataFrame({"kl": [0.5 * radius, radius], "kl_max": [radius, 3 * radius]})
            configs[run_id] = {"trust_region": block(radius=radius, kl_radius=radius)}
    return update_table(runs_table(*rows), progress, configs)


def test_a_radius_sweep_gets_one_small_panel_per_algorithm(monkeypatch, tmp_path):
    algorithms = ["trpo", "npg", "ppo", "trpl", "mdpo", "spo", "vmpo", "awr"]
    radii = [0.08, 0.005, 0.02, 0.01, 0.04]  # drawn in radius order whatever the run order
    updates = radius_grid(algorithms, radii)
    assert updates["group"].nunique() == 40 and "trpo (max_kl=0.005)" in set(updates["group"])
    assert trust_region_plots.faceted(kl_boxes(updates))
    drawn = drawn_kl_figure(monkeypatch, tmp_path, updates)
    assert drawn.titles == sorted(algorithms)  # one axes per algorithm, each titled by it
    assert drawn.ticks == [["0.005", "0.01", "0.02", "0.04", "0.08"]] * len(algorithms)
    assert drawn.log == {"log"} and drawn.shared
    width, height = drawn.size
    assert width <= trust_region_plots.MAX_FIGURE_WIDTH_IN and height < 8
    assert [path.name for path in drawn.paths] == ["trust_region_kl.pdf", "trust_region_kl.png"]
    assert all(path.stat().st_size > 0 for path in drawn.paths)


def test_arms_of_one_algorithm_swept_by_a_grid_axis_get_a_panel_each(monkeypatch, tmp_path):
    """TRPL's layers are three arms of one algorithm: a sweep of each is three panels ticked by the
    radius, not one panel of 15 long labels."""
    rows, progress, configs = [], {}, {}
    radii = [0.0075, 0.015, 0.03, 0.06, 0.12]
    for arm in ("trpl-kl", "trpl-w2", "trpl-frob"):
        for radius in radii:
            run_id = f"{arm}-{radius}"
            rows.append({"run_id": run_id, "algo": f"{arm}[mean_bound={radius}]", "algorithm": "trpl"})
            progress[run_id] = pd.DataFrame({"kl": [0.5 * radius, radius], "kl_max": [radius, 3 * radius]})
            configs[run_id] = {"trust_region": block("mean_bound", radius, 0.03, "other", kl_radius=None)}
    runs = pd.DataFrame([{**row, "env_id": "Hopper-v5", "seed": 0} for row in rows])
    updates = update_table(runs, progress, configs)
    assert {swept_arm(group) for group in updates["group"]} == {"trpl-kl", "trpl-w2", "trpl-frob"}
    assert trust_region_plots.faceted(kl_boxes(updates))
    drawn = drawn_kl_figure(monkeypatch, tmp_path, updates)
    assert drawn.titles == ["trpl-frob", "trpl-kl", "trpl-w2"]
    assert drawn.ticks == [[f"{radius:g}" for radius in radii]] * 3


def test_the_legend_names_only_the_kl_directions_drawn(monkeypatch, tmp_path):
    forward = radius_grid(["trpo", "npg"], [0.005, 0.01])  # TRPO's direction only
    boxes = ["mean KL over states", "max KL over states"]
    assert drawn_kl_figure(monkeypatch, tmp_path, forward).legend == [*boxes, "KL radius (old || new)"]
    reverse = forward.assign(measure="kl_new_old")  # a bound on the other direction (TRPL's KL layer)
    assert drawn_kl_figure(monkeypatch, tmp_path, reverse).legend == [*boxes, "KL radius (new || old)"]
    unbounded = forward.assign(kl_radius=math.nan)  # PPO: no KL radius at all
    assert drawn_kl_figure(monkeypatch, tmp_path, unbounded).legend == boxes


def test_few_boxes_or_one_algorithm_keep_the_single_row_of_boxes(monkeypatch, tmp_path):
    few = radius_grid(["trpo", "npg", "ppo"], [0.005, 0.01, 0.02, 0.04])  # 12 groups: not above the threshold
    drawn = drawn_kl_figure(monkeypatch, tmp_path, few)
    assert drawn.titles == ["Hopper-v5"] and len(drawn.ticks[0]) == 12
    assert drawn.ticks[0][0] == "npg (max_kl=0.005)"
    one = radius_grid(["trpo"], [0.001 * k for k in range(1, 15)])  # 14 groups of one algorithm
    assert not trust_region_plots.faceted(kl_boxes(one))
    assert drawn_kl_figure(monkeypatch, tmp_path, one).titles == ["Hopper-v5"]


def test_a_sweep_over_several_envs_gets_a_row_of_panels_per_env(monkeypatch, tmp_path):
    updates = pd.concat(
        [radius_grid(["trpo", "npg", "ppo"], [0.005, 0.01, 0.02, 0.04, 0.08], env) for env in ("A-v0", "B-v0")],
        ignore_index=True,
    )
    drawn = drawn_kl_figure(monkeypatch, tmp_path, updates)
    assert drawn.titles == [f"{a}, {env}" for env in ("A-v0", "B-v0", "all envs") for a in ("npg", "ppo", "trpo")]
    assert drawn.size[0] <= trust_region_plots.MAX_FIGURE_WIDTH_IN


# --- Part 2: sensitivity to the radius ---------------------------------------------------------


def sweep_specs(env="Hopper-v5", seeds=(0, 1, 2)) -> list[RunSpec]:
    """trpo over three max_kl values (default 0.01), ppo at one clip range, npg at two step sizes."""
    specs = []
    for value in (0.005, 0.01, 0.04):
        region = json.dumps(block(radius=value, kl_radius=value))
        specs += [
            RunSpec(f"trpo[max_kl={value}]", env, s, algorithm="trpo", level=1000 + 2e4 * value, trust_region=region)
            for s in seeds
        ]
    clip = json.dumps(block("clip_range", 0.2, 0.2, "other", kl_radius=None))
    specs += [RunSpec("ppo", env, s, trust_region=clip) for s in seeds]
    for value in (0.01, 0.02):
        region = json.dumps(block("step_size", value, 0.01, kl_radius=None))
        specs += [RunSpec(f"npg[step_size={value}]", env, s, algorithm="npg", trust_region=region) for s in seeds]
    return specs


def test_sweep_detection_picks_the_algorithm_whose_radius_varies(tmp_path):
    analysis, markdown = trust_region_parts(make_results(tmp_path / "s", sweep_specs()))
    sensitivity = analysis.radius_sensitivity
    assert sensitivity is not None
    assert set(sensitivity.runs["algorithm"]) == {"trpo"} and len(sensitivity.runs) == 9
    table = sensitivity.table
    assert list(table["value"]) == [0.005, 0.01, 0.04] and set(table["env"]) == {"Hopper-v5"}
    assert list(table["best"]) == [False, False, True]  # the synthetic level rises with max_kl
    section = markdown[markdown.index(SENSITIVITY_HEADING) :]
    assert "| trpo | max_kl | Hopper-v5 | normalised | 0.01 | 0.005, 0.01, 0.04 |" in section


def test_runs_that_differ_in_another_setting_are_not_one_sweep():
    def config(value, damping):
        return {
            "algorithm": "trpo",
            "config": {"max_kl": value, "damping": damping, "device": "cuda" if value > 0.01 else "cpu"},
            "trust_region": block(radius=value),
        }

    values = {"a": (0.005, 0.1), "b": (0.01, 0.1), "c": (0.02, 0.1), "d": (0.005, 0.2), "e": (0.01, 0.2)}
    scored = runs_table(*((run_id, "trpo", "E-v0") for run_id in values)).assign(score=1.0)
    runs = sweep_runs(scored, {run_id: config(*pair) for run_id, pair in values.items()})
    # a, b, c differ only in max_kl (device is execution-only); d, e have another damping and two values
    assert sorted(runs["run_id"]) == ["a", "b", "c"] and set(runs["algorithm"]) == {"trpo"}


def test_sensitivity_means_and_cis_match_the_project_bootstrap(tmp_path):
    specs = sweep_specs("Hopper-v5") + sweep_specs("Walker2d-v5") + sweep_specs("MyToy-v0")
    analysis, _ = trust_region_parts(make_results(tmp_path / "s", specs))
    table = analysis.radius_sensitivity.table
    runs = analysis.radius_sensitivity.runs
    assert set(table["env"]) == {"Hopper-v5", "Walker2d-v5", "MyToy-v0", ALL_ENVS}
    per_task: dict[float, list[np.ndarray]] = {}
    for row in table[table["env"] != ALL_ENVS].itertuples(index=False):
        cell = runs[(runs["env"] == row.env) & (runs["radius"] == row.value)].sort_values("seed")
        scores = cell["score"].to_numpy(dtype=float)
        constants = analysis.normalization.get(row.env)
        assert row.score == ("normalised" if constants else "raw")
        if constants:
            scores = constants.normalize(scores)
            per_task.setdefault(row.value, []).append(scores)
        rng = FAST.rng(STREAM_RADIUS_SENSITIVITY, "trpo", "max_kl", row.env, row.value)
        low, high = stats.bootstrap_mean_ci(scores, rng, FAST.n_resamples, FAST.confidence_level)
        assert (row.mean, row.ci_low, row.ci_high, row.runs) == (scores.mean(), low, high, 3)
    for row in table[table["env"] == ALL_ENVS].itertuples(index=False):  # Hopper and Walker2d have constants
        rng = FAST.rng(STREAM_RADIUS_SENSITIVITY, "trpo", "max_kl", ALL_ENVS, row.value)
        interval = stats.stratified_bootstrap_ci(
            per_task[row.value], stats.aggregate_mean, rng, FAST.n_resamples, FAST.confidence_level
        )
        assert len(per_task[row.value]) == 2 and row.runs == 6
        assert (row.mean, row.ci_low, row.ci_high) == (interval.estimate, interval.low, interval.high)


def test_x_values_are_the_radius_over_the_default(tmp_path, monkeypatch):
    analysis, _ = trust_region_parts(make_results(tmp_path / "s", sweep_specs()))
    table = analysis.radius_sensitivity.table
    assert list(table["relative"]) == [0.005 / 0.01, 0.01 / 0.01, 0.04 / 0.01]
    drawn = {}
    monkeypatch.setattr(report_figures, "plot_radius_sensitivity", lambda panels, *_: drawn.update(panels))
    monkeypatch.setattr(report_figures, "plot_trust_region_kl", lambda *_: None)
    report_figures.draw_trust_region_figures(analysis, tmp_path / "figures")
    label, lines = drawn["Hopper-v5"]
    assert label == "Normalised score" and list(lines) == ["trpo"]
    assert list(lines["trpo"].x) == [0.5, 1.0, 4.0]
    assert list(lines["trpo"].center) == list(table["mean"])
    assert [name for name, _ in analysis.figures] == ["trust_region_kl", "radius_sensitivity"]


def kl_figure_styles(monkeypatch, tmp_path, specs) -> tuple[dict, dict]:
    """The style of each box group of the KL figure, and the report's style of each arm."""
    analysis, _ = trust_region_parts(make_results(tmp_path / "s", specs))
    drawn = {}
    monkeypatch.setattr(report_figures, "plot_trust_region_kl", lambda _, styles, *__: drawn.update(styles))
    monkeypatch.setattr(report_figures, "plot_radius_sensitivity", lambda *_: None)
    report_figures.draw_trust_region_figures(analysis, tmp_path / "figures")
    return drawn, plots.algorithm_styles(analysis.algos)


def test_the_kl_figure_draws_each_arm_as_every_other_figure_does(monkeypatch, tmp_path):
    """Two arms of one algorithm (TRPL's layers) are two methods: their own colours, those of the
    learning curves, not one colour for their algorithm."""
    region = json.dumps(block("mean_bound", 0.03, 0.03, "kl_new_old"))
    specs = [
        RunSpec(arm, "Hopper-v5", seed, algorithm="trpl", trust_region=region)
        for arm in ("trpl-kl", "trpl-w2", "trpl-frob")
        for seed in (0, 1)
    ] + [RunSpec("trpo", "Hopper-v5", seed, trust_region=json.dumps(block())) for seed in (0, 1)]
    drawn, report_styles = kl_figure_styles(monkeypatch, tmp_path, specs)
    assert drawn == report_styles and len({style.color for style in drawn.values()}) == 4


def test_the_points_of_a_radius_grid_share_their_arms_style_in_the_kl_figure(monkeypatch, tmp_path):
    drawn, _ = kl_figure_styles(monkeypatch, tmp_path, sweep_specs())
    by_arm: dict[str, set] = {}
    for group, style in drawn.items():
        by_arm.setdefault(group.split("[")[0], set()).add(style)
    assert sorted(by_arm) == ["npg", "ppo", "trpo"] and all(len(styles) == 1 for styles in by_arm.values())
    assert len({next(iter(styles)).color for styles in by_arm.values()}) == 3


def test_no_sweep_with_one_or_two_values(tmp_path):
    specs = [spec for spec in sweep_specs() if not spec.algo.startswith("trpo[max_kl=0.04")]
    analysis, markdown = trust_region_parts(make_results(tmp_path / "s", specs))
    assert analysis.radius_sensitivity is None and analysis.trust_region_kl is not None
    assert KL_HEADING in markdown and SENSITIVITY_HEADING not in markdown


# --- the built report -----------------------------------------------------------------------------


@pytest.mark.slow
def test_built_report_has_the_tables_and_the_figures(tmp_path):
    trpo = [spec for spec in sweep_specs(seeds=(0, 1)) if spec.algorithm == "trpo"]
    specs = trpo + [
        RunSpec("trpl", "Hopper-v5", seed, trust_region=json.dumps(block("eps", 0.05, 0.05, "kl_new_old")))
        for seed in (0, 1)
    ]
    out = report.build_report(make_results(tmp_path / "s", specs), tmp_path / "out", FAST)
    markdown = (out / "report.md").read_text()
    assert KL_HEADING in markdown and SENSITIVITY_HEADING in markdown
    assert "always measured in one direction: KL(old || new)" in markdown
    assert "![Is the trust region kept?" in markdown and "figures/radius_sensitivity.png" in markdown
    for name in ("trust_region_kl", "radius_sensitivity"):
        assert (out / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert (out / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    arms = pd.read_csv(out / "trust_region_kl.csv")["arm"].tolist()
    assert arms == ["trpl"] + [f"trpo[max_kl={v}]" for v in (0.005, 0.01, 0.04)]
    assert len(pd.read_csv(out / "radius_sensitivity.csv")) == 3
    html = (out / "report.html").read_text()
    assert html.count("<img") == len(list((out / "figures").glob("*.png")))

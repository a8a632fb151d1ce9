"""The report's figures: which ones are drawn, from which bands and tables, with which caption.

Drawing itself is plots.py's; the bands come from bands.py. A figure the data cannot support is
left out with a note saying why, which the Figures section lists.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trbench.analysis import improvement_matrix, plots, reference, stats
from trbench.analysis.bands import (
    learning_curve_bands,
    performance_profile_bands,
    reproduction_bands,
    sample_efficiency_bands,
)
from trbench.analysis.radius_sensitivity import NORMALISED
from trbench.analysis.report_options import METRIC_LABELS
from trbench.analysis.reproduction_plot import PublishedPoint, plot_reproduction
from trbench.analysis.tables import Analysis, Unavailable, cell_scores
from trbench.analysis.trust_region import ALL_ENVS, kl_boxes, swept_arm
from trbench.analysis.trust_region_plots import plot_radius_sensitivity, plot_trust_region_kl

AGGREGATE_LABELS = {
    "iqm": "IQM",
    "median": "Median",
    "mean": "Mean",
    "optimality_gap": "Optimality gap",
    "probability_of_improvement": "Probability of improvement",
}
EVAL_METRICS = ("final_eval_return", "eval_return_at_step", "max_mean_eval_curve")


def draw_figures(analysis: Analysis, curves: pd.DataFrame, figure_dir: Path) -> None:
    options, scored = analysis.options, analysis.scored
    styles = plots.algorithm_styles(analysis.algos)
    metric_label = METRIC_LABELS[options.metric].capitalize()
    notes = analysis.figure_notes

    def add(name: str, caption: str) -> None:
        analysis.figures.append((name, caption))

    if curves.empty:
        notes.append("Learning curves: no run has evaluation rows in progress.csv.")
    else:
        plots.plot_learning_curves(learning_curve_bands(curves, options), styles, figure_dir)
        add(
            "learning_curves",
            "Learning curves: mean deterministic evaluation return over runs against env steps, "
            f"with a {options.confidence_level:.0%} bootstrap CI of the mean; runs are linearly "
            "interpolated onto a common step grid, each only within its own evaluated range.",
        )

    score_summaries: dict[str, dict[str, plots.ScoreSummary]] = {}
    for row in analysis.summary.itertuples(index=False):
        values = cell_scores(scored, row.env, row.algo)
        score_summaries.setdefault(row.env, {})[row.algo] = plots.ScoreSummary(
            values, row.mean, row.ci_low, row.ci_high
        )
    if score_summaries:
        plots.plot_score_distributions(score_summaries, styles, figure_dir, metric_label)
        add(
            "score_distributions",
            f"{metric_label} of every run (points), with the mean (diamond) and its "
            f"{options.confidence_level:.0%} bootstrap CI (bar).",
        )

    envs = analysis.aggregate_envs
    if isinstance(analysis.aggregate, Unavailable):
        notes.append(f"Aggregate figures: {analysis.aggregate.reason}.")
        return
    aggregate = analysis.aggregate
    intervals = {
        metric: {
            row.algo_a: stats.IntervalEstimate(row.estimate, row.ci_low, row.ci_high)
            for row in aggregate[aggregate["metric"] == metric].itertuples(index=False)
        }
        for metric in stats.AGGREGATE_METRICS
    }
    plots.plot_aggregate_intervals(intervals, styles, figure_dir, AGGREGATE_LABELS)
    add(
        "aggregate_intervals",
        f"Aggregate normalised {options.metric} scores over {len(envs)} env(s): point estimate "
        f"(black tick on the algorithm's marker) and {options.confidence_level:.0%} stratified-bootstrap CI (bar). "
        "Lower is better for the optimality gap.",
    )
    plots.plot_performance_profiles(
        performance_profile_bands(scored, analysis.normalization, envs, analysis.algos, options),
        styles,
        figure_dir,
    )
    add(
        "performance_profiles",
        "Performance profiles: fraction of runs whose normalised score exceeds τ (averaged over "
        f"envs), with {options.confidence_level:.0%} stratified-bootstrap bands.",
    )
    improvement_rows = aggregate[aggregate["metric"] == "probability_of_improvement"]
    if improvement_rows.empty:
        notes.append("Probability of improvement: needs at least two algorithms.")
    else:
        pairs = [
            (row.algo_a, row.algo_b, stats.IntervalEstimate(row.estimate, row.ci_low, row.ci_high))
            for row in improvement_rows.itertuples(index=False)
            if row.algo_a < row.algo_b
        ]
        meaning = (
            "Probability that a run of X scores higher than a run of Y on the same env (ties "
            "count 1/2), averaged over envs"
        )
        if len(improvement_matrix.compared_algorithms(pairs)) > improvement_matrix.PAIR_ROWS_MAX_ALGORITHMS:
            improvement_matrix.plot_improvement_matrix(pairs, figure_dir)
            add(
                "probability_of_improvement",
                f"{meaning}: {improvement_matrix.caption(pairs, options.confidence_level)}.",
            )
        else:
            plots.plot_probability_of_improvement(pairs, styles, figure_dir)
            add(
                "probability_of_improvement",
                f"{meaning}, with {options.confidence_level:.0%} stratified-bootstrap CIs; 0.5 means no difference.",
            )
    efficiency = sample_efficiency_bands(curves, analysis.normalization, envs, analysis.algos, options)
    if isinstance(efficiency, Unavailable):
        notes.append(f"Sample efficiency: {efficiency.reason}.")
    else:
        plots.plot_sample_efficiency(efficiency, styles, figure_dir)
        add(
            "sample_efficiency",
            "Sample efficiency: IQM over all runs and envs of the normalised evaluation return "
            f"against env steps, with {options.confidence_level:.0%} stratified-bootstrap bands.",
        )


def _uses_eval_curve(table: pd.DataFrame) -> bool:
    """Whether most compared rows use an evaluation metric (else the training-return curve is drawn)."""
    compared = table[table["verdict"] != reference.NOT_COMPARED] if not table.empty else table
    compared = compared if not compared.empty else table
    return bool(len(compared)) and compared["metric"].isin(EVAL_METRICS).mean() > 0.5


def draw_reproduction_figure(analysis: Analysis, figure_dir: Path) -> None:
    reproduction = analysis.reproduction
    assert reproduction is not None  # drawn only for a report with a reference
    table = reproduction.table
    compared = table[table["verdict"] != reference.NOT_COMPARED]
    if compared.empty:
        analysis.figure_notes.append("Reproduction figure: no published value could be compared yet.")
        return
    use_eval = _uses_eval_curve(table)
    bands = reproduction_bands(reproduction, use_eval, analysis.options)
    points: dict[str, list[PublishedPoint]] = {}
    for row in compared.itertuples(index=False):
        points.setdefault(row.env_id, []).append(
            PublishedPoint(
                row.arm,
                row.source,
                float(row.steps),
                float(row.published),
                float(row.published_low),
                float(row.published_high),
            )
        )
    arms = sorted({arm for per_arm in bands.values() for arm in per_arm} | set(compared["arm"]))
    what = "deterministic evaluation return" if use_eval else "mean return of the last 100 training episodes"
    plot_reproduction(
        bands,
        points,
        plots.algorithm_colors(arms),
        figure_dir,
        y_label="Evaluation return" if use_eval else "Training return (last 100 ep.)",
    )
    analysis.figures.insert(
        0,
        (
            "reproduction",
            f"Our runs against the published values of {reproduction.reference.name}: lines are the mean over "
            f"seeds of the {what} with a {analysis.options.confidence_level:.0%} bootstrap CI; markers are "
            "published values at their step budget (shape per source, colour of the arm compared), with "
            "their published spread where one exists. Published values use their own metric and env "
            "version; the table gives the like-for-like comparison.",
        ),
    )


def draw_trust_region_figures(analysis: Analysis, figure_dir: Path) -> None:
    """The figures of the two trust-region parts, where the runs carry their data (trust_region.py)."""
    kl = analysis.trust_region_kl
    if kl is not None and kl.updates.empty:
        analysis.figure_notes.append("Trust-region KL: no analysed run logs kl or kl_max in progress.csv.")
    elif kl is not None:
        # the points of a grid axis (arms named 'arm[setting=value]') take one style per arm,
        # so that a radius sweep reads as one line of boxes per method; without grid axes each
        # arm keeps the style it has in every other figure of the report
        arm_of = {group: swept_arm(group) for group in kl.updates["group"].unique()}
        report_styles = plots.algorithm_styles(analysis.algos)
        if not all(arm in report_styles for arm in arm_of.values()):
            report_styles = plots.algorithm_styles(sorted(set(arm_of.values())))
        styles = {group: report_styles[arm] for group, arm in arm_of.items()}
        plot_trust_region_kl(kl_boxes(kl.updates), styles, figure_dir)
        analysis.figures.append(
            (
                "trust_region_kl",
                "Is the trust region kept? KL(old || new) between the policy before and after each update, "
                "measured on the update's batch, over all updates of all seeds of each arm: the filled box is "
                "the per-update mean over states, the hatched box the per-update max over states (box: "
                "quartiles, black line: median, whiskers: 5th and 95th percentiles; log axis, an update with "
                "zero KL sits at its bottom). The grey line is the arm's nominal KL radius, dashed where the "
                "method bounds KL(old || new), the direction measured, dotted where it bounds the reverse KL; "
                "arms whose radius is not a KL, or that have none, are shown for comparison without a line.",
            )
        )
    sensitivity = analysis.radius_sensitivity
    if sensitivity is None:
        return
    table, metric = sensitivity.table, analysis.options.metric
    panels: dict[str, tuple[str, dict[str, plots.Band]]] = {}
    envs = sorted(set(table["env"]) - {ALL_ENVS}) + ([ALL_ENVS] if ALL_ENVS in set(table["env"]) else [])
    for env in envs:
        rows = table[table["env"] == env]
        if env == ALL_ENVS:
            label = "Normalised score, mean over envs"
        elif rows["score"].iloc[0] == NORMALISED:
            label = "Normalised score"
        else:
            label = METRIC_LABELS[metric].capitalize()
        per_line = {}
        for line, cell in rows.groupby("algorithm", sort=True):
            cell = cell.sort_values("relative")
            per_line[str(line)] = plots.Band(
                *(cell[column].to_numpy(dtype=float) for column in ("relative", "mean", "ci_low", "ci_high"))
            )
        panels[env] = (label, per_line)
    lines = sorted(set(table["algorithm"]))
    plot_radius_sensitivity(panels, plots.algorithm_styles(lines), figure_dir)
    analysis.figures.append(
        (
            "radius_sensitivity",
            f"Sensitivity to the radius: mean '{metric}' score over seeds against each algorithm's trust-region "
            "radius relative to its default (log axis; the dashed line is the default), with "
            f"{analysis.options.confidence_level:.0%} bootstrap CIs of the mean (stratified over envs in the "
            "'all envs' panel). Scores are normalised as (return - random) / (reference - random) where the env "
            "has constants and raw otherwise, as each panel's axis says.",
        )
    )

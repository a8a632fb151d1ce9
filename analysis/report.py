"""`trbench report`: turn a results folder into tables, tests, figures and a written report.

Pipeline: load (load.py) → compute tables with the pure statistics (stats.py) → draw
(plots.py) → render (render.py). Each part of the report is computed by its own function; when
the data cannot support a part (one algorithm, one run in a cell, no normalisation constants
for an env, ...), that part says why instead of failing the whole report.

Everything is written into a temporary folder next to the destination and renamed into place at
the end, so a crash never leaves a half-written report.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trbench.analysis import plots, reference, stats
from trbench.analysis.imported import imported_section
from trbench.analysis.load import (
    METRIC_DESCRIPTIONS,
    LoadedResults,
    interpolate_runs,
    load_results,
    scored_runs,
    step_grid,
)
from trbench.analysis.normalization import NormalizationConstants, load_normalization
from trbench.analysis.render import (
    BulletList,
    Figure,
    Paragraph,
    Preformatted,
    Section,
    Table,
    format_number,
    latex_booktabs,
    p_value,
    render_html,
    render_markdown,
)
from trbench.base.errors import UsageError, check_output_folder

SUMMARY_COLUMNS = ["algo", "env", "n_runs", "mean", "std", "median", "iqm", "ci_low", "ci_high"]
PAIRWISE_COLUMNS = [
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
AGGREGATE_COLUMNS = ["metric", "algo_a", "algo_b", "estimate", "ci_low", "ci_high", "n_tasks", "n_runs"]
POWER_COLUMNS = [
    "env",
    "algo_a",
    "algo_b",
    "n_a",
    "n_b",
    "observed_diff",
    "sd_a",
    "sd_b",
    "seeds_for_observed_diff",
    "min_diff",
    "seeds_for_min_diff",
]
AGGREGATE_LABELS = {
    "iqm": "IQM",
    "median": "Median",
    "mean": "Mean",
    "optimality_gap": "Optimality gap",
    "probability_of_improvement": "Probability of improvement",
}
# Independent random streams per part of the report, so adding a part never changes another's CIs;
# within a part, each estimate draws from a stream keyed by what it estimates (see ``ReportOptions.rng``).
STREAM_SUMMARY, STREAM_PAIRWISE, STREAM_AGGREGATE, STREAM_CURVES, STREAM_PROFILES, STREAM_EFFICIENCY = range(6)
STREAM_REPRODUCTION, STREAM_REPRODUCTION_CURVES = 6, 7
EVAL_METRICS = ("final_eval_return", "eval_return_at_step", "max_mean_eval_curve")
# what the score of each metric is called where a table has no room for the description
METRIC_LABELS = {
    "final": "final eval return",
    "auc": "mean eval return over training",
    "last100": "training return, last 100 episodes",
}
# the options a report was built with, so that a rebuild with others never replaces it unnoticed
OPTIONS_FILE = "report_options.json"


@dataclass(frozen=True)
class ReportOptions:
    metric: str = "final"
    seed: int = 0
    n_resamples: int = stats.DEFAULT_RESAMPLES
    confidence_level: float = stats.DEFAULT_CONFIDENCE
    alpha: float = 0.05
    power: float = 0.8
    min_difference: float = 0.1  # as a fraction of (reference - random) return of each env
    curve_points: int = 100
    efficiency_points: int = 50
    profile_points: int = 101
    reference: str | None = None  # a preset's suite name: add the reproduction table against its published numbers

    def rng(self, stream: int, *key: object) -> np.random.Generator:
        """The bootstrap generator of one estimate: part ``stream`` of the report, estimate ``key``.

        Keyed streams keep an interval fixed when other cells, pairs or algorithms are added to
        the results, so a table does not change in rows whose runs did not change.
        """
        if not key:
            # a part that keys its own estimates (the reproduction table) takes its base stream
            # here; it stays the one committed reports were built with
            return np.random.default_rng([self.seed, stream])
        return stats.keyed_rng(self.seed, stream, *key)


@dataclass
class Unavailable:
    """A part of the report that could not be computed, and why."""

    reason: str


@dataclass
class Analysis:
    options: ReportOptions
    loaded: LoadedResults
    scored: pd.DataFrame
    excluded: pd.DataFrame
    algos: list[str]
    envs: list[str]
    summary: pd.DataFrame
    pairwise: pd.DataFrame | Unavailable
    power: pd.DataFrame | Unavailable
    normalization: dict[str, NormalizationConstants]
    aggregate_envs: list[str]
    aggregate_notes: list[str]
    aggregate: pd.DataFrame | Unavailable
    figures: list[tuple[str, str]] = field(default_factory=list)  # (name, caption)
    figure_notes: list[str] = field(default_factory=list)
    reproduction: reference.Reproduction | None = None


# --------------------------------------------------------------------------------------------
# Tables


def _cell_scores(scored: pd.DataFrame, env: str, algo: str, column: str = "score") -> np.ndarray:
    mask = (scored["env_id"] == env) & (scored["algo"] == algo)
    return scored.loc[mask, column].to_numpy(dtype=float)


def _cells(scored: pd.DataFrame) -> list[tuple[str, str]]:
    """(env, algo) pairs that have at least one scored run, sorted."""
    pairs = scored[["env_id", "algo"]].drop_duplicates()
    return sorted(zip(pairs["env_id"], pairs["algo"]))


def summary_table(scored: pd.DataFrame, options: ReportOptions) -> pd.DataFrame:
    """One row per (algo, env): n_runs, mean, std (n-1), median, IQM, bootstrap CI of the mean."""
    rows = []
    for env, algo in _cells(scored):
        values = _cell_scores(scored, env, algo)
        rng = options.rng(STREAM_SUMMARY, env, algo)
        low, high = stats.bootstrap_mean_ci(values, rng, options.n_resamples, options.confidence_level)
        rows.append(
            {
                "algo": algo,
                "env": env,
                "n_runs": int(values.size),
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if values.size > 1 else math.nan,
                "median": float(np.median(values)),
                "iqm": stats.iqm(values),
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _pairs_per_env(scored: pd.DataFrame) -> list[tuple[str, str, str]]:
    pairs = []
    for env in sorted(scored["env_id"].unique()):
        algos = sorted(scored.loc[scored["env_id"] == env, "algo"].unique())
        pairs += [(env, a, b) for a, b in itertools.combinations(algos, 2)]
    return pairs


def pairwise_table(scored: pd.DataFrame, options: ReportOptions) -> pd.DataFrame | Unavailable:
    """Welch, Mann-Whitney, Holm (over every row, on Welch's p), Hedges' g and P(a > b) per env."""
    pairs = _pairs_per_env(scored)
    if not pairs:
        return Unavailable("no env has runs of two or more algorithms, so there is nothing to compare")
    rows = []
    for env, algo_a, algo_b in pairs:
        a, b = _cell_scores(scored, env, algo_a), _cell_scores(scored, env, algo_b)
        welch = stats.welch_test(a, b)
        rng = options.rng(STREAM_PAIRWISE, env, algo_a, algo_b)
        improvement = _without_ci_for_single_runs(
            stats.probability_of_improvement_ci([a], [b], rng, options.n_resamples, options.confidence_level),
            [a, b],
        )
        rows.append(
            {
                "env": env,
                "algo_a": algo_a,
                "algo_b": algo_b,
                "mean_diff": float(a.mean() - b.mean()),
                "welch_t": welch.statistic,
                "welch_p": welch.pvalue,
                "mannwhitney_p": stats.mann_whitney_test(a, b).pvalue,
                "p_holm": math.nan,
                "hedges_g": stats.hedges_g(a, b),
                "prob_improvement": improvement.estimate,
                "pi_ci_low": improvement.low,
                "pi_ci_high": improvement.high,
            }
        )
    table = pd.DataFrame(rows, columns=PAIRWISE_COLUMNS)
    table["p_holm"] = stats.holm_adjust(table["welch_p"].to_numpy(dtype=float))
    return table


def power_table(
    scored: pd.DataFrame,
    normalization: dict[str, NormalizationConstants],
    options: ReportOptions,
) -> pd.DataFrame | Unavailable:
    """Seeds per algorithm for ``options.power`` at ``options.alpha`` (two-sided Welch), for the
    observed difference and for the stated minimal difference, using the observed spreads."""
    pairs = _pairs_per_env(scored)
    if not pairs:
        return Unavailable("no env has runs of two or more algorithms, so there is no difference to power")
    rows = []
    for env, algo_a, algo_b in pairs:
        a, b = _cell_scores(scored, env, algo_a), _cell_scores(scored, env, algo_b)
        spreads_known = a.size >= 2 and b.size >= 2
        sd_a = float(a.std(ddof=1)) if a.size >= 2 else math.nan
        sd_b = float(b.std(ddof=1)) if b.size >= 2 else math.nan
        observed = float(a.mean() - b.mean())
        constants = normalization.get(env)
        min_diff = (
            options.min_difference * abs(constants.reference_return - constants.random_return)
            if constants
            else math.nan
        )

        def needed(difference: float, spreads_known=spreads_known, sd_a=sd_a, sd_b=sd_b) -> float:
            if not spreads_known or not math.isfinite(difference):
                return math.nan
            seeds = stats.seeds_for_power(difference, sd_a, sd_b, options.power, options.alpha)
            return math.inf if seeds is None else float(seeds)

        rows.append(
            {
                "env": env,
                "algo_a": algo_a,
                "algo_b": algo_b,
                "n_a": int(a.size),
                "n_b": int(b.size),
                "observed_diff": observed,
                "sd_a": sd_a,
                "sd_b": sd_b,
                "seeds_for_observed_diff": needed(observed),
                "min_diff": min_diff,
                "seeds_for_min_diff": needed(min_diff),
            }
        )
    return pd.DataFrame(rows, columns=POWER_COLUMNS)


def normalized_tasks(
    scored: pd.DataFrame, normalization: dict[str, NormalizationConstants], algos: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Envs usable for aggregates (constants known and every algorithm has runs), and notes
    naming the envs left out and why."""
    usable, notes = [], []
    for env in sorted(scored["env_id"].unique()):
        present = set(scored.loc[scored["env_id"] == env, "algo"])
        if env not in normalization:
            notes.append(f"{env}: left out, no normalisation constants for it in analysis/data/normalization.csv")
        elif missing := sorted(set(algos) - present):
            notes.append(f"{env}: left out, no scored runs of {', '.join(missing)}")
        else:
            usable.append(env)
    return usable, notes


def per_task_normalized(
    scored: pd.DataFrame, normalization: dict[str, NormalizationConstants], envs: Sequence[str], algo: str
) -> list[np.ndarray]:
    return [normalization[env].normalize(_cell_scores(scored, env, algo)) for env in envs]


def aggregate_table(
    scored: pd.DataFrame,
    normalization: dict[str, NormalizationConstants],
    envs: Sequence[str],
    algos: Sequence[str],
    options: ReportOptions,
) -> pd.DataFrame | Unavailable:
    """IQM, median, mean, optimality gap per algorithm and P(a > b) per pair, across ``envs``,
    on normalised scores, each with a stratified-bootstrap percentile CI."""
    if not envs:
        return Unavailable("no env has both normalisation constants and runs of every algorithm")
    rows = []
    per_algo = {algo: per_task_normalized(scored, normalization, envs, algo) for algo in algos}
    for metric, aggregate in stats.AGGREGATE_METRICS.items():
        for algo in algos:
            interval = _without_ci_for_single_runs(
                stats.stratified_bootstrap_ci(
                    per_algo[algo],
                    aggregate,
                    options.rng(STREAM_AGGREGATE, metric, algo),
                    options.n_resamples,
                    options.confidence_level,
                ),
                per_algo[algo],
            )
            rows.append(_aggregate_row(metric, algo, "", interval, per_algo[algo]))
    for algo_a, algo_b in itertools.permutations(algos, 2):
        interval = _without_ci_for_single_runs(
            stats.probability_of_improvement_ci(
                per_algo[algo_a],
                per_algo[algo_b],
                options.rng(STREAM_AGGREGATE, "probability_of_improvement", algo_a, algo_b),
                options.n_resamples,
                options.confidence_level,
            ),
            [*per_algo[algo_a], *per_algo[algo_b]],
        )
        rows.append(_aggregate_row("probability_of_improvement", algo_a, algo_b, interval, per_algo[algo_a]))
    return pd.DataFrame(rows, columns=AGGREGATE_COLUMNS)


def _without_ci_for_single_runs(
    interval: stats.IntervalEstimate, samples: Sequence[np.ndarray]
) -> stats.IntervalEstimate:
    """A bootstrap over a single run per task has zero width, which would read as certainty:
    report no interval instead when any task has only one run."""
    if min(sample.size for sample in samples) >= 2:
        return interval
    return stats.IntervalEstimate(interval.estimate, math.nan, math.nan)


def _aggregate_row(
    metric: str, algo_a: str, algo_b: str, interval: stats.IntervalEstimate, tasks: Sequence[np.ndarray]
) -> dict:
    return {
        "metric": metric,
        "algo_a": algo_a,
        "algo_b": algo_b,
        "estimate": interval.estimate,
        "ci_low": interval.low,
        "ci_high": interval.high,
        "n_tasks": len(tasks),
        "n_runs": int(sum(task.size for task in tasks)),
    }


# --------------------------------------------------------------------------------------------
# Curves


def _mean_band(matrix: np.ndarray, grid: np.ndarray, rng: np.random.Generator, options: ReportOptions) -> plots.Band:
    """Mean over runs (rows, NaN = no data) at each grid point with a bootstrap CI of the mean.

    Grid points covered by the same set of runs are bootstrapped together in one call.
    """
    center, low, high = (np.full(grid.size, np.nan) for _ in range(3))
    present = np.isfinite(matrix)
    patterns: dict[bytes, list[int]] = {}
    for index in range(grid.size):
        if present[:, index].any():
            patterns.setdefault(present[:, index].tobytes(), []).append(index)
    for columns in patterns.values():
        rows = present[:, columns[0]]
        block = matrix[np.ix_(rows, columns)].T  # (grid points, runs)
        center[columns] = block.mean(axis=1)
        if block.shape[1] == 1:
            low[columns] = high[columns] = block[:, 0]
        else:
            low[columns], high[columns] = stats.bootstrap_mean_ci_batch(
                block, rng, options.n_resamples, options.confidence_level
            )
    return plots.Band(grid, center, low, high)


def _run_matrix(interpolated: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """Rows = runs, columns = grid points, from a tidy interpolated table."""
    return np.stack(
        [group["eval_return"].to_numpy(dtype=float) for _, group in interpolated.groupby("run_id", sort=True)]
    ).reshape(-1, grid.size)


def learning_curve_bands(curves: pd.DataFrame, options: ReportOptions) -> dict[str, dict[str, plots.Band]]:
    bands: dict[str, dict[str, plots.Band]] = {}
    for env in sorted(curves["env_id"].unique()):
        env_curves = curves[curves["env_id"] == env]
        grid = step_grid(env_curves, options.curve_points)
        for algo in sorted(env_curves["algo"].unique()):
            interpolated = interpolate_runs(env_curves[env_curves["algo"] == algo], grid)
            rng = options.rng(STREAM_CURVES, env, algo)
            bands.setdefault(env, {})[algo] = _mean_band(_run_matrix(interpolated, grid), grid, rng, options)
    return bands


def sample_efficiency_bands(
    curves: pd.DataFrame,
    normalization: dict[str, NormalizationConstants],
    envs: Sequence[str],
    algos: Sequence[str],
    options: ReportOptions,
) -> dict[str, plots.Band] | Unavailable:
    """IQM over runs and tasks of normalised eval returns at each step of a common grid, with a
    stratified-bootstrap percentile band (runs resampled within each task, one draw shared by
    all grid points so that the band belongs to whole curves)."""
    curves = curves[curves["env_id"].isin(envs)]
    if curves.empty:
        return Unavailable("no evaluation curves for the envs used in the aggregates")
    grid = step_grid(curves, options.efficiency_points, common_support=True)
    if grid.size < 2:
        return Unavailable("the runs' evaluated step ranges do not overlap, so there is no common step grid")
    tail = (1.0 - options.confidence_level) / 2.0
    bands = {}
    for algo in algos:
        per_task = []
        for env in envs:
            selected = curves[(curves["env_id"] == env) & (curves["algo"] == algo)]
            if selected.empty:
                return Unavailable(f"{algo} has no evaluation curve on {env}")
            matrix = _run_matrix(interpolate_runs(selected, grid), grid)
            per_task.append(normalization[env].normalize(matrix))
        # (runs, grid) per task -> IQM along runs for every grid point
        point = stats.iqm_batch(np.concatenate(per_task, axis=0).T)
        rng = options.rng(STREAM_EFFICIENCY, algo)
        resampled = [
            task[rng.integers(0, task.shape[0], size=(options.n_resamples, task.shape[0]))] for task in per_task
        ]
        replicates = stats.iqm_batch(np.concatenate(resampled, axis=1).transpose(0, 2, 1))
        low, high = np.quantile(replicates, [tail, 1.0 - tail], axis=0)
        bands[algo] = plots.Band(grid, point, low, high)
    return bands


def performance_profile_bands(
    scored: pd.DataFrame,
    normalization: dict[str, NormalizationConstants],
    envs: Sequence[str],
    algos: Sequence[str],
    options: ReportOptions,
) -> dict[str, plots.Band]:
    per_algo = {algo: per_task_normalized(scored, normalization, envs, algo) for algo in algos}
    everything = np.concatenate([np.concatenate(tasks) for tasks in per_algo.values()])
    low_tau = min(0.0, float(everything.min()))
    high_tau = max(1.0, float(everything.max())) * 1.02
    thresholds = np.linspace(low_tau, high_tau, options.profile_points)
    bands = {}
    for algo, tasks in per_algo.items():
        point, low, high = stats.performance_profile_ci(
            tasks, thresholds, options.rng(STREAM_PROFILES, algo), options.n_resamples, options.confidence_level
        )
        bands[algo] = plots.Band(thresholds, point, low, high)
    return bands


# --------------------------------------------------------------------------------------------
# Figures


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

    score_summaries = {}
    for row in analysis.summary.itertuples(index=False):
        values = _cell_scores(scored, row.env, row.algo)
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
        plots.plot_probability_of_improvement(pairs, styles, figure_dir)
        add(
            "probability_of_improvement",
            "Probability that a run of X scores higher than a run of Y on the same env (ties "
            f"count 1/2), averaged over envs, with {options.confidence_level:.0%} "
            "stratified-bootstrap CIs; 0.5 means no difference.",
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


# --------------------------------------------------------------------------------------------
# Reproduction of published results


def _uses_eval_curve(table: pd.DataFrame) -> bool:
    """Whether most compared rows use an evaluation metric (else the training-return curve is drawn)."""
    compared = table[table["verdict"] != reference.NOT_COMPARED] if not table.empty else table
    compared = compared if not compared.empty else table
    return bool(len(compared)) and compared["metric"].isin(EVAL_METRICS).mean() > 0.5


def reproduction_bands(
    reproduction: reference.Reproduction, use_eval: bool, options: ReportOptions
) -> dict[str, dict[str, plots.Band]]:
    """Per env and arm: the mean over seeds of each run's evaluation curve, or of its
    last-100-training-episode return, on a common step grid, with a bootstrap CI."""
    arms = {comparison.arm for comparison in reproduction.reference.comparisons}
    runs = [run for run in reproduction.runs if run.arm in arms]
    bands: dict[str, dict[str, plots.Band]] = {}
    for env_id in sorted({run.env_id for run in runs}):
        env_runs = [run for run in runs if run.env_id == env_id]
        grid = np.linspace(0.0, max(run.final_step for run in env_runs), options.curve_points + 1)[1:]
        for arm in sorted({run.arm for run in env_runs}):
            matrix = []
            for run in (r for r in env_runs if r.arm == arm):
                if use_eval:
                    curve = run.progress.dropna(subset=["eval_return"])
                    steps, values = curve["step"].to_numpy(), curve["eval_return"].to_numpy()
                    row = (
                        np.interp(grid, steps, values, left=np.nan, right=np.nan)
                        if len(steps)
                        else np.full(grid.size, np.nan)
                    )
                else:
                    row = reference.training_curve(run, grid)
                matrix.append(row)
            rng = options.rng(STREAM_REPRODUCTION_CURVES, env_id, arm)
            bands.setdefault(env_id, {})[arm] = _mean_band(np.vstack(matrix), grid, rng, options)
    return bands


def draw_reproduction_figure(analysis: Analysis, figure_dir: Path) -> None:
    reproduction = analysis.reproduction
    table = reproduction.table
    compared = table[table["verdict"] != reference.NOT_COMPARED]
    if compared.empty:
        analysis.figure_notes.append("Reproduction figure: no published value could be compared yet.")
        return
    use_eval = _uses_eval_curve(table)
    bands = reproduction_bands(reproduction, use_eval, analysis.options)
    points: dict[str, list[plots.PublishedPoint]] = {}
    for row in compared.itertuples(index=False):
        points.setdefault(row.env_id, []).append(
            plots.PublishedPoint(
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
    plots.plot_reproduction(
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


def _format_published(row) -> str:
    text = format_number(row.published)
    if row.spread_kind == "ci95_bootstrap":
        text += f" [{format_number(row.published_low)}, {format_number(row.published_high)}]"
    elif math.isfinite(row.published_low):
        text += f" ± {format_number(row.published - row.published_low)}"
    return ("~" if row.approximate else "") + text


def _format_ours(row) -> str:
    if not math.isfinite(row.ours):
        return "n/a"
    text = format_number(row.ours)
    if math.isfinite(row.ours_ci_low):
        text += f" [{format_number(row.ours_ci_low)}, {format_number(row.ours_ci_high)}]"
    return f"{text} ({int(row.n_seeds)})"


def _format_steps_budget(steps: float) -> str:
    if not math.isfinite(steps):
        return ""
    if steps % 1_000_000 == 0:
        return f"{int(steps // 1_000_000)}M"
    return f"{int(steps):,}"


def reproduction_display_table(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for row in table.itertuples(index=False):
        rows.append(
            {
                "env": row.env_id,
                "arm": row.arm,
                "source": row.source + (f" ({row.setting})" if row.setting else ""),
                "version": row.env_version,
                "steps": _format_steps_budget(row.steps),
                "metric": row.metric,
                "published": _format_published(row),
                "spread": row.spread_kind or "none",
                "ours [95% CI] (seeds)": _format_ours(row),
                "verdict": row.verdict,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "env",
            "arm",
            "source",
            "version",
            "steps",
            "metric",
            "published",
            "spread",
            "ours [95% CI] (seeds)",
            "verdict",
        ],
    )


def reproduction_section(analysis: Analysis) -> Section:
    reproduction = analysis.reproduction
    table = reproduction.table
    blocks: list = [
        Paragraph(
            f"Published values for preset {reproduction.reference.name} ({reproduction.reference.description}) "
            "next to ours, each computed with the source's own metric at the source's step budget. "
            "Verdict: consistent when the published value lies in our "
            f"{analysis.options.confidence_level:.0%} CI over seeds or our mean lies within the published "
            "spread (value ± spread, or the published CI); otherwise above or below. "
            f"'{reference.TOO_FEW_SEEDS}': fewer than {reference.MIN_SEEDS_FOR_VERDICT} seeds, whose CI "
            "cannot reach beyond their range and so covers less than it claims; the value is shown, no verdict. "
            "'no data': our runs do "
            "not reach that step budget or cannot compute that metric. '~' marks values read off or "
            "digitized from a figure. Published and our env versions differ (see the version column "
            "and the env ids); read each verdict with that in mind. Also in reproduction.csv."
        )
    ]
    metrics = sorted(set(table["metric"])) if not table.empty else []
    if metrics:
        blocks.append(BulletList([f"{metric}: {reference.METRICS[metric]}" for metric in metrics]))
    if table.empty:
        blocks.append(Paragraph("No comparison yet: no complete run of an arm this preset compares."))
    else:
        blocks.append(Table(reproduction_display_table(table), "Reproduction of published results"))
        counts = table["verdict"].value_counts()
        blocks.append(
            Paragraph(
                "Verdicts: "
                + ", ".join(
                    f"{counts.get(v, 0)} {v}"
                    for v in (*reference.VERDICTS, reference.TOO_FEW_SEEDS, reference.NOT_COMPARED)
                )
                + "."
            )
        )
    if reproduction.notes:
        blocks.append(BulletList(reproduction.notes))
    return Section("Reproduction of published results", blocks)


# --------------------------------------------------------------------------------------------
# Analysis and document


def analyse(loaded: LoadedResults, options: ReportOptions) -> Analysis:
    scored, excluded = scored_runs(loaded, options.metric)
    algos = sorted(scored["algo"].unique())
    envs = sorted(scored["env_id"].unique())
    normalization = load_normalization()
    if scored.empty:
        reason = f"no complete run has a '{options.metric}' score"
        aggregate_envs, aggregate_notes = [], []
        pairwise = power = aggregate = Unavailable(reason)
    else:
        aggregate_envs, aggregate_notes = normalized_tasks(scored, normalization, algos)
        pairwise = pairwise_table(scored, options)
        power = power_table(scored, normalization, options)
        aggregate = aggregate_table(scored, normalization, aggregate_envs, algos, options)
    return Analysis(
        options=options,
        loaded=loaded,
        scored=scored,
        excluded=excluded,
        algos=algos,
        envs=envs,
        summary=summary_table(scored, options),
        pairwise=pairwise,
        power=power,
        normalization=normalization,
        aggregate_envs=aggregate_envs,
        aggregate_notes=aggregate_notes,
        aggregate=aggregate,
    )


def _distinct(values: pd.Series) -> str:
    return ", ".join(str(value) for value in sorted(values.dropna().unique(), key=str)) or "unknown"


def _distinct_counts(values: pd.Series) -> str:
    """Distinct whole numbers in increasing order with thousands separators: '51,200'."""
    return ", ".join(f"{int(value):,}" for value in sorted(values.dropna().unique())) or "unknown"


def setup_section(analysis: Analysis) -> Section:
    loaded, options, scored = analysis.loaded, analysis.options, analysis.scored
    manifest = loaded.manifest or {}
    items = [
        f"Suite: {manifest.get('suite') or 'not recorded (no manifest.json)'}",
        f"Runs: {len(loaded.runs)} complete, {len(loaded.excluded)} failed or incomplete; "
        f"{len(scored)} have a '{options.metric}' score and are analysed.",
        f"Metric '{options.metric}': {METRIC_DESCRIPTIONS[options.metric]}.",
        f"Algorithms: {', '.join(analysis.algos) or 'none'}.",
        f"Environments (gymnasium id with version): {', '.join(analysis.envs) or 'none'}.",
        f"Bootstrap: {options.n_resamples} resamples, {options.confidence_level:.0%} intervals, seed {options.seed}.",
    ]
    for key, values in loaded.versions.items():
        items.append(f"Version of {key}: {', '.join(values)}")
    blocks: list = [BulletList(items)]
    if not scored.empty:
        grid = (
            scored.groupby(["env_id", "algo"], sort=True)
            .agg(
                algorithm=("algorithm", _distinct),
                runs=("run_id", "size"),
                seeds=("seed", _distinct),
                steps=("steps", _distinct_counts),
            )
            .reset_index()
        )
        blocks.append(
            Table(
                grid.rename(columns={"env_id": "env"}),
                "Runs analysed per cell: algorithm, seeds and the environment steps each run took (its budget "
                "rounded up to whole iterations).",
                {"seeds": str, "steps": str},
            )
        )
    if loaded.suite_toml:
        blocks += [Paragraph("The suite file that produced the grid:"), Preformatted(loaded.suite_toml)]
    return Section("Setup", blocks)


def per_task_section(analysis: Analysis) -> Section:
    if analysis.summary.empty:
        return Section("Per-task results", [Paragraph("Not computed: no run has a score for this metric.")])
    blocks: list = [
        Paragraph(
            f"Raw returns of the '{analysis.options.metric}' metric per algorithm and env. std uses "
            "n-1 (empty with one run); IQM is the mean of the middle 50% of runs; the CI is a "
            f"{analysis.options.confidence_level:.0%} bootstrap CI of the mean, percentile interval "
            "expanded for small samples (Hesterberg 2015) because plain percentile intervals are "
            "too narrow with 5-10 runs; with 2-3 runs it spans about the range of the data, with "
            "one run it is empty. Also in summary.csv and summary.tex."
        ),
        Table(analysis.summary, "Per-task results"),
    ]
    single = analysis.summary[analysis.summary["n_runs"] == 1]
    if len(single):
        cells = ", ".join(f"{row.algo} on {row.env}" for row in single.itertuples(index=False))
        blocks.append(Paragraph(f"No CI or std for cells with a single run: {cells}."))
    return Section("Per-task results", blocks)


def aggregate_section(analysis: Analysis) -> Section:
    blocks: list = []
    if isinstance(analysis.aggregate, Unavailable):
        blocks.append(Paragraph(f"Not computed: {analysis.aggregate.reason}."))
    else:
        blocks.append(
            Paragraph(
                "Scores normalised per env as (return - random) / (reference - random) with the fixed "
                "constants below, then aggregated over "
                f"{len(analysis.aggregate_envs)} env(s) ({', '.join(analysis.aggregate_envs)}). "
                "IQM pools all runs of all envs; mean and median are over the per-env means; the "
                "optimality gap is the mean shortfall below 1 (the reference). CIs: stratified "
                "bootstrap (runs resampled within each env), percentile intervals. The probability "
                "of improvement P(a > b) is averaged over envs. Also in aggregate.csv and aggregate.tex."
            )
        )
        blocks.append(Table(analysis.aggregate, "Aggregate metrics on normalised scores"))
        if analysis.aggregate["ci_low"].isna().any():
            blocks.append(
                Paragraph(
                    "Rows without a CI: some env has a single run of that algorithm, and a bootstrap "
                    "over one run per env has zero width, which would wrongly read as certainty."
                )
            )
        if analysis.aggregate["algo_b"].eq("").all():
            blocks.append(Paragraph("Probability of improvement: not computed, it needs at least two algorithms."))
        used = [analysis.normalization[env] for env in analysis.aggregate_envs]
        blocks.append(
            Table(
                pd.DataFrame(
                    {
                        "env": [c.env_id for c in used],
                        "random_return": [c.random_return for c in used],
                        "reference_return": [c.reference_return for c in used],
                        "random (measured)": [f"{c.random_episodes} episodes, seed {c.random_seed}" for c in used],
                        "reference source": [c.reference_source for c in used],
                    }
                ),
                "Normalisation constants (analysis/data/normalization.csv)",
            )
        )
    if analysis.aggregate_notes:
        blocks.append(BulletList(analysis.aggregate_notes))
    return Section("Aggregate results", blocks)


def pairwise_section(analysis: Analysis) -> Section:
    if isinstance(analysis.pairwise, Unavailable):
        return Section("Pairwise tests", [Paragraph(f"Not computed: {analysis.pairwise.reason}.")])
    table = analysis.pairwise
    significant = table[table["p_holm"] < analysis.options.alpha]
    blocks: list = [
        Paragraph(
            "For each env and pair of algorithms: mean_diff = mean(a) - mean(b); Welch's t-test and "
            "the Mann-Whitney U test (two-sided, scipy); p_holm = Welch p-values Holm-adjusted over "
            f"all {table['welch_p'].notna().sum()} testable rows of this table; hedges_g = "
            "bias-corrected standardised difference; prob_improvement = P(a > b) with ties counted "
            "1/2, with a bootstrap CI. Empty cells could not be computed (fewer than two runs, or "
            "no variance). Also in pairwise.csv and pairwise.tex."
        ),
        Table(table, "Pairwise tests", {"welch_p": p_value, "mannwhitney_p": p_value, "p_holm": p_value}),
        Paragraph(
            f"Significant at α = {analysis.options.alpha} after Holm correction: "
            + ("; ".join(f"{r.algo_a} vs {r.algo_b} on {r.env}" for r in significant.itertuples(index=False)) or "none")
            + "."
        ),
    ]
    return Section("Pairwise tests", blocks)


def _seed_count(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "> 10000 or never"
    return str(int(value))


def power_section(analysis: Analysis) -> Section:
    options = analysis.options
    if isinstance(analysis.power, Unavailable):
        return Section("How many seeds", [Paragraph(f"Not computed: {analysis.power.reason}.")])
    blocks: list = [
        Paragraph(
            f"Runs per algorithm needed for {options.power:.0%} power of a two-sided Welch t-test at "
            f"α = {options.alpha}, taking the observed standard deviations as the true ones: once for "
            "the observed difference and once for the stated minimal difference, "
            f"{options.min_difference:g} × (reference - random return) of the env, i.e. "
            f"{options.min_difference:g} in normalised score. Computed in closed form from the "
            "noncentral t distribution (exact for normal scores with equal variances, Welch-"
            "Satterthwaite degrees of freedom otherwise), not by simulation. 'n/a': a cell has fewer "
            "than two runs (no spread) or the env has no normalisation constants; '> 10000 or "
            "never': the difference is 0 or too small to detect. Also in power.csv."
        ),
        Table(
            analysis.power,
            "Seeds per algorithm for 80% power",
            {"seeds_for_observed_diff": _seed_count, "seeds_for_min_diff": _seed_count},
        ),
    ]
    return Section("How many seeds", blocks)


def figures_section(analysis: Analysis) -> Section:
    blocks: list = [Figure(f"figures/{name}.png", caption) for name, caption in analysis.figures]
    if analysis.figures:
        blocks.insert(0, Paragraph("Every figure is in figures/ as PDF (vector, for papers) and PNG."))
    if analysis.figure_notes:
        blocks.append(BulletList([f"Not drawn: {note}" for note in analysis.figure_notes]))
    return Section("Figures", blocks)


def excluded_section(analysis: Analysis) -> Section:
    if analysis.excluded.empty:
        return Section("Failed and excluded runs", [Paragraph("None: every run completed and has a score.")])
    return Section(
        "Failed and excluded runs",
        [
            Paragraph("These runs are left out of every table and figure above."),
            Table(analysis.excluded.fillna(""), "Excluded runs"),
        ],
    )


def document(analysis: Analysis) -> list[Section]:
    reproduction = [reproduction_section(analysis)] if analysis.reproduction is not None else []
    imported = imported_section(analysis.loaded, analysis.options.metric)
    return [
        setup_section(analysis),
        *([imported] if imported is not None else []),
        *reproduction,
        per_task_section(analysis),
        aggregate_section(analysis),
        pairwise_section(analysis),
        figures_section(analysis),
        power_section(analysis),
        excluded_section(analysis),
    ]


# --------------------------------------------------------------------------------------------
# Writing


def summary_latex_table(summary: pd.DataFrame, metric: str) -> Table:
    """Envs as rows, algorithms as columns, 'mean [ci_low, ci_high] (n)' in each cell."""
    algos = sorted(summary["algo"].unique())
    rows = []
    for env in sorted(summary["env"].unique()):
        row = {"Environment": env}
        for algo in algos:
            cell = summary[(summary["env"] == env) & (summary["algo"] == algo)]
            if cell.empty:
                row[algo] = "--"
                continue
            record = cell.iloc[0]
            interval = (
                f" [{format_number(record['ci_low'])}, {format_number(record['ci_high'])}]"
                if math.isfinite(record["ci_low"])
                else ""
            )
            row[algo] = f"{format_number(record['mean'])}{interval} ({int(record['n_runs'])})"
        rows.append(row)
    return Table(
        pd.DataFrame(rows, columns=["Environment", *algos]),
        f"Mean {metric} return [95% bootstrap CI] (number of runs) per environment.",
    )


def headline_lines(summary: pd.DataFrame, metric: str) -> list[str]:
    """The per-task table in a few lines for the terminal: per env and algorithm, the runs, the
    mean score and its CI (from summary.csv)."""
    if summary.empty:
        return [f"no run has a '{metric}' score, so there is no result to show"]
    rows = [("env", "algo", "runs", "mean", "95% CI")]
    for record in summary.itertuples(index=False):
        interval = (
            f"[{format_number(record.ci_low)}, {format_number(record.ci_high)}]"
            if math.isfinite(record.ci_low)
            else "none (one run)"
        )
        rows.append((record.env, record.algo, str(record.n_runs), format_number(record.mean), interval))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"{METRIC_LABELS[metric]} per algorithm (mean over runs, 95% bootstrap CI of the mean):"]
    for row in rows:
        cells = [
            cell.ljust(width) if i < 2 or i == 4 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def write_outputs(analysis: Analysis, sections: list[Section], target: Path) -> None:
    options = analysis.options
    analysis.summary.to_csv(target / "summary.csv", index=False)
    pairwise = (
        analysis.pairwise if isinstance(analysis.pairwise, pd.DataFrame) else pd.DataFrame(columns=PAIRWISE_COLUMNS)
    )
    pairwise.to_csv(target / "pairwise.csv", index=False)
    aggregate = (
        analysis.aggregate if isinstance(analysis.aggregate, pd.DataFrame) else pd.DataFrame(columns=AGGREGATE_COLUMNS)
    )
    aggregate.to_csv(target / "aggregate.csv", index=False)
    power = analysis.power if isinstance(analysis.power, pd.DataFrame) else pd.DataFrame(columns=POWER_COLUMNS)
    power.to_csv(target / "power.csv", index=False)
    analysis.excluded.to_csv(target / "excluded_runs.csv", index=False)
    if analysis.reproduction is not None:
        analysis.reproduction.table.to_csv(target / "reproduction.csv", index=False)
        (target / "reproduction.md").write_text(
            render_markdown(f"Reproduction of {analysis.reproduction.reference.name}", [reproduction_section(analysis)])
        )

    (target / "summary.tex").write_text(
        latex_booktabs(summary_latex_table(analysis.summary, options.metric), "tab:trbench-per-task")
    )
    (target / "aggregate.tex").write_text(
        latex_booktabs(
            Table(aggregate, "Aggregate normalised scores with 95% stratified-bootstrap CIs."),
            "tab:trbench-aggregate",
            3,
        )
    )
    (target / "pairwise.tex").write_text(
        latex_booktabs(
            Table(
                pairwise,
                "Pairwise tests (Holm-adjusted Welch p-values).",
                {"welch_p": p_value, "mannwhitney_p": p_value, "p_holm": p_value},
            ),
            "tab:trbench-pairwise",
            3,
        )
    )
    title = f"trbench report: {(analysis.loaded.manifest or {}).get('suite') or analysis.loaded.results_dir.name}"
    (target / "report.md").write_text(render_markdown(title, sections))
    (target / "report.html").write_text(render_html(title, sections, target))


def build_report(
    results_dir: Path | str, out_dir: Path | str | None = None, options: ReportOptions | None = None
) -> Path:
    """Write the full report for ``results_dir`` into ``out_dir`` (default: results_dir/report,
    or a sibling named by the options, see :func:`default_report_folder`) and return ``out_dir``.
    The folder appears complete or not at all."""
    options = options or ReportOptions()
    loaded = load_results(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else default_report_folder(results_dir, options)
    check_output_folder(out_dir)
    record = options_record(options, loaded)
    check_report_destination(out_dir, record)  # before the long part
    analysis = analyse(loaded, options)
    if options.reference is not None:  # a PublishedDataError is a UsageError: one line, exit 2
        name = record["reference"]
        analysis.reproduction = reference.reproduction_table(
            results_dir, name, options.rng(STREAM_REPRODUCTION), n_resamples=options.n_resamples
        )
    # only now that every input has been checked: a refused report leaves no folder behind
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-partial-", dir=out_dir.parent))
    try:
        figure_dir = staging / "figures"
        figure_dir.mkdir()
        scored_ids = set(analysis.scored["run_id"])
        draw_figures(analysis, loaded.curves[loaded.curves["run_id"].isin(scored_ids)], figure_dir)
        if analysis.reproduction is not None:
            draw_reproduction_figure(analysis, figure_dir)
        write_outputs(analysis, document(analysis), staging)
        (staging / OPTIONS_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        _replace_directory(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def default_report_folder(results_dir: Path | str, options: ReportOptions) -> Path:
    """``report/`` for the default options; each option that changes the numbers from its default
    adds itself to the name (``report-auc/``, ``report-seed3/``, ``report-auc-mindiff0.2/``), so
    that reports built with different options stand side by side instead of replacing each other.
    ``--reference`` only adds a section, so it keeps the folder (see check_report_destination)."""
    defaults = ReportOptions()
    parts = ["report"]
    if options.metric != defaults.metric:
        parts.append(options.metric)
    if options.seed != defaults.seed:
        parts.append(f"seed{options.seed}")
    if options.min_difference != defaults.min_difference:
        parts.append(f"mindiff{options.min_difference:g}")
    return Path(results_dir) / "-".join(parts)


def options_record(options: ReportOptions, loaded: LoadedResults) -> dict:
    """Every option the report is built with, the reference by the preset it resolves to."""
    record = dataclasses.asdict(options)
    if options.reference is not None:
        record["reference"] = reference.resolve_reference(options.reference, (loaded.manifest or {}).get("suite"))
    return record


def _option_text(key: str, value: object) -> str:
    flag = {"metric": "--metric", "seed": "--seed", "min_difference": "--min-diff", "reference": "--reference"}
    return f"{flag.get(key, key)} {'none' if value is None else value}"


def check_report_destination(out_dir: Path, record: dict) -> None:
    """Refuse to replace a report built with other options, or a folder that holds no report.

    A report folder replaced by one built with other options would lose its numbers silently;
    one built with the same options is rebuilt in place. A report written before its options were
    recorded (report.md but no OPTIONS_FILE) is replaced, as it always was."""
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    recorded_path = out_dir / OPTIONS_FILE
    if not recorded_path.exists():
        if (out_dir / "report.md").exists():
            return
        raise UsageError(
            f"{out_dir}: is not empty and holds no trbench report, so it is not replaced; "
            "choose a new or empty folder with --out"
        )
    try:
        recorded = json.loads(recorded_path.read_text())
    except (OSError, ValueError):
        raise UsageError(
            f"{recorded_path}: unreadable, so the options of that report are unknown; remove the "
            "report or choose another folder with --out"
        ) from None
    differences = [key for key in record if recorded.get(key) != record[key]]
    if differences:
        was = ", ".join(_option_text(key, recorded.get(key)) for key in differences)
        now = ", ".join(_option_text(key, record[key]) for key in differences)
        raise UsageError(
            f"{out_dir}: holds a report built with {was}, not {now}; rebuild it with the same "
            "options, or write this one elsewhere with --out"
        )


def _replace_directory(new: Path, destination: Path) -> None:
    """Move ``new`` to ``destination``, replacing an older report only once the new one is whole."""
    if not destination.exists():
        new.rename(destination)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{destination.name}-old-", dir=destination.parent))
    retired.rmdir()
    destination.rename(retired)
    try:
        new.rename(destination)
    except BaseException:
        retired.rename(destination)
        raise
    shutil.rmtree(retired, ignore_errors=True)

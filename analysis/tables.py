"""The report's tables, computed from the scored runs with the pure statistics of stats.py.

One function per table (per-task summary, pairwise tests, seeds for power, aggregates over
normalised scores); :func:`analyse` computes them all into an :class:`Analysis`, which the
figures, the written sections and the files of the report then read. A table the data cannot
support (one algorithm, no normalisation constants, ...) is an :class:`Unavailable` that says why.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trbench.analysis import reference, stats
from trbench.analysis.load import LoadedResults, scored_runs
from trbench.analysis.normalization import NormalizationConstants, load_normalization
from trbench.analysis.power import hedges_g, seeds_for_power
from trbench.analysis.radius_sensitivity import RadiusSensitivity, radius_sensitivity
from trbench.analysis.report_options import STREAM_AGGREGATE, STREAM_PAIRWISE, STREAM_SUMMARY, ReportOptions
from trbench.analysis.trust_region import TrustRegionKl, trust_region_kl

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
    # the trust-region parts, None where the runs carry no data for them (trust_region.py)
    trust_region_kl: TrustRegionKl | None = None
    radius_sensitivity: RadiusSensitivity | None = None


def cell_scores(scored: pd.DataFrame, env: str, algo: str, column: str = "score") -> np.ndarray:
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
        values = cell_scores(scored, env, algo)
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
        a, b = cell_scores(scored, env, algo_a), cell_scores(scored, env, algo_b)
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
                "hedges_g": hedges_g(a, b),
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
        a, b = cell_scores(scored, env, algo_a), cell_scores(scored, env, algo_b)
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
            seeds = seeds_for_power(difference, sd_a, sd_b, options.power, options.alpha)
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
    return [normalization[env].normalize(cell_scores(scored, env, algo)) for env in envs]


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


def analyse(loaded: LoadedResults, options: ReportOptions) -> Analysis:
    scored, excluded = scored_runs(loaded, options.metric)
    algos = sorted(scored["algo"].unique())
    envs = sorted(scored["env_id"].unique())
    normalization = load_normalization()
    if scored.empty:
        reason = f"no complete run has a '{options.metric}' score"
        aggregate_envs: list[str] = []
        aggregate_notes: list[str] = []
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
        trust_region_kl=trust_region_kl(scored, loaded.progress, loaded.configs),
        radius_sensitivity=radius_sensitivity(scored, loaded.configs, normalization, options),
    )

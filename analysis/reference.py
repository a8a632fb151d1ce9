"""The comparison of a results folder against the published numbers of a preset (published.py).

For every published row, our value is computed *with the source's metric* (final deterministic
evaluation, training-episode return over the last 100 episodes, the average over all of
training, the mean of the ten best training episodes, or the maximum of the seed-averaged
evaluation curve) at the source's step budget, with
a confidence interval over seeds at the report's level (95% by default), and a verdict is drawn:
``consistent`` when the published value lies in our CI or our mean lies within the published
spread, otherwise ``above`` or ``below``.

The runs compared are those the report's loader (load.py) found complete, read once by it: a
run left out here is left out of the report for the same reason, and ``Reproduction.excluded``
lists them. This module reads results folders only; it never imports training code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trbench.analysis import stats
from trbench.analysis.load import LoadedResults, last_episodes_mean, load_results
from trbench.analysis.published import (
    METRICS,
    PublishedDataError,
    ReferenceSet,
    load_published,
    load_reference_sets,
    published_interval,
    selected_rows,
)

COMPUTED_METRICS = tuple(m for m in METRICS if m != "max_return")
VERDICTS = ("consistent", "above", "below")
NOT_COMPARED = "no data"  # not "n/a", which CSV readers turn into a missing value
# Below this many seeds a cell's value is shown but no verdict is drawn. The mean's bootstrap
# interval cannot reach beyond the range of the data, so with n seeds it covers the true mean at
# most 1 - 2 * 0.5^n of the time for a symmetric population: 50% at n = 2, 88% at n = 4, 94% at
# n = 5 (the expanded interval measured 92% there in simulation, see analysis/stats.py). An
# `above` or `below` drawn from 2-4 seeds would claim more than the interval holds.
MIN_SEEDS_FOR_VERDICT = 5
TOO_FEW_SEEDS = "too few seeds"

REPRODUCTION_COLUMNS = [
    "arm",
    "env_id",
    "source",
    "algo",
    "setting",
    "env_version",
    "steps",
    "metric",
    "published",
    "published_low",
    "published_high",
    "spread_kind",
    "n_seeds",
    "ours",
    "ours_ci_low",
    "ours_ci_high",
    "verdict",
    "approximate",
    "citation",
]


@dataclass
class RunRecord:
    """What the comparison needs from one complete run."""

    run_id: str
    arm: str
    env_id: str
    final_step: float
    iteration_steps: float
    final_eval_return: float
    progress: pd.DataFrame  # step, train_return, train_episodes, train_return_top10, eval_return


def env_base(env_id: str) -> str:
    """'Hopper-v4' -> 'Hopper'."""
    head, sep, tail = env_id.rpartition("-v")
    return head if sep and tail.isdigit() else env_id


def env_version(env_id: str) -> str:
    head, sep, tail = env_id.rpartition("-v")
    return f"v{tail}" if sep and tail.isdigit() else ""


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def read_runs(results: LoadedResults) -> list[RunRecord]:
    """Every complete run the loader found, in run-folder order (the order each cell's bootstrap
    resamples in); the loader's excluded runs are not among them."""
    rows = {row["run_id"]: row for row in results.runs.to_dict("records")}
    runs = []
    for run_id, progress in results.progress.items():
        row = rows[run_id]
        table = (
            pd.DataFrame(
                {
                    "step": _numeric(progress, "step"),
                    "train_return": _numeric(progress, "train_return"),
                    "train_episodes": np.nan_to_num(_numeric(progress, "train_episodes")),
                    "train_return_top10": _numeric(progress, "train_return_top10"),
                    "eval_return": _numeric(progress, "eval_return"),
                }
            )
            .dropna(subset=["step"])
            .sort_values("step", kind="stable")
            .reset_index(drop=True)
        )
        steps = table["step"].to_numpy()
        if len(steps):
            final_step = float(steps[-1])
            iteration = float(np.min(np.diff(steps))) if len(steps) > 1 else float(steps[0])
        else:
            # a complete run without progress rows, which the report keeps for its final score:
            # it ends at the steps result.json records, and without rows its iteration is unknown
            final_step, iteration = _number(row["steps"]), 0.0
        source = results.sources.get(run_id)
        if isinstance(source, dict) and isinstance(source.get("iteration_steps"), int):
            # an imported run has a row wherever its log recorded something; its rollout or epoch
            # is what "reaching a step" is measured in, as an iteration is for a trbench run
            iteration = float(source["iteration_steps"])
        runs.append(
            RunRecord(
                run_id=str(run_id),
                arm=str(row["algo"]),
                env_id=str(row["env_id"]),
                final_step=final_step,
                iteration_steps=iteration,
                final_eval_return=_number(row["final"]),
                progress=table,
            )
        )
    return runs


def last_step(runs: Sequence[RunRecord]) -> float:
    """The furthest step any of ``runs`` reached (NaN when none records one)."""
    return max((run.final_step for run in runs if math.isfinite(run.final_step)), default=math.nan)


def _within_budget(run: RunRecord, steps: float) -> bool:
    return run.final_step >= steps - run.iteration_steps


def run_value(run: RunRecord, metric: str, steps: float) -> float:
    """One run's value of a per-run metric at ``steps`` (NaN when the run cannot provide it)."""
    if not _within_budget(run, steps):
        return math.nan
    if metric == "final_eval_return" and abs(run.final_step - steps) <= run.iteration_steps:
        return run.final_eval_return  # from result.json, so also for a run without progress rows
    limit = steps + run.iteration_steps  # the iteration that crosses `steps` still counts
    table = run.progress[run.progress["step"] < limit]
    if table.empty:
        return math.nan
    if metric in ("train_return_last100", "train_return_curve"):
        return float(
            last_episodes_mean(
                table["step"].to_numpy(),
                table["train_return"].to_numpy(),
                table["train_episodes"].to_numpy(),
                np.array([steps + run.iteration_steps / 2]),
            )[0]
        )
    if metric == "avg_train_return_all":
        counts = np.where(np.isfinite(table["train_return"]), table["train_episodes"], 0.0)
        total = counts.sum()
        return float(np.nansum(table["train_return"].to_numpy() * counts) / total) if total > 0 else math.nan
    if metric == "top10_train_return":
        # the column is the running value over the run so far (empty in runs that predate it)
        return float(table["train_return_top10"].iloc[-1])
    if metric in ("final_eval_return", "eval_return_at_step"):
        evaluated = table.dropna(subset=["eval_return"])
        if evaluated.empty:
            return math.nan
        last = evaluated.iloc[-1]
        # only an evaluation close to the published step stands in for it
        tolerance = max(run.iteration_steps, 0.02 * steps)
        return float(last["eval_return"]) if abs(last["step"] - steps) <= tolerance else math.nan
    raise ValueError(f"not a per-run metric: {metric}")


def _mean_eval_curve(runs: Sequence[RunRecord], steps: float) -> tuple[np.ndarray, np.ndarray]:
    """(steps, matrix runs x steps) of evaluation returns at the steps every run evaluated."""
    curves = []
    for run in runs:
        table = run.progress.dropna(subset=["eval_return"])
        table = table[table["step"] < steps + run.iteration_steps]
        curves.append(pd.Series(table["eval_return"].to_numpy(), index=table["step"].to_numpy()))
    common = sorted(set.intersection(*(set(c.index) for c in curves))) if curves else []
    if not common:
        return np.array([]), np.empty((len(runs), 0))
    return np.asarray(common, dtype=float), np.vstack([c.loc[common].to_numpy(dtype=float) for c in curves])


def cell_estimate(
    runs: Sequence[RunRecord],
    metric: str,
    steps: float,
    rng: np.random.Generator,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    confidence_level: float = stats.DEFAULT_CONFIDENCE,
) -> tuple[float, float, float, int]:
    """(ours, ci_low, ci_high, n_seeds) for one arm x env cell and one published metric.

    Per-run metrics: the mean over seeds with the expanded-percentile bootstrap CI that the rest
    of the report uses. The max of the seed-averaged curve: that maximum, with a percentile CI
    from resampling the seeds and recomputing it. Both at ``confidence_level``.
    """
    runs = [run for run in runs if _within_budget(run, steps)]
    if not runs:
        return math.nan, math.nan, math.nan, 0
    if metric == "max_mean_eval_curve":
        _, matrix = _mean_eval_curve(runs, steps)
        if matrix.shape[1] == 0:
            return math.nan, math.nan, math.nan, 0
        ours = float(matrix.mean(axis=0).max())
        if len(runs) < 2:
            return ours, math.nan, math.nan, len(runs)
        picks = rng.integers(0, len(runs), size=(n_resamples, len(runs)))
        maxima = matrix[picks].mean(axis=1).max(axis=1)
        # in percent, as np.percentile takes it: 95% gives exactly [2.5, 97.5], where the tail
        # (1 - level) / 2 would be 0.025000000000000022 and move the bounds in their last digits
        low_percent = (100.0 - 100.0 * confidence_level) / 2.0
        low, high = np.percentile(maxima, [low_percent, 100.0 - low_percent])
        return ours, float(low), float(high), len(runs)
    values = np.array([run_value(run, metric, steps) for run in runs])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan, math.nan, 0
    if values.size > 1:
        low, high = stats.bootstrap_mean_ci(values, rng, n_resamples, confidence_level)
    else:
        low, high = math.nan, math.nan
    return float(values.mean()), float(low), float(high), int(values.size)


def verdict(
    published: float, interval: tuple[float, float] | None, ours: float, low: float, high: float, n_seeds: int
) -> str:
    """consistent when the published value lies in our CI or ours lies in the published spread;
    no verdict from fewer than MIN_SEEDS_FOR_VERDICT seeds, whatever the published spread."""
    if math.isnan(ours):
        return NOT_COMPARED
    if n_seeds < MIN_SEEDS_FOR_VERDICT or not (math.isfinite(low) and math.isfinite(high)):
        return TOO_FEW_SEEDS
    if math.isfinite(low) and math.isfinite(high) and low <= published <= high:
        return "consistent"
    if interval is not None and interval[0] <= ours <= interval[1]:
        return "consistent"
    return "above" if ours > published else "below"


@dataclass
class Reproduction:
    reference: ReferenceSet
    table: pd.DataFrame  # REPRODUCTION_COLUMNS
    runs: list[RunRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    excluded: pd.DataFrame | None = None  # the loader's excluded runs (load.EXCLUDED_COLUMNS)


def reproduction_table(
    results: LoadedResults | Path | str,
    reference: str,
    rng: np.random.Generator,
    published: pd.DataFrame | None = None,
    reference_sets: Mapping[str, ReferenceSet] | None = None,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    confidence_level: float = stats.DEFAULT_CONFIDENCE,
) -> Reproduction:
    """Compare the complete runs of a results folder (its path, or what the report's loader read
    from it) with the published rows of ``reference``, with CIs at ``confidence_level``."""
    published = published if published is not None else load_published()
    reference_sets = reference_sets if reference_sets is not None else load_reference_sets(published=published)
    if reference not in reference_sets:
        raise PublishedDataError(
            f"--reference: no published reference set for preset {reference!r}; "
            f"known: {', '.join(sorted(reference_sets))}"
        )
    reference_set = reference_sets[reference]
    loaded = results if isinstance(results, LoadedResults) else load_results(results)
    runs = read_runs(loaded)
    notes = []
    rows = []
    # one estimate per (arm, env, metric, budget): sources sharing a metric then show the same
    # interval for the same runs, instead of two bootstrap draws that differ in the last digits
    estimates: dict[tuple, tuple[float, float, float, int]] = {}
    # each estimate draws from its own stream, derived from its key: a cell's interval then does
    # not move when runs of other cells are added, and a verdict near its boundary cannot flip
    # because an unrelated task finished
    base_seed = int(rng.integers(2**63 - 1))
    for comparison in reference_set.comparisons:
        arm_runs = [run for run in runs if run.arm == comparison.arm]
        if not arm_runs:
            notes.append(f"arm {comparison.arm!r}: no complete run yet")
            continue
        for env_id in sorted({run.env_id for run in arm_runs}):
            cell = [run for run in arm_runs if run.env_id == env_id]
            candidates = selected_rows(published, comparison)
            candidates = candidates[candidates["env"] == env_base(env_id)]
            for row in candidates.to_dict("records"):
                steps = row["steps"] if math.isfinite(row["steps"]) else last_step(cell)
                interval = published_interval(row)
                if row["metric"] in COMPUTED_METRICS:
                    key = (comparison.arm, env_id, row["metric"], steps)
                    if key not in estimates:
                        estimates[key] = cell_estimate(
                            cell, row["metric"], steps, stats.keyed_rng(base_seed, *key), n_resamples, confidence_level
                        )
                    ours, low, high, n = estimates[key]
                else:
                    ours, low, high, n = math.nan, math.nan, math.nan, 0
                rows.append(
                    {
                        "arm": comparison.arm,
                        "env_id": env_id,
                        "source": row["source"],
                        "algo": row["algo"],
                        "setting": row["setting"],
                        "env_version": row["env_version"],
                        "steps": steps,
                        "metric": row["metric"],
                        "published": row["value"],
                        "published_low": interval[0] if interval else math.nan,
                        "published_high": interval[1] if interval else math.nan,
                        "spread_kind": row["spread_kind"],
                        "n_seeds": n,
                        "ours": ours,
                        "ours_ci_low": low,
                        "ours_ci_high": high,
                        "verdict": verdict(row["value"], interval, ours, low, high, n),
                        "approximate": bool(row["approximate"] or row["digitized"]),
                        "citation": row["citation"],
                    }
                )
    table = pd.DataFrame(rows, columns=REPRODUCTION_COLUMNS)
    if not table.empty:
        table = table.sort_values(["env_id", "arm", "steps", "source", "setting"], kind="stable").reset_index(drop=True)
    if len(loaded.excluded):
        notes.append(
            f"{len(loaded.excluded)} run(s) failed or could not be read and are left out "
            "(listed with the reason in the report's excluded runs)"
        )
    return Reproduction(reference_set, table, runs, notes, loaded.excluded)


def training_curve(run: RunRecord, grid: np.ndarray) -> np.ndarray:
    """A run's last-100-training-episode mean at each grid step (NaN past the run's end)."""
    values = last_episodes_mean(
        run.progress["step"].to_numpy(),
        run.progress["train_return"].to_numpy(),
        run.progress["train_episodes"].to_numpy(),
        grid,
    )
    values[grid > run.final_step] = np.nan
    return values

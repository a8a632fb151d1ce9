"""Bootstrap bands of the report's curves: learning curves, sample efficiency, performance
profiles and the reproduction figure's curves, each a :class:`plots.Band` (x, centre, low, high).

A band is computed here and drawn by plots.py; its random stream comes from ReportOptions, so a
band does not move when other cells of the results change.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from trbench.analysis import plots, reference, stats
from trbench.analysis.load import interpolate_runs, step_grid
from trbench.analysis.normalization import NormalizationConstants
from trbench.analysis.report_options import (
    STREAM_CURVES,
    STREAM_EFFICIENCY,
    STREAM_PROFILES,
    STREAM_REPRODUCTION_CURVES,
    ReportOptions,
)
from trbench.analysis.tables import Unavailable, per_task_normalized


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
        resampled = stats.stratified_resample(per_task, options.rng(STREAM_EFFICIENCY, algo), options.n_resamples)
        replicates = stats.iqm_batch(np.concatenate(resampled, axis=1).transpose(0, 2, 1))
        bands[algo] = plots.Band(grid, point, *stats.percentile_bounds(replicates, options.confidence_level))
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
        grid = np.linspace(0.0, reference.last_step(env_runs), options.curve_points + 1)[1:]
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

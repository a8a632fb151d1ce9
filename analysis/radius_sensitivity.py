"""Sensitivity to the radius: the score of a method against its trust-region radius relative to
its default, for the runs of a grid whose axis is that radius (the report's second trust-region
part; trust_region.py reads the runs' trust-region blocks and holds the first).

The part appears only where, for one algorithm and env, runs whose configurations differ only in
the trust-region setting take at least :data:`MIN_RADIUS_VALUES` distinct values of it; otherwise
:func:`radius_sensitivity` returns None and the report leaves the part out, silently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trbench.analysis import stats
from trbench.analysis.normalization import NormalizationConstants
from trbench.analysis.report_options import STREAM_RADIUS_SENSITIVITY, ReportOptions
from trbench.analysis.trust_region import ALL_ENVS, TRUST_REGION_KEY, parse_trust_region

MIN_RADIUS_VALUES = 3
# settings that change how a run executes, not what it computes (the same ones the run id leaves
# out); runs that differ only in these still belong to one radius sweep
EXECUTION_ONLY_SETTINGS = frozenset(
    {"device", "save_model", "linesearch_mode", "checkpoint_interval_steps", "keep_checkpoint", "tensorboard"}
)
SWEEP_RUN_COLUMNS = ["run_id", "algorithm", "setting", "default", "radius", "relative", "env", "seed", "score"]
SENSITIVITY_COLUMNS = [
    "algorithm",
    "setting",
    "env",
    "score",
    "default",
    "value",
    "relative",
    "runs",
    "mean",
    "ci_low",
    "ci_high",
    "best",
]
NORMALISED, RAW = "normalised", "raw"  # the score of a row: normalised where the env has constants


@dataclass
class RadiusSensitivity:
    """Part 2: ``runs`` (SWEEP_RUN_COLUMNS, the runs of every sweep, ``algorithm`` naming its
    line) and ``table`` (SENSITIVITY_COLUMNS, one row per line, env and radius value)."""

    runs: pd.DataFrame
    table: pd.DataFrame


def _family(config: dict, setting: str) -> dict:
    """The run's settings that must agree for runs to be one sweep over ``setting``."""
    settings = config.get("config")
    if not isinstance(settings, dict):
        return {}
    return {key: value for key, value in settings.items() if key != setting and key not in EXECUTION_ONLY_SETTINGS}


def _line_labels(lines: Sequence[tuple[str, str, float, str]]) -> dict[tuple[str, str, float, str], str]:
    """The algorithm's name, or for an algorithm with several sweeps, the name and what differs."""
    labels = {}
    for line in lines:
        algorithm = line[0]
        siblings = [other for other in lines if other[0] == algorithm]
        if len(siblings) == 1:
            labels[line] = algorithm
            continue
        parts = []
        if len({other[1] for other in siblings}) > 1:
            parts.append(line[1])
        if len({other[2] for other in siblings}) > 1:
            parts.append(f"default={line[2]:g}")
        families = [json.loads(other[3]) for other in siblings]
        mine = json.loads(line[3])
        differing = sorted({key for family in families for key in family if family.get(key) != mine.get(key)})
        parts += [f"{key}={json.dumps(mine.get(key))}" for key in differing]
        labels[line] = f"{algorithm} ({', '.join(parts)})"
    return labels


def sweep_runs(scored: pd.DataFrame, configs: Mapping[str, dict]) -> pd.DataFrame:
    """The scored runs that belong to a radius sweep (SWEEP_RUN_COLUMNS).

    Runs of one algorithm on one env form a sweep when their trust-region blocks name the same
    setting and default and their settings agree except for that setting (and the execution-only
    ones), and they take at least MIN_RADIUS_VALUES distinct radius values. Runs whose block has
    no positive radius or default cannot be placed on the relative axis and are left out."""
    rows, keys = [], []
    for run in scored.itertuples(index=False):
        config = configs.get(run.run_id, {})
        region = parse_trust_region(config.get(TRUST_REGION_KEY))
        if region is None or not region.setting or math.isnan(region.radius) or math.isnan(region.default):
            continue
        algorithm = next(name for name in (config.get("algorithm"), run.algorithm, run.algo) if isinstance(name, str))
        family = json.dumps(_family(config, region.setting), sort_keys=True, default=str)
        keys.append((algorithm, region.setting, region.default, family))
        rows.append(
            {
                "run_id": run.run_id,
                "algorithm": algorithm,
                "setting": region.setting,
                "default": region.default,
                "radius": region.radius,
                "relative": region.radius / region.default,
                "env": run.env_id,
                "seed": run.seed,
                "score": float(run.score),
            }
        )
    values: dict[tuple, set[float]] = {}
    for key, row in zip(keys, rows):
        values.setdefault((key, row["env"]), set()).add(row["radius"])
    swept = [(key, row) for key, row in zip(keys, rows) if len(values[(key, row["env"])]) >= MIN_RADIUS_VALUES]
    labels = _line_labels(sorted({key for key, _ in swept}))
    chosen = [{**row, "algorithm": labels[key]} for key, row in swept]
    table = pd.DataFrame(chosen, columns=SWEEP_RUN_COLUMNS)
    return table.sort_values(["algorithm", "env", "radius", "seed"], kind="stable").reset_index(drop=True)


def _interval_unless_single(interval: stats.IntervalEstimate, samples: Sequence[np.ndarray]) -> tuple[float, float]:
    """A bootstrap over one run has no width to speak of: no interval then (as tables.py does)."""
    if min(sample.size for sample in samples) < 2:
        return math.nan, math.nan
    return interval.low, interval.high


def _sensitivity_row(
    line: pd.DataFrame, env: str, kind: str, value: float, scores: Sequence[np.ndarray], ci: tuple[float, float]
) -> dict:
    """One row of the table; with several envs' scores, the mean is over the per-env means."""
    return {
        "algorithm": line["algorithm"].iloc[0],
        "setting": line["setting"].iloc[0],
        "env": env,
        "score": kind,
        "default": float(line["default"].iloc[0]),
        "value": value,
        "relative": value / float(line["default"].iloc[0]),
        "runs": int(sum(sample.size for sample in scores)),
        "mean": float(stats.aggregate_mean(list(scores))),
        "ci_low": ci[0],
        "ci_high": ci[1],
        "best": False,
    }


def sensitivity_table(
    runs: pd.DataFrame, normalization: Mapping[str, NormalizationConstants], options: ReportOptions
) -> pd.DataFrame:
    """Per line, env and radius value: the mean score over seeds and its bootstrap CI.

    The score is normalised where the env has constants, else raw. Each interval is
    ``stats.bootstrap_mean_ci`` on the stream ``options.rng(STREAM_RADIUS_SENSITIVITY, line,
    setting, env, value)``; for a line swept on two or more envs with constants, env ``all`` is
    the mean over those envs of the per-env mean, at the values every one of them has, with a
    stratified-bootstrap interval. ``best`` marks the value with the highest mean per line and env."""
    rows = []
    for label in sorted(runs["algorithm"].unique()):
        line = runs[runs["algorithm"] == label]
        setting = line["setting"].iloc[0]
        normalised: dict[str, dict[float, np.ndarray]] = {}
        for env in sorted(line["env"].unique()):
            cell = line[line["env"] == env]
            constants = normalization.get(env)
            kind = NORMALISED if constants else RAW
            for value in sorted(cell["radius"].unique()):
                scores = cell.loc[cell["radius"] == value, "score"].to_numpy(dtype=float)
                if constants:
                    scores = constants.normalize(scores)
                    normalised.setdefault(env, {})[float(value)] = scores
                rng = options.rng(STREAM_RADIUS_SENSITIVITY, label, setting, env, float(value))
                ci = stats.bootstrap_mean_ci(scores, rng, options.n_resamples, options.confidence_level)
                rows.append(_sensitivity_row(line, env, kind, float(value), [scores], ci))
        if len(normalised) >= 2:
            shared = sorted(set.intersection(*(set(per_value) for per_value in normalised.values())))
            for value in shared:
                per_task = [normalised[env][value] for env in sorted(normalised)]
                rng = options.rng(STREAM_RADIUS_SENSITIVITY, label, setting, ALL_ENVS, value)
                interval = stats.stratified_bootstrap_ci(
                    per_task, stats.aggregate_mean, rng, options.n_resamples, options.confidence_level
                )
                ci = _interval_unless_single(interval, per_task)
                rows.append(_sensitivity_row(line, ALL_ENVS, NORMALISED, value, per_task, ci))
    table = pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)
    for _, cell in table.groupby(["algorithm", "env"], sort=False):
        table.loc[cell["mean"].idxmax(), "best"] = True
    return table


def radius_sensitivity(
    scored: pd.DataFrame,
    configs: Mapping[str, dict],
    normalization: Mapping[str, NormalizationConstants],
    options: ReportOptions,
) -> RadiusSensitivity | None:
    """Part 2, or None when no algorithm varies its radius over MIN_RADIUS_VALUES values."""
    runs = sweep_runs(scored, configs)
    if runs.empty:
        return None
    return RadiusSensitivity(runs, sensitivity_table(runs, normalization, options))

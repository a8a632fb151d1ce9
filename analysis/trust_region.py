"""The trust-region data of run folders, and the report part "Is the trust region kept?": the
KL each method's updates actually take, against the radius it nominally keeps. Pure functions
over the loaded tables; the other trust-region part, the score against the radius, is
radius_sensitivity.py's.

The data contract: progress.csv has a column ``kl``, the mean over the
batch's states of KL(pi_old || pi_new) measured after each update, and may have ``kl_max``, the
largest per-state value of the same; config.json may have a ``trust_region`` block
``{setting, radius, default, measure, scope, kl_radius}`` naming the method's radius setting,
this run's value of it, the algorithm's default, what the radius bounds (``kl_old_new``,
``kl_new_old`` or ``other``), whether it bounds the mean or every state, and the KL value the
method nominally keeps (null when the radius is not a KL). A null block means the method has no
radius. Runs written before either existed simply lack them.

When each part appears:

- **Is the trust region kept?** (:func:`trust_region_kl`) needs at least one analysed run whose
  config.json has a ``trust_region`` key (a null block counts) or whose progress table has a
  ``kl_max`` column. Older runs log ``kl`` but carry neither, so reports of them are unchanged.
  Within the part, only runs that log ``kl`` or ``kl_max`` contribute updates; a run without
  ``kl_max`` leaves its group's max-KL cells empty, one without a KL radius its fractions.
  The fraction of updates above :data:`EXCEEDANCE_FACTOR` x radius is computed only where the
  radius bounds KL(old || new), the direction logged; reverse-KL and non-KL radii are shown
  for comparison without a fraction.
- **Sensitivity to the radius** (``radius_sensitivity.radius_sensitivity``) needs, for one
  algorithm and env, runs whose configurations differ only in the trust-region setting and take
  at least ``MIN_RADIUS_VALUES`` (3) distinct values of it. Otherwise the part is absent, silently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

TRUST_REGION_KEY = "trust_region"
KL_COLUMN, KL_MAX_COLUMN = "kl", "kl_max"
# the direction progress.csv's kl columns measure; only a radius on it has an exceedance fraction
LOGGED_MEASURE = "kl_old_new"
MEASURES = ("kl_old_new", "kl_new_old", "other")
EXCEEDANCE_FACTOR = 1.5
ALL_ENVS = "all"

UPDATE_COLUMNS = [
    "run_id",
    "group",
    "arm",
    "algorithm",
    "env",
    "kl",
    "kl_max",
    "setting",
    "radius",
    "kl_radius",
    "measure",
    "scope",
    "bound",
]
KL_COLUMNS = [
    "arm",
    "env",
    "runs",
    "updates",
    "mean_kl_median",
    "mean_kl_p95",
    "max_kl_median",
    "max_kl_p95",
    "setting",
    "radius",
    "kl_radius",
    "measure",
    "scope",
    "frac_mean_kl_above",
    "frac_max_kl_above",
]


@dataclass(frozen=True)
class TrustRegion:
    """A run's trust-region block; NaN (or '') where the block leaves a field out or garbles it."""

    setting: str
    radius: float
    default: float
    measure: str
    scope: str
    kl_radius: float


def _positive_or_nan(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    number = float(value)
    return number if math.isfinite(number) and number > 0 else math.nan


def parse_trust_region(block: object) -> TrustRegion | None:
    """The ``trust_region`` block of a config.json; None when it is null, absent or not an object.

    A field of the wrong type reads as missing, so a garbled block costs its own cells only.
    An unknown measure reads as ``other`` (a radius that is not the logged KL)."""
    if not isinstance(block, dict):
        return None
    measure = block.get("measure")
    return TrustRegion(
        setting=block["setting"] if isinstance(block.get("setting"), str) else "",
        radius=_positive_or_nan(block.get("radius")),
        default=_positive_or_nan(block.get("default")),
        measure=measure if measure in MEASURES else "other",
        scope=block["scope"] if isinstance(block.get("scope"), str) else "",
        kl_radius=_positive_or_nan(block.get("kl_radius")),
    )


# --- Part 1: is the trust region kept? ------------------------------------------------------------


@dataclass(frozen=True)
class BoxStats:
    """Percentiles 5, 25, 50, 75 and 95 of one group's KL values (the figure's box and whiskers)."""

    p05: float
    p25: float
    p50: float
    p75: float
    p95: float


@dataclass(frozen=True)
class KlBoxes:
    """One group's boxes in one panel: mean KL, max KL (None when not logged) and its radius;
    its algorithm, setting and radius value ('' / NaN where unknown or mixed) place it in the
    figure's per-algorithm panels of a radius sweep."""

    mean_kl: BoxStats | None
    max_kl: BoxStats | None
    kl_radius: float
    measure: str
    algorithm: str = ""
    setting: str = ""
    radius: float = math.nan


@dataclass
class TrustRegionKl:
    """Part 1: ``updates`` (UPDATE_COLUMNS, one row per logged update) and ``table`` (KL_COLUMNS)."""

    updates: pd.DataFrame
    table: pd.DataFrame


def kl_part_applies(run_ids: Sequence[str], progress: Mapping[str, pd.DataFrame], configs: Mapping[str, dict]) -> bool:
    """Whether any of the runs carries the new data: a ``trust_region`` key or a ``kl_max`` column."""
    for run_id in run_ids:
        if TRUST_REGION_KEY in configs.get(run_id, {}):
            return True
        table = progress.get(run_id)
        if table is not None and KL_MAX_COLUMN in table.columns:
            return True
    return False


def _column(progress: pd.DataFrame, name: str) -> np.ndarray:
    if name not in progress.columns:
        return np.full(len(progress), np.nan)
    return pd.to_numeric(progress[name], errors="coerce").to_numpy(dtype=float)


def update_table(runs: pd.DataFrame, progress: Mapping[str, pd.DataFrame], configs: Mapping[str, dict]) -> pd.DataFrame:
    """One row per progress row of ``runs`` with a finite kl or kl_max, with its run's radius.

    ``bound`` is the KL radius where it bounds the logged direction (else NaN); ``group`` is the
    arm, or the arm with its radius where one arm holds runs of several radii."""
    pieces = []
    for run in runs.itertuples(index=False):
        table = progress.get(run.run_id)
        if table is None or not {KL_COLUMN, KL_MAX_COLUMN} & set(table.columns):
            continue
        kl, kl_max = _column(table, KL_COLUMN), _column(table, KL_MAX_COLUMN)
        logged = np.isfinite(kl) | np.isfinite(kl_max)
        region = parse_trust_region(configs.get(run.run_id, {}).get(TRUST_REGION_KEY))
        bound = region.kl_radius if region is not None and region.measure == LOGGED_MEASURE else math.nan
        pieces.append(
            pd.DataFrame(
                {
                    "run_id": run.run_id,
                    "group": run.algo,
                    "arm": run.algo,
                    "algorithm": run.algorithm if isinstance(run.algorithm, str) and run.algorithm else run.algo,
                    "env": run.env_id,
                    "kl": kl[logged],
                    "kl_max": kl_max[logged],
                    "setting": region.setting if region else "",
                    "radius": region.radius if region else math.nan,
                    "kl_radius": region.kl_radius if region else math.nan,
                    "measure": region.measure if region else "",
                    "scope": region.scope if region else "",
                    "bound": bound,
                }
            )
        )
    if not pieces:
        return pd.DataFrame({column: [] for column in UPDATE_COLUMNS})
    updates = pd.concat(pieces, ignore_index=True)[UPDATE_COLUMNS]
    updates["group"] = _group_labels(updates)
    return updates


def _radius_key(row) -> tuple:
    return (row.setting, _key_number(row.radius), _key_number(row.kl_radius), row.measure, row.scope)


def _key_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


# what a suite's grid axes append to an arm's label: trpo[max_kl=0.02] (suites/README.md, "Grid axes")
GRID_POINT_SUFFIX = re.compile(r"\[[^\[\]]*\]$")


def swept_arm(group: str) -> str:
    """The arm a group belongs to across a grid: its label without the ' (setting=value)' of an
    arm split by radius and the '[setting=value]' of a grid point (trpl-kl[mean_bound=0.06] ->
    trpl-kl). The points of one radius sweep share it."""
    return GRID_POINT_SUFFIX.sub("", group.split(" (", 1)[0])


def _group_labels(updates: pd.DataFrame) -> list[str]:
    """The arm, or 'arm (setting=radius)' for an arm whose runs have different radius blocks."""
    keys = [_radius_key(row) for row in updates.itertuples(index=False)]
    per_arm: dict[str, set[tuple]] = {}
    for arm, key in zip(updates["arm"], keys):
        per_arm.setdefault(arm, set()).add(key)
    labels = []
    for arm, key in zip(updates["arm"], keys):
        if len(per_arm[arm]) == 1:
            labels.append(arm)
        elif key[0] and key[1] is not None:
            labels.append(f"{arm} ({key[0]}={key[1]:g})")
        else:
            labels.append(f"{arm} (no radius)")
    return labels


def exceedance_fraction(values: np.ndarray, bounds: np.ndarray, factor: float = EXCEEDANCE_FACTOR) -> float:
    """Fraction of the values with a finite bound that exceed ``factor`` x their bound (NaN if none)."""
    values, bounds = np.asarray(values, dtype=float), np.asarray(bounds, dtype=float)
    counted = np.isfinite(values) & np.isfinite(bounds)
    if not counted.any():
        return math.nan
    return float(np.mean(values[counted] > factor * bounds[counted]))


def _percentile(values: np.ndarray, q: float) -> float:
    finite = values[np.isfinite(values)]
    return float(np.percentile(finite, q)) if finite.size else math.nan


def _distinct_text(values: pd.Series) -> str:
    return ", ".join(sorted({str(value) for value in values if value != ""}))


def _single_number(values: pd.Series) -> float:
    distinct = {float(value) for value in values if math.isfinite(value)}
    return distinct.pop() if len(distinct) == 1 else math.nan


def _panels(updates: pd.DataFrame, group: str) -> list[str]:
    envs = sorted(updates.loc[updates["group"] == group, "env"].unique())
    return envs + ([ALL_ENVS] if len(envs) > 1 else [])


def _selection(updates: pd.DataFrame, group: str, env: str) -> pd.DataFrame:
    chosen = updates["group"] == group
    if env != ALL_ENVS:
        chosen &= updates["env"] == env
    return updates[chosen]


def kl_summary_table(updates: pd.DataFrame) -> pd.DataFrame:
    """Per group and env, and over all its envs when it has several (env ``all``): the updates
    pooled over seeds, the median and 95th percentile (numpy's linear interpolation) of the mean
    and of the max KL, the radius, and the fraction of updates above EXCEEDANCE_FACTOR x the KL
    radius where that radius bounds KL(old || new)."""
    rows = []
    for group in sorted(updates["group"].unique()):
        for env in _panels(updates, group):
            part = _selection(updates, group, env)
            kl, kl_max = part["kl"].to_numpy(dtype=float), part["kl_max"].to_numpy(dtype=float)
            bound = part["bound"].to_numpy(dtype=float)
            rows.append(
                {
                    "arm": group,
                    "env": env,
                    "runs": int(part["run_id"].nunique()),
                    "updates": int(np.isfinite(kl).sum()),
                    "mean_kl_median": _percentile(kl, 50),
                    "mean_kl_p95": _percentile(kl, 95),
                    "max_kl_median": _percentile(kl_max, 50),
                    "max_kl_p95": _percentile(kl_max, 95),
                    "setting": _distinct_text(part["setting"]),
                    "radius": _single_number(part["radius"]),
                    "kl_radius": _single_number(part["kl_radius"]),
                    "measure": _distinct_text(part["measure"]),
                    "scope": _distinct_text(part["scope"]),
                    "frac_mean_kl_above": exceedance_fraction(kl, bound),
                    "frac_max_kl_above": exceedance_fraction(kl_max, bound),
                }
            )
    return pd.DataFrame(rows, columns=KL_COLUMNS)


def box_stats(values: np.ndarray) -> BoxStats | None:
    """The five percentiles of the finite values, None when there are none."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return None
    return BoxStats(*(float(q) for q in np.percentile(finite, [5, 25, 50, 75, 95])))


def kl_boxes(updates: pd.DataFrame) -> dict[str, dict[str, KlBoxes]]:
    """Per panel (each env, then ``all`` when there are several) and group: the figure's boxes."""
    envs = sorted(updates["env"].unique())
    panels: dict[str, dict[str, KlBoxes]] = {}
    for env in envs + ([ALL_ENVS] if len(envs) > 1 else []):
        for group in sorted(updates["group"].unique()):
            part = _selection(updates, group, env)
            if part.empty:
                continue
            panels.setdefault(env, {})[group] = KlBoxes(
                box_stats(part["kl"].to_numpy(dtype=float)),
                box_stats(part["kl_max"].to_numpy(dtype=float)),
                _single_number(part["kl_radius"]),
                _distinct_text(part["measure"]),
                _distinct_text(part["algorithm"]),
                _distinct_text(part["setting"]),
                _single_number(part["radius"]),
            )
    return panels


def trust_region_kl(
    runs: pd.DataFrame, progress: Mapping[str, pd.DataFrame], configs: Mapping[str, dict]
) -> TrustRegionKl | None:
    """Part 1 over ``runs`` (the analysed runs), or None when no run carries the new data
    (see the module docstring). Its tables are empty when none of the runs logs a KL."""
    if not kl_part_applies(list(runs["run_id"]), progress, configs):
        return None
    updates = update_table(runs, progress, configs)
    return TrustRegionKl(updates, kl_summary_table(updates))

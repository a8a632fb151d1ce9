"""Read a results folder (format: results/README.md) into tidy pandas tables.

Only files are read here; nothing is computed beyond the two per-run metrics:

- ``final``: the run's final deterministic evaluation return (``final_eval_return`` of
  result.json);
- ``auc``: the mean evaluation return over training, in the spirit of Duan et al. 2016's
  average-over-training return. It is the area under the piecewise-linear curve of
  ``eval_return`` against ``step`` (progress.csv rows that have an evaluation) divided by the
  step span it covers, i.e. a mean over training *steps*, so that runs evaluated at different
  step intervals weigh every part of training alike. With evenly spaced evaluations it is close
  to the plain mean of the evaluations; a run with a single evaluation gets that value;
- ``last100``: the mean return of the last 100 training episodes (progress.csv's
  ``train_return`` weighted by ``train_episodes``), the training-curve metric of OpenAI Baselines
  and CleanRL. It is the one metric every imported run has: CleanRL and Spinning Up's on-policy
  algorithms run no deterministic evaluation, so they have no ``final`` or ``auc``.

Runs whose status is not ``complete``, folders without result.json (interrupted) and unreadable
or damaged folders (a result.json or progress.csv that does not parse or was cut short) are
excluded from the analysis and listed with the reason. A damaged manifest.json or suite.toml, which
describe the whole folder, is a UsageError instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from trbench.base.errors import UsageError
from trbench.base.results_folder import MANIFEST_FILE, RUNS_DIR, SUITE_FILE, run_folders
from trbench.base.run_folder import SOURCE_KEY, RunFolderError, read_complete_run, read_config, read_config_or_empty

METRICS = ("final", "auc", "last100")
METRIC_DESCRIPTIONS = {
    "final": "final deterministic evaluation return of each run (final_eval_return)",
    "auc": (
        "mean evaluation return over training (Duan et al. 2016's average-over-training): "
        "area under the eval-return curve against env steps, divided by the step span"
    ),
    "last100": (
        "mean return of the last 100 training episodes of each run (the stochastic policy while it learns, "
        "as OpenAI Baselines and CleanRL report it), from progress.csv's train_return and train_episodes"
    ),
}
# why a complete run can lack each metric (an imported run's source block says it in its own terms)
MISSING_REASONS = {
    "final": ("final_eval_return missing", "final_eval_return"),
    "auc": ("no evaluation rows in progress.csv", "eval_return"),
    "last100": ("no training episodes in progress.csv", "train_return"),
}
LAST_EPISODES = 100

RUN_COLUMNS = [
    "run_id",
    "algo",
    "algorithm",
    "env_id",
    "seed",
    "steps",
    "status",
    "final",
    "auc",
    "last100",
    "source",
    "wall_time_s",
    "steps_per_second",
]
CURVE_COLUMNS = ["run_id", "algo", "env_id", "seed", "step", "eval_return"]
EXCLUDED_COLUMNS = ["run_id", "algo", "env_id", "seed", "status", "reason"]

T = TypeVar("T")


@dataclass
class LoadedResults:
    """Everything the report needs from a results folder.

    ``runs``: one row per complete run (RUN_COLUMNS); ``curves``: one row per evaluation of a
    complete run (CURVE_COLUMNS); ``excluded``: runs left out and why (EXCLUDED_COLUMNS);
    ``versions``: for each versions key, the sorted distinct values seen in config.json files;
    ``sources``: for each imported run (by run id), the source block of its config.json;
    ``progress``: each complete run's progress table as read (by run id, in run-folder order), so
    that the reproduction table compares exactly the runs the report analyses; ``configs``: each
    complete run's config.json as read (by run id), for the parts that read a run's settings
    (the trust-region block of trust_region.py).
    """

    results_dir: Path
    runs: pd.DataFrame
    curves: pd.DataFrame
    excluded: pd.DataFrame
    manifest: dict | None = None
    suite_toml: str | None = None
    versions: dict[str, list[str]] = field(default_factory=dict)
    sources: dict[str, dict] = field(default_factory=dict)
    progress: dict[str, pd.DataFrame] = field(default_factory=dict)
    configs: dict[str, dict] = field(default_factory=dict)


def area_mean(steps: np.ndarray, values: np.ndarray) -> float:
    """Step-weighted mean of a piecewise-linear curve (trapezoid area / step span)."""
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    if steps.size == 0:
        return math.nan
    if steps.size == 1 or steps[-1] == steps[0]:
        return float(np.mean(values))
    return float(np.trapezoid(values, steps) / (steps[-1] - steps[0]))


def eval_curve(progress: pd.DataFrame) -> pd.DataFrame:
    """(step, eval_return) of the progress rows that have an evaluation, sorted by step."""
    missing = {"step", "eval_return"} - set(progress.columns)
    if missing:
        raise RunFolderError(f"progress.csv lacks column(s) {', '.join(sorted(missing))}")
    curve = pd.DataFrame(
        {
            "step": pd.to_numeric(progress["step"], errors="coerce").astype(float),
            "eval_return": pd.to_numeric(progress["eval_return"], errors="coerce").astype(float),
        }
    )
    curve = curve[np.isfinite(curve["step"]) & np.isfinite(curve["eval_return"])]
    return curve.sort_values("step", kind="stable").reset_index(drop=True)


def last_episodes_mean(
    steps: np.ndarray, returns: np.ndarray, counts: np.ndarray, at: np.ndarray, n: int = LAST_EPISODES
) -> np.ndarray:
    """Mean return of the last ``n`` training episodes that ended at or before each step in ``at``.

    Each progress row holds the mean return and the number of the episodes that ended in that
    iteration; the oldest row needed contributes only as many episodes as are still missing.
    Where fewer than ``n`` episodes ended, all of them count; where none did, NaN.
    """
    counts = np.where(np.isfinite(returns), counts, 0.0)
    sums = np.where(counts > 0, returns * counts, 0.0)
    episodes_before = np.concatenate([[0.0], np.cumsum(counts)])  # P[i] = episodes in rows < i
    return_before = np.concatenate([[0.0], np.cumsum(sums)])
    out = np.full(len(at), np.nan)
    for k, step in enumerate(np.asarray(at, dtype=float)):
        end = int(np.searchsorted(steps, step, side="right"))  # rows [0, end) ended by `step`
        total = episodes_before[end]
        if total <= 0:
            continue
        if total <= n:
            out[k] = return_before[end] / total
            continue
        # oldest row j still needed: the last j with episodes in rows [j, end) >= n
        j = int(np.searchsorted(episodes_before, total - n, side="right")) - 1
        full_sum = return_before[end] - return_before[j + 1]
        full_count = total - episodes_before[j + 1]
        partial = n - full_count
        out[k] = (full_sum + partial * returns[j]) / n if partial > 0 else full_sum / full_count
    return out


def last100(progress: pd.DataFrame) -> float:
    """The mean return of the run's last 100 training episodes (NaN when none ended)."""
    if progress.empty or not {"step", "train_return", "train_episodes"} <= set(progress.columns):
        return math.nan
    table = pd.DataFrame(
        {
            column: pd.to_numeric(progress[column], errors="coerce").astype(float)
            for column in ("step", "train_return", "train_episodes")
        }
    )
    table = table[np.isfinite(table["step"])].sort_values("step", kind="stable")
    steps = table["step"].to_numpy()
    if steps.size == 0:
        return math.nan
    return float(
        last_episodes_mean(
            steps, table["train_return"].to_numpy(), np.nan_to_num(table["train_episodes"].to_numpy()), steps[-1:]
        )[0]
    )


def _float_or_nan(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return number


def _identity(config: dict, manifest_entry: dict) -> dict:
    """run_id, algo, algorithm, env_id, seed, steps from config.json, else the manifest."""
    identity = {}
    for key in ("run_id", "algo", "algorithm", "env_id", "seed", "steps"):
        identity[key] = config.get(key, manifest_entry.get(key))
    return identity


def load_run(run_dir: Path, manifest_entry: dict | None = None) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """One complete run: its row for the runs table, its evaluation curve and its progress table.

    Raises RunFolderError (with the reason) for a run that must be excluded.
    """
    row, curve, progress, _ = _load_complete_run(run_dir, manifest_entry)
    return row, curve, progress


def _load_complete_run(run_dir: Path, manifest_entry: dict | None) -> tuple[dict, pd.DataFrame, pd.DataFrame, dict]:
    """:func:`load_run`, and the run's config.json as read."""
    manifest_entry = manifest_entry or {}
    run = read_complete_run(run_dir, identity_fallback=manifest_entry)
    config, result, progress = run.config, run.result, run.progress
    identity = _identity(config, manifest_entry)
    identity["run_id"] = identity["run_id"] or run_dir.name
    curve = eval_curve(progress)
    source = config.get(SOURCE_KEY)
    row = {
        **identity,
        "status": result["status"],
        "final": _float_or_nan(result.get("final_eval_return")),
        "auc": area_mean(curve["step"].to_numpy(), curve["eval_return"].to_numpy()),
        "last100": last100(progress),
        "source": source.get("library", "") if isinstance(source, dict) else "",
        "wall_time_s": _float_or_nan(result.get("wall_time_s")),
        "steps_per_second": _float_or_nan(result.get("steps_per_second")),
    }
    if result.get("steps") is not None:
        row["steps"] = result["steps"]
    return row, curve, progress, config


def _manifest_entries(manifest: dict | None) -> dict[str, dict]:
    if not manifest or not isinstance(manifest.get("runs"), list):
        return {}
    return {entry["run_id"]: entry for entry in manifest["runs"] if isinstance(entry, dict) and "run_id" in entry}


def _versions(run_dirs: Iterable[Path]) -> dict[str, list[str]]:
    seen: dict[str, set[str]] = {}
    for run_dir in run_dirs:
        try:
            versions = read_config(run_dir).get("versions") or {}
        except RunFolderError:
            continue
        for key, value in versions.items():
            seen.setdefault(str(key), set()).add(str(value))
    return {key: sorted(values) for key, values in sorted(seen.items())}


def load_results(results_dir: Path | str) -> LoadedResults:
    """Read every run folder under ``results_dir/runs/``.

    Raises UsageError when the folder or its runs/ subfolder does not exist, holds no run folder
    at all, or has a manifest.json or suite.toml that cannot be read. Complete runs go to
    ``runs``/``curves``; the others to ``excluded``.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UsageError(f"{results_dir}: not a directory; expected a results folder with runs/<run_id>/")
    runs_dir = results_dir / RUNS_DIR
    if not runs_dir.is_dir():
        raise UsageError(f"{runs_dir}: missing; a results folder holds one folder per run under runs/")
    run_dirs = run_folders(results_dir)
    if not run_dirs:
        raise UsageError(f"{runs_dir}: no run folders; run `trbench train` or a suite first")

    manifest = _read_suite_file(results_dir / MANIFEST_FILE, json.loads)
    if manifest is not None and not isinstance(manifest, dict):
        raise UsageError(f"{results_dir / MANIFEST_FILE}: not a JSON object; restore it or remove it")
    entries = _manifest_entries(manifest)
    suite_toml = _read_suite_file(results_dir / SUITE_FILE, str)

    rows, curves, excluded, progress_tables, configs = [], [], [], {}, {}
    for run_dir in run_dirs:
        entry = entries.get(run_dir.name, {})
        try:
            row, curve, progress, config = _load_complete_run(run_dir, entry)
        except RunFolderError as exc:
            excluded.append(_excluded_row(run_dir, entry, exc))
            continue
        rows.append(row)
        progress_tables[row["run_id"]] = progress
        configs[row["run_id"]] = config
        if len(curve):
            curves.append(curve.assign(run_id=row["run_id"], algo=row["algo"], env_id=row["env_id"], seed=row["seed"]))
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    curve_table = (
        pd.concat(curves, ignore_index=True)[CURVE_COLUMNS]
        if curves
        else pd.DataFrame({column: [] for column in CURVE_COLUMNS})
    )
    return LoadedResults(
        results_dir=results_dir,
        runs=runs.sort_values(["env_id", "algo", "seed"], kind="stable").reset_index(drop=True),
        curves=curve_table,
        excluded=pd.DataFrame(excluded, columns=EXCLUDED_COLUMNS),
        manifest=manifest,
        suite_toml=suite_toml,
        versions=_versions(run_dirs),
        sources=_sources(run_dirs, set(runs["run_id"])),
        progress=progress_tables,
        configs=configs,
    )


def _sources(run_dirs: Iterable[Path], run_ids: set[str]) -> dict[str, dict]:
    """The source block of each complete imported run (written by `trbench import`)."""
    sources = {}
    for run_dir in run_dirs:
        config = read_config_or_empty(run_dir)
        run_id = config.get("run_id") or run_dir.name
        if run_id in run_ids and isinstance(config.get(SOURCE_KEY), dict):
            sources[run_id] = config[SOURCE_KEY]
    return sources


def _read_suite_file(path: Path, parse: Callable[[str], T]) -> T | None:
    """A suite-level file of the results folder (manifest.json, suite.toml), None when absent.

    Unlike one damaged run, which the report excludes, a damaged suite-level file describes the
    whole folder, so it stops the report with its name."""
    if not path.exists():
        return None
    try:
        return parse(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        problem = "not UTF-8 text"
    except (OSError, ValueError) as exc:
        problem = str(exc).splitlines()[0]
    raise UsageError(f"{path}: unreadable: {problem}; restore it or remove it")


def _excluded_row(run_dir: Path, manifest_entry: dict, error: RunFolderError) -> dict:
    identity = _identity(read_config_or_empty(run_dir), manifest_entry)
    return {
        "run_id": identity["run_id"] or run_dir.name,
        "algo": identity["algo"],
        "env_id": identity["env_id"],
        "seed": identity["seed"],
        "status": error.status,
        "reason": str(error),
    }


def scored_runs(loaded: LoadedResults, metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Complete runs with a finite value of ``metric`` (as column ``score``), and the excluded
    runs extended by the complete runs that lack it."""
    if metric not in METRICS:
        raise UsageError(f"--metric: must be one of {', '.join(METRICS)}, got {metric!r}")
    runs = loaded.runs
    finite = np.isfinite(runs[metric].to_numpy(dtype=float))
    missing = runs.loc[~finite]
    reason, meaning_key = MISSING_REASONS[metric]

    def why(run_id: str) -> str:
        # an imported run: the source's own account of the number it lacks
        source = loaded.sources.get(run_id, {})
        said = (source.get("meaning") or {}).get(meaning_key) if isinstance(source, dict) else None
        return f"imported from {source.get('library')}: {said}" if said else reason

    extra = pd.DataFrame(
        {
            "run_id": missing["run_id"],
            "algo": missing["algo"],
            "env_id": missing["env_id"],
            "seed": missing["seed"],
            "status": "complete",
            "reason": [f"{why(run_id)}; so it has no '{metric}' score" for run_id in missing["run_id"]],
        },
        columns=EXCLUDED_COLUMNS,
    )
    excluded = pd.concat([loaded.excluded, extra], ignore_index=True) if len(extra) else loaded.excluded
    scored = runs.loc[finite].assign(score=runs.loc[finite, metric].astype(float))
    return scored.reset_index(drop=True), excluded.reset_index(drop=True)


def interpolate_runs(curves: pd.DataFrame, grid: np.ndarray) -> pd.DataFrame:
    """Each run's eval curve linearly interpolated onto ``grid`` (no extrapolation: NaN outside
    the run's first..last evaluated step). Returns a tidy table with CURVE_COLUMNS."""
    grid = np.asarray(grid, dtype=float)
    pieces = []
    for (run_id, algo, env_id, seed), run_curve in curves.groupby(
        ["run_id", "algo", "env_id", "seed"], sort=True, dropna=False
    ):
        steps = run_curve["step"].to_numpy(dtype=float)
        values = run_curve["eval_return"].to_numpy(dtype=float)
        order = np.argsort(steps, kind="stable")
        steps, values = steps[order], values[order]
        inside = (grid >= steps[0]) & (grid <= steps[-1])
        interpolated = np.where(inside, np.interp(grid, steps, values), np.nan)
        pieces.append(
            pd.DataFrame(
                {
                    "run_id": run_id,
                    "algo": algo,
                    "env_id": env_id,
                    "seed": seed,
                    "step": grid,
                    "eval_return": interpolated,
                }
            )
        )
    if not pieces:
        return pd.DataFrame({column: [] for column in CURVE_COLUMNS})
    return pd.concat(pieces, ignore_index=True)[CURVE_COLUMNS]


def step_grid(curves: pd.DataFrame, points: int = 100, common_support: bool = False) -> np.ndarray:
    """An evenly spaced grid of env steps for ``curves``.

    By default it spans the union of the runs' evaluated ranges (each run contributes only
    where it has data); with ``common_support`` it spans only the steps every run covers (empty
    when the runs' ranges do not overlap).
    """
    if curves.empty:
        return np.array([], dtype=float)
    by_run = curves.groupby("run_id")["step"]
    firsts, lasts = by_run.min(), by_run.max()
    start, stop = (firsts.max(), lasts.min()) if common_support else (firsts.min(), lasts.max())
    if stop < start:
        return np.array([], dtype=float)
    if stop == start:
        return np.array([float(start)])
    return np.linspace(float(start), float(stop), points)

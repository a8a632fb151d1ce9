"""Published results as data, and the comparison of a results folder against them.

Two data files live in ``analysis/data/``:

- ``published_results.csv``: one row per published number (source, algorithm, env, env
  version, step budget, seeds, metric, value, spread and where it comes from). Every number of
  the project's reference notes on published TRPO results is there, the PPO, NPG, VPG, A2C and
  REINFORCE rows included, because reports compare those arms too.
- ``reference_sets.toml``: for each reproduction preset (by its suite name), which published
  rows each arm of the suite is compared with. The mapping lives here rather than in the suite
  file because the runner accepts only its own keys in a suite file.

The comparison computes, for every published row, our value *with the source's metric* (final
deterministic evaluation, training-episode return over the last 100 episodes, the average over
all of training, or the maximum of the seed-averaged evaluation curve) at the source's step
budget, with a 95% CI over seeds, and gives a verdict: ``consistent`` when the published value
lies in our CI or our mean lies within the published spread, otherwise ``above`` or ``below``.

This module reads results folders only; it never imports training code.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trbench.analysis import stats
from trbench.analysis.load import eval_curve, last_episodes_mean
from trbench.base.errors import UsageError
from trbench.base.results_folder import run_folders
from trbench.base.run_folder import RunFolderError, read_complete_run

DATA_DIR = Path(__file__).parent / "data"
PUBLISHED_CSV = DATA_DIR / "published_results.csv"
REFERENCE_SETS_TOML = DATA_DIR / "reference_sets.toml"

COLUMNS = [
    "source",
    "algo",
    "setting",
    "env",
    "env_version",
    "steps",
    "seeds",
    "metric",
    "value",
    "spread",
    "spread_kind",
    "ci_low",
    "ci_high",
    "digitized",
    "approximate",
    "citation",
    "note",
]
KEY_COLUMNS = ["source", "algo", "setting", "env", "env_version", "steps", "metric"]
REQUIRED_TEXT = ["source", "algo", "env", "env_version", "metric", "citation"]

# metric -> what the source measured, and how we compute the same thing from our runs
METRICS: dict[str, str] = {
    "final_eval_return": "deterministic evaluation return at the end of training (ours: the final "
    "evaluation's mean return, or the periodic evaluation at that step)",
    "eval_return_at_step": "mean evaluation return at a step along the curve (ours: the periodic "
    "evaluation at that step)",
    "train_return_last100": "mean return of the last 100 training episodes (ours: the same, from progress.csv)",
    "train_return_curve": "a point of the (smoothed) training-episode return curve (ours: the mean "
    "of the last 100 training episodes up to that step)",
    "avg_train_return_all": "average return of every training episode up to that step (Duan et al. "
    "2016's average over all iterations)",
    "max_mean_eval_curve": "maximum over the budget of the seed-averaged evaluation curve (Tianshou, "
    "TD3 paper convention); ours: the same over our periodic evaluations",
    "max_return": "maximum return over training, statistic not defined further (not computed)",
}
COMPUTED_METRICS = tuple(m for m in METRICS if m != "max_return")
SPREAD_KINDS: dict[str, str] = {
    "": "no spread published",
    "std_seeds": "standard deviation over seeds",
    "se_seeds": "standard error over seeds",
    "se": "standard error (over evaluation episodes as stated by the source)",
    "std_eval_episodes": "standard deviation over evaluation episodes of one run",
    "pm_unspecified": "a +- whose statistic the source does not define",
    "ci95_bootstrap": "95% bootstrap confidence interval (ci_low, ci_high)",
}
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


class PublishedDataError(UsageError, ValueError):
    """The published-results CSV or the reference sets are malformed, or a --reference names none.

    A UsageError, so that the command line reports it as one line with exit code 2."""


# --------------------------------------------------------------------------------------------
# Loading and validation


def _as_bool(value: str, where: str) -> bool:
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise PublishedDataError(f"{where}: expected true or false, got {value!r}")


def _as_float(value: str, where: str, required: bool) -> float:
    text = "" if value is None else str(value).strip()
    if not text:
        if required:
            raise PublishedDataError(f"{where}: a number is required")
        return math.nan
    try:
        number = float(text)
    except ValueError:
        raise PublishedDataError(f"{where}: not a number: {value!r}") from None
    if not math.isfinite(number):
        raise PublishedDataError(f"{where}: must be finite, got {value!r}")
    return number


def load_published(path: Path | str | None = None) -> pd.DataFrame:
    """Read and validate the published-results CSV.

    Raises PublishedDataError on a missing column, an empty required field, a value that is not
    a number, an unknown metric or spread kind, an inconsistent interval or a duplicate key.
    """
    path = Path(path) if path is not None else PUBLISHED_CSV
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise PublishedDataError(f"{path}: unreadable: {exc}") from None
    missing = [column for column in COLUMNS if column not in raw.columns]
    if missing:
        raise PublishedDataError(f"{path}: missing column(s) {', '.join(missing)}")
    records = []
    for index, row in raw.iterrows():
        line = index + 2  # header is line 1
        where = f"{path.name} line {line}"
        for column in REQUIRED_TEXT:
            if not row[column].strip():
                raise PublishedDataError(f"{where}: {column} is empty")
        if row["metric"] not in METRICS:
            raise PublishedDataError(f"{where}: unknown metric {row['metric']!r}; allowed: {', '.join(METRICS)}")
        if row["spread_kind"] not in SPREAD_KINDS:
            allowed = ", ".join(kind or "(empty)" for kind in SPREAD_KINDS)
            raise PublishedDataError(f"{where}: unknown spread_kind {row['spread_kind']!r}; allowed: {allowed}")
        record = {column: row[column].strip() for column in COLUMNS}
        record["value"] = _as_float(row["value"], f"{where} value", required=True)
        for column in ("steps", "seeds", "spread", "ci_low", "ci_high"):
            record[column] = _as_float(row[column], f"{where} {column}", required=False)
        for column in ("steps", "seeds"):
            number = record[column]
            if not math.isnan(number) and (number < 1 or number != int(number)):
                raise PublishedDataError(f"{where} {column}: must be a whole number >= 1, got {row[column]!r}")
        spread, low, high = record["spread"], record["ci_low"], record["ci_high"]
        if not math.isnan(spread) and spread < 0:
            raise PublishedDataError(f"{where} spread: must be >= 0, got {row['spread']!r}")
        kind = record["spread_kind"]
        if kind == "ci95_bootstrap":
            if math.isnan(low) or math.isnan(high) or not low <= record["value"] <= high:
                raise PublishedDataError(f"{where}: a ci95_bootstrap row needs ci_low <= value <= ci_high")
        elif not (math.isnan(low) and math.isnan(high)):
            raise PublishedDataError(f"{where}: ci_low/ci_high are only for spread_kind ci95_bootstrap")
        if kind in ("", "ci95_bootstrap") and not math.isnan(spread):
            raise PublishedDataError(f"{where}: spread given but spread_kind is {kind or 'empty'}")
        if kind not in ("", "ci95_bootstrap") and math.isnan(spread):
            raise PublishedDataError(f"{where}: spread_kind {kind} needs a spread")
        record["digitized"] = _as_bool(row["digitized"], f"{where} digitized")
        record["approximate"] = _as_bool(row["approximate"], f"{where} approximate")
        records.append(record)
    table = pd.DataFrame(records, columns=COLUMNS)
    keys = table[KEY_COLUMNS].astype(str)
    duplicated = keys.duplicated(keep=False)
    if duplicated.any():
        first = table.loc[duplicated, KEY_COLUMNS].iloc[0].to_dict()
        raise PublishedDataError(f"{path.name}: duplicate key {first} ({int(duplicated.sum())} rows share keys)")
    return table


def published_interval(row: Mapping) -> tuple[float, float] | None:
    """The published spread as an interval: the CI, or value +- spread; None when none given."""
    if row["spread_kind"] == "ci95_bootstrap":
        return float(row["ci_low"]), float(row["ci_high"])
    spread = float(row["spread"]) if row["spread"] == row["spread"] else math.nan
    if math.isnan(spread):
        return None
    return float(row["value"]) - spread, float(row["value"]) + spread


@dataclass(frozen=True)
class Comparison:
    """Published rows one arm of a suite is compared with."""

    arm: str
    algo: str
    sources: tuple[str, ...]
    settings: tuple[str, ...] = ()  # empty: any setting
    max_steps: float = math.inf


@dataclass(frozen=True)
class ReferenceSet:
    name: str
    description: str
    comparisons: tuple[Comparison, ...]


def _string_list(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise PublishedDataError(f"{where}: must be a non-empty list of strings")
    return tuple(value)


def load_reference_sets(
    path: Path | str | None = None, published: pd.DataFrame | None = None
) -> dict[str, ReferenceSet]:
    """Read the preset -> published-rows mapping; every selector must match some published row."""
    path = Path(path) if path is not None else REFERENCE_SETS_TOML
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PublishedDataError(f"{path}: unreadable: {exc}") from None
    published = published if published is not None else load_published()
    sets = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise PublishedDataError(f"{path.name}: {name}: must be a table")
        unknown = set(table) - {"description", "compare"}
        if unknown:
            raise PublishedDataError(f"{path.name}: {name}: unknown key(s) {', '.join(sorted(unknown))}")
        comparisons = []
        for i, entry in enumerate(table.get("compare", [])):
            where = f"{path.name}: {name}.compare[{i}]"
            unknown = set(entry) - {"arm", "algo", "sources", "settings", "max_steps"}
            if unknown:
                raise PublishedDataError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
            for key in ("arm", "algo"):
                if not isinstance(entry.get(key), str) or not entry[key]:
                    raise PublishedDataError(f"{where}: {key} must be a non-empty string")
            comparison = Comparison(
                arm=entry["arm"],
                algo=entry["algo"],
                sources=_string_list(entry.get("sources"), f"{where}.sources"),
                settings=_string_list(entry["settings"], f"{where}.settings") if "settings" in entry else (),
                max_steps=float(entry.get("max_steps", math.inf)),
            )
            for source in comparison.sources:
                if not (selected_rows(published, comparison)["source"] == source).any():
                    raise PublishedDataError(
                        f"{where}: no published row for source {source!r} and algo {comparison.algo!r}"
                        + (f" with settings {list(comparison.settings)}" if comparison.settings else "")
                    )
            comparisons.append(comparison)
        if not comparisons:
            raise PublishedDataError(f"{path.name}: {name}: no [[{name}.compare]] entries")
        sets[name] = ReferenceSet(name, str(table.get("description", "")), tuple(comparisons))
    return sets


def selected_rows(published: pd.DataFrame, comparison: Comparison) -> pd.DataFrame:
    mask = published["source"].isin(comparison.sources) & (published["algo"] == comparison.algo)
    if comparison.settings:
        mask &= published["setting"].isin(comparison.settings)
    steps = published["steps"].to_numpy(dtype=float)
    mask &= ~(steps > comparison.max_steps)
    return published[mask]


def resolve_reference(name_or_path: str, manifest_suite: str | None = None) -> str:
    """A preset given as its suite name, or as the path of its suite file (its `name`, else the
    file name without .toml); 'auto' means the suite named in the results folder's manifest."""
    if name_or_path == "auto":
        if not manifest_suite:
            raise PublishedDataError(
                "--reference: the results folder has no manifest naming its suite; name the preset"
            )
        return manifest_suite
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        try:
            data = tomllib.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            raise PublishedDataError(f"--reference: {path}: malformed TOML: not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise PublishedDataError(f"--reference: {path}: malformed TOML: {str(exc).splitlines()[0]}") from None
        except OSError as exc:
            raise PublishedDataError(f"--reference: {path}: cannot read suite file: {exc.strerror or exc}") from None
        return str(data.get("name", path.stem))
    return name_or_path


# --------------------------------------------------------------------------------------------
# Our values with each source's metric


@dataclass
class RunRecord:
    """What the comparison needs from one complete run folder."""

    run_id: str
    arm: str
    env_id: str
    seed: int
    final_step: float
    iteration_steps: float
    final_eval_return: float
    progress: pd.DataFrame  # step, train_return, train_episodes, eval_return


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


def read_runs(results_dir: Path | str) -> list[RunRecord]:
    """Every complete run under results_dir/runs/ (others are skipped: the report lists them)."""
    runs = []
    for run_dir in run_folders(Path(results_dir)):
        try:
            # the same checks, and so the same exclusions, as the report's loader
            complete = read_complete_run(run_dir)
            eval_curve(complete.progress)
        except RunFolderError:  # the report lists the run as excluded, with the reason
            continue
        config, result, progress = complete.config, complete.result, complete.progress
        table = (
            pd.DataFrame(
                {
                    "step": _numeric(progress, "step"),
                    "train_return": _numeric(progress, "train_return"),
                    "train_episodes": np.nan_to_num(_numeric(progress, "train_episodes")),
                    "eval_return": _numeric(progress, "eval_return"),
                }
            )
            .dropna(subset=["step"])
            .sort_values("step", kind="stable")
            .reset_index(drop=True)
        )
        if table.empty:
            continue
        steps = table["step"].to_numpy()
        iteration = float(np.min(np.diff(steps))) if len(steps) > 1 else float(steps[0])
        source = config.get("source")
        if isinstance(source, dict) and isinstance(source.get("iteration_steps"), int):
            # an imported run has a row wherever its log recorded something; its rollout or epoch
            # is what "reaching a step" is measured in, as an iteration is for a trbench run
            iteration = float(source["iteration_steps"])
        final_eval = result.get("final_eval_return")
        runs.append(
            RunRecord(
                run_id=str(config.get("run_id", run_dir.name)),
                arm=str(config.get("algo", "")),
                env_id=str(config.get("env_id", "")),
                seed=int(config.get("seed", -1)),
                final_step=float(steps[-1]),
                iteration_steps=iteration,
                final_eval_return=float(final_eval) if isinstance(final_eval, (int, float)) else math.nan,
                progress=table,
            )
        )
    return runs


def _within_budget(run: RunRecord, steps: float) -> bool:
    return run.final_step >= steps - run.iteration_steps


def run_value(run: RunRecord, metric: str, steps: float) -> float:
    """One run's value of a per-run metric at ``steps`` (NaN when the run cannot provide it)."""
    if not _within_budget(run, steps):
        return math.nan
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
    if metric in ("final_eval_return", "eval_return_at_step"):
        if metric == "final_eval_return" and abs(run.final_step - steps) <= run.iteration_steps:
            return run.final_eval_return
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
) -> tuple[float, float, float, int]:
    """(ours, ci_low, ci_high, n_seeds) for one arm x env cell and one published metric.

    Per-run metrics: the mean over seeds with the expanded-percentile bootstrap CI that the rest
    of the report uses. The max of the seed-averaged curve: that maximum, with a percentile CI
    from resampling the seeds and recomputing it.
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
        low, high = np.percentile(maxima, [2.5, 97.5])
        return ours, float(low), float(high), len(runs)
    values = np.array([run_value(run, metric, steps) for run in runs])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan, math.nan, 0
    low, high = stats.bootstrap_mean_ci(values, rng, n_resamples) if values.size > 1 else (math.nan, math.nan)
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


def reproduction_table(
    results_dir: Path | str,
    reference: str,
    rng: np.random.Generator,
    published: pd.DataFrame | None = None,
    reference_sets: Mapping[str, ReferenceSet] | None = None,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
) -> Reproduction:
    """Compare the complete runs of ``results_dir`` with the published rows of ``reference``."""
    published = published if published is not None else load_published()
    reference_sets = reference_sets if reference_sets is not None else load_reference_sets(published=published)
    if reference not in reference_sets:
        raise PublishedDataError(
            f"--reference: no published reference set for preset {reference!r}; "
            f"known: {', '.join(sorted(reference_sets))}"
        )
    reference_set = reference_sets[reference]
    runs = read_runs(results_dir)
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
                steps = row["steps"] if math.isfinite(row["steps"]) else max(run.final_step for run in cell)
                interval = published_interval(row)
                if row["metric"] in COMPUTED_METRICS:
                    key = (comparison.arm, env_id, row["metric"], steps)
                    if key not in estimates:
                        estimates[key] = cell_estimate(
                            cell, row["metric"], steps, stats.keyed_rng(base_seed, *key), n_resamples
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
    return Reproduction(reference_set, table, runs, notes)


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

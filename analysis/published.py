"""Published results as data: the published numbers and which of them each preset is compared with.

Two data files live in ``analysis/data/``:

- ``published_results.csv``: one row per published number (source, algorithm, env, env
  version, step budget, seeds, metric, value, spread and where it comes from). Every number of
  the project's reference notes on published TRPO results is there, the PPO, NPG, VPG, A2C and
  REINFORCE rows included, because reports compare those arms too.
- ``reference_sets.toml``: for each reproduction preset (by its suite name), which published
  rows each arm of the suite is compared with. The mapping lives here rather than in the suite
  file because the runner accepts only its own keys in a suite file.

Both are validated when read, so a malformed row stops the report with its line number. The
comparison of a results folder against these rows is reference.py's.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from trbench.base.errors import UsageError
from trbench.base.presets import find_preset, shipped_preset, suite_name

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
    "top10_train_return": "mean of the ten highest training-episode returns over the run (Wang et al. "
    "2019's Table 1); ours: the same, progress.csv's train_return_top10 at that step (runs written before "
    "that column have none)",
}
SPREAD_KINDS: dict[str, str] = {
    "": "no spread published",
    "std_seeds": "standard deviation over seeds",
    "se_seeds": "standard error over seeds",
    "se": "standard error (over evaluation episodes as stated by the source)",
    "std_eval_episodes": "standard deviation over evaluation episodes of one run",
    "pm_unspecified": "a +- whose statistic the source does not define",
    "ci95_bootstrap": "95% bootstrap confidence interval (ci_low, ci_high)",
}


class PublishedDataError(UsageError, ValueError):
    """The published-results CSV or the reference sets are malformed, or a --reference names none.

    A UsageError, so that the command line reports it as one line with exit code 2."""


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
    """The suite name of a preset given as its suite name, its file name without .toml, or the
    path of its suite file (that file's `name`, else its file name without .toml); 'auto' means
    the suite named in the results folder's manifest. Any other name is kept as it is, for
    :func:`load_reference_sets` to say whether a reference set has it."""
    if name_or_path == "auto":
        if not manifest_suite:
            raise PublishedDataError(
                "--reference: the results folder has no manifest naming its suite; name the preset"
            )
        return manifest_suite
    if Path(name_or_path).suffix == ".toml" or shipped_preset(name_or_path) is not None:
        return suite_name(find_preset(name_or_path, "--reference"), "--reference")
    return name_or_path

"""Fixed per-env normalisation constants: normalised = (return - random) / (reference - random).

A normalised score of 0 is a uniform-random policy, 1 is the published TRPO reference. The
constants are data (``data/normalization.csv``), never derived from the runs being analysed:
min/max of whatever was loaded would change every score whenever a run is added.

- ``random_return``: measured by ``scripts/measure_random_scores.py`` on gymnasium's v4/v5 tasks; the
  CSV records the seed and number of episodes.
- ``reference_return``: a published TRPO value; ``reference_source`` names the source, the env
  version it was obtained on and its metric.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

NORMALIZATION_FILE = "normalization.csv"


@dataclass(frozen=True)
class NormalizationConstants:
    env_id: str
    random_return: float
    random_episodes: int
    random_seed: int
    random_source: str
    reference_return: float
    reference_source: str

    def normalize(self, returns: np.ndarray | float) -> np.ndarray:
        return (np.asarray(returns, dtype=float) - self.random_return) / (self.reference_return - self.random_return)


def _parse_row(row: dict[str, str], origin: str) -> NormalizationConstants:
    try:
        constants = NormalizationConstants(
            env_id=row["env_id"],
            random_return=float(row["random_return"]),
            random_episodes=int(row["random_episodes"]),
            random_seed=int(row["random_seed"]),
            random_source=row["random_source"],
            reference_return=float(row["reference_return"]),
            reference_source=row["reference_source"],
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{origin}: row {row.get('env_id')!r}: {exc}") from None
    if not (math.isfinite(constants.random_return) and math.isfinite(constants.reference_return)):
        raise ValueError(f"{origin}: row {constants.env_id!r}: constants must be finite")
    if constants.reference_return == constants.random_return:
        raise ValueError(f"{origin}: row {constants.env_id!r}: reference equals random return")
    return constants


def load_normalization(path: Path | None = None) -> dict[str, NormalizationConstants]:
    """Constants per env id (version included), from ``path`` or the packaged CSV."""
    if path is None:
        text = resources.files("trbench.analysis").joinpath("data", NORMALIZATION_FILE).read_text()
        origin = f"analysis/data/{NORMALIZATION_FILE}"
    else:
        text = Path(path).read_text()
        origin = str(path)
    rows = csv.DictReader(text.splitlines())
    table = {}
    for row in rows:
        constants = _parse_row(row, origin)
        table[constants.env_id] = constants
    return table

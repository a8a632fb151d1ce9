"""The options a report is built with, and the seeded random streams its bootstraps draw from.

Every part of the report (tables.py, bands.py, report_figures.py, report_sections.py) reads its
settings from one :class:`ReportOptions`, so a report is a function of its results folder and
these options alone; report_files.py records them next to the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trbench.analysis import stats

# Independent random streams per part of the report, so adding a part never changes another's CIs;
# within a part, each estimate draws from a stream keyed by what it estimates (see ``ReportOptions.rng``).
STREAM_SUMMARY, STREAM_PAIRWISE, STREAM_AGGREGATE, STREAM_CURVES, STREAM_PROFILES, STREAM_EFFICIENCY = range(6)
STREAM_REPRODUCTION, STREAM_REPRODUCTION_CURVES = 6, 7
STREAM_RADIUS_SENSITIVITY = 8
# what the score of each metric is called where a table has no room for the description
METRIC_LABELS = {
    "final": "final eval return",
    "auc": "mean eval return over training",
    "last100": "training return, last 100 episodes",
}


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

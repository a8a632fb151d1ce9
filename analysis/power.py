"""Effect size and power: how large a difference is in units of the runs' spread, and how many
seeds per algorithm a two-sided Welch t-test needs to detect a difference.

Closed forms over the noncentral t, not simulation, so the report's "how many seeds" table is
deterministic and instant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special
from scipy import stats as scipy_stats

from trbench.analysis.stats import as_sample


def hedges_g(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> float:
    """Hedges' g of a versus b: (mean_a - mean_b) / pooled sd, times the exact small-sample
    correction J(df) = Γ(df/2) / (√(df/2) · Γ((df-1)/2)), df = n_a + n_b - 2.

    The pooled sd is √(((n_a-1)s_a² + (n_b-1)s_b²)/df). nan when df < 2 or the pooled sd is 0.
    """
    sample_a, sample_b = as_sample(a), as_sample(b)
    df = sample_a.size + sample_b.size - 2
    if df < 2 or sample_a.size < 1 or sample_b.size < 1:
        return math.nan
    ss_a = np.sum((sample_a - sample_a.mean()) ** 2)
    ss_b = np.sum((sample_b - sample_b.mean()) ** 2)
    pooled_sd = math.sqrt((ss_a + ss_b) / df)
    if pooled_sd == 0.0:
        return math.nan
    correction = math.exp(special.gammaln(df / 2) - special.gammaln((df - 1) / 2)) / math.sqrt(df / 2)
    return float(correction * (sample_a.mean() - sample_b.mean()) / pooled_sd)


def welch_power(
    n_per_group: np.ndarray | int,
    difference: float,
    sd_a: float,
    sd_b: float,
    alpha: float = 0.05,
) -> np.ndarray:
    """Power of the two-sided Welch t-test with n runs per group, from the noncentral t.

    With variances v_a, v_b the test statistic is approximately noncentral t with
    noncentrality δ/√((v_a+v_b)/n) and Welch-Satterthwaite degrees of freedom
    (n-1)(v_a+v_b)²/(v_a²+v_b²); for v_a = v_b this is Student's t with 2n-2 df, for which the
    formula is exact under normality.
    """
    n = np.asarray(n_per_group, dtype=float)
    var_a, var_b = sd_a**2, sd_b**2
    total_var = var_a + var_b
    df = (n - 1.0) * total_var**2 / (var_a**2 + var_b**2)
    noncentrality = abs(difference) / np.sqrt(total_var / n)
    critical = scipy_stats.t.ppf(1.0 - alpha / 2.0, df)
    return scipy_stats.nct.sf(critical, df, noncentrality) + scipy_stats.nct.cdf(-critical, df, noncentrality)


def seeds_for_power(
    difference: float,
    sd_a: float,
    sd_b: float,
    power: float = 0.8,
    alpha: float = 0.05,
    max_seeds: int = 10_000,
) -> int | None:
    """Smallest number of runs per group at which the Welch test reaches ``power``.

    Closed form over the noncentral t (:func:`welch_power`), not simulation: it is exact for
    normal scores with equal variances, deterministic, and instant. Returns None when the
    difference is 0 or not finite, or more than ``max_seeds`` would be needed; 2 when both
    standard deviations are 0 (any difference is then certain from two runs).
    """
    if not math.isfinite(difference) or difference == 0.0:
        return None
    if not (math.isfinite(sd_a) and math.isfinite(sd_b)):
        return None
    if sd_a == 0.0 and sd_b == 0.0:
        return 2
    candidates = np.arange(2, max_seeds + 1)
    reached = np.flatnonzero(welch_power(candidates, difference, sd_a, sd_b, alpha) >= power)
    return int(candidates[reached[0]]) if reached.size else None

"""Statistics for comparing RL algorithms: pure functions, arrays in, numbers out.

Nothing here reads files or draws. Every randomised function takes a seeded
``numpy.random.Generator`` so that a report is reproducible from its seed, and bootstraps use
``DEFAULT_RESAMPLES`` (2000) resamples unless told otherwise.

Vocabulary:
- a *sample* is a 1-D array of scores, one per run (seed) of one algorithm on one task;
- *per-task scores* are a sequence of samples, one per task, of possibly different lengths (a
  ragged runs × tasks matrix). Aggregate metrics and their stratified bootstrap follow Agarwal
  et al. 2021 ("Deep RL at the edge of the statistical precipice"): runs are resampled with
  replacement within each task, never across tasks.

Functions whose name ends in ``_batch`` work along the last axis of an array with leading batch
dimensions, which is how the bootstrap evaluates thousands of resamples at once. How many seeds a
comparison needs, and Hedges' g, are power.py's.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95

PerTaskScores = Sequence[np.ndarray]
AggregateFn = Callable[[Sequence[np.ndarray]], np.ndarray]


def keyed_rng(seed: int, *key: object) -> np.random.Generator:
    """A generator for one estimate, named by ``key`` (for example an algorithm and an env).

    Its stream depends only on ``seed`` and ``key``: an interval does not move when estimates
    for other keys are added to or removed from a report, so a conclusion near an interval's
    boundary cannot change because an unrelated run finished.
    """
    digest = hashlib.sha256("|".join(str(part) for part in key).encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


@dataclass(frozen=True)
class IntervalEstimate:
    """A point estimate with the bounds of its confidence interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class TestResult:
    statistic: float
    pvalue: float


def as_sample(values: np.ndarray | Sequence[float]) -> np.ndarray:
    sample = np.asarray(values, dtype=float)
    if sample.ndim != 1:
        raise ValueError(f"expected a 1-D sample, got shape {sample.shape}")
    return sample


# ---------------------------------------------------------------------------------------------
# Point estimates


def iqm_weights(n: int) -> np.ndarray:
    """Weights of the sorted values in the interquartile mean of ``n`` values (they sum to 1).

    Value i of the sorted sample is taken to occupy the interval [i, i+1) of [0, n); the middle
    50% is [n/4, 3n/4). Each value is weighted by the length of its overlap with that interval,
    so when n is not a multiple of 4 the values at the two quartile boundaries count
    fractionally (n = 9: the 3rd and 7th values get 0.75, the 4th-6th get 1, all divided by
    4.5). For n a multiple of 4 this is the 25% trimmed mean; for n = 1 or 2 it is the mean.
    """
    if n < 1:
        raise ValueError("the IQM of an empty sample is undefined")
    starts = np.arange(n, dtype=float)
    overlap = np.clip(np.minimum(starts + 1, 0.75 * n) - np.maximum(starts, 0.25 * n), 0.0, 1.0)
    return overlap / overlap.sum()


def iqm_batch(values: np.ndarray) -> np.ndarray:
    """Interquartile mean along the last axis (see :func:`iqm_weights` for the definition)."""
    values = np.asarray(values, dtype=float)
    return np.sort(values, axis=-1) @ iqm_weights(values.shape[-1])


def iqm(values: np.ndarray | Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% of the values, trimming 25% from each end.

    Non-integer quartile boundaries are handled by fractional weights (:func:`iqm_weights`).
    """
    return float(iqm_batch(as_sample(values)))


def optimality_gap(values: np.ndarray | Sequence[float], threshold: float = 1.0) -> float:
    """Mean shortfall below ``threshold``: mean(max(threshold - x, 0)).

    On normalised scores with threshold 1 this is how far, on average, runs fall short of the
    reference score; runs above the threshold count as 0, not as a bonus.
    """
    sample = as_sample(values)
    return float(np.mean(np.maximum(threshold - sample, 0.0)))


# ---------------------------------------------------------------------------------------------
# Bootstrap confidence interval of the mean of one sample

BOOTSTRAP_METHODS = ("expanded_percentile", "percentile", "basic", "BCa", "studentized")


def expanded_confidence_level(n: int, confidence_level: float = DEFAULT_CONFIDENCE) -> float:
    """Nominal level at which to read percentile-bootstrap quantiles so that, for a sample of
    n values, the interval has roughly the width of Student's t interval.

    The percentile bootstrap of the mean is too narrow for small n: it uses the plug-in
    standard deviation (divisor n) and normal rather than t quantiles. Hesterberg's "expanded
    percentile" interval (T. Hesterberg 2015, "What teachers should know about the bootstrap",
    The American Statistician 69(4)) corrects both by taking the α'/2 and 1-α'/2 quantiles with
    Φ⁻¹(α'/2) = -√(n/(n-1)) · t_{n-1, α/2}, while keeping the bootstrap's asymmetry.
    """
    if n < 2:
        return confidence_level
    alpha = 1.0 - confidence_level
    expanded_z = math.sqrt(n / (n - 1.0)) * scipy_stats.t.ppf(1.0 - alpha / 2.0, n - 1)
    return float(1.0 - 2.0 * scipy_stats.norm.sf(expanded_z))


def bootstrap_mean_ci_batch(
    samples: np.ndarray,
    rng: np.random.Generator,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = DEFAULT_CONFIDENCE,
    method: str = "expanded_percentile",
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap confidence interval of the mean of each row of ``samples`` (shape (k, n)).

    Methods:
    - ``"expanded_percentile"`` (default): the percentile interval read at
      :func:`expanded_confidence_level`. Chosen because RL comparisons have 5-10 seeds, where
      the plain percentile and BCa intervals are too narrow: for a normal population they
      covered the true mean in about 85% (n = 5) and 90% (n = 10) of simulated experiments,
      the expanded interval in about 92% and 95%. With 2-3 values it spans roughly the range
      of the data.
    - ``"percentile"``, ``"basic"``, ``"BCa"``: :func:`scipy.stats.bootstrap` as is.
    - ``"studentized"``: bootstrap-t (:func:`studentized_bootstrap_mean_ci_batch`); right
      coverage for normal data but erratic, sometimes very wide intervals below ~10 values.

    Rows with one value give (nan, nan); constant rows give (value, value). All values must be
    finite. The resampling uses ``rng`` only, so a fixed seed gives identical intervals.
    """
    samples = np.asarray(samples, dtype=float)
    if method not in BOOTSTRAP_METHODS:
        raise ValueError(f"method must be one of {BOOTSTRAP_METHODS}, got {method!r}")
    if samples.ndim != 2 or samples.shape[1] == 0 or not np.all(np.isfinite(samples)):
        raise ValueError("samples must be a finite (k, n) array with n ≥ 1")
    k, n = samples.shape
    if n == 1:
        return np.full(k, np.nan), np.full(k, np.nan)
    if method == "studentized":
        low, high = studentized_bootstrap_mean_ci_batch(samples, rng, n_resamples, confidence_level)
    else:
        level = expanded_confidence_level(n, confidence_level) if method == "expanded_percentile" else confidence_level
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy_stats.DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            result = scipy_stats.bootstrap(
                (samples,),
                np.mean,
                n_resamples=n_resamples,
                confidence_level=level,
                method="percentile" if method == "expanded_percentile" else method,
                rng=rng,
                vectorized=True,
                axis=-1,
            )
        low = np.asarray(result.confidence_interval.low, dtype=float).reshape(k)
        high = np.asarray(result.confidence_interval.high, dtype=float).reshape(k)
    constant = np.all(samples == samples[:, :1], axis=1)
    low = np.where(constant, samples[:, 0], low)
    high = np.where(constant, samples[:, 0], high)
    return low, high


def bootstrap_mean_ci(
    values: np.ndarray | Sequence[float],
    rng: np.random.Generator,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = DEFAULT_CONFIDENCE,
    method: str = "expanded_percentile",
) -> tuple[float, float]:
    """Bootstrap confidence interval of the mean of one sample (see :func:`bootstrap_mean_ci_batch`)."""
    sample = as_sample(values)
    if sample.size == 0:
        raise ValueError("the sample must be non-empty")
    low, high = bootstrap_mean_ci_batch(sample[None, :], rng, n_resamples, confidence_level, method)
    return float(low[0]), float(high[0])


def studentized_bootstrap_mean_ci_batch(
    samples: np.ndarray,
    rng: np.random.Generator,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = DEFAULT_CONFIDENCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap-t interval of the mean for each row of ``samples`` (shape (k, n), n ≥ 2).

    Resamples with se* = 0 give t* = ±inf (or 0 when mean* = mean), which is kept: they are
    legitimately extreme. Quantiles use the inverted empirical CDF so that infinite t* values
    are never interpolated; an interval is unbounded when more than (1-level)/2 of the t*
    values are infinite on one side.
    """
    samples = np.asarray(samples, dtype=float)
    k, n = samples.shape
    means = samples.mean(axis=1)
    standard_errors = samples.std(axis=1, ddof=1) / math.sqrt(n)
    indices = rng.integers(0, n, size=(k, n_resamples, n))
    resampled = np.take_along_axis(samples[:, None, :], indices, axis=2)
    resampled_means = resampled.mean(axis=2)
    resampled_errors = resampled.std(axis=2, ddof=1) / math.sqrt(n)
    deviation = resampled_means - means[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_star = deviation / resampled_errors
    t_star = np.where(deviation == 0.0, 0.0, t_star)
    tail = (1.0 - confidence_level) / 2.0
    q_low = np.quantile(t_star, tail, axis=1, method="inverted_cdf")
    q_high = np.quantile(t_star, 1.0 - tail, axis=1, method="inverted_cdf")
    return means - q_high * standard_errors, means - q_low * standard_errors


# ---------------------------------------------------------------------------------------------
# Aggregate metrics over per-task scores (each array: leading batch axes, runs on the last axis)


def aggregate_mean(per_task: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over tasks of each task's mean score (tasks weigh equally whatever their run count)."""
    return np.mean(np.stack([np.mean(task, axis=-1) for task in per_task], axis=-1), axis=-1)


def aggregate_median(per_task: Sequence[np.ndarray]) -> np.ndarray:
    """Median over tasks of each task's mean score."""
    return np.median(np.stack([np.mean(task, axis=-1) for task in per_task], axis=-1), axis=-1)


def aggregate_iqm(per_task: Sequence[np.ndarray]) -> np.ndarray:
    """IQM of all run scores of all tasks pooled together (see :func:`iqm_weights`)."""
    return iqm_batch(np.concatenate(list(per_task), axis=-1))


def aggregate_optimality_gap(per_task: Sequence[np.ndarray], threshold: float = 1.0) -> np.ndarray:
    """Mean over tasks of each task's mean shortfall below ``threshold`` (see optimality_gap)."""
    gaps = [np.mean(np.maximum(threshold - task, 0.0), axis=-1) for task in per_task]
    return np.mean(np.stack(gaps, axis=-1), axis=-1)


AGGREGATE_METRICS: dict[str, AggregateFn] = {
    "iqm": aggregate_iqm,
    "median": aggregate_median,
    "mean": aggregate_mean,
    "optimality_gap": aggregate_optimality_gap,
}


def _check_per_task(per_task: PerTaskScores) -> list[np.ndarray]:
    tasks = [np.asarray(task, dtype=float) for task in per_task]
    if not tasks or any(task.ndim != 1 or task.size == 0 for task in tasks):
        raise ValueError("per-task scores must be one non-empty 1-D array per task")
    return tasks


def stratified_resample(per_task: Sequence[np.ndarray], rng: np.random.Generator, n_resamples: int) -> list[np.ndarray]:
    """Resample runs (the first axis) with replacement within each task: one (n_resamples, n_task, ...)
    array per task. A task may be 2-D, runs x grid points, to resample whole curves."""
    return [task[rng.integers(0, task.shape[0], size=(n_resamples, task.shape[0]))] for task in per_task]


def percentile_bounds(replicates: np.ndarray, confidence_level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap replicates (resamples along the first axis)."""
    tail = (1.0 - confidence_level) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail], axis=0)
    return low, high


def _percentile_interval(estimate: float, replicates: np.ndarray, confidence_level: float) -> IntervalEstimate:
    low, high = percentile_bounds(replicates, confidence_level)
    return IntervalEstimate(float(estimate), float(low), float(high))


def stratified_bootstrap_ci(
    per_task: PerTaskScores,
    aggregate: AggregateFn,
    rng: np.random.Generator,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = DEFAULT_CONFIDENCE,
) -> IntervalEstimate:
    """Aggregate metric with its stratified-bootstrap percentile confidence interval."""
    tasks = _check_per_task(per_task)
    estimate = float(aggregate(tasks))
    replicates = aggregate(stratified_resample(tasks, rng, n_resamples))
    return _percentile_interval(estimate, replicates, confidence_level)


# ---------------------------------------------------------------------------------------------
# Probability of improvement


def probability_of_improvement_batch(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y)/2 over all pairs of the last axes of x and y (Mann-Whitney U / nm)."""
    x = np.asarray(x, dtype=float)[..., :, None]
    y = np.asarray(y, dtype=float)[..., None, :]
    wins = (x > y).astype(float) + 0.5 * (x == y)
    return wins.mean(axis=(-2, -1))


def probability_of_improvement(x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float]) -> float:
    """Probability that a random run of X scores higher than a random run of Y; ties count 1/2.

    This is the Mann-Whitney U statistic of X divided by n_x·n_y.
    """
    return float(probability_of_improvement_batch(as_sample(x), as_sample(y)))


def probability_of_improvement_across_tasks(
    per_task_x: Sequence[np.ndarray], per_task_y: Sequence[np.ndarray]
) -> np.ndarray:
    """Mean over tasks of the per-task probability of improvement (Agarwal et al. 2021)."""
    values = [probability_of_improvement_batch(x, y) for x, y in zip(per_task_x, per_task_y)]
    return np.mean(np.stack(values, axis=-1), axis=-1)


def probability_of_improvement_ci(
    per_task_x: PerTaskScores,
    per_task_y: PerTaskScores,
    rng: np.random.Generator,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = DEFAULT_CONFIDENCE,
) -> IntervalEstimate:
    """Probability of improvement of X over Y across tasks, with a stratified-bootstrap CI.

    The runs of X and of Y are resampled independently within each task. Pass one task to get
    the per-task probability with its bootstrap CI.
    """
    tasks_x, tasks_y = _check_per_task(per_task_x), _check_per_task(per_task_y)
    if len(tasks_x) != len(tasks_y):
        raise ValueError("X and Y must have scores for the same tasks")
    estimate = float(probability_of_improvement_across_tasks(tasks_x, tasks_y))
    replicates = probability_of_improvement_across_tasks(
        stratified_resample(tasks_x, rng, n_resamples),
        stratified_resample(tasks_y, rng, n_resamples),
    )
    return _percentile_interval(estimate, replicates, confidence_level)


# ---------------------------------------------------------------------------------------------
# Performance profiles


def performance_profile_batch(per_task: Sequence[np.ndarray], thresholds: np.ndarray) -> np.ndarray:
    """Mean over tasks of the fraction of runs scoring strictly above each threshold.

    Returns an array of shape (*batch, len(thresholds)).
    """
    thresholds = np.asarray(thresholds, dtype=float)
    fractions = [np.mean(task[..., :, None] > thresholds, axis=-2) for task in per_task]
    return np.mean(np.stack(fractions, axis=0), axis=0)


def performance_profile_ci(
    per_task: PerTaskScores,
    thresholds: np.ndarray,
    rng: np.random.Generator,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = DEFAULT_CONFIDENCE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Performance profile with pointwise stratified-bootstrap percentile bands (point, low, high)."""
    tasks = _check_per_task(per_task)
    point = performance_profile_batch(tasks, thresholds)
    replicates = performance_profile_batch(stratified_resample(tasks, rng, n_resamples), thresholds)
    return (point, *percentile_bounds(replicates, confidence_level))


# ---------------------------------------------------------------------------------------------
# Two-sample tests and multiplicity


def welch_test(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> TestResult:
    """Welch's unequal-variance t-test (two-sided), via scipy; nan when a group has < 2 values
    or both groups have zero variance."""
    sample_a, sample_b = as_sample(a), as_sample(b)
    if sample_a.size < 2 or sample_b.size < 2:
        return TestResult(math.nan, math.nan)
    if np.var(sample_a) == 0.0 and np.var(sample_b) == 0.0:
        return TestResult(math.nan, math.nan)
    with warnings.catch_warnings():
        # scipy warns of "catastrophic cancellation" when one group is constant (every seed
        # solved the task); Welch's statistic is still well defined then, from the other group
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        result = scipy_stats.ttest_ind(sample_a, sample_b, equal_var=False)
    return TestResult(float(result.statistic), float(result.pvalue))


def mann_whitney_test(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> TestResult:
    """Mann-Whitney U test (two-sided), via scipy with its default method choice
    (exact for small samples without ties). The statistic is U of ``a``."""
    sample_a, sample_b = as_sample(a), as_sample(b)
    if sample_a.size == 0 or sample_b.size == 0:
        return TestResult(math.nan, math.nan)
    result = scipy_stats.mannwhitneyu(sample_a, sample_b, alternative="two-sided")
    return TestResult(float(result.statistic), float(result.pvalue))


def holm_adjust(pvalues: np.ndarray | Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With the m finite p-values sorted ascending, p_(i) becomes
    max_{j ≤ i} min(1, (m - j + 1) · p_(j)). NaN p-values (tests that could not be computed)
    stay NaN and do not count towards m.
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return adjusted
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted

"""The statistics of the analysis layer, on arrays small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from trbench.analysis import power, stats


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- point estimates -------------------------------------------------------------------------


def test_iqm_of_eight_values_is_mean_of_middle_four():
    assert stats.iqm([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx((3 + 4 + 5 + 6) / 4)


def test_iqm_weights_boundary_values_fractionally_when_n_not_multiple_of_four():
    # n = 9: middle 50% is [2.25, 6.75): values 3 and 7 count 0.75, values 4, 5, 6 count 1
    expected = (0.75 * 3 + 4 + 5 + 6 + 0.75 * 7) / 4.5
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 8, 100]) == pytest.approx(expected)


def test_iqm_of_tiny_samples():
    assert stats.iqm([5.0]) == 5.0
    assert stats.iqm([1.0, 3.0]) == pytest.approx(2.0)
    assert stats.iqm([0.0, 4.0, 100.0]) == pytest.approx((0.25 * 0 + 4 + 0.25 * 100) / 1.5)


def test_iqm_equals_25_percent_trimmed_mean_for_multiples_of_four():
    values = rng(1).normal(size=40)
    assert stats.iqm(values) == pytest.approx(scipy_stats.trim_mean(values, 0.25))


def test_iqm_ignores_outliers_beyond_the_quartiles():
    assert stats.iqm([-1e9, 1, 2, 3, 4, 5, 6, 1e9]) == pytest.approx(3.5)


def test_optimality_gap_counts_only_shortfall_below_threshold():
    # shortfalls below 1: 0.5, 0, 1.0, 0 -> mean 0.375
    assert stats.optimality_gap([0.5, 1.0, 0.0, 2.0]) == pytest.approx(0.375)
    assert stats.optimality_gap([0.5, 1.5], threshold=2.0) == pytest.approx(1.0)


# --- probability of improvement --------------------------------------------------------------


def test_probability_of_improvement_counts_ties_as_half():
    # pairs (x, y): 1 beats 0; 2 ties 2 twice and beats 0; 3 beats all three -> (1 + 2 + 3) / 9
    assert stats.probability_of_improvement([1, 2, 3], [2, 2, 0]) == pytest.approx(6 / 9)
    assert stats.probability_of_improvement([1, 1], [1, 1]) == pytest.approx(0.5)
    assert stats.probability_of_improvement([2], [1]) == 1.0


def test_probability_of_improvement_is_mann_whitney_u_over_nm():
    generator = rng(2)
    x = generator.integers(0, 5, 9).astype(float)  # integers make ties
    y = generator.integers(0, 5, 7).astype(float)
    u = scipy_stats.mannwhitneyu(x, y).statistic
    assert stats.probability_of_improvement(x, y) == pytest.approx(u / (x.size * y.size))


def test_probability_of_improvement_across_tasks_is_mean_of_task_values():
    per_task_x = [np.array([1.0, 2.0]), np.array([5.0])]
    per_task_y = [np.array([0.0, 3.0]), np.array([5.0])]
    # task 1: (1>0) + (2>0) = 2 of 4 pairs -> 0.5; task 2: tie -> 0.5
    value = stats.probability_of_improvement_across_tasks(per_task_x, per_task_y)
    assert float(value) == pytest.approx(0.5)


def test_probability_of_improvement_ci_brackets_estimate_and_is_degenerate_for_single_runs():
    interval = stats.probability_of_improvement_ci([np.arange(6.0)], [np.arange(6.0) + 2], rng())
    assert interval.low <= interval.estimate <= interval.high
    single = stats.probability_of_improvement_ci([np.array([3.0])], [np.array([1.0])], rng())
    assert (single.estimate, single.low, single.high) == (1.0, 1.0, 1.0)


# --- bootstrap of one mean -------------------------------------------------------------------


def test_bootstrap_ci_covers_true_mean_about_95_percent_of_the_time():
    """1000 simulated experiments of 10 normal runs each; the default interval must cover the
    true mean in 93-97% of them. All experiments are bootstrapped in one vectorised call with
    the default 2000 resamples, so the test stays well under a second."""
    samples = rng(123).normal(loc=3.0, scale=2.0, size=(1000, 10))
    low, high = stats.bootstrap_mean_ci_batch(samples, rng(7))
    coverage = np.mean((low <= 3.0) & (3.0 <= high))
    assert 0.93 <= coverage <= 0.97


def test_plain_percentile_bootstrap_undercovers_with_few_runs():
    """Why the default expands the interval: with 5 runs the plain percentile interval misses."""
    samples = rng(5).normal(size=(1000, 5))
    plain = stats.bootstrap_mean_ci_batch(samples, rng(1), method="percentile")
    expanded = stats.bootstrap_mean_ci_batch(samples, rng(1))
    coverage = [np.mean((low <= 0) & (0 <= high)) for low, high in (plain, expanded)]
    assert coverage[0] < 0.9 < coverage[1]


def test_studentized_bootstrap_covers_for_moderate_samples():
    samples = rng(11).normal(size=(500, 12))
    low, high = stats.bootstrap_mean_ci_batch(samples, rng(3), n_resamples=1000, method="studentized")
    assert 0.92 <= np.mean((low <= 0) & (0 <= high)) <= 0.98


def test_bootstrap_ci_same_seed_same_interval_and_other_seed_differs():
    values = [1.0, 4.0, 2.5, 8.0, 3.0, 5.5]
    first = stats.bootstrap_mean_ci(values, rng(42))
    again = stats.bootstrap_mean_ci(values, rng(42))
    other = stats.bootstrap_mean_ci(values, rng(43))
    assert first == again
    assert first != other
    assert first[0] < np.mean(values) < first[1]


def test_bootstrap_ci_edge_cases():
    assert all(math.isnan(bound) for bound in stats.bootstrap_mean_ci([3.0], rng()))
    assert stats.bootstrap_mean_ci([2.0, 2.0, 2.0], rng()) == (2.0, 2.0)
    low, high = stats.bootstrap_mean_ci([1.0, 3.0], rng())
    assert 1.0 <= low < high <= 3.0
    with pytest.raises(ValueError):
        stats.bootstrap_mean_ci([1.0, math.nan], rng())
    with pytest.raises(ValueError):
        stats.bootstrap_mean_ci([1.0, 2.0], rng(), method="normal")


def test_expanded_level_widens_towards_one_for_small_samples():
    assert stats.expanded_confidence_level(5) > stats.expanded_confidence_level(20) > 0.95
    # n = 10: sqrt(10/9) * t_{9, 0.975} = 2.3831..., 1 - 2 Φ(-2.3831) = 0.98283
    assert stats.expanded_confidence_level(10) == pytest.approx(0.98283, abs=1e-4)


# --- stratified bootstrap and aggregates ------------------------------------------------------


def test_aggregate_metrics_by_hand():
    per_task = [np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0]), np.array([4.0])]
    # per-task means 1.5, 1, 4
    assert float(stats.aggregate_mean(per_task)) == pytest.approx((1.5 + 1 + 4) / 3)
    assert float(stats.aggregate_median(per_task)) == pytest.approx(1.5)
    # pooled sorted 0,1,1,1,2,3,4 (n = 7): middle [1.75, 5.25): 0.25*1 + 1 + 1 + 2 + 0.25*3
    assert float(stats.aggregate_iqm(per_task)) == pytest.approx((0.25 + 1 + 1 + 2 + 0.75) / 3.5)
    # per-task shortfall below 1: (1 + 0 + 0 + 0)/4 = 0.25, 0, 0 -> mean 1/12
    assert float(stats.aggregate_optimality_gap(per_task)) == pytest.approx(0.25 / 3)


def test_stratified_resample_keeps_runs_within_their_task():
    per_task = [np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0])]
    resampled = stats.stratified_resample(per_task, rng(), 500)
    assert resampled[0].shape == (500, 3) and resampled[1].shape == (500, 2)
    assert set(np.unique(resampled[0])) <= {1.0, 2.0, 3.0}
    assert set(np.unique(resampled[1])) <= {10.0, 20.0}


def test_stratified_bootstrap_ci_is_reproducible_and_brackets_estimate():
    per_task = [rng(1).normal(size=5), rng(2).normal(1, size=7)]
    first = stats.stratified_bootstrap_ci(per_task, stats.aggregate_iqm, rng(9))
    again = stats.stratified_bootstrap_ci(per_task, stats.aggregate_iqm, rng(9))
    assert first == again
    assert first.low <= first.estimate <= first.high


def test_stratified_bootstrap_with_one_run_per_task_is_degenerate():
    interval = stats.stratified_bootstrap_ci([np.array([0.5]), np.array([1.5])], stats.aggregate_mean, rng())
    assert (interval.estimate, interval.low, interval.high) == (1.0, 1.0, 1.0)


def test_performance_profile_by_hand():
    per_task = [np.array([0.0, 1.0, 2.0, 3.0]), np.array([2.0, 2.0])]
    thresholds = np.array([-1.0, 1.5, 2.0, 5.0])
    # task 1 fractions > τ: 1, 0.5, 0.25, 0; task 2: 1, 1, 0, 0
    expected = [1.0, 0.75, 0.125, 0.0]
    point, low, high = stats.performance_profile_ci(per_task, thresholds, rng())
    np.testing.assert_allclose(point, expected)
    assert np.all(low <= point) and np.all(point <= high)


# --- tests, correction, effect size -----------------------------------------------------------


def test_welch_and_mann_whitney_equal_scipy():
    generator = rng(4)
    a, b = generator.normal(0, 1, 8), generator.normal(1, 2, 6)
    welch = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert stats.welch_test(a, b) == stats.TestResult(float(welch.statistic), float(welch.pvalue))
    mann_whitney = scipy_stats.mannwhitneyu(a, b, alternative="two-sided")
    assert stats.mann_whitney_test(a, b) == stats.TestResult(float(mann_whitney.statistic), float(mann_whitney.pvalue))


def test_tests_return_nan_when_not_computable():
    assert all(math.isnan(v) for v in stats.welch_test([1.0], [1.0, 2.0]).__dict__.values())
    assert all(math.isnan(v) for v in stats.welch_test([1.0, 1.0], [2.0, 2.0]).__dict__.values())
    assert math.isnan(power.hedges_g([1.0], [2.0]))


def test_holm_worked_example():
    # sorted p: 0.005, 0.01, 0.03, 0.04 (m = 4) -> ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04;
    # running maximum -> 0.02, 0.03, 0.06, 0.06; returned in the input order
    adjusted = stats.holm_adjust([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_skips_nan():
    adjusted = stats.holm_adjust([0.5, math.nan, 0.4])
    # m = 2: 0.4 × 2 = 0.8, then 0.5 × 1 = 0.5 -> max(0.8, 0.5) = 0.8
    np.testing.assert_allclose(adjusted, [0.8, math.nan, 0.8])
    np.testing.assert_allclose(stats.holm_adjust([0.6, 0.7]), [1.0, 1.0])


def test_hedges_g_by_hand():
    # means 2 and 4, both variances 1 -> d = -2; J(4) = Γ(2) / (√2 Γ(1.5)) = 0.797885
    assert power.hedges_g([1, 2, 3], [3, 4, 5]) == pytest.approx(-2 * 0.797885, rel=1e-5)
    # close to the usual approximation J ≈ 1 - 3 / (4 df - 1) for larger samples
    a, b = rng(1).normal(size=30), rng(2).normal(0.5, size=30)
    pooled = math.sqrt((29 * a.var(ddof=1) + 29 * b.var(ddof=1)) / 58)
    approximate = (1 - 3 / (4 * 58 - 1)) * (a.mean() - b.mean()) / pooled
    assert power.hedges_g(a, b) == pytest.approx(approximate, rel=1e-3)


# --- power -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("effect_size", "seeds"), [(1.0, 17), (0.8, 26), (0.5, 64)])
def test_seeds_for_power_matches_textbook_two_sample_t_values(effect_size, seeds):
    # Cohen's tables: 80% power, two-sided α = 0.05, equal variances
    assert power.seeds_for_power(effect_size, 1.0, 1.0) == seeds


def test_welch_power_agrees_with_simulation():
    generator = rng(8)
    n, difference, sd_a, sd_b = 8, 1.0, 0.6, 1.2
    a = generator.normal(difference, sd_a, size=(4000, n))
    b = generator.normal(0.0, sd_b, size=(4000, n))
    simulated = np.mean(scipy_stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05)
    assert float(power.welch_power(n, difference, sd_a, sd_b)) == pytest.approx(simulated, abs=0.03)


def test_seeds_for_power_edge_cases():
    assert power.seeds_for_power(0.0, 1.0, 1.0) is None
    assert power.seeds_for_power(1e-6, 1.0, 1.0) is None  # would need more than 10000
    assert power.seeds_for_power(5.0, 0.0, 0.0) == 2
    assert power.seeds_for_power(-1.0, 1.0, 1.0) == 17  # the sign does not matter


def test_welch_with_one_constant_group_is_defined_and_silent():
    import warnings as _warnings

    from scipy import stats as scipy_stats

    from trbench.analysis.stats import welch_test

    solved, other = [1000.0, 1000.0, 1000.0], [31.0, 34.2, 40.8]
    with _warnings.catch_warnings():
        _warnings.simplefilter("error")
        result = welch_test(solved, other)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        expected = scipy_stats.ttest_ind(solved, other, equal_var=False)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.pvalue == pytest.approx(expected.pvalue)

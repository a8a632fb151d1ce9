"""The probability-of-improvement matrix: its arrangement against hand-computed values, the
drawing of a dozen algorithms, and which form a report picks."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_fixtures import grid_specs, make_results

from trbench.analysis import improvement_matrix, plots, report
from trbench.analysis.improvement_matrix import PAIR_ROWS_MAX_ALGORITHMS, plot_improvement_matrix
from trbench.analysis.stats import IntervalEstimate

PAIRS = [
    ("a", "b", IntervalEstimate(0.8, 0.6, 0.95)),
    ("a", "c", IntervalEstimate(0.55, 0.3, 0.8)),
    ("b", "c", IntervalEstimate(0.3, 0.1, 0.45)),
]


def test_matrix_ranks_rows_by_mean_improvement_and_mirrors_each_pair():
    matrix = improvement_matrix.improvement_matrix(PAIRS)
    # mean P(X > others): a (0.8 + 0.55) / 2 = 0.675, c (0.45 + 0.7) / 2 = 0.575, b (0.2 + 0.3) / 2 = 0.25
    assert matrix.algos == ("a", "c", "b")
    expected = np.array([[np.nan, 0.55, 0.8], [0.45, np.nan, 0.7], [0.2, 0.3, np.nan]])
    np.testing.assert_allclose(matrix.estimate, expected, equal_nan=True)
    off_diagonal = ~np.eye(3, dtype=bool)
    np.testing.assert_allclose((matrix.estimate + matrix.estimate.T)[off_diagonal], 1.0)
    # a > b and c > b have CIs clear of 0.5; a against c does not
    assert matrix.significant.tolist() == [[False, False, True], [False, False, True], [True, True, False]]


def test_matrix_is_the_same_whichever_direction_a_pair_is_given_in():
    flipped = [(b, a, IntervalEstimate(1 - i.estimate, 1 - i.high, 1 - i.low)) for a, b, i in PAIRS]
    one, other = improvement_matrix.improvement_matrix(PAIRS), improvement_matrix.improvement_matrix(flipped)
    assert one.algos == other.algos
    np.testing.assert_allclose(one.estimate, other.estimate, equal_nan=True)
    assert (one.significant == other.significant).all()


def test_an_algorithm_without_estimates_ranks_last():
    nan = IntervalEstimate(float("nan"), float("nan"), float("nan"))
    matrix = improvement_matrix.improvement_matrix([*PAIRS, ("a", "z", nan), ("b", "z", nan), ("c", "z", nan)])
    assert matrix.algos == ("a", "c", "b", "z")
    assert not matrix.significant[:, -1].any()


@pytest.mark.parametrize("count", [12, 55])
def test_many_algorithms_fit_a_page_with_cells_labelled_while_numbers_fit(tmp_path, monkeypatch, count):
    """The family's twelve arms get a number in every cell; a radius sweep's 55 arms get colours
    only, in the same page-sized square, where 1485 rows of intervals would be 520 in tall."""
    names = [f"m{i:02d}" for i in range(count)]
    rng = np.random.default_rng(0)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            p = float(rng.uniform(0.05, 0.95))
            pairs.append((a, b, IntervalEstimate(p, max(p - 0.2, 0.0), min(p + 0.2, 1.0))))
    seen = {}
    save = improvement_matrix.save_figure

    def inspecting_save(fig, out_dir, name):
        seen["size"] = tuple(fig.get_size_inches())
        ax = fig.axes[0]
        seen["texts"] = [(t.get_text(), t.get_fontweight()) for t in ax.texts]
        seen["ticks"] = [label.get_text() for label in ax.get_yticklabels()]
        return save(fig, out_dir, name)

    monkeypatch.setattr(improvement_matrix, "save_figure", inspecting_save)
    paths = plot_improvement_matrix(pairs, tmp_path)
    assert [p.suffix for p in paths] == [".pdf", ".png"] and all(p.stat().st_size > 0 for p in paths)
    width, height = seen["size"]
    assert width <= 7.5 and height <= 7.0  # a two-column page, where 66 rows would take 24 in
    matrix = improvement_matrix.improvement_matrix(pairs)
    assert seen["ticks"] == list(matrix.algos)
    assert improvement_matrix.cells_labelled(count) == (count == 12)  # what the report's caption says
    if count == 12:
        assert len(seen["texts"]) == 12 * 11
        assert sum(weight == "bold" for _, weight in seen["texts"]) == int(matrix.significant.sum())
    else:
        assert seen["texts"] == []


@pytest.mark.slow
@pytest.mark.parametrize("count", [PAIR_ROWS_MAX_ALGORITHMS, PAIR_ROWS_MAX_ALGORITHMS + 1])
def test_a_report_draws_rows_for_few_algorithms_and_the_matrix_for_more(tmp_path, monkeypatch, count):
    calls = []
    matrix, rows = improvement_matrix.plot_improvement_matrix, plots.plot_probability_of_improvement

    def recording_matrix(pairs, out_dir):
        calls.append(("matrix", len(pairs)))
        return matrix(pairs, out_dir)

    def recording_rows(pairs, styles, out_dir):
        calls.append(("rows", len(pairs)))
        return rows(pairs, styles, out_dir)

    monkeypatch.setattr(improvement_matrix, "plot_improvement_matrix", recording_matrix)
    monkeypatch.setattr(plots, "plot_probability_of_improvement", recording_rows)
    algos = [f"algo{i}" for i in range(count)]
    root = make_results(tmp_path / "suite", grid_specs(algos=algos, seeds=(0, 1, 2)))
    out = report.build_report(root, None, report.ReportOptions(n_resamples=100))
    assert (out / "figures" / "probability_of_improvement.png").stat().st_size > 0
    form = "matrix" if count > PAIR_ROWS_MAX_ALGORITHMS else "rows"
    assert calls == [(form, count * (count - 1) // 2)]

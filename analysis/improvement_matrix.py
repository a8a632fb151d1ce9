"""Probability of improvement between many algorithms as one matrix.

With k algorithms the report has k(k-1)/2 pairs: 66 for the twelve arms of the trust-region
family, far too many rows for the one-interval-per-pair figure (plots.py). Above
:data:`PAIR_ROWS_MAX_ALGORITHMS` the report draws this matrix instead: cell (X, Y) holds
P(X > Y), so each cell and its mirror sum to one, rows are ordered by their mean probability of
improvement over the others (a ranking read top to bottom), and a bold estimate marks a pair
whose confidence interval excludes 0.5. Like plots.py, nothing here computes statistics beyond
arranging the estimates it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from trbench.analysis.plots import paper_style, save_figure
from trbench.analysis.stats import IntervalEstimate

# Up to this many algorithms (10 pairs) the report keeps one row per pair, with its interval
# drawn; beyond it, the matrix.
PAIR_ROWS_MAX_ALGORITHMS = 5
# Cell size in inches: twelve algorithms make a 4.56 in square of cells (about 6.5 x 6 in with
# names and colour bar), inside a two-column page. More algorithms shrink the cells so the matrix
# stays within MATRIX_MAX_SIDE_IN (a radius sweep's report has dozens of arms); cells smaller
# than CELL_LABEL_MIN_IN carry no number, only colour.
CELL_IN = 0.38
MATRIX_MARGIN_IN = 1.4
MATRIX_MAX_SIDE_IN = 7.0
CELL_LABEL_MIN_IN = 0.25
CELL_FONT_PT = 6
TICK_FONT_PT = 8


@dataclass(frozen=True)
class ImprovementMatrix:
    algos: tuple[str, ...]  # in rank order: the highest mean P(X > others) first
    estimate: np.ndarray  # estimate[i, j] = P(algos[i] > algos[j]); NaN on the diagonal
    significant: np.ndarray  # whether that pair's CI excludes 0.5 (either side)


Pairs = Sequence[tuple[str, str, IntervalEstimate]]


def compared_algorithms(pairs: Pairs) -> list[str]:
    """Every algorithm named in ``pairs``, sorted."""
    return sorted({name for a, b, _ in pairs for name in (a, b)})


def improvement_matrix(pairs: Pairs) -> ImprovementMatrix:
    """Arrange P(X > Y) for the given pairs (one direction each is enough: P(Y > X) = 1 - P(X > Y),
    ties counting one half) into a matrix ordered by mean probability of improvement."""
    names = compared_algorithms(pairs)
    index = {name: i for i, name in enumerate(names)}
    estimate = np.full((len(names), len(names)), np.nan)
    significant = np.zeros((len(names), len(names)), dtype=bool)
    for a, b, interval in pairs:
        i, j = index[a], index[b]
        excludes_half = bool(interval.low > 0.5 or interval.high < 0.5)
        estimate[i, j], estimate[j, i] = interval.estimate, 1.0 - interval.estimate
        significant[i, j] = significant[j, i] = excludes_half
    known = np.isfinite(estimate)
    counts = known.sum(axis=1)
    mean = np.where(known, estimate, 0.0).sum(axis=1) / np.maximum(counts, 1)
    # an algorithm without any estimate ranks last
    order = sorted(range(len(names)), key=lambda i: (counts[i] == 0, -mean[i], names[i]))
    return ImprovementMatrix(
        algos=tuple(names[i] for i in order),
        estimate=estimate[np.ix_(order, order)],
        significant=significant[np.ix_(order, order)],
    )


def cell_inches(count: int) -> float:
    """The side of one cell of a matrix of ``count`` algorithms."""
    return min(CELL_IN, (MATRIX_MAX_SIDE_IN - MATRIX_MARGIN_IN) / max(count, 1))


def cells_labelled(count: int) -> bool:
    """Whether a matrix of ``count`` algorithms writes each estimate in its cell."""
    return cell_inches(count) >= CELL_LABEL_MIN_IN


def caption(pairs: Pairs, confidence_level: float) -> str:
    """How to read the matrix of ``pairs``: what a cell holds, and where the CIs are."""
    with_cis = any(np.isfinite(i.low) and np.isfinite(i.high) for _, _, i in pairs)
    level = f"{confidence_level:.0%} stratified-bootstrap"
    if cells_labelled(len(compared_algorithms(pairs))):
        numbers = "each cell's estimate is written in it" + (
            f", in bold where its {level} CI excludes 0.5" if with_cis else " (one run per cell: no CIs)"
        )
    else:
        numbers = "colour only, too many cells for numbers; the estimates" + (
            f" with {level} CIs are in aggregate.csv" if with_cis else " are in aggregate.csv"
        )
    return (
        "row X against column Y, rows ranked by their mean probability of improvement, "
        f"0.5 meaning no difference; {numbers}"
    )


def plot_improvement_matrix(
    pairs: Pairs,
    out_dir: Path,
    name: str = "probability_of_improvement",
) -> list[Path]:
    """Heat map of P(row > column) on a diverging scale centred on 0.5, each cell labelled with
    its estimate, in bold where the pair's CI excludes 0.5 (unlabelled when cells are too small
    to hold a number)."""
    matrix = improvement_matrix(pairs)
    size = len(matrix.algos)
    cell, labelled = cell_inches(size), cells_labelled(size)
    tick_font = min(TICK_FONT_PT, 0.8 * cell * 72)
    with paper_style():
        side = cell * size + MATRIX_MARGIN_IN
        fig, ax = plt.subplots(figsize=(side + 0.5, side))
        image = ax.imshow(np.ma.masked_invalid(matrix.estimate), cmap="RdBu", vmin=0.0, vmax=1.0)
        for i in range(size if labelled else 0):
            for j in range(size):
                value = matrix.estimate[i, j]
                if not np.isfinite(value):
                    continue
                text = f"{value:.2f}"
                ax.text(
                    j,
                    i,
                    {"0.00": "0", "1.00": "1"}.get(text, text.lstrip("0")),
                    ha="center",
                    va="center",
                    fontsize=CELL_FONT_PT,
                    fontweight="bold" if matrix.significant[i, j] else "normal",
                    color="white" if abs(value - 0.5) > 0.3 else "black",
                )
        # slanted names need about twice the spacing of upright ones before neighbours touch
        rotation = 45 if labelled else 90
        # upright names centre on their column only when anchored at their middle
        ax.set_xticks(
            range(size),
            matrix.algos,
            rotation=rotation,
            ha="right",
            va="center" if rotation == 90 else "top",
            rotation_mode="anchor",
            fontsize=tick_font,
        )
        ax.set_yticks(range(size), matrix.algos, fontsize=tick_font)
        ax.set_xlabel("Y")
        ax.set_ylabel("X")
        ax.tick_params(length=0)
        colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, ticks=[0.0, 0.25, 0.5, 0.75, 1.0])
        colorbar.set_label("P(X > Y)")
        fig.tight_layout()
        return save_figure(fig, out_dir, name)

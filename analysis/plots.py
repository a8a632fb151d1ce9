"""Paper-style figures. Every function takes numbers already computed (see report_figures.py), draws
one figure, saves it as PDF and PNG and returns the two paths; nothing here computes
statistics.

Style: sized for a single column (3.3 in wide per panel), 8-9 pt fonts, TrueType fonts in the
PDF (editable, accepted by publishers), and one colour, line style and marker per algorithm that
every figure shares (:func:`algorithm_styles`), so that lines with identical values stay visible
on top of each other and in greyscale print. Figures are byte-identical for the same numbers: the
PDFs carry no creation date and the jitter of the score strips comes from a fixed seed.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from trbench.analysis.stats import IntervalEstimate

PANEL_WIDTH_IN = 3.3
PANEL_HEIGHT_IN = 2.4
PNG_DPI = 200

# Colour-blind-safe (Okabe-Ito) colours, fixed for the four built-in algorithms so that TRPO is
# the same blue in every figure of every report; other labels take the remaining colours in
# sorted order.
KNOWN_ALGORITHM_COLORS = {
    "trpo": "#0072B2",
    "ppo": "#D55E00",
    "npg": "#009E73",
    "vpg": "#CC79A7",
}
# Then Paul Tol's olive, wine, indigo and purple, so that a report of the whole trust-region
# family (eight labels beyond the four) needs no generated colour; generated ones (husl) start
# at a pink close to VPG's.
EXTRA_COLORS = (
    "#E69F00",
    "#56B4E9",
    "#F0E442",
    "#000000",
    "#999999",
    "#8C564B",
    "#17BECF",
    "#999933",
    "#882255",
    "#332288",
    "#AA4499",
)
# Line style and marker of the built-in algorithms; TRPO and NPG often learn identically on easy
# tasks, and a dashed line with its own markers stays visible on a solid one. Other labels take
# the extra styles in sorted order.
KNOWN_ALGORITHM_LINES = {"trpo": ("-", "o"), "npg": ("--", "s"), "ppo": ("-.", "^"), "vpg": (":", "D")}
EXTRA_LINESTYLES = ("-", "--", "-.", ":")
EXTRA_MARKERS = ("v", "P", "X", "<", ">", "*", "h", "p")
# Solid lines are drawn first and the more broken ones on top, so that a dashed or dotted line
# shows the line under it through its gaps.
LINESTYLE_DRAW_ORDER = ("-", "-.", "--", ":")
# Distance between markers along a curve, as a fraction of the axes diagonal (matplotlib's float
# markevery); each algorithm's markers start at its own offset, so overlapping curves do not put
# their markers on the same spots.
MARKER_SPACING = 0.12
MARKER_SIZE = 4.0
# the least room between two level tick labels, in pixels of the drawing canvas, before they slant
TICK_LABEL_GAP_PX = 4.0
# a one-panel figure keeps its legend inside the axes up to this many algorithms, below them above
LEGEND_INSIDE_MAX = 5
# Half-width of the horizontal jitter of the points of a score strip, in category widths, and the
# seed it is drawn from (with the algorithm's name), so that a rebuilt figure is byte-identical.
STRIP_JITTER = 0.15
STRIP_JITTER_SEED = 0
# Room below the lowest and above the highest value on an axis of intervals or fractions, as a
# fraction of its span, so that a bar or marker at an end of the axis does not sit on the frame.
INTERVAL_AXIS_MARGIN = 0.04

PAPER_RC = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "lines.linewidth": 1.5,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
}


@dataclass(frozen=True)
class AlgorithmStyle:
    """How one algorithm is drawn in every figure."""

    color: str
    linestyle: str
    marker: str


@dataclass(frozen=True)
class Band:
    """A curve with a pointwise confidence band."""

    x: np.ndarray
    center: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass(frozen=True)
class ScoreSummary:
    """One cell's run scores with the mean and its confidence interval."""

    values: np.ndarray
    mean: float
    low: float
    high: float


def algorithm_colors(algos: Sequence[str]) -> dict[str, str]:
    """A fixed colour per algorithm label: built-in names always get the same colour."""
    colors = {algo: KNOWN_ALGORITHM_COLORS[algo] for algo in algos if algo in KNOWN_ALGORITHM_COLORS}
    others = sorted(set(algos) - set(colors))
    palette = list(EXTRA_COLORS)
    if len(others) > len(palette):
        palette += [matplotlib.colors.to_hex(c) for c in sns.color_palette("husl", len(others))]
    colors.update(zip(others, palette))
    return colors


def algorithm_styles(algos: Sequence[str]) -> dict[str, AlgorithmStyle]:
    """Colour, line style and marker per algorithm: built-in names always get the same ones."""
    colors = algorithm_colors(algos)
    others = sorted(set(algos) - set(KNOWN_ALGORITHM_LINES))
    lines = dict(KNOWN_ALGORITHM_LINES)
    for index, algo in enumerate(others):
        lines[algo] = (EXTRA_LINESTYLES[index % len(EXTRA_LINESTYLES)], EXTRA_MARKERS[index % len(EXTRA_MARKERS)])
    return {algo: AlgorithmStyle(colors[algo], *lines[algo]) for algo in algos}


@contextmanager
def paper_style():
    with sns.axes_style("ticks"), plt.rc_context(PAPER_RC):
        yield


def save_figure(fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.pdf", out_dir / f"{name}.png"]
    # no creation date in the PDF, so that the same numbers give the same file
    fig.savefig(paths[0], metadata={"CreationDate": None})
    fig.savefig(paths[1], dpi=PNG_DPI)
    plt.close(fig)
    return paths


def panel_grid(n_panels: int, max_columns: int = 3) -> tuple[plt.Figure, list[plt.Axes]]:
    columns = min(n_panels, max_columns)
    rows = math.ceil(n_panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(PANEL_WIDTH_IN * columns, PANEL_HEIGHT_IN * rows), squeeze=False)
    flat = list(axes.flat)
    for unused in flat[n_panels:]:
        unused.set_visible(False)
    return fig, flat[:n_panels]


def format_steps(ax: plt.Axes) -> None:
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3), useMathText=True)


def _legend_handle(style: AlgorithmStyle) -> plt.Line2D:
    return plt.Line2D([], [], color=style.color, ls=style.linestyle, marker=style.marker, ms=MARKER_SIZE, lw=1.5)


def _legend(fig: plt.Figure, ax: plt.Axes, algos: Sequence[str], styles: Mapping[str, AlgorithmStyle]) -> None:
    """The legend of a one-panel figure: inside the axes for a few algorithms, below the panel
    for more, where a dozen entries cannot hide the curves."""
    if len(algos) <= LEGEND_INSIDE_MAX:
        ax.legend(frameon=False)
        fig.tight_layout()
    else:
        _legend_below(fig, algos, styles, max_columns=3)


def _legend_below(
    fig: plt.Figure, algos: Sequence[str], styles: Mapping[str, AlgorithmStyle], max_columns: int = 5
) -> None:
    """The legend hangs from the bottom edge of the laid-out panels, outside them (the tight
    bounding box of the saved figure takes it in), so that however many rows it needs it never
    covers an axis label or the steps' ×10ⁿ."""
    fig.tight_layout()
    if not algos:
        return
    handles = [_legend_handle(styles[algo]) for algo in algos]
    fig.legend(
        handles,
        list(algos),
        loc="upper center",
        ncol=min(len(algos), max_columns),
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )


def draw_band(ax: plt.Axes, band: Band, color: str, label: str) -> None:
    ax.plot(band.x, band.center, color=color, label=label)
    ax.fill_between(band.x, band.low, band.high, color=color, alpha=0.2, linewidth=0)


def _draw_styled_bands(ax: plt.Axes, bands: Mapping[str, Band], styles: Mapping[str, AlgorithmStyle]) -> None:
    """Each algorithm's curve in its line style with markers, and its band; see LINESTYLE_DRAW_ORDER."""
    algos = sorted(bands)
    for index, algo in enumerate(algos):
        style, band = styles[algo], bands[algo]
        rank = LINESTYLE_DRAW_ORDER.index(style.linestyle) if style.linestyle in LINESTYLE_DRAW_ORDER else 0
        offset = MARKER_SPACING * index / len(algos)
        ax.fill_between(band.x, band.low, band.high, color=style.color, alpha=0.2, linewidth=0)
        ax.plot(
            band.x,
            band.center,
            color=style.color,
            ls=style.linestyle,
            marker=style.marker,
            ms=MARKER_SIZE,
            markevery=(offset, MARKER_SPACING),
            label=algo,
            zorder=2.0 + 0.1 * rank,
        )


def plot_learning_curves(
    bands: Mapping[str, Mapping[str, Band]],
    styles: Mapping[str, AlgorithmStyle],
    out_dir: Path,
    y_label: str = "Evaluation return",
    name: str = "learning_curves",
) -> list[Path]:
    """One panel per env: mean eval return of each algorithm against env steps, with its band."""
    algos = sorted({algo for per_algo in bands.values() for algo in per_algo})
    with paper_style():
        fig, axes = panel_grid(len(bands))
        for ax, (env_id, per_algo) in zip(axes, sorted(bands.items())):
            _draw_styled_bands(ax, per_algo, styles)
            ax.set_title(env_id)
            ax.set_xlabel("Environment steps")
            ax.set_ylabel(y_label)
            format_steps(ax)
        _legend_below(fig, algos, styles)
        return save_figure(fig, out_dir, name)


def plot_score_distributions(
    scores: Mapping[str, Mapping[str, ScoreSummary]],
    styles: Mapping[str, AlgorithmStyle],
    out_dir: Path,
    y_label: str,
    name: str = "score_distributions",
) -> list[Path]:
    """One panel per env: every run's score as a point, and the mean with its CI as a bar."""
    with paper_style():
        fig, axes = panel_grid(len(scores))
        for ax, (env_id, per_algo) in zip(axes, sorted(scores.items())):
            order = sorted(per_algo)
            for position, algo in enumerate(order):
                summary, color = per_algo[algo], styles[algo].color
                values = np.asarray(summary.values, dtype=float)
                ax.scatter(
                    position + _strip_jitter(algo, values.size), values, s=12, color=color, alpha=0.7, linewidths=0
                )
                ax.plot([position + 0.3], [summary.mean], marker="D", color=color, ms=4)
                if np.isfinite(summary.low) and np.isfinite(summary.high):
                    ax.vlines(position + 0.3, summary.low, summary.high, color=color, lw=1.5)
            ax.set_xticks(range(len(order)), order)
            ax.set_xlim(-0.5, len(order) - 0.5)
            ax.set_title(env_id)
            ax.set_ylabel(y_label)
            ax.set_xlabel("")
        fig.tight_layout()
        for ax in axes:
            _slant_crowded_labels(ax)
        fig.tight_layout()
        return save_figure(fig, out_dir, name)


def _slant_crowded_labels(ax: plt.Axes) -> None:
    """Slant the x tick labels where, level, neighbours would touch (a dozen algorithm names
    on one panel)."""
    boxes = [label.get_window_extent() for label in ax.get_xticklabels() if label.get_text()]
    if any(left.x1 + TICK_LABEL_GAP_PX > right.x0 for left, right in zip(boxes, boxes[1:])):
        ax.tick_params(axis="x", labelrotation=35)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")


def _strip_jitter(algo: str, size: int) -> np.ndarray:
    """Horizontal offsets of a strip's points, the same on every rebuild (see STRIP_JITTER_SEED)."""
    if size < 2:
        return np.zeros(size)
    rng = np.random.default_rng([STRIP_JITTER_SEED, zlib.crc32(algo.encode())])
    return rng.uniform(-STRIP_JITTER, STRIP_JITTER, size)


def _interval_rows(
    ax: plt.Axes, labels: Sequence[str], intervals: Sequence[IntervalEstimate], row_styles: Sequence[AlgorithmStyle]
) -> None:
    """One row per interval: the CI as a bar, the estimate as a black tick on the row's marker,
    which keeps a row visible when its interval has no width."""
    for row, (interval, style) in enumerate(zip(intervals, row_styles)):
        if np.isfinite(interval.low) and np.isfinite(interval.high):
            ax.barh(row, interval.high - interval.low, left=interval.low, height=0.6, color=style.color, alpha=0.75)
        ax.plot(
            [interval.estimate],
            [row],
            marker=style.marker,
            color=style.color,
            ms=MARKER_SIZE + 1,
            ls="none",
            mec="black",
            mew=0.6,
        )
        ax.vlines(interval.estimate, row - 0.3, row + 0.3, color="black", lw=1.2)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()


def _interval_limits(intervals: Sequence[IntervalEstimate], low: float, high: float) -> tuple[float, float]:
    """An axis from at most `low` to at least `high` (so 0 is always a tick of a score axis),
    covering every interval, with INTERVAL_AXIS_MARGIN of room at both ends."""
    values = [v for i in intervals for v in (i.low, i.high, i.estimate) if np.isfinite(v)]
    low, high = min([low, *values]), max([high, *values])
    margin = INTERVAL_AXIS_MARGIN * (high - low)
    return low - margin, high + margin


def plot_aggregate_intervals(
    aggregates: Mapping[str, Mapping[str, IntervalEstimate]],
    styles: Mapping[str, AlgorithmStyle],
    out_dir: Path,
    metric_labels: Mapping[str, str],
    name: str = "aggregate_intervals",
) -> list[Path]:
    """One panel per aggregate metric: each algorithm's estimate (black tick) and its CI (bar)."""
    with paper_style():
        fig, axes = plt.subplots(
            1,
            len(aggregates),
            figsize=(1.9 * len(aggregates) + 0.6, 0.35 * _max_rows(aggregates) + 1.0),
            squeeze=False,
        )
        for index, (ax, (metric, per_algo)) in enumerate(zip(axes.flat, aggregates.items())):
            algos = sorted(per_algo)
            intervals = [per_algo[a] for a in algos]
            _interval_rows(ax, algos, intervals, [styles[a] for a in algos])
            # normalised scores: 0 is the random policy and 1 the reference, so both are on the axis
            ax.set_xlim(*_interval_limits(intervals, 0.0, 1.0))
            ax.set_title(metric_labels.get(metric, metric))
            ax.set_xlabel("Normalised score")
            if index:
                ax.set_yticklabels([])
        fig.tight_layout()
        return save_figure(fig, out_dir, name)


def _max_rows(aggregates: Mapping[str, Mapping[str, IntervalEstimate]]) -> int:
    return max((len(per_algo) for per_algo in aggregates.values()), default=1)


def plot_performance_profiles(
    profiles: Mapping[str, Band],
    styles: Mapping[str, AlgorithmStyle],
    out_dir: Path,
    name: str = "performance_profiles",
) -> list[Path]:
    """Fraction of runs with a normalised score above τ, against τ, with bootstrap bands."""
    with paper_style():
        fig, ax = plt.subplots(figsize=(PANEL_WIDTH_IN, PANEL_HEIGHT_IN))
        _draw_styled_bands(ax, profiles, styles)
        ax.set_xlabel(r"Normalised score $\tau$")
        ax.set_ylabel(r"Fraction of runs with score $> \tau$")
        ax.set_ylim(-INTERVAL_AXIS_MARGIN, 1 + INTERVAL_AXIS_MARGIN)  # markers at 0 and 1 clear the frame
        _legend(fig, ax, sorted(profiles), styles)
        return save_figure(fig, out_dir, name)


def plot_probability_of_improvement(
    pairs: Sequence[tuple[str, str, IntervalEstimate]],
    styles: Mapping[str, AlgorithmStyle],
    out_dir: Path,
    name: str = "probability_of_improvement",
) -> list[Path]:
    """P(X > Y) with its CI for each pair; the bar takes X's colour, 0.5 is marked."""
    with paper_style():
        fig, ax = plt.subplots(figsize=(PANEL_WIDTH_IN, 0.35 * len(pairs) + 0.9))
        labels = [f"P({a} > {b})" for a, b, _ in pairs]
        _interval_rows(ax, labels, [interval for _, _, interval in pairs], [styles[a] for a, _, _ in pairs])
        ax.axvline(0.5, color="grey", ls="--", lw=1)
        ax.set_xlim(*_interval_limits([], 0.0, 1.0))
        ax.set_xticks([0.0, 0.25, 0.5, 0.75, 1.0])
        ax.set_xlabel("Probability of improvement")
        fig.tight_layout()
        return save_figure(fig, out_dir, name)


def plot_sample_efficiency(
    curves: Mapping[str, Band],
    styles: Mapping[str, AlgorithmStyle],
    out_dir: Path,
    name: str = "sample_efficiency",
) -> list[Path]:
    """IQM of the normalised eval score across all runs and tasks against env steps."""
    with paper_style():
        fig, ax = plt.subplots(figsize=(PANEL_WIDTH_IN, PANEL_HEIGHT_IN))
        _draw_styled_bands(ax, curves, styles)
        ax.set_xlabel("Environment steps")
        ax.set_ylabel("IQM normalised score")
        format_steps(ax)
        _legend(fig, ax, sorted(curves), styles)
        return save_figure(fig, out_dir, name)

"""Paper-style figures. Every function takes numbers already computed (see report.py), draws
one figure, saves it as PDF and PNG and returns the two paths; nothing here computes
statistics.

Style: sized for a single column (3.3 in wide per panel), 8-9 pt fonts, TrueType fonts in the
PDF (editable, accepted by publishers), and one colour per algorithm that every figure shares
(:func:`algorithm_colors`). seaborn is given plain numpy arrays, which works the same with
every pandas version it meets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from trbench.analysis.stats import IntervalEstimate  # noqa: E402

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
EXTRA_COLORS = ("#E69F00", "#56B4E9", "#F0E442", "#000000", "#999999", "#8C564B", "#17BECF")

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


@contextmanager
def paper_style():
    with sns.axes_style("ticks"), plt.rc_context(PAPER_RC):
        yield


def save_figure(fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.pdf", out_dir / f"{name}.png"]
    fig.savefig(paths[0])
    fig.savefig(paths[1], dpi=PNG_DPI)
    plt.close(fig)
    return paths


def _panel_grid(n_panels: int, max_columns: int = 3) -> tuple[plt.Figure, list[plt.Axes]]:
    columns = min(n_panels, max_columns)
    rows = math.ceil(n_panels / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(PANEL_WIDTH_IN * columns, PANEL_HEIGHT_IN * rows), squeeze=False
    )
    flat = list(axes.flat)
    for unused in flat[n_panels:]:
        unused.set_visible(False)
    return fig, flat[:n_panels]


def _format_steps(ax: plt.Axes) -> None:
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3), useMathText=True)


def _legend_below(fig: plt.Figure, algos: Sequence[str], colors: Mapping[str, str]) -> None:
    handles = [plt.Line2D([], [], color=colors[algo], lw=2) for algo in algos]
    fig.legend(
        handles, list(algos), loc="lower center", ncol=min(len(algos), 5), frameon=False,
        bbox_to_anchor=(0.5, -0.02),
    )
    fig.tight_layout(rect=(0, 0.08 if len(algos) else 0, 1, 1))


def _draw_band(ax: plt.Axes, band: Band, color: str, label: str) -> None:
    ax.plot(band.x, band.center, color=color, label=label)
    ax.fill_between(band.x, band.low, band.high, color=color, alpha=0.2, linewidth=0)


def plot_learning_curves(
    bands: Mapping[str, Mapping[str, Band]],
    colors: Mapping[str, str],
    out_dir: Path,
    y_label: str = "Evaluation return",
    name: str = "learning_curves",
) -> list[Path]:
    """One panel per env: mean eval return of each algorithm against env steps, with its band."""
    algos = sorted({algo for per_algo in bands.values() for algo in per_algo})
    with paper_style():
        fig, axes = _panel_grid(len(bands))
        for ax, (env_id, per_algo) in zip(axes, sorted(bands.items())):
            for algo in sorted(per_algo):
                _draw_band(ax, per_algo[algo], colors[algo], algo)
            ax.set_title(env_id)
            ax.set_xlabel("Environment steps")
            ax.set_ylabel(y_label)
            _format_steps(ax)
        _legend_below(fig, algos, colors)
        return save_figure(fig, out_dir, name)


def plot_score_distributions(
    scores: Mapping[str, Mapping[str, ScoreSummary]],
    colors: Mapping[str, str],
    out_dir: Path,
    y_label: str,
    name: str = "score_distributions",
) -> list[Path]:
    """One panel per env: every run's score as a point, and the mean with its CI as a bar."""
    algos = sorted({algo for per_algo in scores.values() for algo in per_algo})
    with paper_style():
        fig, axes = _panel_grid(len(scores))
        for ax, (env_id, per_algo) in zip(axes, sorted(scores.items())):
            order = sorted(per_algo)
            labels = np.array([algo for algo in order for _ in per_algo[algo].values], dtype=object)
            values = np.concatenate([per_algo[algo].values for algo in order]).astype(float)
            sns.stripplot(
                x=labels, y=values, hue=labels, order=order, hue_order=order,
                palette={algo: colors[algo] for algo in order}, jitter=0.15, size=3.5,
                alpha=0.7, legend=False, ax=ax,
            )
            for position, algo in enumerate(order):
                summary = per_algo[algo]
                ax.plot([position + 0.3], [summary.mean], marker="D", color=colors[algo], ms=4)
                if np.isfinite(summary.low) and np.isfinite(summary.high):
                    ax.vlines(position + 0.3, summary.low, summary.high, color=colors[algo], lw=1.5)
            ax.set_title(env_id)
            ax.set_ylabel(y_label)
            ax.set_xlabel("")
        fig.tight_layout()
        return save_figure(fig, out_dir, name)


def _interval_rows(
    ax: plt.Axes, labels: Sequence[str], intervals: Sequence[IntervalEstimate], row_colors: Sequence[str]
) -> None:
    for row, (interval, color) in enumerate(zip(intervals, row_colors)):
        ax.barh(
            row, interval.high - interval.low, left=interval.low, height=0.6, color=color, alpha=0.75
        )
        ax.vlines(interval.estimate, row - 0.3, row + 0.3, color="black", lw=1.2)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()


def plot_aggregate_intervals(
    aggregates: Mapping[str, Mapping[str, IntervalEstimate]],
    colors: Mapping[str, str],
    out_dir: Path,
    metric_labels: Mapping[str, str],
    name: str = "aggregate_intervals",
) -> list[Path]:
    """One panel per aggregate metric: each algorithm's estimate (black tick) and 95% CI (bar)."""
    with paper_style():
        fig, axes = plt.subplots(
            1, len(aggregates), figsize=(1.9 * len(aggregates) + 0.6, 0.35 * _max_rows(aggregates) + 1.0),
            squeeze=False,
        )
        for index, (ax, (metric, per_algo)) in enumerate(zip(axes.flat, aggregates.items())):
            algos = sorted(per_algo)
            _interval_rows(ax, algos, [per_algo[a] for a in algos], [colors[a] for a in algos])
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
    colors: Mapping[str, str],
    out_dir: Path,
    name: str = "performance_profiles",
) -> list[Path]:
    """Fraction of runs with a normalised score above τ, against τ, with bootstrap bands."""
    with paper_style():
        fig, ax = plt.subplots(figsize=(PANEL_WIDTH_IN, PANEL_HEIGHT_IN))
        for algo in sorted(profiles):
            _draw_band(ax, profiles[algo], colors[algo], algo)
        ax.set_xlabel(r"Normalised score $\tau$")
        ax.set_ylabel(r"Fraction of runs with score $> \tau$")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(frameon=False)
        fig.tight_layout()
        return save_figure(fig, out_dir, name)


def plot_probability_of_improvement(
    pairs: Sequence[tuple[str, str, IntervalEstimate]],
    colors: Mapping[str, str],
    out_dir: Path,
    name: str = "probability_of_improvement",
) -> list[Path]:
    """P(X > Y) with its 95% CI for each pair; the bar takes X's colour, 0.5 is marked."""
    with paper_style():
        fig, ax = plt.subplots(figsize=(PANEL_WIDTH_IN, 0.35 * len(pairs) + 0.9))
        labels = [f"P({a} > {b})" for a, b, _ in pairs]
        _interval_rows(ax, labels, [interval for _, _, interval in pairs], [colors[a] for a, _, _ in pairs])
        ax.axvline(0.5, color="grey", ls="--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_xlabel("Probability of improvement")
        fig.tight_layout()
        return save_figure(fig, out_dir, name)


def plot_sample_efficiency(
    curves: Mapping[str, Band],
    colors: Mapping[str, str],
    out_dir: Path,
    name: str = "sample_efficiency",
) -> list[Path]:
    """IQM of the normalised eval score across all runs and tasks against env steps."""
    with paper_style():
        fig, ax = plt.subplots(figsize=(PANEL_WIDTH_IN, PANEL_HEIGHT_IN))
        for algo in sorted(curves):
            _draw_band(ax, curves[algo], colors[algo], algo)
        ax.set_xlabel("Environment steps")
        ax.set_ylabel("IQM normalised score")
        _format_steps(ax)
        ax.legend(frameon=False)
        fig.tight_layout()
        return save_figure(fig, out_dir, name)


@dataclass(frozen=True)
class PublishedPoint:
    """A published value to mark on a reproduction panel."""

    arm: str  # the arm of ours it is compared with (gives the colour)
    source: str  # gives the marker
    step: float
    value: float
    low: float  # NaN when no spread was published
    high: float


# one shape per published source, so no two sources share one in any figure (a test checks that
# there are at least as many as sources in analysis/data/published_results.csv)
SOURCE_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "*", "h", "p", "d", "8", "H", "+", "x", "1", "2", "3",
                  "4", "|")


def plot_reproduction(
    curves: Mapping[str, Mapping[str, Band]],
    published: Mapping[str, Sequence[PublishedPoint]],
    colors: Mapping[str, str],
    out_dir: Path,
    y_label: str = "Return",
    name: str = "reproduction",
) -> list[Path]:
    """One panel per env: our mean curve of each arm with its band, and each published value
    as a marker (shape per source, colour of the arm it is compared with) with its spread."""
    envs = sorted(set(curves) | set(published))
    arms = sorted({arm for per_arm in curves.values() for arm in per_arm}
                  | {point.arm for points in published.values() for point in points})
    sources = sorted({point.source for points in published.values() for point in points})
    markers = {source: SOURCE_MARKERS[i % len(SOURCE_MARKERS)] for i, source in enumerate(sources)}
    with paper_style():
        fig, axes = _panel_grid(len(envs))
        for ax, env_id in zip(axes, envs):
            for arm, band in sorted(curves.get(env_id, {}).items()):
                _draw_band(ax, band, colors[arm], arm)
            for point in published.get(env_id, ()):
                error = None
                if np.isfinite(point.low) and np.isfinite(point.high):
                    error = [[point.value - point.low], [point.high - point.value]]
                ax.errorbar(
                    [point.step], [point.value], yerr=error, marker=markers[point.source], ms=5,
                    color=colors[point.arm], mfc="white", mew=1.2, capsize=2, lw=1, ls="none",
                )
            ax.set_title(env_id)
            ax.set_xlabel("Environment steps")
            ax.set_ylabel(y_label)
            _format_steps(ax)
        handles = [plt.Line2D([], [], color=colors[arm], lw=2) for arm in arms]
        handles += [plt.Line2D([], [], color="black", marker=markers[s], mfc="white", ls="none") for s in sources]
        labels = [*arms, *sources]
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), frameon=False,
                   bbox_to_anchor=(0.5, -0.02))
        legend_rows = math.ceil(len(labels) / 5)
        bottom = min((0.18 * legend_rows + 0.1) / fig.get_figheight(), 0.45)
        fig.tight_layout(rect=(0, bottom, 1, 1))
        return save_figure(fig, out_dir, name)

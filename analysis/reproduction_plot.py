"""The reproduction figure: our runs' curves against the published values they are compared with,
one panel per env, in the paper style of plots.py (whose panels, bands and step axes it shares).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D  # not pyplot: plots.py picks the backend before pyplot loads

from trbench.analysis.plots import Band, draw_band, format_steps, panel_grid, paper_style, save_figure


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
SOURCE_MARKERS = (
    "o",
    "s",
    "^",
    "v",
    "D",
    "P",
    "X",
    "<",
    ">",
    "*",
    "h",
    "p",
    "d",
    "8",
    "H",
    "+",
    "x",
    "1",
    "2",
    "3",
    "4",
    "|",
    "_",
)


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
    arms = sorted(
        {arm for per_arm in curves.values() for arm in per_arm}
        | {point.arm for points in published.values() for point in points}
    )
    sources = sorted({point.source for points in published.values() for point in points})
    markers = {source: SOURCE_MARKERS[i % len(SOURCE_MARKERS)] for i, source in enumerate(sources)}
    with paper_style():
        fig, axes = panel_grid(len(envs))
        for ax, env_id in zip(axes, envs):
            for arm, band in sorted(curves.get(env_id, {}).items()):
                draw_band(ax, band, colors[arm], arm)
            for point in published.get(env_id, ()):
                error = None
                if np.isfinite(point.low) and np.isfinite(point.high):
                    error = [[point.value - point.low], [point.high - point.value]]
                ax.errorbar(
                    [point.step],
                    [point.value],
                    yerr=error,
                    marker=markers[point.source],
                    ms=5,
                    color=colors[point.arm],
                    mfc="white",
                    mew=1.2,
                    capsize=2,
                    lw=1,
                    ls="none",
                )
            ax.set_title(env_id)
            ax.set_xlabel("Environment steps")
            ax.set_ylabel(y_label)
            format_steps(ax)
        handles = [Line2D([], [], color=colors[arm], lw=2) for arm in arms]
        handles += [Line2D([], [], color="black", marker=markers[s], mfc="white", ls="none") for s in sources]
        labels = [*arms, *sources]
        fig.legend(
            handles, labels, loc="lower center", ncol=min(len(labels), 5), frameon=False, bbox_to_anchor=(0.5, -0.02)
        )
        legend_rows = math.ceil(len(labels) / 5)
        bottom = min((0.18 * legend_rows + 0.1) / fig.get_figheight(), 0.45)
        fig.tight_layout(rect=(0, bottom, 1, 1))
        return save_figure(fig, out_dir, name)

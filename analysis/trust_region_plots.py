"""The figures of the two trust-region parts, in the paper style of plots.py: the KL each arm's
updates take against its nominal radius, and the score against the radius relative to the
default. The numbers come computed (trust_region.py, radius_sensitivity.py); nothing here
computes statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.artist import Artist
from matplotlib.colors import to_rgba
from matplotlib.lines import Line2D  # not pyplot: plots.py picks the backend before pyplot loads
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

from trbench.analysis.plots import (
    MARKER_SIZE,
    PANEL_HEIGHT_IN,
    PANEL_WIDTH_IN,
    AlgorithmStyle,
    Band,
    panel_grid,
    paper_style,
    save_figure,
)
from trbench.analysis.trust_region import LOGGED_MEASURE, BoxStats, KlBoxes, swept_arm

BOX_WIDTH = 0.32
BOX_ALPHA = 0.6  # so that the black median shows on every colour, black included
BOX_OFFSET = 0.19  # the mean-KL box left of the arm's tick, the max-KL box right of it
RADIUS_HALF_WIDTH = 0.42
# a log axis cannot show 0 (a skipped update): values below the smallest positive one drawn
# sit this factor below it, at the bottom of the axis
LOG_FLOOR_FACTOR = 0.5
# the radius is dashed (a bound on the KL measured) or dotted (on the reverse KL), never solid
# like a box's median
RADIUS_COLOR = "#333333"
RADIUS_LINES = {True: "--", False: ":"}
# a radius sweep (8 arms x 5 radii: 40 groups) in one row of boxes would be ~22 inches wide: above
# FACET_ABOVE groups in a panel, when they belong to more than one swept arm, each arm gets a
# panel of its own; the panels fill rows of at most FACET_COLUMNS, the figure at most
# MAX_FIGURE_WIDTH_IN wide, and grows in rows. Up to FACET_ABOVE groups (the family grid's twelve
# arms), or one arm's, the figure keeps its single row per env.
FACET_ABOVE = 12
FACET_COLUMNS = 4
MAX_FIGURE_WIDTH_IN = 12.0
FACET_BOX_IN = 0.4  # width per group in a panel
FACET_MIN_WIDTH_IN = 2.4
FACET_HEIGHT_IN = 2.2
FACET_LABEL_CHARS = 5  # longer tick labels are slanted


def _floor(panels: Mapping[str, Mapping[str, KlBoxes]]) -> float:
    positive = [
        value
        for per_group in panels.values()
        for boxes in per_group.values()
        for box in (boxes.mean_kl, boxes.max_kl)
        if box is not None
        for value in (box.p05, box.p25, box.p50, box.p75, box.p95)
        if value > 0
    ]
    positive += [b.kl_radius for g in panels.values() for b in g.values() if np.isfinite(b.kl_radius)]
    return LOG_FLOOR_FACTOR * min(positive) if positive else 1e-8


def _bxp_stats(box: BoxStats, floor: float) -> dict:
    def lifted(value: float) -> float:
        return max(value, floor)

    return {
        "med": lifted(box.p50),
        "q1": lifted(box.p25),
        "q3": lifted(box.p75),
        "whislo": lifted(box.p05),
        "whishi": lifted(box.p95),
        "fliers": [],
    }


def _draw_group(ax, position: int, boxes: KlBoxes, color: str, floor: float) -> None:
    """One group's mean-KL and max-KL boxes around ``position``, and its radius line."""
    for box, offset, hatch in ((boxes.mean_kl, -BOX_OFFSET, ""), (boxes.max_kl, BOX_OFFSET, "////")):
        if box is None:
            continue
        ax.bxp(
            [_bxp_stats(box, floor)],
            positions=[position + offset],
            widths=BOX_WIDTH,
            patch_artist=True,
            showfliers=False,
            boxprops={
                "facecolor": to_rgba(color, BOX_ALPHA) if not hatch else "white",
                "edgecolor": color,
                "hatch": hatch,
            },
            medianprops={"color": "black", "lw": 1.2},
            whiskerprops={"color": color},
            capprops={"color": color},
        )
    if np.isfinite(boxes.kl_radius):
        ax.hlines(
            boxes.kl_radius,
            position - RADIUS_HALF_WIDTH,
            position + RADIUS_HALF_WIDTH,
            color=RADIUS_COLOR,
            ls=RADIUS_LINES[boxes.measure == LOGGED_MEASURE],
            lw=1.5,
            zorder=3,
        )


def faceted(panels: Mapping[str, Mapping[str, KlBoxes]]) -> bool:
    """Whether the KL figure draws one panel per swept arm (:func:`swept_arm`: TRPL's three
    layers are three arms): a panel of more than FACET_ABOVE groups of more than one arm."""
    most = max((len(per_group) for per_group in panels.values()), default=0)
    arms = {swept_arm(group) for per_group in panels.values() for group in per_group}
    return most > FACET_ABOVE and len(arms) > 1


def _facets(panels: Mapping[str, Mapping[str, KlBoxes]]) -> list[tuple[str, str, list[str]]]:
    """(env, swept arm, its groups in radius order, radius-less ones last) per facet, env by env."""
    facets = []
    for env, per_group in panels.items():
        by_arm: dict[str, list[str]] = {}
        for group in per_group:
            by_arm.setdefault(swept_arm(group), []).append(group)
        for arm, groups in sorted(by_arm.items()):
            radius = {group: per_group[group].radius for group in groups}
            groups.sort(key=lambda g: (not np.isfinite(radius[g]), radius[g] if np.isfinite(radius[g]) else 0.0, g))
            facets.append((env, arm, groups))
    return facets


def _short_labels(groups: list[str], per_group: Mapping[str, KlBoxes]) -> list[str]:
    """The radius value of each group (0.01), or its whole label where it has none or two share one."""
    labels = [f"{per_group[g].radius:g}" if np.isfinite(per_group[g].radius) else g for g in groups]
    return [label if labels.count(label) == 1 else group for label, group in zip(labels, groups)]


def _kl_legend(fig, panels: Mapping[str, Mapping[str, KlBoxes]]) -> None:
    """Boxes, and a radius line for each KL direction some drawn radius bounds."""
    drawn = {b.measure == LOGGED_MEASURE for g in panels.values() for b in g.values() if np.isfinite(b.kl_radius)}
    handles: list[Artist] = [
        Patch(facecolor="grey", edgecolor="grey", label="mean KL over states"),
        Patch(facecolor="white", edgecolor="grey", hatch="////", label="max KL over states"),
    ]
    for forward, label in ((True, "KL radius (old || new)"), (False, "KL radius (new || old)")):
        if forward in drawn:
            handles.append(Line2D([], [], color=RADIUS_COLOR, ls=RADIUS_LINES[forward], lw=1.5, label=label))
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.55 / fig.get_figheight(), 1, 1))


def _plot_faceted(
    panels: Mapping[str, Mapping[str, KlBoxes]], styles: Mapping[str, AlgorithmStyle], out_dir: Path, name: str
) -> list[Path]:
    """The per-arm layout: each env's swept arms fill rows of at most FACET_COLUMNS panels
    sharing one log y axis, each panel's groups in radius order, ticked by their radius value."""
    floor, facets = _floor(panels), _facets(panels)
    most = max(len(groups) for _, _, groups in facets)
    panel_width = min(MAX_FIGURE_WIDTH_IN, max(FACET_MIN_WIDTH_IN, FACET_BOX_IN * most + 0.9))
    per_env = [sum(env == facet_env for facet_env, _, _ in facets) for env in panels]
    columns = max(1, min(max(per_env), FACET_COLUMNS, int(MAX_FIGURE_WIDTH_IN // panel_width)))
    env_rows = [math.ceil(count / columns) for count in per_env]
    fig, cells = panel_grid(sum(env_rows) * columns, max_columns=columns)
    fig.set_size_inches(panel_width * columns, FACET_HEIGHT_IN * sum(env_rows) + 0.6)
    axes, first_cell = [], 0
    for count, rows in zip(per_env, env_rows):  # each env starts a row of its own
        axes += cells[first_cell : first_cell + count]
        for unused in cells[first_cell + count : first_cell + rows * columns]:
            unused.set_visible(False)
        first_cell += rows * columns
    for ax, (env, arm, groups) in zip(axes, facets):
        per_group = panels[env]
        if ax is not axes[0]:
            ax.sharey(axes[0])
        for position, group in enumerate(groups):
            _draw_group(ax, position, per_group[group], styles[group].color, floor)
        ax.set_yscale("log")
        labels = _short_labels(groups, per_group)
        long = max(len(label) for label in labels) > FACET_LABEL_CHARS
        ax.set_xticks(range(len(groups)), labels, rotation=30 if long else 0, ha="right" if long else "center")
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_title(arm if len(panels) == 1 else f"{arm}, {'all envs' if env == 'all' else env}")
        settings = sorted({per_group[g].setting for g in groups if per_group[g].setting})
        ax.set_xlabel(", ".join(settings))
        spec = ax.get_subplotspec()
        if spec is None or spec.is_first_col():
            ax.set_ylabel("KL(old || new) after update")
        else:
            ax.tick_params(labelleft=False)
    _kl_legend(fig, panels)
    return save_figure(fig, out_dir, name)


def plot_trust_region_kl(
    panels: Mapping[str, Mapping[str, KlBoxes]],
    styles: Mapping[str, AlgorithmStyle],
    out_dir: Path,
    name: str = "trust_region_kl",
) -> list[Path]:
    """One panel per env (and 'all'): per arm, a box of the mean KL and a hatched box of the max
    KL of its updates (quartiles, whiskers at the 5th and 95th percentiles) on a log axis, and
    its KL radius as a horizontal line (dashed: a bound on KL(old||new); dotted: on the reverse KL).

    A radius sweep (see :func:`faceted`: more than FACET_ABOVE groups of several arms in a panel)
    gets one small panel per swept arm and env instead, at most MAX_FIGURE_WIDTH_IN wide."""
    if faceted(panels):
        with paper_style():
            return _plot_faceted(panels, styles, out_dir, name)
    floor = _floor(panels)
    most = max((len(per_group) for per_group in panels.values()), default=1)
    width = max(PANEL_WIDTH_IN, 0.6 * most + 1.2)
    with paper_style():
        fig, axes = panel_grid(len(panels), max_columns=1)
        fig.set_size_inches(width, PANEL_HEIGHT_IN * len(panels) + 0.4)
        for ax, (env, per_group) in zip(axes, panels.items()):
            groups = sorted(per_group)
            for position, group in enumerate(groups):
                _draw_group(ax, position, per_group[group], styles[group].color, floor)
            ax.set_yscale("log")
            ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
            ax.set_xlim(-0.6, len(groups) - 0.4)
            ax.set_title("all envs" if env == "all" else env)
            ax.set_ylabel("KL(old || new) after update")
        _kl_legend(fig, panels)
        return save_figure(fig, out_dir, name)


def plot_radius_sensitivity(
    panels: Mapping[str, tuple[str, Mapping[str, Band]]],
    styles: Mapping[str, AlgorithmStyle],
    out_dir: Path,
    name: str = "radius_sensitivity",
) -> list[Path]:
    """One panel per env (and 'all'), each with its y label: per algorithm, the mean score with
    its CI against radius / default on a log axis; the default (1) is a dashed line."""
    lines = sorted({line for _, per_line in panels.values() for line in per_line})
    with paper_style():
        fig, axes = panel_grid(len(panels))
        fig.set_size_inches(fig.get_figwidth(), fig.get_figheight() + 0.4)  # room for the legend
        for ax, (panel, (y_label, per_line)) in zip(axes, panels.items()):
            ax.axvline(1.0, color="grey", ls="--", lw=1)
            for line, band in sorted(per_line.items()):
                style = styles[line]
                has_ci = np.isfinite(band.low) & np.isfinite(band.high)
                ax.errorbar(
                    band.x[has_ci],
                    band.center[has_ci],
                    yerr=[band.center[has_ci] - band.low[has_ci], band.high[has_ci] - band.center[has_ci]],
                    color=style.color,
                    ls="none",
                    capsize=2,
                    lw=1,
                )
                ax.plot(band.x, band.center, color=style.color, ls=style.linestyle, marker=style.marker, ms=MARKER_SIZE)
            ax.set_xscale("log")
            # ticks at the radii drawn (and the default), labelled plainly: 0.3, 1, 3
            ticks = sorted({1.0, *(float(x) for band in per_line.values() for x in band.x)})
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(lambda value, _: f"{value:g}")
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title("all envs" if panel == "all" else panel)
            ax.set_xlabel("Radius / default")
            ax.set_ylabel(y_label)
        handles = [
            Line2D([], [], color=styles[line].color, ls=styles[line].linestyle, marker=styles[line].marker)
            for line in lines
        ]
        handles.append(Line2D([], [], color="grey", ls="--", lw=1))
        fig.legend(
            handles,
            [*lines, "default"],
            loc="lower center",
            ncol=min(len(lines) + 1, 5),
            frameon=False,
            bbox_to_anchor=(0.5, -0.01),
        )
        fig.tight_layout(rect=(0, 0.4 / fig.get_figheight(), 1, 1))
        return save_figure(fig, out_dir, name)

"""The report's text: one Section per part of report.md and report.html, in the order
:func:`document` puts them, and the few lines the command prints.

Sections only describe tables and figures that tables.py, bands.py and report_figures.py have
computed; render.py turns them into Markdown, HTML or LaTeX.
"""

from __future__ import annotations

import math

import pandas as pd

from trbench.analysis import reference
from trbench.analysis.imported import imported_section
from trbench.analysis.load import METRIC_DESCRIPTIONS
from trbench.analysis.published import METRICS
from trbench.analysis.render import (
    BulletList,
    Figure,
    Paragraph,
    Preformatted,
    Section,
    Table,
    format_number,
    p_value,
)
from trbench.analysis.report_options import METRIC_LABELS
from trbench.analysis.tables import Analysis, Unavailable
from trbench.analysis.trust_region_sections import trust_region_sections


def _format_published(row) -> str:
    text = format_number(row.published)
    if row.spread_kind == "ci95_bootstrap":
        text += f" [{format_number(row.published_low)}, {format_number(row.published_high)}]"
    elif math.isfinite(row.published_low):
        text += f" ± {format_number(row.published - row.published_low)}"
    return ("~" if row.approximate else "") + text


def _format_ours(row) -> str:
    if not math.isfinite(row.ours):
        return "n/a"
    text = format_number(row.ours)
    if math.isfinite(row.ours_ci_low):
        text += f" [{format_number(row.ours_ci_low)}, {format_number(row.ours_ci_high)}]"
    return f"{text} ({int(row.n_seeds)})"


def _format_steps_budget(steps: float) -> str:
    if not math.isfinite(steps):
        return ""
    if steps % 1_000_000 == 0:
        return f"{int(steps // 1_000_000)}M"
    return f"{int(steps):,}"


def reproduction_display_table(table: pd.DataFrame, confidence_level: float) -> pd.DataFrame:
    ours = f"ours [{confidence_level:.0%} CI] (seeds)"
    rows = []
    for row in table.itertuples(index=False):
        rows.append(
            {
                "env": row.env_id,
                "arm": row.arm,
                "source": row.source + (f" ({row.setting})" if row.setting else ""),
                "version": row.env_version,
                "steps": _format_steps_budget(row.steps),
                "metric": row.metric,
                "published": _format_published(row),
                "spread": row.spread_kind or "none",
                ours: _format_ours(row),
                "verdict": row.verdict,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "env",
            "arm",
            "source",
            "version",
            "steps",
            "metric",
            "published",
            "spread",
            ours,
            "verdict",
        ],
    )


def reproduction_section(analysis: Analysis) -> Section:
    reproduction = analysis.reproduction
    assert reproduction is not None  # the section exists only for a report with a reference
    table = reproduction.table
    blocks: list = [
        Paragraph(
            f"Published values for preset {reproduction.reference.name} ({reproduction.reference.description}) "
            "next to ours, each computed with the source's own metric at the source's step budget. "
            "Verdict: consistent when the published value lies in our "
            f"{analysis.options.confidence_level:.0%} CI over seeds or our mean lies within the published "
            "spread (value ± spread, or the published CI); otherwise above or below. "
            f"'{reference.TOO_FEW_SEEDS}': fewer than {reference.MIN_SEEDS_FOR_VERDICT} seeds, whose CI "
            "cannot reach beyond their range and so covers less than it claims; the value is shown, no verdict. "
            "'no data': our runs do "
            "not reach that step budget or cannot compute that metric. '~' marks values read off or "
            "digitized from a figure. Published and our env versions differ (see the version column "
            "and the env ids); read each verdict with that in mind. Also in reproduction.csv."
        )
    ]
    metrics = sorted(set(table["metric"])) if not table.empty else []
    if metrics:
        blocks.append(BulletList([f"{metric}: {METRICS[metric]}" for metric in metrics]))
    if table.empty:
        blocks.append(Paragraph("No comparison yet: no complete run of an arm this preset compares."))
    else:
        blocks.append(
            Table(
                reproduction_display_table(table, analysis.options.confidence_level),
                "Reproduction of published results",
            )
        )
        counts = table["verdict"].value_counts()
        blocks.append(
            Paragraph(
                "Verdicts: "
                + ", ".join(
                    f"{counts.get(v, 0)} {v}"
                    for v in (*reference.VERDICTS, reference.TOO_FEW_SEEDS, reference.NOT_COMPARED)
                )
                + "."
            )
        )
    if reproduction.notes:
        blocks.append(BulletList(reproduction.notes))
    return Section("Reproduction of published results", blocks)


def _distinct(values: pd.Series) -> str:
    return ", ".join(str(value) for value in sorted(values.dropna().unique(), key=str)) or "unknown"


def _distinct_counts(values: pd.Series) -> str:
    """Distinct whole numbers in increasing order with thousands separators: '51,200'."""
    return ", ".join(f"{int(value):,}" for value in sorted(values.dropna().unique())) or "unknown"


def setup_section(analysis: Analysis) -> Section:
    loaded, options, scored = analysis.loaded, analysis.options, analysis.scored
    manifest = loaded.manifest or {}
    items = [
        f"Suite: {manifest.get('suite') or 'not recorded (no manifest.json)'}",
        f"Runs: {len(loaded.runs)} complete, {len(loaded.excluded)} failed or incomplete; "
        f"{len(scored)} have a '{options.metric}' score and are analysed.",
        f"Metric '{options.metric}': {METRIC_DESCRIPTIONS[options.metric]}.",
        f"Algorithms: {', '.join(analysis.algos) or 'none'}.",
        f"Environments (gymnasium id with version): {', '.join(analysis.envs) or 'none'}.",
        f"Bootstrap: {options.n_resamples} resamples, {options.confidence_level:.0%} intervals, seed {options.seed}.",
    ]
    for key, values in loaded.versions.items():
        items.append(f"Version of {key}: {', '.join(values)}")
    blocks: list = [BulletList(items)]
    if not scored.empty:
        grid = (
            scored.groupby(["env_id", "algo"], sort=True)
            .agg(
                algorithm=("algorithm", _distinct),
                runs=("run_id", "size"),
                seeds=("seed", _distinct),
                steps=("steps", _distinct_counts),
            )
            .reset_index()
        )
        blocks.append(
            Table(
                grid.rename(columns={"env_id": "env"}),
                "Runs analysed per cell: algorithm, seeds and the environment steps each run took (its budget "
                "rounded up to whole iterations).",
                {"seeds": str, "steps": str},
            )
        )
    if loaded.suite_toml:
        blocks += [Paragraph("The suite file that produced the grid:"), Preformatted(loaded.suite_toml)]
    return Section("Setup", blocks)


def per_task_section(analysis: Analysis) -> Section:
    if analysis.summary.empty:
        return Section("Per-task results", [Paragraph("Not computed: no run has a score for this metric.")])
    blocks: list = [
        Paragraph(
            f"Raw returns of the '{analysis.options.metric}' metric per algorithm and env. std uses "
            "n-1 (empty with one run); IQM is the mean of the middle 50% of runs; the CI is a "
            f"{analysis.options.confidence_level:.0%} bootstrap CI of the mean, percentile interval "
            "expanded for small samples (Hesterberg 2015) because plain percentile intervals are "
            "too narrow with 5-10 runs; with 2-3 runs it spans about the range of the data, with "
            "one run it is empty. Also in summary.csv and summary.tex."
        ),
        Table(analysis.summary, "Per-task results"),
    ]
    single = analysis.summary[analysis.summary["n_runs"] == 1]
    if len(single):
        cells = ", ".join(f"{row.algo} on {row.env}" for row in single.itertuples(index=False))
        blocks.append(Paragraph(f"No CI or std for cells with a single run: {cells}."))
    return Section("Per-task results", blocks)


def aggregate_section(analysis: Analysis) -> Section:
    blocks: list = []
    if isinstance(analysis.aggregate, Unavailable):
        blocks.append(Paragraph(f"Not computed: {analysis.aggregate.reason}."))
    else:
        blocks.append(
            Paragraph(
                "Scores normalised per env as (return - random) / (reference - random) with the fixed "
                "constants below, then aggregated over "
                f"{len(analysis.aggregate_envs)} env(s) ({', '.join(analysis.aggregate_envs)}). "
                "IQM pools all runs of all envs; mean and median are over the per-env means; the "
                "optimality gap is the mean shortfall below 1 (the reference). CIs: stratified "
                "bootstrap (runs resampled within each env), percentile intervals. The probability "
                "of improvement P(a > b) is averaged over envs. Also in aggregate.csv and aggregate.tex."
            )
        )
        blocks.append(Table(analysis.aggregate, "Aggregate metrics on normalised scores"))
        if analysis.aggregate["ci_low"].isna().any():
            blocks.append(
                Paragraph(
                    "Rows without a CI: some env has a single run of that algorithm, and a bootstrap "
                    "over one run per env has zero width, which would wrongly read as certainty."
                )
            )
        if analysis.aggregate["algo_b"].eq("").all():
            blocks.append(Paragraph("Probability of improvement: not computed, it needs at least two algorithms."))
        used = [analysis.normalization[env] for env in analysis.aggregate_envs]
        blocks.append(
            Table(
                pd.DataFrame(
                    {
                        "env": [c.env_id for c in used],
                        "random_return": [c.random_return for c in used],
                        "reference_return": [c.reference_return for c in used],
                        "random (measured)": [f"{c.random_episodes} episodes, seed {c.random_seed}" for c in used],
                        "reference source": [c.reference_source for c in used],
                    }
                ),
                "Normalisation constants (analysis/data/normalization.csv)",
            )
        )
    if analysis.aggregate_notes:
        blocks.append(BulletList(analysis.aggregate_notes))
    return Section("Aggregate results", blocks)


def pairwise_section(analysis: Analysis) -> Section:
    if isinstance(analysis.pairwise, Unavailable):
        return Section("Pairwise tests", [Paragraph(f"Not computed: {analysis.pairwise.reason}.")])
    table = analysis.pairwise
    significant = table[table["p_holm"] < analysis.options.alpha]
    blocks: list = [
        Paragraph(
            "For each env and pair of algorithms: mean_diff = mean(a) - mean(b); Welch's t-test and "
            "the Mann-Whitney U test (two-sided, scipy); p_holm = Welch p-values Holm-adjusted over "
            f"all {table['welch_p'].notna().sum()} testable rows of this table; hedges_g = "
            "bias-corrected standardised difference; prob_improvement = P(a > b) with ties counted "
            "1/2, with a bootstrap CI. Empty cells could not be computed (fewer than two runs, or "
            "no variance). Also in pairwise.csv and pairwise.tex."
        ),
        Table(table, "Pairwise tests", {"welch_p": p_value, "mannwhitney_p": p_value, "p_holm": p_value}),
        Paragraph(
            f"Significant at α = {analysis.options.alpha} after Holm correction: "
            + ("; ".join(f"{r.algo_a} vs {r.algo_b} on {r.env}" for r in significant.itertuples(index=False)) or "none")
            + "."
        ),
    ]
    return Section("Pairwise tests", blocks)


def _seed_count(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "> 10000 or never"
    return str(int(value))


def power_section(analysis: Analysis) -> Section:
    options = analysis.options
    if isinstance(analysis.power, Unavailable):
        return Section("How many seeds", [Paragraph(f"Not computed: {analysis.power.reason}.")])
    blocks: list = [
        Paragraph(
            f"Runs per algorithm needed for {options.power:.0%} power of a two-sided Welch t-test at "
            f"α = {options.alpha}, taking the observed standard deviations as the true ones: once for "
            "the observed difference and once for the stated minimal difference, "
            f"{options.min_difference:g} × (reference - random return) of the env, i.e. "
            f"{options.min_difference:g} in normalised score. Computed in closed form from the "
            "noncentral t distribution (exact for normal scores with equal variances, Welch-"
            "Satterthwaite degrees of freedom otherwise), not by simulation. 'n/a': a cell has fewer "
            "than two runs (no spread) or the env has no normalisation constants; '> 10000 or "
            "never': the difference is 0 or too small to detect. Also in power.csv."
        ),
        Table(
            analysis.power,
            "Seeds per algorithm for 80% power",
            {"seeds_for_observed_diff": _seed_count, "seeds_for_min_diff": _seed_count},
        ),
    ]
    return Section("How many seeds", blocks)


def figures_section(analysis: Analysis) -> Section:
    blocks: list = [Figure(f"figures/{name}.png", caption) for name, caption in analysis.figures]
    if analysis.figures:
        blocks.insert(0, Paragraph("Every figure is in figures/ as PDF (vector, for papers) and PNG."))
    if analysis.figure_notes:
        blocks.append(BulletList([f"Not drawn: {note}" for note in analysis.figure_notes]))
    return Section("Figures", blocks)


def excluded_section(analysis: Analysis) -> Section:
    if analysis.excluded.empty:
        return Section("Failed and excluded runs", [Paragraph("None: every run completed and has a score.")])
    return Section(
        "Failed and excluded runs",
        [
            Paragraph("These runs are left out of every table and figure above."),
            Table(analysis.excluded.fillna(""), "Excluded runs"),
        ],
    )


def document(analysis: Analysis) -> list[Section]:
    reproduction = [reproduction_section(analysis)] if analysis.reproduction is not None else []
    imported = imported_section(analysis.loaded, analysis.options.metric)
    return [
        setup_section(analysis),
        *([imported] if imported is not None else []),
        *reproduction,
        per_task_section(analysis),
        aggregate_section(analysis),
        pairwise_section(analysis),
        *trust_region_sections(analysis),
        figures_section(analysis),
        power_section(analysis),
        excluded_section(analysis),
    ]


def headline_lines(summary: pd.DataFrame, metric: str, confidence_level: float = 0.95) -> list[str]:
    """The per-task table in a few lines for the terminal: per env and algorithm, the runs, the
    mean score and its CI (from summary.csv)."""
    if summary.empty:
        return [f"no run has a '{metric}' score, so there is no result to show"]
    rows = [("env", "algo", "runs", "mean", f"{confidence_level:.0%} CI")]
    for record in summary.itertuples(index=False):
        interval = (
            f"[{format_number(record.ci_low)}, {format_number(record.ci_high)}]"
            if math.isfinite(record.ci_low)
            else "none (one run)"
        )
        rows.append((record.env, record.algo, str(record.n_runs), format_number(record.mean), interval))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        f"{METRIC_LABELS[metric]} per algorithm (mean over runs, {confidence_level:.0%} bootstrap CI of the mean):"
    ]
    for row in rows:
        cells = [
            cell.ljust(width) if i < 2 or i == 4 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines

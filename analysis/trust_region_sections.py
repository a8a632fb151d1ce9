"""The report's sections of the two trust-region parts: "Is the trust region kept?" and
"Sensitivity to the radius". Each is absent where its part is (see trust_region.py for when
each part appears); the figures are listed with the others in the Figures section.
"""

from __future__ import annotations

import math

import pandas as pd

from trbench.analysis.radius_sensitivity import MIN_RADIUS_VALUES
from trbench.analysis.render import Paragraph, Section, Table, format_number
from trbench.analysis.tables import Analysis
from trbench.analysis.trust_region import ALL_ENVS, EXCEEDANCE_FACTOR

KL_SECTION = "Is the trust region kept?"
SENSITIVITY_SECTION = "Sensitivity to the radius"
KL_CSV, SENSITIVITY_CSV = "trust_region_kl.csv", "radius_sensitivity.csv"
MEASURE_TEXT = {"kl_old_new": "KL(old || new)", "kl_new_old": "KL(new || old)", "other": "not a KL"}


def _percent(value: object) -> str:
    return "" if not isinstance(value, float) or math.isnan(value) else f"{value:.1%}"


def _bound(row) -> str:
    """What the arm's radius bounds: 'KL(old || new), mean', 'not a KL', or 'none'."""
    if not row.measure:
        return "none"
    measures = ", ".join(MEASURE_TEXT.get(measure, measure) for measure in row.measure.split(", "))
    return f"{measures}, {row.scope}" if row.scope and not measures.startswith("not") else measures


def _radius(row) -> str:
    if not row.setting:
        return ""
    return f"{row.setting} = {format_number(row.radius)}" if math.isfinite(row.radius) else row.setting


def kl_display_table(table: pd.DataFrame) -> pd.DataFrame:
    above = f"> {EXCEEDANCE_FACTOR:g}x radius"
    return pd.DataFrame(
        {
            "arm": table["arm"],
            "env": table["env"],
            "runs": table["runs"],
            "updates": table["updates"],
            "mean KL median": table["mean_kl_median"],
            "mean KL p95": table["mean_kl_p95"],
            "max KL median": table["max_kl_median"],
            "max KL p95": table["max_kl_p95"],
            "radius": [_radius(row) for row in table.itertuples(index=False)],
            "KL radius": table["kl_radius"],
            "radius bounds": [_bound(row) for row in table.itertuples(index=False)],
            f"mean KL {above}": table["frac_mean_kl_above"],
            f"max KL {above}": table["frac_max_kl_above"],
        }
    )


def trust_region_kl_section(analysis: Analysis) -> Section | None:
    kl = analysis.trust_region_kl
    if kl is None:
        return None
    if kl.table.empty:
        return Section(KL_SECTION, [Paragraph("Not computed: no analysed run logs kl or kl_max in progress.csv.")])
    above = f"> {EXCEEDANCE_FACTOR:g}x radius"
    return Section(
        KL_SECTION,
        [
            Paragraph(
                "The KL divergence each update actually took, always measured in one direction: KL(old || new) "
                "between the policy before and after the update on the update's batch, as its mean over the "
                "batch's states (progress.csv's kl) and its max over them (kl_max). Every update of every seed "
                f"of an arm is pooled, per env and, for an arm on several envs, over all of them (env '{ALL_ENVS}'). "
                "Percentiles use linear interpolation between updates. 'KL radius' is the KL value the method "
                "nominally keeps; the last two columns are the fractions of updates whose mean, or max, KL "
                f"exceeds {EXCEEDANCE_FACTOR:g} times it, computed only where the radius bounds KL(old || new). "
                "Methods whose radius bounds the reverse KL(new || old), or is not a KL at all (a clip range, a "
                "Wasserstein bound), are shown for comparison without a fraction, as are methods without a "
                "radius. A radius on the mean KL does not bound the max KL, which may exceed it by design. Empty "
                f"max-KL cells: those runs do not log kl_max. Also in {KL_CSV}."
            ),
            Table(
                kl_display_table(kl.table),
                "KL(old || new) after each update, per arm",
                {f"mean KL {above}": _percent, f"max KL {above}": _percent},
            ),
        ],
    )


def _value_cells(cell: pd.DataFrame) -> str:
    parts = []
    for row in cell.itertuples(index=False):
        text = f"{format_number(row.value)}: {format_number(row.mean)}"
        if math.isfinite(row.ci_low):
            text += f" [{format_number(row.ci_low)}, {format_number(row.ci_high)}]"
        parts.append(text + f" ({row.runs})")
    return "; ".join(parts)


def sensitivity_display_table(table: pd.DataFrame, confidence_level: float) -> pd.DataFrame:
    """One row per algorithm and env: its values, the mean [CI] (runs) at each, and the best."""
    per_value = f"value: mean [{confidence_level:.0%} CI] (runs)"
    rows = []
    for (algorithm, env), cell in table.groupby(["algorithm", "env"], sort=False):
        cell = cell.sort_values("value")
        rows.append(
            {
                "algorithm": algorithm,
                "setting": cell["setting"].iloc[0],
                "env": env,
                "score": cell["score"].iloc[0],
                "default": cell["default"].iloc[0],
                "values": ", ".join(format_number(value) for value in cell["value"]),
                per_value: _value_cells(cell),
                "best": cell.loc[cell["best"], "value"].iloc[0],
            }
        )
    return pd.DataFrame(rows, columns=["algorithm", "setting", "env", "score", "default", "values", per_value, "best"])


def radius_sensitivity_section(analysis: Analysis) -> Section | None:
    sensitivity = analysis.radius_sensitivity
    if sensitivity is None:
        return None
    options = analysis.options
    return Section(
        SENSITIVITY_SECTION,
        [
            Paragraph(
                "For each algorithm whose runs on an env differ only in the value of its trust-region radius "
                f"(at least {MIN_RADIUS_VALUES} values): the mean '{options.metric}' score over seeds at each "
                f"value, with a {options.confidence_level:.0%} bootstrap CI of the mean as in the per-task table "
                "(empty with one run). Scores are normalised as (return - random) / (reference - random) where "
                "the env has constants (score 'normalised'), raw otherwise. "
                f"Env '{ALL_ENVS}': the mean over the algorithm's normalised envs of the per-env means, at the "
                "values every one of them has, with a stratified-bootstrap CI. 'best' is the value with the "
                "highest mean; where the CIs overlap, the data do not single it out. The figure draws the same "
                f"numbers against radius / default. Also in {SENSITIVITY_CSV}."
            ),
            Table(
                sensitivity_display_table(sensitivity.table, options.confidence_level),
                "Score against the trust-region radius",
            ),
        ],
    )


def trust_region_sections(analysis: Analysis) -> list[Section]:
    """The sections of the parts the runs carry data for, in report order."""
    sections = [trust_region_kl_section(analysis), radius_sensitivity_section(analysis)]
    return [section for section in sections if section is not None]

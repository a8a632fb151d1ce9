"""The files of a report: its CSV, LaTeX, Markdown and HTML files, where the report goes, and the
record of the options it was built with.

A report folder replaced by one built with other options would lose its numbers silently, so
:func:`check_report_destination` refuses that; :func:`replace_directory` swaps a finished report
in only once it is whole.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from trbench.analysis.load import LoadedResults
from trbench.analysis.published import resolve_reference
from trbench.analysis.render import Section, Table, format_number, latex_booktabs, p_value, render_html, render_markdown
from trbench.analysis.report_options import ReportOptions
from trbench.analysis.report_sections import reproduction_section
from trbench.analysis.tables import AGGREGATE_COLUMNS, PAIRWISE_COLUMNS, POWER_COLUMNS, Analysis
from trbench.analysis.trust_region_sections import KL_CSV, SENSITIVITY_CSV
from trbench.base.errors import UsageError

# the options a report was built with, so that a rebuild with others never replaces it unnoticed
OPTIONS_FILE = "report_options.json"


def summary_latex_table(summary: pd.DataFrame, metric: str, confidence_level: float = 0.95) -> Table:
    """Envs as rows, algorithms as columns, 'mean [ci_low, ci_high] (n)' in each cell."""
    algos = sorted(summary["algo"].unique())
    rows = []
    for env in sorted(summary["env"].unique()):
        row = {"Environment": env}
        for algo in algos:
            cell = summary[(summary["env"] == env) & (summary["algo"] == algo)]
            if cell.empty:
                row[algo] = "--"
                continue
            record = cell.iloc[0]
            interval = (
                f" [{format_number(record['ci_low'])}, {format_number(record['ci_high'])}]"
                if math.isfinite(record["ci_low"])
                else ""
            )
            row[algo] = f"{format_number(record['mean'])}{interval} ({int(record['n_runs'])})"
        rows.append(row)
    return Table(
        pd.DataFrame(rows, columns=["Environment", *algos]),
        f"Mean {metric} return [{confidence_level:.0%} bootstrap CI] (number of runs) per environment.",
    )


def write_outputs(analysis: Analysis, sections: list[Section], target: Path) -> None:
    options = analysis.options
    analysis.summary.to_csv(target / "summary.csv", index=False)
    pairwise = (
        analysis.pairwise if isinstance(analysis.pairwise, pd.DataFrame) else pd.DataFrame(columns=PAIRWISE_COLUMNS)
    )
    pairwise.to_csv(target / "pairwise.csv", index=False)
    aggregate = (
        analysis.aggregate if isinstance(analysis.aggregate, pd.DataFrame) else pd.DataFrame(columns=AGGREGATE_COLUMNS)
    )
    aggregate.to_csv(target / "aggregate.csv", index=False)
    power = analysis.power if isinstance(analysis.power, pd.DataFrame) else pd.DataFrame(columns=POWER_COLUMNS)
    power.to_csv(target / "power.csv", index=False)
    analysis.excluded.to_csv(target / "excluded_runs.csv", index=False)
    if analysis.trust_region_kl is not None:
        analysis.trust_region_kl.table.to_csv(target / KL_CSV, index=False)
    if analysis.radius_sensitivity is not None:
        analysis.radius_sensitivity.table.to_csv(target / SENSITIVITY_CSV, index=False)
    if analysis.reproduction is not None:
        analysis.reproduction.table.to_csv(target / "reproduction.csv", index=False)
        (target / "reproduction.md").write_text(
            render_markdown(f"Reproduction of {analysis.reproduction.reference.name}", [reproduction_section(analysis)])
        )

    (target / "summary.tex").write_text(
        latex_booktabs(
            summary_latex_table(analysis.summary, options.metric, options.confidence_level), "tab:trbench-per-task"
        )
    )
    (target / "aggregate.tex").write_text(
        latex_booktabs(
            Table(
                aggregate,
                f"Aggregate normalised scores with {options.confidence_level:.0%} stratified-bootstrap CIs.",
            ),
            "tab:trbench-aggregate",
            3,
        )
    )
    (target / "pairwise.tex").write_text(
        latex_booktabs(
            Table(
                pairwise,
                "Pairwise tests (Holm-adjusted Welch p-values).",
                {"welch_p": p_value, "mannwhitney_p": p_value, "p_holm": p_value},
            ),
            "tab:trbench-pairwise",
            3,
        )
    )
    title = f"trbench report: {(analysis.loaded.manifest or {}).get('suite') or analysis.loaded.results_dir.name}"
    (target / "report.md").write_text(render_markdown(title, sections))
    (target / "report.html").write_text(render_html(title, sections, target))


def default_report_folder(results_dir: Path | str, options: ReportOptions) -> Path:
    """``report/`` for the default options; each option that changes the numbers from its default
    adds itself to the name (``report-auc/``, ``report-seed3/``, ``report-auc-mindiff0.2/``), so
    that reports built with different options stand side by side instead of replacing each other.
    ``--reference`` only adds a section, so it keeps the folder (see check_report_destination)."""
    defaults = ReportOptions()
    parts = ["report"]
    if options.metric != defaults.metric:
        parts.append(options.metric)
    if options.seed != defaults.seed:
        parts.append(f"seed{options.seed}")
    if options.min_difference != defaults.min_difference:
        parts.append(f"mindiff{options.min_difference:g}")
    return Path(results_dir) / "-".join(parts)


def options_record(options: ReportOptions, loaded: LoadedResults) -> dict:
    """Every option the report is built with, the reference by the preset it resolves to."""
    record = dataclasses.asdict(options)
    if options.reference is not None:
        record["reference"] = resolve_reference(options.reference, (loaded.manifest or {}).get("suite"))
    return record


def write_options_record(target: Path, record: dict) -> None:
    (target / OPTIONS_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _option_text(key: str, value: object) -> str:
    flag = {"metric": "--metric", "seed": "--seed", "min_difference": "--min-diff", "reference": "--reference"}
    return f"{flag.get(key, key)} {'none' if value is None else value}"


def check_report_destination(out_dir: Path, record: dict) -> None:
    """Refuse to replace a report built with other options, or a folder that holds no report.

    A report folder replaced by one built with other options would lose its numbers silently;
    one built with the same options is rebuilt in place. A report written before its options were
    recorded (report.md but no OPTIONS_FILE) is replaced, as it always was."""
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    recorded_path = out_dir / OPTIONS_FILE
    if not recorded_path.exists():
        if (out_dir / "report.md").exists():
            return
        raise UsageError(
            f"{out_dir}: is not empty and holds no trbench report, so it is not replaced; "
            "choose a new or empty folder with --out"
        )
    try:
        recorded = json.loads(recorded_path.read_text())
    except (OSError, ValueError):
        raise UsageError(
            f"{recorded_path}: unreadable, so the options of that report are unknown; remove the "
            "report or choose another folder with --out"
        ) from None
    differences = [key for key in record if recorded.get(key) != record[key]]
    if differences:
        was = ", ".join(_option_text(key, recorded.get(key)) for key in differences)
        now = ", ".join(_option_text(key, record[key]) for key in differences)
        raise UsageError(
            f"{out_dir}: holds a report built with {was}, not {now}; rebuild it with the same "
            "options, or write this one elsewhere with --out"
        )


def replace_directory(new: Path, destination: Path) -> None:
    """Move ``new`` to ``destination``, replacing an older report only once the new one is whole."""
    if not destination.exists():
        new.rename(destination)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{destination.name}-old-", dir=destination.parent))
    retired.rmdir()
    destination.rename(retired)
    try:
        new.rename(destination)
    except BaseException:
        retired.rename(destination)
        raise
    shutil.rmtree(retired, ignore_errors=True)

"""`trbench report`: turn a results folder into tables, tests, figures and a written report.

Pipeline: load (load.py) → compute the tables (tables.py, with the statistics of stats.py and
power.py) and, with ``--reference``, the reproduction table (reference.py) → draw the figures
(report_figures.py, from the bands of bands.py) → write the sections (report_sections.py) and
the files (report_files.py). Each part of the report is computed by its own function; when the
data cannot support a part (one algorithm, one run in a cell, no normalisation constants for an
env, ...), that part says why instead of failing the whole report.

Everything is written into a temporary folder next to the destination and renamed into place at
the end, so a crash never leaves a half-written report.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from trbench.analysis import reference
from trbench.analysis.load import load_results
from trbench.analysis.report_figures import draw_figures, draw_reproduction_figure, draw_trust_region_figures
from trbench.analysis.report_files import (
    check_report_destination,
    default_report_folder,
    options_record,
    replace_directory,
    write_options_record,
    write_outputs,
)
from trbench.analysis.report_options import STREAM_REPRODUCTION, ReportOptions
from trbench.analysis.report_sections import document
from trbench.analysis.tables import analyse
from trbench.base.errors import check_output_folder


def build_report(
    results_dir: Path | str, out_dir: Path | str | None = None, options: ReportOptions | None = None
) -> Path:
    """Write the full report for ``results_dir`` into ``out_dir`` (default: results_dir/report,
    or a sibling named by the options, see :func:`default_report_folder`) and return ``out_dir``.
    The folder appears complete or not at all."""
    options = options or ReportOptions()
    loaded = load_results(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else default_report_folder(results_dir, options)
    check_output_folder(out_dir)
    record = options_record(options, loaded)
    check_report_destination(out_dir, record)  # before the long part
    analysis = analyse(loaded, options)
    if options.reference is not None:  # a PublishedDataError is a UsageError: one line, exit 2
        analysis.reproduction = reference.reproduction_table(
            loaded,
            record["reference"],
            options.rng(STREAM_REPRODUCTION),
            n_resamples=options.n_resamples,
            confidence_level=options.confidence_level,
        )
    # only now that every input has been checked: a refused report leaves no folder behind
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-partial-", dir=out_dir.parent))
    try:
        figure_dir = staging / "figures"
        figure_dir.mkdir()
        scored_ids = set(analysis.scored["run_id"])
        draw_figures(analysis, loaded.curves[loaded.curves["run_id"].isin(scored_ids)], figure_dir)
        if analysis.reproduction is not None:
            draw_reproduction_figure(analysis, figure_dir)
        draw_trust_region_figures(analysis, figure_dir)
        write_outputs(analysis, document(analysis), staging)
        write_options_record(staging, record)
        replace_directory(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir

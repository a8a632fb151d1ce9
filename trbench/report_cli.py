"""The `trbench report` subcommand."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from trbench.analysis.load import METRICS
from trbench.analysis.report import ReportOptions, build_report
from trbench.analysis.report_sections import headline_lines
from trbench.base.errors import UsageError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help="statistical comparison report and paper figures for a results folder",
        description=(
            "Write report.md, report.html, summary/pairwise/aggregate/power CSVs, LaTeX tables and "
            "figures (PDF and PNG) for the runs under RESULTS_DIR/runs/."
        ),
    )
    parser.add_argument("results_dir", metavar="RESULTS_DIR", type=Path, help="folder holding runs/<run_id>/")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=(
            "output folder (default: RESULTS_DIR/report; with a non-default --metric, --seed or --min-diff, "
            "RESULTS_DIR/report-auc, report-seed3, ...). A report built with other options is never replaced"
        ),
    )
    parser.add_argument(
        "--metric",
        default="final",
        help=(
            "final: final deterministic eval return; auc: mean eval return over training; last100: mean "
            "return of the last 100 training episodes, which every imported run has (default: final)"
        ),
    )
    parser.add_argument(
        "--reference",
        nargs="?",
        const="auto",
        default=None,
        metavar="PRESET",
        help=(
            "add a reproduction table and figure against the published results of PRESET (a preset's "
            "suite name or suite file; without a value: the suite named in RESULTS_DIR's manifest)"
        ),
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every bootstrap (default: 0)")
    parser.add_argument(
        "--min-diff",
        type=float,
        default=0.1,
        help=(
            "minimal difference worth detecting in the power analysis, as a fraction of each env's "
            "reference - random return (default: 0.1)"
        ),
    )
    parser.set_defaults(func=run_report)
    return parser


def run_report(args: argparse.Namespace) -> int:
    if args.metric not in METRICS:
        raise UsageError(f"--metric: must be one of {', '.join(METRICS)}, got {args.metric!r}")
    if not (math.isfinite(args.min_diff) and args.min_diff > 0):
        raise UsageError(f"--min-diff: must be a number > 0, got {args.min_diff}")
    options = ReportOptions(metric=args.metric, seed=args.seed, min_difference=args.min_diff, reference=args.reference)
    out_dir = build_report(args.results_dir, args.out, options)
    for line in headline_lines(pd.read_csv(out_dir / "summary.csv"), args.metric, options.confidence_level):
        print(line)
    print(f"report: {out_dir / 'report.html'} (and report.md, CSV and LaTeX tables, figures/ in {out_dir})")
    return 0

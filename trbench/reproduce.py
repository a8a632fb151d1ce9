"""`trbench reproduce PRESET`: run a reproduction preset's grid, then report it against the
published numbers it replicates.

A preset is a suite file under ``suites/presets/`` (or ``suites/reproduction/``) named by its
suite name (``baselines-mujoco1m``), its file name without ``.toml``, or a path; the lookup is
:mod:`trbench.base.presets`, which `trbench report --reference` uses too. The grid runs through
the suite runner, so an interrupted reproduction resumes where it stopped; the report
(``trbench report DIR --reference PRESET``) is written even when some runs are still missing,
and then compares what is complete.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trbench.analysis.published import load_reference_sets
from trbench.analysis.report import ReportOptions, build_report
from trbench.base.errors import UsageError
from trbench.base.presets import find_preset
from trbench.suites.grid import load_suite
from trbench.suites.runner import EXECUTORS, ORDERS, check_executor, run_suite

DEFAULT_ROOT = Path("results") / "reproduction"


def check_has_reference(suite_name: str, path: Path) -> None:
    """A suite without published numbers to compare with would run its whole grid and only then
    fail to report, so it is refused first."""
    known = load_reference_sets()
    if suite_name not in known:
        raise UsageError(
            f"PRESET: {path}: suite {suite_name!r} has no published reference set; known: {', '.join(sorted(known))}"
        )


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="run a published-results preset, then report it against the published numbers",
        description="Run a reproduction preset's grid (resumably, through the suite runner) into --out, then "
        "write the report with its reproduction table and figure (trbench report --reference). "
        "Exit code 0 when every run is complete, 1 when some failed or are missing (the report "
        "then covers the complete ones), 2 for bad input.",
    )
    p.add_argument("preset", help="preset suite name (e.g. baselines-mujoco1m), file name, or path to a suite file")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: results/reproduction/<suite name>)")
    p.add_argument("--workers", type=int, default=None, help="runs in parallel (default: the number of cores)")
    p.add_argument("--executor", choices=EXECUTORS, default="local", help="as for trbench run")
    p.add_argument("--address", default=None, help="Ray cluster address, as for trbench run")
    p.add_argument(
        "--order",
        choices=ORDERS,
        default="cells",
        help="as for trbench run, but cells by default: a reproduction stopped half-way then has "
        "whole cells with the 5 seeds a verdict needs, not every cell short of them",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        dest="only_envs",
        metavar="ENV",
        help="run only this env's runs now (repeatable), as for trbench run; the report covers all",
    )
    p.add_argument("--report-only", action="store_true", help="do not run anything; report what is in --out")
    p.add_argument("--seed", type=int, default=0, help="seed of every bootstrap in the report (default: 0)")
    p.set_defaults(func=reproduce_command)


def reproduce_command(args) -> int:
    suite = load_suite(find_preset(args.preset))
    check_has_reference(suite.name, suite.path)
    out = args.out if args.out is not None else DEFAULT_ROOT / suite.name
    code = 0
    if not args.report_only:
        check_executor(args.executor, args.address, args.workers)
        code = run_suite(
            suite,
            out,
            workers=args.workers,
            executor=args.executor,
            address=args.address,
            redo_failed=True,
            stream=sys.stdout,
            order=args.order,
            only_envs=tuple(args.only_envs),
        )
    elif not (out / "runs").is_dir():
        raise UsageError(f"--report-only: {out} holds no runs yet; run the preset first")
    report_dir = build_report(out, None, ReportOptions(seed=args.seed, reference=suite.name))
    print(f"reproduction report written to {report_dir} (table: {report_dir / 'reproduction.md'})")
    return code

"""`trbench run` and `trbench status`: run a suite's grid, and see how far it got."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from trbench.suites.grid import Suite, load_suite
from trbench.suites.run_spec import resolve
from trbench.suites.runner import EXECUTORS, ORDERS, check_executor, check_out_dir, default_out, dry_run, run_suite
from trbench.suites.status import print_status


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a suite's grid of runs in parallel, resumably",
        description="Expand a suite file (see suites/README.md) into its grid of runs and run those not yet "
        "complete. Exit code 0 when every run completed, 1 when some failed or diverged, "
        "2 for bad input.",
    )
    p.add_argument("suite", type=Path, help="suite file, e.g. suites/quickstart.toml")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: results/<suite name>)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="runs in parallel (default: the number of cores; with --address: as many as Ray schedules)",
    )
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: a process pool on this machine (default); ray: Ray tasks (needs the ray extra)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster address for --executor ray, e.g. auto or HEAD_HOST:6379 "
        "(default: start a local Ray instance)",
    )
    p.add_argument(
        "--seeds-per-worker",
        type=int,
        default=None,
        metavar="S",
        help="a worker (a Ray task with --executor ray) trains up to S runs of one cell (differing only by "
        "seed) as one batched computation, each run's files and CPU numbers as alone (default: the suite's "
        "seeds_per_worker, else 4; 1: one seed per worker)",
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs and the total steps; run nothing")
    p.add_argument(
        "--skip-failed",
        action="store_true",
        help="do not redo runs recorded as failed or diverged (by default every run not complete is redone)",
    )
    p.add_argument(
        "--order",
        choices=ORDERS,
        default="seeds",
        help="seeds: the suite's order, seeds outermost, so an interrupted grid has every cell at its "
        "first seeds (default); cells: all seeds of one algorithm x env cell before the next, so "
        "cells reach the seeds a verdict needs one at a time",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        dest="only_envs",
        metavar="ENV",
        help="run only this env's runs of the grid now (repeatable; with --order cells, in the order "
        "given); the other runs and their results stay as they are",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="every run also writes TensorBoard event files in its folder (the setting tensorboard = true; "
        "needs the tensorboard extra); watch with: tensorboard --logdir OUT/runs",
    )
    p.set_defaults(func=run_command)

    s = subparsers.add_parser(
        "status",
        help="complete, failed, started and missing runs of a suite's results folder",
        description="Count a suite's runs by algorithm and env: complete, failed (or diverged), started "
        "(in training or interrupted), missing (nothing of it yet); then the steps trained of the grid's "
        "budget and whether a runner is working on the folder now. Exit code 0 when every run is "
        "complete, else 1.",
    )
    s.add_argument("dir", type=Path, help="a suite's results folder, e.g. results/quickstart")
    s.set_defaults(func=status_command)


def run_command(args) -> int:
    suite = load_suite(args.suite)
    if args.tensorboard:
        suite = with_event_files(suite)
    out = args.out if args.out is not None else default_out(suite)
    check_executor(args.executor, args.address, args.workers)
    if args.dry_run:
        check_out_dir(out, suite)
        return dry_run(
            suite,
            out,
            redo_failed=not args.skip_failed,
            stream=sys.stdout,
            order=args.order,
            only_envs=tuple(args.only_envs),
            seeds_per_worker=args.seeds_per_worker,
            workers=args.workers,
        )
    return run_suite(
        suite,
        out,
        workers=args.workers,
        executor=args.executor,
        address=args.address,
        redo_failed=not args.skip_failed,
        stream=sys.stdout,
        order=args.order,
        only_envs=tuple(args.only_envs),
        seeds_per_worker=args.seeds_per_worker,
    )


def with_event_files(suite: Suite) -> Suite:
    """The suite with the setting tensorboard on in every run. It is set in each run's overrides,
    which travel to the workers (and Ray nodes) with the run; being execution-only, it leaves the
    run ids, and so the results already there, as they are."""
    runs = tuple(
        resolve(dataclasses.replace(run.spec, overrides={**run.spec.overrides, "tensorboard": True}))
        for run in suite.runs
    )
    return dataclasses.replace(suite, runs=runs)


def status_command(args) -> int:
    return print_status(args.dir, sys.stdout)

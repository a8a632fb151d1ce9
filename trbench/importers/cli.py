"""The `trbench import` subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

from trbench.base.errors import UsageError
from trbench.importers import cleanrl, sb3, spinningup, tianshou, tidy_csv
from trbench.importers.writer import Identity, PreparedRun, check_destination, plan, prepare, write_run
from trbench.suites.runner import exclusive

FORMATS: dict[str, ModuleType] = {
    "sb3": sb3,
    "cleanrl": cleanrl,
    "spinningup": spinningup,
    "tianshou": tianshou,
    "csv": tidy_csv,
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import",
        help="import other libraries' runs (SB3/RL Zoo, CleanRL, Spinning Up, Tianshou, tidy CSV) as run folders",
        description="Convert each run found under PATH into a run folder under RESULTS/runs/, with its provenance "
        "in config.json, so that `trbench status` and `trbench report` treat it like a trbench run. "
        "Formats: " + "; ".join(f"{name}: {module.EXPECTED}" for name, module in FORMATS.items()) + ".",
    )
    p.add_argument("format", metavar="FORMAT", choices=FORMATS, help=", ".join(FORMATS))
    p.add_argument(
        "paths",
        metavar="PATH",
        type=Path,
        nargs="+",
        help="a run folder (or file, for csv), or a folder holding several",
    )
    p.add_argument(
        "--out", required=True, type=Path, help="results folder to add the runs to (a suite's, or a new one)"
    )
    p.add_argument(
        "--algo",
        default=None,
        metavar="NAME",
        help="the arm's label in reports (default: the format and the log's algorithm, e.g. sb3-ppo)",
    )
    p.add_argument(
        "--env", default=None, metavar="ID", help="the env id, where the log does not name one or names several"
    )
    p.add_argument("--seed", type=int, default=None, metavar="N", help="the seed, where the log does not name it")
    p.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed: must be >= 0, got {args.seed}")
    if args.algo is not None and not args.algo.strip():
        raise UsageError("--algo: must not be empty")
    check_destination(args.out)
    reader = FORMATS[args.format]
    identity = Identity(algo=args.algo, env_id=args.env, seed=args.seed)
    prepared: list[PreparedRun] = []
    for path in args.paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        sources = reader.read(path)
        if not sources:
            raise UsageError(f"{path}: no {args.format} run found; expected {reader.EXPECTED}")
        prepared += [prepare(source, identity) for source in sources]
    with exclusive(args.out):  # the runner's lock: no import while a suite runs into --out
        to_write, present = plan(prepared, args.out / "runs")
        for run in to_write:
            write_run(run, args.out)
            print(describe(run))
    for run in present:
        print(f"already imported: {run.source.path} ({run.run_id})")
    without = sorted({run.source.format for run in to_write + present if run.result["final_eval_return"] is None})
    if without:
        print(
            f"note: the {', '.join(without)} runs have no evaluation, so no 'final' or 'auc' score; compare them "
            f"with `trbench report {args.out} --metric last100` (mean return of the last 100 training episodes)"
        )
    print(f"{len(to_write)} run(s) imported into {args.out / 'runs'}, {len(present)} already there")
    return 0


def describe(run: PreparedRun) -> str:
    episodes = int(run.source.training["train_episodes"].sum()) if len(run.source.training) else 0
    final = run.result["final_eval_return"]
    final_text = f"final eval {final:.4g}" if final is not None else "no evaluation"
    status = (
        "" if run.result["status"] == "complete" else f"; recorded as {run.result['status']}: {run.result['error']}"
    )
    return (
        f"{run.source.path} -> {run.run_id}: {run.label} on {run.env_id}, seed {run.seed}, "
        f"{run.result['steps']:,} steps, {episodes} training episodes, {len(run.source.evaluations)} evaluations, "
        f"{final_text}{status}"
    )

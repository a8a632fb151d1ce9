"""`trbench train`: one training run into one results folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from trbench.algos.config import ENV_BACKENDS
from trbench.algos.registry import available_algorithms, resolve_algorithm
from trbench.algos.rollout import make_vector_env
from trbench.algos.settings import parse_set_arguments
from trbench.base.errors import UsageError, check_output_folder
from trbench.suites.execute import execute_run, inspect_run_folder, read_checkpoint
from trbench.suites.run_spec import ResolvedRun, RunSpec, resolve, rounding_note


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train one algorithm on one env and write a run folder",
        description="Train one algorithm on one env; writes config.json, progress.csv and result.json into --out.",
    )
    p.add_argument(
        "--algo",
        required=True,
        help="a registered algorithm (`trbench config` lists them) or an import path module:Class",
    )
    p.add_argument("--env", required=True, help="gymnasium env id with Box spaces, e.g. Hopper-v5")
    p.add_argument("--steps", required=True, type=_int_steps, help="environment-step budget")
    p.add_argument("--seed", type=int, default=0, help="run seed; every other seed derives from it (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: the config's, cpu)")
    p.add_argument(
        "--env-backend",
        default=None,
        choices=ENV_BACKENDS,
        help="what steps the envs (default: the config's, gymnasium); envpool needs its extra",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field; repeatable (see `trbench config ALGO`)",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="CPU threads for torch (default 1, as a suite worker: the same bits as the run in a suite, and no "
        "oversubscription of a machine already busy; the small networks gain little from more)",
    )
    p.add_argument("--label", default="", help="name of this arm in reports (default: the algorithm)")
    p.add_argument("--out", required=True, type=Path, help="run folder to create")
    p.add_argument("--quiet", action="store_true", help="do not print the learning curve")
    p.set_defaults(func=run_train)

    c = subparsers.add_parser(
        "config",
        help="list an algorithm's config fields, defaults and sources; with no algorithm, every registered algorithm",
    )
    c.add_argument("algo", nargs="?", default=None)
    c.set_defaults(func=run_config)


def _int_steps(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def run_train(args) -> int:
    overrides = parse_set_arguments(args.overrides)
    if args.device is not None:
        overrides["device"] = args.device
    if args.env_backend is not None:
        overrides["env_backend"] = args.env_backend
    if args.seed < 0:
        raise UsageError(f"--seed: must be >= 0, got {args.seed}")
    if args.torch_threads < 1:
        raise UsageError(f"--torch-threads: must be >= 1, got {args.torch_threads}")
    run = resolve(
        RunSpec(
            algorithm=args.algo,
            env_id=args.env,
            steps=args.steps,
            seed=args.seed,
            overrides=overrides,
            label=args.label,
        )
    )
    check_output_folder(args.out)
    folder_state = inspect_run_folder(args.out, run)
    check_env_spaces(run)
    if not args.quiet:
        print(f"{run.spec.arm} on {run.spec.env_id}, {run.steps_taken:,} steps, seed {run.spec.seed} -> {args.out}")
        if note := rounding_note([run]):
            print(note)
        if folder_state == "resume":
            checkpoint = read_checkpoint(args.out, run)
            assert checkpoint is not None  # the folder state says there is one
            step = checkpoint["step"]
            print(f"resuming the interrupted run from its checkpoint at step {step}")
        elif folder_state == "restart":
            print("the interrupted run had no checkpoint yet: starting it over from step 0")
        print(f"{'step':>9} {'train_return':>13} {'eval_return':>12} {'kl':>9} {'steps/s':>8}")
    printer = None if args.quiet else _print_row
    # torch's default, one thread per core, sums some reductions in another order than one thread
    # does, and on a machine with other work its threads wait on each other (PPO's update on
    # Hopper-v5 took 35 s instead of 0.7 s beside a two-worker suite)
    torch.set_num_threads(args.torch_threads)
    result = execute_run(run, args.out, on_iteration=printer)
    if result["status"] == "complete":
        if not args.quiet:
            print(
                f"final_eval_return {result['final_eval_return']:.2f} ± {result['final_eval_return_std']:.2f} "
                f"over {result['final_eval_episodes']} episodes; {result['steps_per_second']:.0f} steps/s"
            )
        return 0
    print(f"trbench: run {result['status']}: {result['error']}", file=sys.stderr)
    return 1


def check_env_spaces(run: ResolvedRun) -> None:
    """Build the env once to check its spaces (Box actions and observations only): training would
    find out too, but only after the run folder exists."""
    make_vector_env(run.spec.env_id, 1, run.config.env_backend).close()


def _print_row(row: dict) -> None:
    def fmt(value, width, spec):
        return f"{'':>{width}}" if value is None else f"{value:>{width}{spec}}"

    print(
        f"{row['step']:>9} {fmt(row['train_return'], 13, '.2f')} {fmt(row['eval_return'], 12, '.2f')} "
        f"{fmt(row.get('kl'), 9, '.5f')} {row['steps_per_second']:>8.0f}",
        flush=True,
    )


def run_config(args) -> int:
    if args.algo is None:
        list_algorithms()
        return 0
    cls = resolve_algorithm(args.algo)
    for row in cls.Config.describe():
        allowed = f" [{row['allowed']}]" if row["allowed"] else ""
        source = f" (source: {row['source']})" if row["source"] else ""
        print(f"{row['name']} = {row['default']!r}{allowed}: {row['doc']}{source}")
    return 0


def list_algorithms() -> None:
    """Every algorithm `--algo` accepts by name, with what it does and its paper."""
    for name in available_algorithms():
        try:
            cls = resolve_algorithm(name)
        except UsageError as exc:  # a broken plug-in is listed, not fatal
            print(f"{name}: cannot be loaded ({exc})")
            continue
        doc = (cls.__doc__ or "").strip().splitlines()
        summary = cls.summary or (doc[0] if doc else "no description")
        paper = f" [{cls.paper}]" if cls.paper else ""
        print(f"{name}: {summary}{paper}")
    print("(any algorithm class also by import path, module:Class; `trbench config ALGO` lists its settings)")

"""`trbench bench`: training throughput against raw environment stepping, measured in one process.

What matters for a researcher is how close training runs to the speed at which the simulator
alone can be stepped, so every throughput is reported as a ratio to raw stepping (gymnasium's
SyncVectorEnv with the same number of envs and random actions) measured in the same process, at
nearly the same time. A shared or 2-core machine is noisy: each measurement is repeated in rounds.
Each algorithm gets its own rounds, one after another (a suite worker trains one run at a time);
a round is one training iteration followed by raw stepping, its ratios use the raw speed measured
just before and just after it, and the table reports the median over rounds (with the smallest
and largest ratio, to show the noise).

Sections (each can be asked for alone):
- throughput: raw stepping (and the bare stepping of what training steps: gymnasium's envs with
  the info merge left out, or the envpool backend), the rollout phase, end-to-end iterations of
  TRPO, NPG, PPO and VPG;
- trpo_update: TRPO's own update split into gradient and KL graph, Fisher-vector products,
  conjugate-gradient algebra, line search (both modes) and critic, timed by the update's phase
  hook on batches collected from the env;
- update (``--update-only``): the TRPO update on a synthetic batch of ``--update-batch`` states
  with ``--hidden`` networks, on the CPU and on ``--device`` (the GPU comparison);
- lockstep (``--lockstep 1,4,8``): one worker training S seeds of one cell in lockstep, beside
  the lone trainer, as a ratio to raw stepping, and its peak memory against S; with
  ``--update-only``, the lockstep TRPO update of S members by device;
- grid (``--grid``): a small suite run by ``trbench run`` on 1 and on ``--grid-workers`` workers;
- memory (``--memory-steps``): the resident memory of one worker over one training run.
- checkpoint (``--checkpoint``): writing a checkpoint, against a training iteration of the same run.

Results are printed and written to ``--out`` as ``bench.csv``, ``bench.md`` and ``bench.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from trbench.algos.config import ACTING_BACKENDS, ENV_BACKENDS, LINESEARCH_MODES
from trbench.algos.rollout import make_vector_env
from trbench.algos.trainer import resolve_device
from trbench.base.errors import check_output_folder

from .lockstep import measure_lockstep, measure_lockstep_memory, measure_lockstep_update
from .report import markdown, write_report
from .runs import measure_checkpoint, measure_grid, measure_memory
from .settings import BENCH_ALGOS, BENCHABLE_ALGOS, BenchReport, BenchSettings
from .throughput import measure_throughput
from .update import measure_update_devices


def run_bench(settings: BenchSettings, stream=sys.stdout) -> BenchReport:
    settings.check()
    device = resolve_device(settings.device)
    for env_id in settings.envs:  # fail on a bad env id before minutes of measuring
        make_vector_env(env_id, 1, settings.env_backend).close()
    torch.set_num_threads(settings.torch_threads)
    report = BenchReport(settings)
    report.samples["load_average_before"] = _load_average()
    if settings.update_only:
        if settings.lockstep:
            measure_lockstep_update(settings, report)
        else:
            measure_update_devices(settings, report)
        report.samples["load_average_after"] = _load_average()
        return report
    for env_id in settings.envs:
        stream.write(f"measuring {env_id} ...\n")
        stream.flush()
        if settings.lockstep:
            measure_lockstep(env_id, settings, report, str(device))
            measure_lockstep_memory(env_id, settings, report)
            continue
        measure_throughput(env_id, settings, report, str(device))
        if settings.grid:
            measure_grid(env_id, settings, report)
        if settings.memory_steps:
            measure_memory(env_id, settings, report)
        if settings.checkpoint:
            measure_checkpoint(env_id, settings, report, str(device))
    report.samples["load_average_after"] = _load_average()
    return report


def _load_average() -> list[float] | None:
    """1-, 5- and 15-minute load averages: how busy the machine was while measuring."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --- command line ----------------------------------------------------------------------------------


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 64,64, got {text!r}") from None


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="training throughput as a ratio to raw env stepping; TRPO update split; grid and GPU modes",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    p.add_argument(
        "--env",
        dest="envs",
        action="append",
        default=None,
        metavar="ENV",
        help="gymnasium env id; repeatable (default Hopper-v5)",
    )
    p.add_argument(
        "--algo",
        dest="algos",
        action="append",
        default=None,
        choices=BENCHABLE_ALGOS,
        help="algorithm to time end to end (any built-in); repeatable (default trpo, npg, ppo and vpg)",
    )
    p.add_argument("--num-envs", type=int, default=8, help="vector envs, for raw stepping and training (default 8)")
    p.add_argument("--steps-per-iteration", type=int, default=2048, help="steps per training iteration (default 2048)")
    p.add_argument("--hidden", type=_int_list, default=(64, 64), help="hidden sizes of both networks (default 64,64)")
    p.add_argument("--device", default="cpu", help="update device: cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--repeats", type=int, default=5, help="measurement rounds; medians are reported (default 5)")
    p.add_argument(
        "--warmup", type=int, default=1, help="unreported rounds first (default 1; at least one always runs)"
    )
    p.add_argument("--torch-threads", type=int, default=1, help="torch threads, 1 as in a suite worker (default 1)")
    p.add_argument(
        "--linesearch-mode",
        choices=LINESEARCH_MODES,
        default=BenchSettings.linesearch_mode,
        help="TRPO line search used in the end-to-end iterations (both are timed in the split)",
    )
    p.add_argument(
        "--update-only",
        action="store_true",
        help="only time the TRPO update on a synthetic batch, on the CPU and on --device",
    )
    p.add_argument(
        "--lockstep",
        type=_int_list,
        default=(),
        metavar="S,S,...",
        help="instead of the other sections: one worker training S seeds in lockstep, for each S "
        "(e.g. 1,4,8), as a ratio to raw stepping, and its peak memory; with --update-only, the "
        "lockstep TRPO update of S members at 2048 states each and at --update-batch, on the CPU "
        "and on --device (e.g. --update-only --device cuda --lockstep 1,8,32,128)",
    )
    p.add_argument("--update-batch", type=int, default=50_000, help="batch size for --update-only (default 50000)")
    p.add_argument("--grid", action="store_true", help="also time `trbench run` on 1 and --grid-workers workers")
    p.add_argument("--grid-workers", type=int, default=2, help="parallel workers for --grid (default 2)")
    p.add_argument("--grid-runs", type=int, default=4, help="TRPO runs in the --grid suite (default 4)")
    p.add_argument("--grid-steps", type=int, default=20_480, help="steps per --grid run (default 20480)")
    p.add_argument("--grid-repeats", type=int, default=2, help="alternating 1-worker / N-worker rounds (default 2)")
    p.add_argument(
        "--memory-steps",
        type=int,
        default=0,
        help="also run one TRPO training of this many steps in a fresh worker process and report its RSS",
    )
    p.add_argument(
        "--checkpoint",
        action="store_true",
        help="also time writing a checkpoint against a training iteration, and its share of a run",
    )
    p.add_argument(
        "--env-backend",
        choices=ENV_BACKENDS,
        default=BenchSettings.env_backend,
        help="what steps the envs in training; envpool's bare stepping is then measured too "
        "(ratios stay relative to gymnasium's; default gymnasium)",
    )
    p.add_argument(
        "--acting-backend",
        choices=ACTING_BACKENDS,
        default=BenchSettings.acting_backend,
        help="what computes the rollout's actions in training (the acting_backend setting; default torch)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the timed runs (default 0)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("results/bench"),
        help="folder for bench.csv, bench.md, bench.json (default results/bench)",
    )
    p.set_defaults(func=run_command)


def run_command(args) -> int:
    settings = BenchSettings(
        envs=tuple(args.envs or ("Hopper-v5",)),
        algos=tuple(dict.fromkeys(args.algos or BENCH_ALGOS)),
        num_envs=args.num_envs,
        steps_per_iteration=args.steps_per_iteration,
        hidden=tuple(args.hidden),
        device=args.device,
        repeats=args.repeats,
        warmup=args.warmup,
        torch_threads=args.torch_threads,
        seed=args.seed,
        linesearch_mode=args.linesearch_mode,
        update_only=args.update_only,
        update_batch=args.update_batch,
        grid=args.grid,
        grid_workers=args.grid_workers,
        grid_runs=args.grid_runs,
        grid_steps=args.grid_steps,
        grid_repeats=args.grid_repeats,
        memory_steps=args.memory_steps,
        checkpoint=args.checkpoint,
        env_backend=args.env_backend,
        acting_backend=args.acting_backend,
        lockstep=tuple(args.lockstep),
    )
    check_output_folder(args.out)  # before minutes of measuring, not after
    report = run_bench(settings, stream=sys.stdout)
    write_report(report, args.out)
    print(markdown(report))
    print(f"written to {args.out}/bench.csv, bench.md, bench.json")
    return 0

"""The lockstep sections (``--lockstep 1,4,8``): what one worker trains per second when it packs S
seeds of one cell into one batched computation, as a ratio to raw stepping measured in the same
rounds, and the worker's peak memory against S; with ``--update-only``, the batched TRPO update
of S members on synthetic batches by device instead.

A round is one lockstep iteration of S members (every member's rollout, the batched update, each
member's bookkeeping), then raw stepping; its ratio is S x steps per iteration over the round's
time, against the raw speed just before and just after it (harmonic mean). S = 1 is the lockstep
machinery with one member; the end-to-end rows of the throughput section are the lone trainer.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time

import numpy as np
import torch

from trbench.algos.lockstep import stack_batches
from trbench.algos.lockstep_trainer import LockstepTrainer
from trbench.algos.rollout import make_vector_env
from trbench.algos.trainer import Trainer, resolve_device
from trbench.algos.trpo import TRPO

from .runs import _peak_rss_mb, _rss_mb
from .settings import BenchReport, BenchSettings, Row, bench_config, median, ratio_row
from .throughput import _harmonic_pairs, raw_stepping
from .update import synthetic_trpo


def _pack_rounds(
    env_id: str, algo: str, members: int, settings: BenchSettings, device: str, alone: bool = False
) -> tuple[list, list]:
    """Seconds per lockstep iteration of `members` seeds, and raw stepping around each; with
    `alone`, of the lone trainer (one seed, no lockstep machinery) instead."""
    cls, cfg = bench_config(algo, settings, device)
    rounds = settings.warmup + settings.repeats
    spi = settings.steps_per_iteration
    # one more iteration than measured: the last one ends with the final evaluation
    trainers = [Trainer(cls, cfg, env_id, spi * (rounds + 1), settings.seed + k) for k in range(members)]
    raw_env = make_vector_env(env_id, settings.num_envs, settings.env_backend, full_info=True)
    raw_env.reset(seed=settings.seed)
    rng = np.random.default_rng(settings.seed)
    raw = [raw_stepping(raw_env, spi // settings.num_envs, rng)[0]]
    times: list[float] = []
    started = [time.perf_counter()]

    def on_record(k: int, record: dict) -> None:
        if k != members - 1 or len(times) >= rounds:
            return
        times.append(time.perf_counter() - started[0])
        raw.append(raw_stepping(raw_env, spi // settings.num_envs, rng)[0])
        started[0] = time.perf_counter()

    try:
        if alone:
            for record in trainers[0].iterate():
                on_record(0, record)
        else:
            LockstepTrainer(trainers).run(on_record)
    finally:
        for trainer in trainers:
            trainer.close()
        raw_env.close()
    reference = _harmonic_pairs(raw)
    return times[settings.warmup :], reference[settings.warmup :]


def measure_lockstep(env_id: str, settings: BenchSettings, report: BenchReport, device: str) -> None:
    spi = settings.steps_per_iteration
    for algo in settings.algos:
        for members in (0, *settings.lockstep):  # 0: the lone trainer, the reference
            times, reference = _pack_rounds(env_id, algo, max(members, 1), settings, device, alone=members == 0)
            speeds = [max(members, 1) * spi / t for t in times]
            report.samples[f"lockstep/{env_id}/{algo}/{members}"] = {"seconds": times, "raw": reference}
            what = (
                "alone (the lone trainer)" if members == 0 else f"{members} seed{'s' if members > 1 else ''} per worker"
            )
            report.add(
                ratio_row(
                    "lockstep",
                    env_id,
                    f"{algo}, {what}",
                    speeds,
                    [s / r for s, r in zip(speeds, reference)],
                    "steps/s",
                    note=f"all members together, one core; {max(members, 1) * spi:,} steps per round",
                )
            )


# --- memory against S ----------------------------------------------------------------------------------


def _pack_memory_worker(env_id: str, algo: str, members: int, settings: BenchSettings, queue) -> None:
    torch.set_num_threads(1)  # as a suite worker runs
    cls, cfg = bench_config(algo, settings, "cpu")
    spi = settings.steps_per_iteration
    before = _rss_mb()
    trainers = [Trainer(cls, cfg, env_id, 3 * spi, settings.seed + k) for k in range(members)]
    pack = LockstepTrainer(trainers)
    try:
        outcomes = pack.run(lambda k, record: None)
        during = _rss_mb()  # envs, networks, optimisers and the last batches still alive
    finally:
        pack.close()
    queue.put(
        {
            "before_mb": before,
            "with_pack_mb": during,
            "peak_mb": _peak_rss_mb(),
            "ok": all(not isinstance(o, BaseException) for o in outcomes),
        }
    )


def measure_lockstep_memory(env_id: str, settings: BenchSettings, report: BenchReport) -> None:
    """Peak RSS of a fresh worker process training a pack of S seeds for three iterations."""
    context = multiprocessing.get_context("spawn")
    for algo in settings.algos:
        for members in settings.lockstep:
            queue = context.Queue()
            process = context.Process(target=_pack_memory_worker, args=(env_id, algo, members, settings, queue))
            process.start()
            outcome = queue.get()
            process.join()
            report.samples[f"lockstep_memory/{env_id}/{algo}/{members}"] = outcome
            seeds = f"{members} seed{'s' if members > 1 else ''} per worker"
            failed = "" if outcome["ok"] else "; a member failed"
            report.add(
                Row(
                    "lockstep_memory",
                    env_id,
                    f"{algo}, {seeds}: RSS with the pack",
                    outcome["with_pack_mb"],
                    "MiB",
                    repeats=1,
                    note=f"{outcome['with_pack_mb'] - outcome['before_mb']:+.0f} MiB over the worker before the "
                    f"pack was built; three iterations{failed}",
                )
            )
            report.add(
                Row(
                    "lockstep_memory",
                    env_id,
                    f"{algo}, {seeds}: peak RSS",
                    outcome["peak_mb"],
                    "MiB",
                    repeats=1,
                    note="the process's peak, imports included",
                )
            )


# --- the batched update by device (--update-only --lockstep S,...) -----------------------------------------

# the CPU reference is timed up to this many states per update (S x batch); beyond it one update
# takes minutes on one core, and the row says so instead
CPU_REFERENCE_MAX_STATES = 2**19


def _stacked_update_seconds(
    members: int, batch_size: int, settings: BenchSettings, device: torch.device
) -> list[float]:
    twin_members, batches = [], []
    for k in range(members):
        algorithm, batch = synthetic_trpo(batch_size, dataclasses.replace(settings, seed=settings.seed + k), device)
        twin_members.append(algorithm)
        batches.append(batch)
    twin = TRPO.lockstep(twin_members)  # type: ignore[misc]
    batch = stack_batches(batches)
    seconds = []
    for round_index in range(1 + settings.repeats):  # the first round warms the allocator and kernels up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        twin.update(batch, 0.0)  # ends by reading the diagnostics back: the queue is drained
        if round_index:
            seconds.append(time.perf_counter() - started)
    return seconds


def measure_lockstep_update(settings: BenchSettings, report: BenchReport) -> None:
    """The lockstep TRPO update of S members on synthetic batches, on the CPU and on --device,
    at 2048 states per member and at --update-batch."""
    devices = [torch.device("cpu")]
    target = resolve_device(settings.device)
    if target.type != "cpu":
        devices.append(target)
    hidden = "x".join(str(h) for h in settings.hidden)
    for batch_size in sorted({2048, settings.update_batch}):
        for members in settings.lockstep:
            cpu_seconds = None
            for device in devices:
                states = members * batch_size
                if device.type == "cpu" and states > CPU_REFERENCE_MAX_STATES:
                    report.add(
                        Row(
                            "lockstep_update",
                            "cpu",
                            f"S={members}, batch {batch_size:,}",
                            float("nan"),
                            "states/s",
                            note=f"not timed: {states:,} states per update on one core",
                        )
                    )
                    continue
                seconds = _stacked_update_seconds(members, batch_size, settings, device)
                report.samples[f"lockstep_update/{device}/{members}/{batch_size}"] = seconds
                value = median(seconds)
                if device.type == "cpu":
                    cpu_seconds = value
                speedup = f"; {cpu_seconds / value:.1f}x the CPU" if cpu_seconds and device.type != "cpu" else ""
                report.add(
                    Row(
                        "lockstep_update",
                        str(device),
                        f"S={members}, batch {batch_size:,}",
                        states / value,
                        "states/s",
                        repeats=len(seconds),
                        note=f"{hidden}, {value:.3f} s per update of all members{speedup}",
                    )
                )

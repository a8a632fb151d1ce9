"""The lockstep section (``--lockstep 1,4,8``): what one worker trains per second when it packs S
seeds of one cell into one batched computation, as a ratio to raw stepping measured in the same
rounds, and the worker's peak memory against S.

A round is one lockstep iteration of S members (every member's rollout, the batched update, each
member's bookkeeping), then raw stepping; its ratio is S x steps per iteration over the round's
time, against the raw speed just before and just after it (harmonic mean). S = 1 is the lockstep
machinery with one member; the end-to-end rows of the throughput section are the lone trainer.
"""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import torch

from trbench.algos.lockstep_trainer import LockstepTrainer
from trbench.algos.rollout import make_vector_env
from trbench.algos.trainer import Trainer

from .runs import _peak_rss_mb
from .settings import BenchReport, BenchSettings, Row, bench_config, ratio_row
from .throughput import _harmonic_pairs, raw_stepping


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
    trainers = [Trainer(cls, cfg, env_id, 3 * spi, settings.seed + k) for k in range(members)]
    pack = LockstepTrainer(trainers)
    try:
        outcomes = pack.run(lambda k, record: None)
    finally:
        pack.close()
    queue.put({"peak_mb": _peak_rss_mb(), "ok": all(not isinstance(o, BaseException) for o in outcomes)})


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
            report.add(
                Row(
                    "lockstep_memory",
                    env_id,
                    f"{algo}, {members} seed{'s' if members > 1 else ''} per worker: peak RSS",
                    outcome["peak_mb"],
                    "MiB",
                    repeats=1,
                    note="a fresh worker process, three iterations" + ("" if outcome["ok"] else "; a member failed"),
                )
            )

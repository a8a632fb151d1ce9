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
- trpo_update: the TRPO update split into gradient and KL graph, Fisher-vector products,
  conjugate-gradient algebra, line search and critic, on a batch collected from the env;
- update (``--update-only``): the TRPO update on a synthetic batch of ``--update-batch`` states
  with ``--hidden`` networks, on the CPU and on ``--device`` (the GPU comparison);
- grid (``--grid``): a small suite run by ``trbench run`` on 1 and on ``--grid-workers`` workers;
- memory (``--memory-steps``): the resident memory of one worker over one training run.

Results are printed and written to ``--out`` as ``bench.csv``, ``bench.md`` and ``bench.json``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import io
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trbench.base.errors import UsageError, check_output_folder

BENCH_ALGOS = ("trpo", "npg", "ppo", "vpg")
SECTIONS = ("throughput", "trpo_update", "update", "grid", "memory", "checkpoint")


@dataclass(frozen=True)
class BenchSettings:
    """Everything a benchmark run depends on; written into bench.json with the results."""

    envs: tuple[str, ...] = ("Hopper-v5",)
    algos: tuple[str, ...] = BENCH_ALGOS
    num_envs: int = 8
    steps_per_iteration: int = 2048
    hidden: tuple[int, ...] = (64, 64)
    device: str = "cpu"
    repeats: int = 5
    warmup: int = 1
    torch_threads: int = 1
    seed: int = 0
    linesearch_mode: str = "sequential"
    update_only: bool = False
    update_batch: int = 50_000
    grid: bool = False
    grid_workers: int = 2
    grid_runs: int = 4
    grid_steps: int = 20_480
    grid_repeats: int = 2
    memory_steps: int = 0
    checkpoint: bool = False
    env_backend: str = "gymnasium"
    acting_backend: str = "torch"

    def check(self) -> None:
        if self.num_envs < 1:
            raise UsageError(f"--num-envs: must be >= 1, got {self.num_envs}")
        if self.steps_per_iteration < self.num_envs or self.steps_per_iteration % self.num_envs:
            raise UsageError(
                f"--steps-per-iteration: must be a positive multiple of --num-envs={self.num_envs}, "
                f"got {self.steps_per_iteration}"
            )
        if self.repeats < 1:
            raise UsageError(f"--repeats: must be >= 1, got {self.repeats}")
        if self.warmup < 0:
            raise UsageError(f"--warmup: must be >= 0, got {self.warmup}")
        if self.torch_threads < 1:
            raise UsageError(f"--torch-threads: must be >= 1, got {self.torch_threads}")
        if not self.hidden or min(self.hidden) < 1:
            raise UsageError(f"--hidden: expected layer sizes >= 1 such as 64,64, got {self.hidden}")
        unknown = [a for a in self.algos if a not in BENCH_ALGOS]
        if unknown:
            raise UsageError(f"--algo: unknown {', '.join(unknown)}; allowed: {', '.join(BENCH_ALGOS)}")
        if self.update_batch < 2:
            raise UsageError(f"--update-batch: must be >= 2, got {self.update_batch}")
        if self.grid_workers < 2:
            raise UsageError(f"--grid-workers: must be >= 2, got {self.grid_workers}")
        if self.grid_runs < self.grid_workers:
            raise UsageError(f"--grid-runs: must be >= --grid-workers={self.grid_workers}, got {self.grid_runs}")
        if self.grid_steps < self.steps_per_iteration:
            raise UsageError(
                f"--grid-steps: must be >= --steps-per-iteration={self.steps_per_iteration}, got {self.grid_steps}"
            )
        if self.grid_repeats < 1:
            raise UsageError(f"--grid-repeats: must be >= 1, got {self.grid_repeats}")
        if self.env_backend not in ("gymnasium", "envpool"):
            raise UsageError(f"--env-backend: must be one of gymnasium, envpool, got {self.env_backend!r}")
        if self.acting_backend not in ("torch", "numpy"):
            raise UsageError(f"--acting-backend: must be one of torch, numpy, got {self.acting_backend!r}")
        if self.memory_steps < 0:
            raise UsageError(f"--memory-steps: must be >= 0, got {self.memory_steps}")


@dataclass
class Row:
    """One line of the table: a median over repeats, and its ratio to raw stepping if it has one."""

    section: str
    env: str
    measure: str
    value: float
    unit: str
    ratio: float | None = None  # median over rounds of value / raw stepping of the same round
    ratio_min: float | None = None
    ratio_max: float | None = None
    repeats: int = 0
    note: str = ""
    # the same ratio in process CPU time, which leaves out the time spent waiting for a core on a
    # shared machine (with one torch thread, CPU time is the time the process ran)
    ratio_cpu: float | None = None


@dataclass
class BenchReport:
    settings: BenchSettings
    rows: list[Row] = field(default_factory=list)
    samples: dict[str, Any] = field(default_factory=dict)  # every raw measurement, for bench.json

    def add(self, row: Row) -> None:
        self.rows.append(row)


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def median_ci(
    values: list[float], confidence_level: float = 0.95, resamples: int = 4000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median: the reports' bootstrap, on one
    stratum, seeded so that a table is reproducible from its samples."""
    from trbench.analysis.stats import stratified_bootstrap_ci  # noqa: PLC0415 - only the bench needs it

    interval = stratified_bootstrap_ci(
        [values], lambda strata: np.median(strata[0], axis=-1), np.random.default_rng(seed), resamples, confidence_level
    )
    return interval.low, interval.high


def _ratio_row(
    section: str,
    env: str,
    measure: str,
    values: list[float],
    ratios: list[float],
    unit: str,
    note: str = "",
    cpu_ratios: list[float] | None = None,
) -> Row:
    return Row(
        section,
        env,
        measure,
        _median(values),
        unit,
        _median(ratios),
        min(ratios),
        max(ratios),
        len(values),
        note,
        _median(cpu_ratios) if cpu_ratios else None,
    )


# --- throughput ------------------------------------------------------------------------------------


def _bench_config(algo: str, settings: BenchSettings, device: str):
    from trbench.algos.registry import resolve_algorithm

    cls = resolve_algorithm(algo)
    overrides: dict[str, Any] = {
        "num_envs": settings.num_envs,
        "steps_per_iteration": settings.steps_per_iteration,
        "policy_hidden": settings.hidden,
        "value_hidden": settings.hidden,
        "device": device,
        "eval_interval_steps": 0,  # periodic evaluation is not training throughput
        "env_backend": settings.env_backend,
        "acting_backend": settings.acting_backend,
    }
    fields = cls.Config.field_names()
    defaults = cls.Config()
    # the published minibatch sizes, unless a tiny --steps-per-iteration cannot hold them
    if defaults.critic_minibatch_size > settings.steps_per_iteration:
        overrides["critic_minibatch_size"] = settings.steps_per_iteration
    if "minibatch_size" in fields and defaults.minibatch_size > settings.steps_per_iteration:
        overrides["minibatch_size"] = settings.steps_per_iteration
    if "linesearch_mode" in fields:
        overrides["linesearch_mode"] = settings.linesearch_mode
    return cls, cls.Config.from_overrides(overrides)


def raw_stepping(env, steps_per_env: int, rng: np.random.Generator) -> tuple[float, float]:
    """Steps per second of the bare vector env with uniformly random actions in its bounds, in
    wall-clock and in process CPU time."""
    low, high = env.action_space.low, env.action_space.high
    actions = rng.uniform(low, high, size=(steps_per_env, *low.shape)).astype(env.action_space.dtype)
    start, cpu_start = time.perf_counter(), time.process_time()
    for t in range(steps_per_env):
        env.step(actions[t])
    steps = steps_per_env * env.num_envs
    return steps / (time.perf_counter() - start), steps / (time.process_time() - cpu_start)


def _harmonic_pairs(values: list[float]) -> list[float]:
    """A round's reference speed: from the time per step just before and just after it."""
    return [2.0 / (1.0 / a + 1.0 / b) for a, b in zip(values[:-1], values[1:])]


class _CollectTimer:
    """Wraps a collector's collect() to record its process CPU time (the trainer records wall time),
    and the env's step() inside it, which splits the rollout into env stepping and the rest.

    The step timer reads two clocks twice per vector step, about 1-3 microseconds against the
    hundreds a vector step of 8 MuJoCo envs takes."""

    def __init__(self, collector):
        self.collect = collector.collect
        self.step = collector.env.step
        self.cpu_s = 0.0
        self.env_s = 0.0
        self.env_cpu_s = 0.0
        collector.collect = self
        collector.env.step = self._timed_step

    def _timed_step(self, actions):
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            return self.step(actions)
        finally:
            self.env_s += time.perf_counter() - start
            self.env_cpu_s += time.process_time() - cpu_start

    def __call__(self, *args, **kwargs):
        self.env_s = self.env_cpu_s = 0.0
        start = time.process_time()
        try:
            return self.collect(*args, **kwargs)
        finally:
            self.cpu_s = time.process_time() - start


def measure_throughput(env_id: str, settings: BenchSettings, report: BenchReport, device: str) -> None:
    from trbench.algos.rollout import make_vector_env
    from trbench.algos.trainer import Trainer

    spi = settings.steps_per_iteration
    steps_per_env = spi // settings.num_envs
    rng = np.random.default_rng(settings.seed)
    # the reference: gymnasium's SyncVectorEnv as it is, every sub-env's info merged each step
    raw_env = make_vector_env(env_id, settings.num_envs, full_info=True)
    raw_env.reset(seed=settings.seed)
    # the bare stepping of what training steps (the info-reduced SyncVectorEnv, or another
    # backend) is measured too, in the same rounds; every ratio stays relative to gymnasium's
    # SyncVectorEnv, the ceiling the targets refer to
    backend_env = make_vector_env(env_id, settings.num_envs, settings.env_backend)
    backend_env.reset(seed=settings.seed)
    backend_raw: list[float] = []
    backend_raw_cpu: list[float] = []
    trainers, iterators, timers = {}, {}, {}
    # one iteration more than will be consumed, so the final evaluation never runs
    budget = spi * (settings.warmup + settings.repeats + 2)
    try:
        for algo in settings.algos:
            cls, config = _bench_config(algo, settings, device)
            trainers[algo] = Trainer(cls, config, env_id, budget, settings.seed)
            iterators[algo] = trainers[algo].iterate()
        for _ in range(max(settings.warmup, 1)):  # at least one: it builds the collectors
            raw_stepping(raw_env, steps_per_env, rng)
            for algo in settings.algos:
                next(iterators[algo])
        for algo in settings.algos:
            timers[algo] = _CollectTimer(trainers[algo].collector)
        keys = (
            "e2e",
            "e2e_cpu",
            "rollout",
            "rollout_cpu",
            "update_s",
            "env_in_rollout",
            "env_in_rollout_cpu",
            "other_us",
        )
        m = {key: {a: [] for a in settings.algos} for key in keys}
        raw: dict[str, list[float]] = {a: [] for a in settings.algos}
        raw_cpu: dict[str, list[float]] = {a: [] for a in settings.algos}
        reference: dict[str, list[float]] = {}
        reference_cpu: dict[str, list[float]] = {}
        # one algorithm's rounds back to back, as a suite worker trains one run at a time;
        # alternating the trainers would hand each iteration caches filled by the others'
        # networks, buffers and envs, and measure a slower loop than any real run
        for algo in settings.algos:
            wall, cpu = raw_stepping(raw_env, steps_per_env, rng)
            raw[algo].append(wall)
            raw_cpu[algo].append(cpu)
            for _ in range(settings.repeats):
                start, cpu_start = time.perf_counter(), time.process_time()
                record = next(iterators[algo])
                m["e2e"][algo].append(spi / (time.perf_counter() - start))
                m["e2e_cpu"][algo].append(spi / (time.process_time() - cpu_start))
                m["rollout"][algo].append(spi / record["rollout_time_s"])
                timer = timers[algo]
                m["rollout_cpu"][algo].append(spi / timer.cpu_s)
                m["update_s"][algo].append(record["update_time_s"])
                m["env_in_rollout"][algo].append(spi / timer.env_s)
                m["env_in_rollout_cpu"][algo].append(spi / timer.env_cpu_s)
                m["other_us"][algo].append((record["rollout_time_s"] - timer.env_s) / steps_per_env * 1e6)
                wall, cpu = raw_stepping(backend_env, steps_per_env, rng)
                backend_raw.append(wall)
                backend_raw_cpu.append(cpu)
                wall, cpu = raw_stepping(raw_env, steps_per_env, rng)
                raw[algo].append(wall)
                raw_cpu[algo].append(cpu)
            reference[algo], reference_cpu[algo] = _harmonic_pairs(raw[algo]), _harmonic_pairs(raw_cpu[algo])

        def pool(per_algo: dict[str, list[float]]) -> list[float]:
            """Every algorithm's samples, algorithm after algorithm (the order the rounds ran in)."""
            return [v for algo in settings.algos for v in per_algo[algo]]

        all_raw = pool(raw)
        report.add(
            Row(
                "throughput",
                env_id,
                "raw stepping (random actions)",
                _median(all_raw),
                "steps/s",
                1.0,
                repeats=len(all_raw),
                note=f"SyncVectorEnv, {settings.num_envs} envs",
                ratio_cpu=1.0,
            )
        )
        if settings.env_backend == "gymnasium":
            backend_label = "trbench's stepping"
            backend_note = (
                f"the same SyncVectorEnv, info reduced to final_obs, {settings.num_envs} envs; training below uses it"
            )
        else:
            backend_label = settings.env_backend
            backend_note = f"{settings.env_backend}, {settings.num_envs} envs, 1 thread; training below uses it"
        # the backend samples are in round order, algorithm after algorithm, like the references
        pooled, pooled_cpu = pool(reference), pool(reference_cpu)
        report.add(
            _ratio_row(
                "throughput",
                env_id,
                f"raw stepping ({backend_label})",
                backend_raw,
                [v / r for v, r in zip(backend_raw, pooled)],
                "steps/s",
                backend_note,
                [v / r for v, r in zip(backend_raw_cpu, pooled_cpu)],
            )
        )
        report.samples[f"throughput/{env_id}/{settings.env_backend}"] = {"raw": backend_raw, "raw_cpu": backend_raw_cpu}

        def ratios(key: str, algo: str, ref: dict[str, list[float]]) -> list[float]:
            return [value / r for value, r in zip(m[key][algo], ref[algo])]

        for algo in settings.algos:
            report.add(
                _ratio_row(
                    "throughput",
                    env_id,
                    f"rollout phase ({algo} policy)",
                    m["rollout"][algo],
                    ratios("rollout", algo, reference),
                    "steps/s",
                    "acting, normalisation, env stepping, values, GAE",
                    ratios("rollout_cpu", algo, reference_cpu),
                )
            )
        if len(settings.algos) > 1:
            # the policies share their network shape, so the rollout is the same work under each:
            # their rounds pooled are the best estimate of the rollout's speed, with a CI for it
            pooled_rollout = pool({a: ratios("rollout", a, reference) for a in settings.algos})
            low, high = median_ci(pooled_rollout)
            report.add(
                _ratio_row(
                    "throughput",
                    env_id,
                    "rollout phase (all policies)",
                    pool(m["rollout"]),
                    pooled_rollout,
                    "steps/s",
                    f"the rounds of every policy above; 95% bootstrap CI of the median ratio {low:.2f}-{high:.2f}",
                    pool({a: ratios("rollout_cpu", a, reference_cpu) for a in settings.algos}),
                )
            )
        # the rollout split: the env under the policy's actions (contacts, and so MuJoCo's cost,
        # depend on the actions) against raw stepping under random ones, and the time per vector
        # step of everything that is not env stepping (acting, normalisation, buffers, values, GAE)
        for algo in settings.algos:
            report.add(
                _ratio_row(
                    "throughput",
                    env_id,
                    f"env stepping inside the rollout ({algo} policy)",
                    m["env_in_rollout"][algo],
                    ratios("env_in_rollout", algo, reference),
                    "steps/s",
                    "env.step time only, under the policy's actions",
                    ratios("env_in_rollout_cpu", algo, reference_cpu),
                )
            )
            other = m["other_us"][algo]
            report.add(
                Row(
                    "throughput",
                    env_id,
                    f"rollout work besides env stepping ({algo} policy)",
                    _median(other),
                    "us per vector step",
                    repeats=len(other),
                    note=f"range {min(other):.0f}-{max(other):.0f}; acting, normalisation, buffers, "
                    f"values, GAE; {settings.num_envs} envs per vector step",
                )
            )
        for algo in settings.algos:
            report.add(
                _ratio_row(
                    "throughput",
                    env_id,
                    f"end-to-end {algo}",
                    m["e2e"][algo],
                    ratios("e2e", algo, reference),
                    "steps/s",
                    f"update {_median(m['update_s'][algo]):.3f} s per iteration",
                    ratios("e2e_cpu", algo, reference_cpu),
                )
            )
        report.samples[f"throughput/{env_id}"] = {"raw": raw, "raw_cpu": raw_cpu, **m}
        if "trpo" in settings.algos:
            measure_trpo_split(env_id, trainers["trpo"], settings, report, device)
    finally:
        for iterator in iterators.values():
            iterator.close()
        for trainer in trainers.values():
            trainer.close()
        raw_env.close()
        backend_env.close()


# --- the TRPO update, phase by phase ---------------------------------------------------------------


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Wall time of fn with the device drained before and after (never inside)."""
    _synchronize(device)
    start = time.perf_counter()
    out = fn()
    _synchronize(device)
    return time.perf_counter() - start, out


def trpo_update_phases(algorithm, batch, device: torch.device, linesearch_modes: tuple[str, ...]) -> dict[str, float]:
    """Seconds per phase of one TRPO update on `batch`, each phase timed on its own.

    The phases replay what :meth:`TRPO.update_policy` does, with the trust-region functions it
    calls: gradient and KL graph, `cg_iters` + 1 Fisher-vector products, the conjugate-gradient
    algebra (the CG solve minus its products), the line search per mode, and the critic update.
    The policy is restored after every phase that moves it.
    """
    from trbench.algos import trust_region as tr

    cfg = algorithm.config
    params = list(algorithm.policy.parameters())
    saved = tr.flat_parameters(params).clone()
    objectives = algorithm.objectives(batch)
    surrogate, surrogate_and_kl = objectives.surrogate, objectives.surrogate_and_kl
    mean_old, log_std_old = objectives.mean_old, objectives.log_std_old

    def graph():
        gradient = tr.flat_gradient(surrogate(), params)
        fvp = tr.FisherVectorProduct(algorithm.mean_kl_from(batch.obs, mean_old, log_std_old), params, cfg.damping)
        return gradient, fvp

    phases: dict[str, float] = {}
    phases["gradient_and_kl_graph"], (gradient, fvp) = _timed(graph, device)
    vector = gradient.clone()

    def products():
        for _ in range(cfg.cg_iters + 1):
            fvp(vector)

    phases["fvp"], _ = _timed(products, device)
    cg_total, cg = _timed(lambda: tr.conjugate_gradient(fvp, gradient, cfg.cg_iters, cfg.cg_tol), device)
    phases["cg_algebra"] = max(cg_total - phases["fvp"] * cfg.cg_iters / (cfg.cg_iters + 1), 0.0)
    step = tr.natural_gradient_step(
        surrogate(),
        algorithm.mean_kl_from(batch.obs, mean_old, log_std_old),
        params,
        cfg.max_kl,
        cfg.damping,
        cfg.cg_iters,
        cfg.cg_tol,
    )
    searches = {
        "sequential": lambda: tr.backtracking_line_search(
            params,
            step.full_step,
            surrogate_and_kl,
            float(step.surrogate_before),
            float(step.expected_improvement),
            cfg.kl_accept_factor * cfg.max_kl,
            cfg.backtrack_coeff,
            cfg.backtrack_iters,
            cfg.accept_ratio,
        ),
        "batched": lambda: tr.batched_line_search(
            params,
            step.full_step,
            surrogate_and_kl,
            step.surrogate_before,
            step.expected_improvement,
            cfg.kl_accept_factor * cfg.max_kl,
            cfg.backtrack_coeff,
            cfg.backtrack_iters,
            cfg.accept_ratio,
        ),
    }
    for mode in linesearch_modes:
        phases[f"linesearch_{mode}"], result = _timed(searches[mode], device)
        phases[f"linesearch_{mode}_backtracks"] = float(result.backtracks)
        tr.assign_flat_parameters(params, saved)
    critic_state = (
        copy.deepcopy(algorithm.value_fn.state_dict()),
        copy.deepcopy(algorithm.critic_optimizer.state_dict()),
    )
    phases["critic"], _ = _timed(lambda: algorithm.update_critic(batch), device)
    phases["update_total"], _ = _timed(lambda: algorithm.update(batch, progress=0.0), device)
    tr.assign_flat_parameters(params, saved)
    algorithm.value_fn.load_state_dict(critic_state[0])
    algorithm.critic_optimizer.load_state_dict(critic_state[1])
    return phases


SPLIT_PHASES = ("gradient_and_kl_graph", "fvp", "cg_algebra", "linesearch", "critic", "update_total")


def _split_rows(section: str, env: str, per_repeat: list[dict[str, float]], mode: str, note: str) -> list[Row]:
    rows = []
    totals = [p["update_total"] for p in per_repeat]
    for phase in SPLIT_PHASES:
        key = f"linesearch_{mode}" if phase == "linesearch" else phase
        values = [p[key] for p in per_repeat]
        shares = [v / t for v, t in zip(values, totals)]
        label = f"linesearch ({mode})" if phase == "linesearch" else phase
        extra = ""
        if phase == "linesearch":
            extra = f"median backtracks {_median([p[f'linesearch_{mode}_backtracks'] for p in per_repeat]):g}"
        rows.append(
            Row(
                section,
                env,
                label,
                _median(values),
                "s",
                _median(shares),
                min(shares),
                max(shares),
                len(values),
                "; ".join(x for x in (note if phase == "update_total" else "", extra) if x),
            )
        )
    return rows


def measure_trpo_split(env_id: str, trainer, settings: BenchSettings, report: BenchReport, device: str) -> None:
    """The TRPO update split, on batches the trainer's own collector gathers from the env."""
    from trbench.algos.rollout import to_batch

    algorithm = trainer.algorithm
    cfg = algorithm.config
    actor = algorithm.policy if algorithm.device.type == "cpu" else copy.deepcopy(algorithm.policy).cpu()
    per_repeat = []
    for _ in range(settings.repeats):
        arrays, _ = trainer.collector.collect(
            actor,
            algorithm.value_fn,
            cfg.steps_per_iteration // cfg.num_envs,
            cfg.gamma,
            cfg.gae_lambda,
            algorithm.device,
        )
        batch = to_batch(arrays, algorithm.device, torch.float32)
        per_repeat.append(trpo_update_phases(algorithm, batch, algorithm.device, ("sequential", "batched")))
    report.samples[f"trpo_update/{env_id}"] = per_repeat
    for mode in ("sequential", "batched"):
        for row in _split_rows(
            "trpo_update",
            env_id,
            per_repeat,
            mode,
            f"batch {cfg.steps_per_iteration}, {device}, ratio = share of the update",
        ):
            if mode == "batched" and not row.measure.startswith("linesearch"):
                continue
            report.add(row)


def synthetic_trpo(batch_size: int, settings: BenchSettings, device: torch.device, obs_dim: int = 11, act_dim: int = 3):
    """A TRPO instance and a batch shaped like a Hopper rollout, for timing the update alone."""
    from trbench.algos.rollout import Batch
    from trbench.algos.trpo import TRPO

    config = TRPO.Config.from_overrides(
        {
            "policy_hidden": settings.hidden,
            "value_hidden": settings.hidden,
            "steps_per_iteration": batch_size,
            "num_envs": 1,
            "device": "cuda" if device.type == "cuda" else "cpu",
        }
    )
    generator = torch.Generator().manual_seed(settings.seed)
    algorithm = TRPO(config, obs_dim, act_dim, device, generator)
    obs = torch.randn(batch_size, obs_dim, generator=generator).to(device)
    with torch.no_grad():
        mean, log_std = algorithm.policy(obs)
        actions = mean + torch.randn(mean.shape, generator=generator).to(device) * log_std.exp()
        log_probs = algorithm.policy.log_prob(obs, actions)
    values = torch.randn(batch_size, generator=generator).to(device)
    advantages = torch.randn(batch_size, generator=generator).to(device)
    batch = Batch(
        obs=obs, actions=actions, log_probs=log_probs, advantages=advantages, returns=values + advantages, values=values
    )
    return algorithm, batch


def measure_update_devices(settings: BenchSettings, report: BenchReport) -> None:
    """The TRPO update at `update_batch` states on the CPU and on the requested device."""
    from trbench.algos.trainer import resolve_device

    devices = [torch.device("cpu")]
    target = resolve_device(settings.device)
    if target.type != "cpu":
        devices.append(target)
    hidden = "x".join(str(h) for h in settings.hidden)
    results: dict[str, list[dict[str, float]]] = {}
    for device in devices:
        algorithm, batch = synthetic_trpo(settings.update_batch, settings, device)
        trpo_update_phases(algorithm, batch, device, ("sequential", "batched"))  # warm-up (allocator, kernels)
        results[str(device)] = [
            trpo_update_phases(algorithm, batch, device, ("sequential", "batched")) for _ in range(settings.repeats)
        ]
    report.samples["update"] = results
    cpu_total = _median([p["update_total"] for p in results["cpu"]])
    for name, per_repeat in results.items():
        note = f"batch {settings.update_batch}, {hidden}, synthetic data"
        for mode in ("sequential", "batched"):
            for row in _split_rows("update", name, per_repeat, mode, note):
                if mode == "batched" and not row.measure.startswith("linesearch"):
                    continue
                report.add(row)
        if name != "cpu":
            total = _median([p["update_total"] for p in per_repeat])
            report.add(
                Row(
                    "update",
                    name,
                    "speed-up of the update over the CPU",
                    cpu_total / total,
                    "x",
                    repeats=len(per_repeat),
                    note=note,
                )
            )


# --- grid ------------------------------------------------------------------------------------------


def measure_grid(env_id: str, settings: BenchSettings, report: BenchReport) -> None:
    """Throughput of `trbench run` on one worker and on `grid_workers`, alternated."""
    import tomli_w

    from trbench.suites.grid import load_suite
    from trbench.suites.runner import run_suite

    # the settings the throughput section trains with (on the CPU: one core per worker)
    _, config = _bench_config("trpo", settings, "cpu")
    hparams = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in config.to_dict().items()
        if value != getattr(type(config)(), key)
    }
    hparams["save_model"] = False
    text = tomli_w.dumps(
        {
            "name": "bench-grid",
            "description": "throughput of the suite runner",
            "steps": settings.grid_steps,
            "seeds": settings.grid_runs,
            "envs": [env_id],
            "algos": ["trpo"],
            "hparams": {"all": hparams},
        }
    )
    samples: dict[int, list[float]] = {1: [], settings.grid_workers: []}
    cpu_samples: dict[int, list[float]] = {1: [], settings.grid_workers: []}
    parent_cpu: dict[int, list[float]] = {1: [], settings.grid_workers: []}  # the runner's own share of a core
    with tempfile.TemporaryDirectory(prefix="trbench-bench-grid-") as tmp:
        suite_path = Path(tmp) / "bench-grid.toml"
        suite_path.write_text(text)
        suite = load_suite(suite_path)
        total_steps = settings.grid_runs * settings.grid_steps
        for repeat in range(settings.grid_repeats):
            for workers in (1, settings.grid_workers):
                out = Path(tmp) / f"r{repeat}-w{workers}"
                cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
                parent_before = time.process_time()
                start = time.perf_counter()
                code = run_suite(
                    suite, out, workers=workers, executor="local", address=None, redo_failed=True, stream=io.StringIO()
                )
                elapsed = time.perf_counter() - start
                parent_cpu[workers].append((time.process_time() - parent_before) / elapsed)
                cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if code != 0:
                    raise RuntimeError(f"the benchmark grid did not complete on {workers} worker(s)")
                samples[workers].append(total_steps / elapsed)
                # the workers' own CPU time (reaped children): steps per CPU-second does not depend
                # on how many cores other processes leave free, so it shows whether workers slow
                # each other down even when the wall-clock ratio is swamped by foreign load
                cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
                cpu_samples[workers].append(total_steps / cpu)
    report.samples[f"grid/{env_id}"] = {
        "steps_per_s": samples,
        "steps_per_cpu_s": cpu_samples,
        "runner_cpu_share": parent_cpu,
    }
    n = settings.grid_workers
    ratios = [m / o for m, o in zip(samples[n], samples[1])]
    note = f"{settings.grid_runs} TRPO runs x {settings.grid_steps} steps, trbench run (local pool)"
    report.add(Row("grid", env_id, "1 worker", _median(samples[1]), "steps/s", 1.0, repeats=len(samples[1]), note=note))
    report.add(
        _ratio_row("grid", env_id, f"{n} workers", samples[n], ratios, "steps/s", "wall clock, ratio to 1 worker")
    )
    cpu_ratios = [m / o for m, o in zip(cpu_samples[n], cpu_samples[1])]
    report.add(
        Row(
            "grid",
            env_id,
            "1 worker, per CPU-second",
            _median(cpu_samples[1]),
            "steps/cpu-s",
            1.0,
            repeats=len(cpu_samples[1]),
            note="workers' CPU time",
        )
    )
    report.add(
        _ratio_row(
            "grid",
            env_id,
            f"{n} workers, per CPU-second",
            cpu_samples[n],
            cpu_ratios,
            "steps/cpu-s",
            f"ratio to 1 worker; times {n} = the wall-clock speed-up on {n} otherwise idle cores",
        )
    )


# --- memory ----------------------------------------------------------------------------------------


def _rss_mb() -> float:
    """Current resident set size; the peak so far where /proc is not available."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return _peak_rss_mb()


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _memory_worker(env_id: str, steps: int, settings: BenchSettings, queue) -> None:
    torch.set_num_threads(1)  # as a suite worker runs
    from trbench.suites.execute import execute_run
    from trbench.suites.run_spec import RunSpec, resolve

    trace: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory(prefix="trbench-bench-memory-") as tmp:
        run = resolve(RunSpec("trpo", env_id, steps, settings.seed, {"num_envs": settings.num_envs}))
        result = execute_run(run, Path(tmp) / "run", on_iteration=lambda row: trace.append((row["step"], _rss_mb())))
    queue.put({"status": result["status"], "trace": trace, "peak_mb": _peak_rss_mb()})


def measure_memory(env_id: str, settings: BenchSettings, report: BenchReport) -> None:
    """Peak RSS of one worker (a fresh process, as in the runner's pool) over a TRPO run."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_memory_worker, args=(env_id, settings.memory_steps, settings, queue))
    process.start()
    outcome = queue.get()
    process.join()
    trace = outcome["trace"]
    report.samples[f"memory/{env_id}"] = outcome
    tenth = max(len(trace) // 10, 1)
    early = _median([rss for _, rss in trace[tenth - 1 : 2 * tenth]])
    late = _median([rss for _, rss in trace[-tenth:]])
    note = f"TRPO, {settings.memory_steps} steps, run {outcome['status']}"
    report.add(Row("memory", env_id, "peak RSS of one worker", outcome["peak_mb"], "MiB", repeats=1, note=note))
    report.add(Row("memory", env_id, "RSS at 10-20% of the run", early, "MiB", repeats=1))
    report.add(
        Row(
            "memory",
            env_id,
            "RSS over the last 10% of the run",
            late,
            "MiB",
            repeats=1,
            note=f"growth {late - early:+.1f} MiB from the 10-20% mark",
        )
    )


# --- checkpoints -------------------------------------------------------------------------------------


def measure_checkpoint(env_id: str, settings: BenchSettings, report: BenchReport, device: str) -> None:
    """What a checkpoint costs: the time to write one (the trainer's state captured, serialised,
    written and fsynced atomically, as a run does) against the time of one training iteration
    of the same run, measured in turn; from the two, its share of a run's time at the default
    ``checkpoint_interval_steps``."""
    from trbench.algos.config import OnPolicyConfig
    from trbench.algos.trainer import Trainer
    from trbench.base.run_folder import ProgressWriter
    from trbench.suites.execute import write_checkpoint
    from trbench.suites.run_spec import ResolvedRun, RunSpec

    cls, config = _bench_config("trpo", settings, device)
    config = dataclasses.replace(config, checkpoint_interval_steps=settings.steps_per_iteration)
    rounds = settings.warmup + settings.repeats
    steps = settings.steps_per_iteration * (rounds + 1)  # one more: the last iteration takes no checkpoint
    run = ResolvedRun(RunSpec("trpo", env_id, steps, settings.seed), cls, config)
    trainer = Trainer(cls, config, env_id, steps, settings.seed)
    iteration_s, write_s, sizes = [], [], []
    with tempfile.TemporaryDirectory(prefix="trbench-bench-checkpoint-") as tmp:
        folder = Path(tmp)
        progress = ProgressWriter(folder)
        if trainer.checkpoint_unsupported_reason:
            report.add(
                Row(
                    "checkpoint",
                    env_id,
                    "checkpoint write",
                    float("nan"),
                    "s",
                    repeats=0,
                    note=f"not measured: {trainer.checkpoint_unsupported_reason}",
                )
            )
            trainer.close()
            progress.close()
            return
        started = time.perf_counter()
        for round_index, row in enumerate(trainer.iterate()):
            iteration = time.perf_counter() - started
            progress.write(row)
            if trainer.checkpoint_due:
                begin = time.perf_counter()
                path = write_checkpoint(folder, run, trainer, progress, [])
                written = time.perf_counter() - begin
                if round_index >= settings.warmup:
                    iteration_s.append(iteration)
                    write_s.append(written)
                    sizes.append(path.stat().st_size)
            started = time.perf_counter()
        progress.close()
    trainer.close()
    report.samples[f"checkpoint/{env_id}"] = {"iteration_s": iteration_s, "write_s": write_s, "bytes": sizes}
    interval = OnPolicyConfig().checkpoint_interval_steps
    iterations_between = interval / settings.steps_per_iteration
    shares = [w / (w + iterations_between * i) for w, i in zip(write_s, iteration_s)]
    note = f"TRPO, {device}; ratio = one write / one training iteration of the same round"
    report.add(
        _ratio_row(
            "checkpoint", env_id, "checkpoint write", write_s, [w / i for w, i in zip(write_s, iteration_s)], "s", note
        )
    )
    report.add(Row("checkpoint", env_id, "checkpoint size", _median(sizes) / 2**20, "MiB", repeats=len(sizes)))
    report.add(
        Row(
            "checkpoint",
            env_id,
            f"share of run time at checkpoint_interval_steps={interval}",
            100 * _median(shares),
            "%",
            repeats=len(shares),
            note=f"range {100 * min(shares):.2f}-{100 * max(shares):.2f}%; one write per "
            f"{iterations_between:.1f} iterations; a kill loses at most {interval:,} steps",
        )
    )


# --- output ----------------------------------------------------------------------------------------


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    if unit == "steps/s" or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if unit != "s" else f"{value:.4f}"


def markdown(report: BenchReport) -> str:
    s = report.settings
    lines = [
        "# trbench bench",
        "",
        f"{s.num_envs} envs, {s.steps_per_iteration} steps per iteration, networks "
        f"{'x'.join(map(str, s.hidden))}, device {s.device}, {s.torch_threads} torch thread(s), "
        f"env backend {s.env_backend}, acting backend {s.acting_backend}, median of {s.repeats} rounds (ratio range in the range column); load average "
        f"{report.samples.get('load_average_before')} before, {report.samples.get('load_average_after')} after "
        f"on {os.cpu_count()} cores.",
        "",
    ]
    titles = {
        "throughput": "Throughput (ratio to raw stepping in the same round)",
        "trpo_update": "TRPO update split (ratio = share of the whole update)",
        "update": "TRPO update by device (ratio = share of the whole update)",
        "grid": "Suite runner (ratio to one worker)",
        "memory": "Memory of one worker",
        "checkpoint": "Checkpoints (ratio to one training iteration)",
    }
    for section in SECTIONS:
        rows = [r for r in report.rows if r.section == section]
        if not rows:
            continue
        lines += [
            f"## {titles[section]}",
            "",
            "| env / device | measure | value | unit | ratio | range | ratio (CPU time) | note |",
            "|---|---|---:|---|---:|---|---:|---|",
        ]
        for r in rows:
            spread = f"{r.ratio_min:.2f}-{r.ratio_max:.2f}" if r.ratio_min is not None else ""
            ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
            ratio_cpu = f"{r.ratio_cpu:.2f}" if r.ratio_cpu is not None else ""
            lines.append(
                f"| {r.env} | {r.measure} | {_fmt(r.value, r.unit)} | {r.unit} | {ratio} | {spread} "
                f"| {ratio_cpu} | {r.note} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_report(report: BenchReport, out: Path) -> None:
    from trbench.base.files import atomic_write_json, atomic_write_text
    from trbench.suites.execute import provenance

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(report.rows[0]).keys()) if report.rows else ["section"])
    writer.writeheader()
    for row in report.rows:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})
    atomic_write_text(out / "bench.csv", buffer.getvalue())
    atomic_write_text(out / "bench.md", markdown(report) + "\n")
    atomic_write_json(
        out / "bench.json",
        {
            "settings": asdict(report.settings),
            "rows": [asdict(r) for r in report.rows],
            "samples": report.samples,
            **provenance(report.settings.env_backend),
        },
    )


def run_bench(settings: BenchSettings, stream=sys.stdout) -> BenchReport:
    from trbench.algos.rollout import make_vector_env
    from trbench.algos.trainer import resolve_device

    settings.check()
    device = resolve_device(settings.device)
    for env_id in settings.envs:  # fail on a bad env id before minutes of measuring
        make_vector_env(env_id, 1, settings.env_backend).close()
    torch.set_num_threads(settings.torch_threads)
    report = BenchReport(settings)
    report.samples["load_average_before"] = _load_average()
    if settings.update_only:
        measure_update_devices(settings, report)
        report.samples["load_average_after"] = _load_average()
        return report
    for env_id in settings.envs:
        stream.write(f"measuring {env_id} ...\n")
        stream.flush()
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
        choices=BENCH_ALGOS,
        help="algorithm to time end to end; repeatable (default all four)",
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
        choices=("sequential", "batched"),
        default="sequential",
        help="TRPO line search used in the end-to-end iterations (both are timed in the split)",
    )
    p.add_argument(
        "--update-only",
        action="store_true",
        help="only time the TRPO update on a synthetic batch, on the CPU and on --device",
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
        choices=("gymnasium", "envpool"),
        default="gymnasium",
        help="what steps the envs in training; envpool's bare stepping is then measured too "
        "(ratios stay relative to gymnasium's; default gymnasium)",
    )
    p.add_argument(
        "--acting-backend",
        choices=("torch", "numpy"),
        default="torch",
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
    )
    check_output_folder(args.out)  # before minutes of measuring, not after
    report = run_bench(settings, stream=sys.stdout)
    write_report(report, args.out)
    print(markdown(report))
    print(f"written to {args.out}/bench.csv, bench.md, bench.json")
    return 0

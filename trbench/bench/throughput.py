"""The throughput section: raw env stepping, the rollout and end-to-end training iterations, each
as a ratio to raw stepping measured in the same round."""

from __future__ import annotations

import time

import numpy as np

from trbench.algos.rollout import make_vector_env
from trbench.algos.trainer import Trainer

from .settings import BenchReport, BenchSettings, Row, bench_config, median, median_ci, ratio_row
from .update import measure_trpo_split


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
    """Raw stepping, the rollout and whole training iterations of each algorithm, each algorithm in
    its own rounds; then the TRPO update split on the TRPO trainer's own batches."""
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
            cls, config = bench_config(algo, settings, device)
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
        m: dict[str, dict[str, list[float]]] = {key: {a: [] for a in settings.algos} for key in keys}
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
                median(all_raw),
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
            ratio_row(
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
                ratio_row(
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
                ratio_row(
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
                ratio_row(
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
                    median(other),
                    "us per vector step",
                    repeats=len(other),
                    note=f"range {min(other):.0f}-{max(other):.0f}; acting, normalisation, buffers, "
                    f"values, GAE; {settings.num_envs} envs per vector step",
                )
            )
        for algo in settings.algos:
            report.add(
                ratio_row(
                    "throughput",
                    env_id,
                    f"end-to-end {algo}",
                    m["e2e"][algo],
                    ratios("e2e", algo, reference),
                    "steps/s",
                    f"update {median(m['update_s'][algo]):.3f} s per iteration",
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

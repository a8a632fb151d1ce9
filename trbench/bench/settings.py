"""What a benchmark run depends on, what it produces, and the statistics its rows share."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trbench.algos.base import OnPolicyAlgorithm
from trbench.algos.config import ACTING_BACKENDS, ENV_BACKENDS, LINESEARCH_MODES, OnPolicyConfig
from trbench.algos.registry import BUILTIN, resolve_algorithm
from trbench.analysis.stats import stratified_bootstrap_ci
from trbench.base.errors import UsageError

# timed by default; --algo takes any built-in algorithm
BENCH_ALGOS = ("trpo", "npg", "ppo", "vpg")
BENCHABLE_ALGOS = tuple(BUILTIN)
SECTIONS = (
    "throughput",
    "trpo_update",
    "update",
    "lockstep",
    "lockstep_memory",
    "lockstep_update",
    "grid",
    "memory",
    "checkpoint",
)


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
    lockstep: tuple[int, ...] = ()  # seeds per worker to time in lockstep (only that section runs)

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
        unknown = [a for a in self.algos if a not in BENCHABLE_ALGOS]
        if unknown:
            raise UsageError(f"--algo: unknown {', '.join(unknown)}; allowed: {', '.join(BENCHABLE_ALGOS)}")
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
        if self.env_backend not in ENV_BACKENDS:
            raise UsageError(f"--env-backend: must be one of {', '.join(ENV_BACKENDS)}, got {self.env_backend!r}")
        if self.acting_backend not in ACTING_BACKENDS:
            raise UsageError(
                f"--acting-backend: must be one of {', '.join(ACTING_BACKENDS)}, got {self.acting_backend!r}"
            )
        if self.linesearch_mode not in LINESEARCH_MODES:
            raise UsageError(
                f"--linesearch-mode: must be one of {', '.join(LINESEARCH_MODES)}, got {self.linesearch_mode!r}"
            )
        if self.lockstep and min(self.lockstep) < 1:
            raise UsageError(f"--lockstep: seeds per worker must be >= 1, such as 1,4,8, got {self.lockstep}")
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


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def median_ci(
    values: list[float], confidence_level: float = 0.95, resamples: int = 4000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median: the reports' bootstrap, on one
    stratum, seeded so that a table is reproducible from its samples."""
    interval = stratified_bootstrap_ci(
        [np.asarray(values, dtype=float)],
        lambda strata: np.median(strata[0], axis=-1),
        np.random.default_rng(seed),
        resamples,
        confidence_level,
    )
    return interval.low, interval.high


def ratio_row(
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
        median(values),
        unit,
        median(ratios),
        min(ratios),
        max(ratios),
        len(values),
        note,
        median(cpu_ratios) if cpu_ratios else None,
    )


def bench_config(algo: str, settings: BenchSettings, device: str) -> tuple[type[OnPolicyAlgorithm], OnPolicyConfig]:
    """The algorithm class and its config as the bench trains it: the published defaults with the
    bench's sizes, device and backends, periodic evaluation off."""
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
    if getattr(defaults, "minibatch_size", 0) > settings.steps_per_iteration:
        overrides["minibatch_size"] = settings.steps_per_iteration
    if "linesearch_mode" in fields:
        overrides["linesearch_mode"] = settings.linesearch_mode
    return cls, cls.Config.from_overrides(overrides)

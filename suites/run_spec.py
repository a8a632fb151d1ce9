"""What to run: a run's description, its validation and its id.

A :class:`RunSpec` names an algorithm, an env, a budget, a seed and setting overrides;
:func:`resolve` checks all of it without touching the disk and gives the :class:`ResolvedRun`
whose :attr:`~ResolvedRun.run_id` names its folder.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from trbench.algos.base import OnPolicyAlgorithm
from trbench.algos.config import OnPolicyConfig
from trbench.algos.registry import resolve_algorithm
from trbench.algos.trainer import resolve_device, steps_collected
from trbench.base.errors import UsageError

from .tensorboard_log import require_tensorboard

EXECUTION_ONLY_FIELDS = (
    "device",
    "save_model",
    "linesearch_mode",
    "checkpoint_interval_steps",
    "keep_checkpoint",
    "tensorboard",
)

# Bump when a change alters what an existing configuration computes (a changed default, a fix
# in an update rule), so that resumed grids redo their runs instead of mixing old and new.
# Adding a config field whose default reproduces the old behaviour needs no bump.
COMPUTATION_VERSION = 1


@dataclass(frozen=True)
class RunSpec:
    """What to run: algorithm (name or import path), env, budget, seed, config overrides.

    `label` is the arm's name in reports (a variant such as ``trpo+``); it defaults to the
    algorithm's name.
    """

    algorithm: str
    env_id: str
    steps: int
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def arm(self) -> str:
        return self.label or self.algorithm


@dataclass(frozen=True)
class ResolvedRun:
    spec: RunSpec
    algorithm_cls: type[OnPolicyAlgorithm]
    config: OnPolicyConfig

    @property
    def steps_taken(self) -> int:
        """The environment steps the run takes: its budget rounded up to whole iterations."""
        return steps_collected(self.spec.steps, self.config.steps_per_iteration)

    @property
    def run_id(self) -> str:
        """`<arm>__<env>__s<seed>__<hash>`: the hash covers the arm, algorithm, env, budget, seed,
        :data:`COMPUTATION_VERSION` and every setting whose resolved value differs from its
        default. Leaving defaults out keeps ids stable when a new setting is added, and makes an
        explicit `max_kl=0.01` the same run as the default."""
        defaults = type(self.config)().to_dict()
        changed = {
            k: v for k, v in self.config.to_dict().items() if k not in EXECUTION_ONLY_FIELDS and v != defaults[k]
        }
        payload = json.dumps(
            {
                "arm": self.spec.arm,
                "algorithm": self.spec.algorithm,
                "env_id": self.spec.env_id,
                "steps": self.spec.steps,
                "seed": self.spec.seed,
                "config": changed,
                "computation_version": COMPUTATION_VERSION,
            },
            sort_keys=True,
            default=str,
        )
        digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
        safe_arm = re.sub(r"[^A-Za-z0-9_.+-]", "_", self.spec.arm)
        return f"{safe_arm}__{self.spec.env_id}__s{self.spec.seed}__{digest}"


def resolve(spec: RunSpec) -> ResolvedRun:
    """Validate everything about a run without touching the disk or building an env."""
    cls = resolve_algorithm(spec.algorithm)
    if spec.env_id not in gym.registry:
        raise UsageError(f"env: unknown gymnasium env id {spec.env_id!r} (e.g. Hopper-v5, InvertedPendulum-v5)")
    if not isinstance(spec.steps, int) or isinstance(spec.steps, bool) or spec.steps < 1:
        raise UsageError(f"steps: must be an integer >= 1, got {spec.steps!r}")
    if not isinstance(spec.seed, int) or isinstance(spec.seed, bool) or spec.seed < 0:
        raise UsageError(f"seed: must be an integer >= 0, got {spec.seed!r}")
    config = cls.Config.from_overrides(spec.overrides)
    resolve_device(config.device)
    if config.tensorboard:
        require_tensorboard()
    return ResolvedRun(spec, cls, config)


def rounding_note(runs: Sequence[ResolvedRun]) -> str:
    """One line saying which step budgets are rounded up to whole iterations ("" when none is),
    so that a command says it once instead of printing one count and running another."""
    rounded_runs = [run for run in runs if run.steps_taken != run.spec.steps]
    if not rounded_runs:
        return ""
    pairs = sorted({(run.spec.steps, run.steps_taken) for run in rounded_runs})
    sizes = {run.config.steps_per_iteration for run in rounded_runs}
    unit = f"steps_per_iteration = {next(iter(sizes)):,} steps" if len(sizes) == 1 else "steps_per_iteration steps"
    if len(pairs) == 1:
        change = f"the budget of {pairs[0][0]:,} becomes {pairs[0][1]:,} steps"
    else:
        shown = ", ".join(f"{budget:,} -> {taken:,}" for budget, taken in pairs[:3])
        change = f"budgets are rounded up: {shown}" + (", ..." if len(pairs) > 3 else "")
    share = f" ({len(rounded_runs)} of {len(runs)} runs)" if len(runs) > 1 else ""
    return f"note: training collects whole iterations of {unit}, so {change}{share}"

"""What a suite file describes, once read: its arms, their settings layers and the grid of runs.

:mod:`trbench.suites.grid` reads and validates suite files into these; the runner, the status
command and `trbench tune --suite` consume them.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trbench.suites.run_spec import ResolvedRun


@dataclass(frozen=True)
class Setting:
    """One hyperparameter as a suite file sets it: a single value or a grid axis."""

    key_path: str  # where it was set, e.g. "hparams.trpo.max_kl"
    values: tuple[Any, ...]
    is_axis: bool


@dataclass(frozen=True)
class Variant:
    name: str
    algorithm: str
    description: str
    settings: dict[str, Setting]


@dataclass(frozen=True)
class Arm:
    """One entry of `algos`: a plain algorithm, an import path, or a variant of one."""

    name: str
    algorithm: str
    config_fields: dict[str, Any]  # field name -> type hint
    variant: Variant | None


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    description: str
    text: str  # the file verbatim, copied next to the results
    envs: tuple[str, ...]
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    runs: tuple[ResolvedRun, ...]
    # runs of one cell that a worker trains in lockstep (suites/packing.py); None: the default
    seeds_per_worker: int | None = None

    @property
    def total_steps(self) -> int:
        """The environment steps the grid takes (each budget rounded up to whole iterations)."""
        return sum(run.steps_taken for run in self.runs)

    def manifest(self) -> dict[str, Any]:
        return {"suite": self.name, "runs": [manifest_entry(run) for run in self.runs]}


def manifest_entry(run: ResolvedRun) -> dict[str, Any]:
    spec = run.spec
    return {
        "run_id": run.run_id,
        "algo": spec.arm,
        "algorithm": spec.algorithm,
        "env_id": spec.env_id,
        "seed": spec.seed,
        "steps": spec.steps,
        "overrides": dict(spec.overrides),
    }


@dataclass(frozen=True)
class ArmSettings:
    """What a suite file sets for one arm on each env: the layers listed in
    :mod:`trbench.suites.grid`'s docstring, weakest first, before their grid axes are expanded."""

    arm: Arm
    layers: dict[str, tuple[dict[str, Setting], ...]]  # env id -> layers

    def merged(self, env_id: str) -> dict[str, Setting]:
        return merge_layers(self.arm, self.layers[env_id])


@dataclass(frozen=True)
class SuiteSettings:
    """A validated suite with what it was expanded from, for the commands that read a suite
    file's settings rather than run its grid (`trbench tune --suite`)."""

    suite: Suite
    steps: dict[str, int]  # env id -> budget
    arms: dict[str, ArmSettings]  # by arm name, in the order of `algos`
    tune: Any  # the raw [tune] table ({} when absent), which the runner ignores


def merge_layers(arm: Arm, layers: typing.Iterable[dict[str, Setting]]) -> dict[str, Setting]:
    """Later layers win key by key; [hparams.all] keys the arm's algorithm lacks are dropped."""
    merged: dict[str, Setting] = {}
    for layer in layers:
        merged.update({k: s for k, s in layer.items() if k in arm.config_fields})
    return merged

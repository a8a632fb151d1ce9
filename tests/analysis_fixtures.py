"""Builders of synthetic results folders in the format of results/README.md, for analysis tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VERSIONS = {
    "python": "3.11",
    "trbench": "0.1.0",
    "torch": "2.13.0",
    "gymnasium": "1.4.0",
    "mujoco": "4.0.0",
    "numpy": "2.0",
}


@dataclass(frozen=True)
class RunSpec:
    algo: str
    env_id: str
    seed: int
    steps: int = 10_000
    eval_every: int = 1_000
    level: float = 1000.0  # the return the learning curve approaches
    status: str = "complete"
    first_eval: int | None = None  # step of the first evaluation (default: eval_every)
    # the trust-region data (analysis/trust_region.py), all absent by default as in older runs:
    # the config.json block as JSON text ("null" for a method without a radius; its radius also
    # becomes the run's value of the setting), the kl of successive progress rows (cycled; default
    # 0.005 and 0.006) and, when given, a kl_max column the same way
    trust_region: str | None = None
    kl: tuple[float, ...] | None = None
    kl_max: tuple[float, ...] | None = None
    algorithm: str | None = None  # config.json's algorithm (default: algo without a trailing '+')

    @property
    def run_id(self) -> str:
        return f"{self.algo}-{self.env_id}-s{self.seed}".replace("+", "plus")


def _curve(spec: RunSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    start = spec.first_eval or spec.eval_every
    steps = np.arange(start, spec.steps + 1, spec.eval_every)
    progress = steps / spec.steps
    returns = spec.level * (1.0 - np.exp(-3.0 * progress)) + rng.normal(0.0, 0.05 * abs(spec.level) + 1.0, steps.size)
    return steps, returns


def write_run(runs_dir: Path, spec: RunSpec, rng: np.random.Generator, with_result: bool = True) -> Path:
    """One run folder: config.json, progress.csv (eval every ``eval_every`` steps, with an
    iteration in between that has no evaluation) and, unless ``with_result`` is False,
    result.json."""
    run_dir = runs_dir / spec.run_id
    run_dir.mkdir(parents=True)
    config = {
        "run_id": spec.run_id,
        "algo": spec.algo,
        "algorithm": spec.algorithm or spec.algo.rstrip("+"),
        "env_id": spec.env_id,
        "env_backend": "gymnasium",
        "seed": spec.seed,
        "seeds": {"env": spec.seed, "eval_env": spec.seed + 1, "torch": spec.seed, "numpy": spec.seed},
        "steps": spec.steps,
        "device": "cpu",
        "config": {"max_kl": 0.01},
        "versions": VERSIONS,
        "git_commit": None,
        "hostname": "test",
        "created_at": "2026-01-01T00:00:00Z",
    }
    if spec.trust_region is not None:
        block = json.loads(spec.trust_region)
        config["trust_region"] = block
        if isinstance(block, dict) and block.get("setting"):
            config["config"] = {**config["config"], block["setting"]: block.get("radius")}
    (run_dir / "config.json").write_text(json.dumps(config))
    steps, returns = _curve(spec, rng)
    header = "iteration,step,wall_time_s,train_return,train_episodes,eval_return,eval_return_std,kl"
    lines = [header + (",kl_max" if spec.kl_max is not None else "")]
    kl = spec.kl or (0.005, 0.006)
    iteration = 0

    def diagnostics(row: int) -> str:
        text = f"{kl[row % len(kl)]!r}"
        return text + (f",{spec.kl_max[row % len(spec.kl_max)]!r}" if spec.kl_max is not None else "")

    for step, value in zip(steps, returns):
        iteration += 1
        half = int(step - spec.eval_every / 2)
        lines.append(f"{iteration},{half},{iteration * 0.5},{value * 0.9:.3f},2,,,{diagnostics(iteration - 1)}")
        iteration += 1
        lines.append(
            f"{iteration},{int(step)},{iteration * 0.5},{value * 0.9:.3f},2,{value:.3f},5.0,{diagnostics(iteration - 1)}"
        )
    (run_dir / "progress.csv").write_text("\n".join(lines) + "\n")
    if with_result:
        complete = spec.status == "complete"
        result = {
            "status": spec.status,
            "error": None if complete else f"synthetic {spec.status} run",
            "final_eval_return": float(returns[-1]) if complete else None,
            "final_eval_return_std": 5.0 if complete else None,
            "final_eval_episodes": 10 if complete else None,
            "steps": spec.steps,
            "wall_time_s": 12.0,
            "steps_per_second": spec.steps / 12.0,
        }
        (run_dir / "result.json").write_text(json.dumps(result))
    return run_dir


def make_results(
    root: Path,
    specs: Sequence[RunSpec],
    suite: str = "synthetic",
    incomplete: Sequence[RunSpec] = (),
    seed: int = 0,
) -> Path:
    """A suite-level results folder with manifest.json, suite.toml and one folder per run;
    ``incomplete`` runs get no result.json (an interrupted run)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    runs_dir = root / "runs"
    for spec in specs:
        write_run(runs_dir, spec, rng)
    for spec in incomplete:
        write_run(runs_dir, spec, rng, with_result=False)
    everything = list(specs) + list(incomplete)
    manifest = {
        "suite": suite,
        "runs": [
            {
                "run_id": s.run_id,
                "algo": s.algo,
                "algorithm": s.algo,
                "env_id": s.env_id,
                "seed": s.seed,
                "steps": s.steps,
            }
            for s in everything
        ],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    (root / "suite.toml").write_text(f'name = "{suite}"\n')
    return root


LEVELS = {
    ("trpo", "Hopper-v5"): 1500.0,
    ("ppo", "Hopper-v5"): 1800.0,
    ("trpo", "InvertedPendulum-v5"): 900.0,
    ("ppo", "InvertedPendulum-v5"): 950.0,
}


def grid_specs(
    algos: Sequence[str] = ("ppo", "trpo"),
    envs: Sequence[str] = ("Hopper-v5", "InvertedPendulum-v5"),
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    steps: int = 10_000,
) -> list[RunSpec]:
    return [
        RunSpec(algo, env, seed, steps=steps, level=LEVELS.get((algo, env), 500.0))
        for algo in algos
        for env in envs
        for seed in seeds
    ]

"""The training loop every algorithm shares: rollout, GAE, update, evaluate, report.

It knows nothing of files: each iteration's record goes to a callback, and the final state comes
back as a value, for the caller to store however it likes.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

from trbench.errors import UsageError

from .base import OnPolicyAlgorithm
from .config import OnPolicyConfig
from .normalization import ObservationNormalizer, RewardScaler
from .rollout import RolloutCollector, evaluate_policy, make_vector_env, to_batch

# Seeds drawn for the envs live in [0, 2^30); evaluation seeds in [2^31, 2^31 + 2^30). Training
# envs use env_seed + i for i < num_envs and evaluation episodes eval_seed + k, so the two sets
# can never meet.
_SEED_SPAN = 2**30
_EVAL_SEED_OFFSET = 2**31


class TrainingDiverged(RuntimeError):
    """A NaN or Inf appeared in the parameters or the diagnostics."""


def derive_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for every random stream, all from the one run seed."""
    env, eval_env, torch_seed, numpy_seed = np.random.SeedSequence(seed).generate_state(4, dtype=np.uint64)
    return {
        "env": int(env % _SEED_SPAN),
        "eval_env": int(_EVAL_SEED_OFFSET + eval_env % _SEED_SPAN),
        "torch": int(torch_seed % 2**63),
        "numpy": int(numpy_seed % 2**32),
    }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device: {name!r} requested but CUDA is not available; allowed here: cpu, auto")
    return torch.device(name)


@dataclass
class TrainingOutcome:
    steps: int
    wall_time_s: float
    final_eval_returns: np.ndarray
    state: dict[str, Any]  # networks and normalisation statistics


class Trainer:
    """Trains one algorithm on one env for a step budget, from one seed."""

    def __init__(self, algorithm_cls: type[OnPolicyAlgorithm], config: OnPolicyConfig, env_id: str,
                 total_steps: int, seed: int):
        if total_steps < 1:
            raise UsageError(f"steps: must be >= 1, got {total_steps}")
        self.algorithm_cls = algorithm_cls
        self.config = config
        self.env_id = env_id
        self.total_steps = total_steps
        self.seed = seed
        self.seeds = derive_seeds(seed)
        self.device = resolve_device(config.device)
        self.env = make_vector_env(env_id, config.num_envs, config.env_backend)
        self._eval_envs: dict[int, Any] = {}
        self._eval_episodes_used = 0
        self.algorithm: OnPolicyAlgorithm | None = None  # set once iterate() has started
        self.collector: RolloutCollector | None = None  # likewise
        self.outcome: TrainingOutcome | None = None  # set once iterate() is exhausted

    def close(self) -> None:
        self.env.close()
        for env in self._eval_envs.values():
            env.close()

    def _evaluate(self, actor, normalizer: ObservationNormalizer, episodes: int) -> np.ndarray:
        if episodes not in self._eval_envs:
            self._eval_envs[episodes] = make_vector_env(self.env_id, episodes, self.config.env_backend)
        first_seed = self.seeds["eval_env"] + self._eval_episodes_used
        self._eval_episodes_used += episodes
        return evaluate_policy(actor, self._eval_envs[episodes], normalizer.frozen_copy(), episodes, first_seed)

    def run(self, on_iteration: Callable[[dict[str, Any]], None] | None = None) -> TrainingOutcome:
        for record in self.iterate():
            if on_iteration is not None:
                on_iteration(record)
        return self.outcome

    def iterate(self) -> Iterator[dict[str, Any]]:
        """The training loop as a generator: one record per iteration, the outcome in
        ``self.outcome`` once it is exhausted. Benchmarks drive several of these in turn, so they
        can interleave iterations of different algorithms in one process."""
        cfg = self.config
        np.random.seed(self.seeds["numpy"])
        torch.manual_seed(self.seeds["torch"])
        generator = torch.Generator().manual_seed(self.seeds["torch"])
        obs_dim = self.env.single_observation_space.shape[0]
        act_dim = self.env.single_action_space.shape[0]
        algorithm = self.algorithm_cls(cfg, obs_dim, act_dim, self.device, generator)
        self.algorithm = algorithm
        # acting is one tiny forward per env step: a CPU copy beats a device round trip
        actor = algorithm.policy if self.device.type == "cpu" else copy.deepcopy(algorithm.policy).cpu()
        obs_normalizer = ObservationNormalizer((obs_dim,), cfg.normalize_obs, cfg.obs_clip)
        reward_scaler = RewardScaler(cfg.num_envs, cfg.gamma, cfg.normalize_reward, cfg.reward_clip)
        collector = RolloutCollector(self.env, self.seeds["env"], obs_normalizer, reward_scaler, generator)
        self.collector = collector

        iterations = math.ceil(self.total_steps / cfg.steps_per_iteration)
        steps_per_env = cfg.steps_per_iteration // cfg.num_envs
        start = time.perf_counter()
        steps = 0
        next_eval = cfg.eval_interval_steps if cfg.eval_interval_steps > 0 else math.inf
        final_returns = np.array([])
        for iteration in range(1, iterations + 1):
            t0 = time.perf_counter()
            arrays, stats = collector.collect(actor, algorithm.value_fn, steps_per_env, cfg.gamma,
                                              cfg.gae_lambda, self.device, cfg.bootstrap_truncated,
                                              cfg.acting_backend)
            steps += cfg.steps_per_iteration
            t1 = time.perf_counter()
            batch = to_batch(arrays, self.device, torch.float32)
            diagnostics = algorithm.update(batch, progress=(iteration - 1) / iterations)
            if actor is not algorithm.policy:
                actor.load_state_dict(algorithm.policy.state_dict())
            t2 = time.perf_counter()
            bad = [k for k, v in diagnostics.items() if not math.isfinite(v)]
            if bad or not algorithm.parameters_finite():
                what = f"diagnostics {', '.join(bad)}" if bad else "network parameters"
                raise TrainingDiverged(f"non-finite {what} at iteration {iteration} (step {steps})")

            record: dict[str, Any] = {
                "iteration": iteration,
                "step": steps,
                "wall_time_s": 0.0,
                "train_return": float(np.mean(stats.episode_returns)) if stats.episode_returns else None,
                "train_episodes": len(stats.episode_returns),
                "eval_return": None,
                "eval_return_std": None,
            }
            if iteration == iterations:
                final_returns = self._evaluate(actor, obs_normalizer, cfg.final_eval_episodes)
                record["eval_return"], record["eval_return_std"] = float(final_returns.mean()), float(final_returns.std())
            elif steps >= next_eval:
                returns = self._evaluate(actor, obs_normalizer, cfg.eval_episodes)
                record["eval_return"], record["eval_return_std"] = float(returns.mean()), float(returns.std())
                while next_eval <= steps:
                    next_eval += cfg.eval_interval_steps
            record["wall_time_s"] = time.perf_counter() - start
            record["steps_per_second"] = cfg.steps_per_iteration / (t2 - t0)
            record["rollout_time_s"] = t1 - t0
            record["update_time_s"] = t2 - t1
            record.update(diagnostics)
            yield record

        state = {
            "algorithm": algorithm.state_dict(),
            "obs_normalizer": obs_normalizer.state_dict(),
            "reward_scaler": reward_scaler.state_dict(),
        }
        self.outcome = TrainingOutcome(steps=steps, wall_time_s=time.perf_counter() - start,
                                       final_eval_returns=final_returns, state=state)

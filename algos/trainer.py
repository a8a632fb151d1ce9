"""The training loop every algorithm shares: rollout, GAE, update, evaluate, report.

It knows nothing of files: each iteration's record goes to a callback, and the final state comes
back as a value, for the caller to store however it likes.
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
import math
import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from trbench.base.errors import UsageError

from .base import OnPolicyAlgorithm
from .config import OnPolicyConfig
from .env_state import EnvStateUnsupported, capture_env_state, restore_env_state
from .normalization import ObservationNormalizer, RewardScaler
from .rollout import RolloutCollector, RolloutStats, evaluate_policy, make_vector_env, to_batch

# Seeds drawn for the envs live in [0, 2^30); evaluation seeds in [2^31, 2^31 + 2^30). Training
# envs use env_seed + i for i < num_envs and evaluation episodes eval_seed + k, so the two sets
# can never meet.
_SEED_SPAN = 2**30
_EVAL_SEED_OFFSET = 2**31
# How many of the highest training-episode returns `train_return_top10` averages: the "mean of the
# top-10 episode rewards during training" of Wang, He and Tan 2019 (Truly PPO), Table 1 (b).
TOP_TRAIN_EPISODES = 10


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


def steps_collected(budget: int, steps_per_iteration: int) -> int:
    """The environment steps a run takes: it collects whole iterations, so its step budget
    rounded up to a multiple of ``steps_per_iteration``."""
    return math.ceil(budget / steps_per_iteration) * steps_per_iteration


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


@dataclass
class LoopState:
    """Where the training loop stands after its last finished iteration."""

    iteration: int = 0
    steps: int = 0
    next_eval: float = math.inf  # the step count at which the next periodic evaluation is due
    eval_episodes_used: int = 0  # evaluation episode k resets from seed eval_env + k
    wall_time_s: float = 0.0  # spent in earlier processes, for a resumed run
    # the TOP_TRAIN_EPISODES highest training-episode returns so far, highest first; None when
    # unknown (resumed from a checkpoint written before they were kept)
    top_train_returns: list[float] | None = field(default_factory=list)


def highest_returns(kept: list[float], new: list[float], count: int = TOP_TRAIN_EPISODES) -> list[float]:
    """The `count` highest of the returns kept so far and an iteration's new ones, highest first."""
    return heapq.nlargest(count, kept + new)


CHECKPOINT_FORMAT = 1


@dataclass
class CollectedIteration:
    """One iteration's rollout, with the clock readings around it."""

    arrays: dict[str, np.ndarray]
    stats: RolloutStats
    started_at: float
    collected_at: float


class Trainer:
    """Trains one algorithm on one env for a step budget, from one seed.

    Checkpoints: while :meth:`iterate` is suspended at a yielded record, :meth:`checkpoint_state`
    captures everything the rest of the run depends on, and a Trainer built with the same
    arguments and ``resume_from`` that state continues exactly where it stopped: the same records,
    parameters and final evaluation, bit for bit on the CPU. ``checkpoint_due`` says when the
    config's ``checkpoint_interval_steps`` asks for one; the caller decides where it goes.
    """

    def __init__(
        self,
        algorithm_cls: type[OnPolicyAlgorithm],
        config: OnPolicyConfig,
        env_id: str,
        total_steps: int,
        seed: int,
        resume_from: dict[str, Any] | None = None,
    ):
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
        self.loop = LoopState(next_eval=config.eval_interval_steps if config.eval_interval_steps > 0 else math.inf)
        self._resume_from = resume_from
        self.algorithm: OnPolicyAlgorithm | None = None  # set once iterate() has started
        self.collector: RolloutCollector | None = None  # likewise
        self.obs_normalizer: ObservationNormalizer | None = None  # likewise
        self.reward_scaler: RewardScaler | None = None  # likewise
        self.generator: torch.Generator | None = None  # likewise
        self.outcome: TrainingOutcome | None = None  # set once iterate() is exhausted
        self.checkpoint_due = False  # true at a yielded record after which a checkpoint is asked for
        self.actor: Any = None  # the policy that acts in rollouts, set by begin()
        self._checkpoint_every = 0
        self._final_returns = np.array([])
        self._checkpoint_unsupported: str | None = None  # why not, once checked; "" when supported

    @property
    def checkpoint_unsupported_reason(self) -> str:
        """Why this run cannot be checkpointed ("" when it can): envpool keeps its simulator state
        in C++ with no way to read it back, and a custom env may hold state that does not pickle."""
        if self._checkpoint_unsupported is None:
            try:
                capture_env_state(self.env)
                self._checkpoint_unsupported = ""
            except EnvStateUnsupported as exc:
                self._checkpoint_unsupported = str(exc)
        return self._checkpoint_unsupported

    @property
    def iterations(self) -> int:
        return steps_collected(self.total_steps, self.config.steps_per_iteration) // self.config.steps_per_iteration

    def close(self) -> None:
        self.env.close()
        for env in self._eval_envs.values():
            env.close()

    def _evaluate(self, actor, normalizer: ObservationNormalizer, episodes: int) -> np.ndarray:
        if episodes not in self._eval_envs:
            self._eval_envs[episodes] = make_vector_env(self.env_id, episodes, self.config.env_backend)
        first_seed = self.seeds["eval_env"] + self.loop.eval_episodes_used
        self.loop.eval_episodes_used += episodes
        return evaluate_policy(actor, self._eval_envs[episodes], normalizer.frozen_copy(), episodes, first_seed)

    def run(self, on_iteration: Callable[[dict[str, Any]], None] | None = None) -> TrainingOutcome:
        for record in self.iterate():
            if on_iteration is not None:
                on_iteration(record)
        assert self.outcome is not None  # set when iterate() is exhausted
        return self.outcome

    # --- checkpoints --------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """Everything the rest of the run depends on, after the last yielded record. The learning
        objects are kept as objects (one pickle keeps the generator shared by the algorithm and
        the collector shared), so an algorithm's own state (a penalty coefficient, optimiser
        moments) is saved without each algorithm having to list it."""
        if self.algorithm is None or self.collector is None:
            raise RuntimeError("checkpoint_state() is only defined once iterate() has yielded a record")
        if self.checkpoint_unsupported_reason:
            raise EnvStateUnsupported(self.checkpoint_unsupported_reason)
        return {
            "format": CHECKPOINT_FORMAT,
            "algorithm_class": f"{self.algorithm_cls.__module__}.{self.algorithm_cls.__qualname__}",
            "loop": dataclasses.asdict(self.loop) | {"wall_time_s": self._wall_time_s()},
            "learning": {
                "algorithm": self.algorithm,
                "obs_normalizer": self.obs_normalizer,
                "reward_scaler": self.reward_scaler,
                "generator": self.generator,
            },
            "collector": self.collector.state_dict(),
            "envs": capture_env_state(self.env),
            "global_rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        }

    def _wall_time_s(self) -> float:
        return self.loop.wall_time_s + time.perf_counter() - self._started_at

    def _start(self) -> None:
        """Build the learning objects: fresh from the seeds, or from the checkpoint to resume."""
        cfg = self.config
        obs_dim = _flat_size(self.env.single_observation_space)
        act_dim = _flat_size(self.env.single_action_space)
        state = self._resume_from
        if state is None:
            np.random.seed(self.seeds["numpy"])
            torch.manual_seed(self.seeds["torch"])
            self.generator = torch.Generator().manual_seed(self.seeds["torch"])
            self.algorithm = self.algorithm_cls(cfg, obs_dim, act_dim, self.device, self.generator)
            self.obs_normalizer = ObservationNormalizer(
                (obs_dim,), cfg.normalize_obs, cfg.obs_clip, cfg.normalizer_epsilon, cfg.normalizer_initial_count
            )
            self.reward_scaler = RewardScaler(
                cfg.num_envs,
                cfg.gamma,
                cfg.normalize_reward,
                cfg.reward_clip,
                cfg.normalizer_epsilon,
                cfg.normalizer_initial_count,
            )
            self.collector = RolloutCollector(
                self.env, self.seeds["env"], self.obs_normalizer, self.reward_scaler, self.generator
            )
            return
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {state.get('format')!r}; this trbench reads {CHECKPOINT_FORMAT}")
        learning = state["learning"]
        if type(learning["algorithm"]) is not self.algorithm_cls:
            raise ValueError(f"the checkpoint holds {state['algorithm_class']}, not {self.algorithm_cls.__qualname__}")
        self.algorithm = learning["algorithm"]
        self.obs_normalizer, self.reward_scaler = learning["obs_normalizer"], learning["reward_scaler"]
        self.generator = learning["generator"]
        restore_env_state(self.env, state["envs"])
        self.collector = RolloutCollector(self.env, None, self.obs_normalizer, self.reward_scaler, self.generator)
        self.collector.load_state_dict(state["collector"])
        self.loop = LoopState(**{"top_train_returns": None, **state["loop"]})
        torch.set_rng_state(state["global_rng"]["torch"])
        np.random.set_state(state["global_rng"]["numpy"])
        random.setstate(state["global_rng"]["python"])
        self._resume_from = None  # the objects are live now; a second iterate() must not reuse them

    # --- the loop -------------------------------------------------------------------------------------
    def iterate(self) -> Generator[dict[str, Any]]:
        """The training loop as a generator: one record per iteration, the outcome in
        ``self.outcome`` once it is exhausted. Benchmarks drive several of these in turn, so they
        can interleave iterations of different algorithms in one process."""
        self.begin()
        assert self.algorithm is not None  # built by begin()
        while not self.finished:
            collected = self.collect()
            batch = to_batch(collected.arrays, self.device, torch.float32)
            diagnostics = self.algorithm.update(batch, progress=self.progress)
            self.sync_actor()
            yield self.complete_iteration(collected, diagnostics, time.perf_counter())
            self.checkpoint_due = False
        self.conclude()

    # The loop's phases, in the order iterate() runs them; a lockstep trainer (algos/
    # lockstep_trainer.py) runs the same phases for each of its members around one batched update.
    def begin(self) -> None:
        """Build or restore the learning objects and the acting copy of the policy."""
        cfg = self.config
        self._started_at = time.perf_counter()
        self._start()
        assert self.algorithm is not None  # built by _start()
        # acting is one tiny forward per env step: a CPU copy beats a device round trip
        self.actor = self.algorithm.policy if self.device.type == "cpu" else copy.deepcopy(self.algorithm.policy).cpu()
        self._checkpoint_every = cfg.checkpoint_interval_steps
        if self._checkpoint_every and self.checkpoint_unsupported_reason:
            self._checkpoint_every = 0

    @property
    def finished(self) -> bool:
        return self.loop.iteration >= self.iterations

    @property
    def progress(self) -> float:
        """The fraction of the run done before the next iteration, for learning-rate annealing."""
        return self.loop.iteration / self.iterations

    def collect(self) -> CollectedIteration:
        """The next iteration's rollout."""
        cfg = self.config
        assert self.algorithm is not None and self.collector is not None  # built by begin()
        started = time.perf_counter()
        arrays, stats = self.collector.collect(
            self.actor,
            self.algorithm.value_fn,
            cfg.steps_per_iteration // cfg.num_envs,
            cfg.gamma,
            cfg.gae_lambda,
            self.device,
            cfg.bootstrap_truncated,
            cfg.acting_backend,
        )
        return CollectedIteration(arrays, stats, started, time.perf_counter())

    def sync_actor(self) -> None:
        """Bring the acting copy of the policy up to date after an update."""
        assert self.algorithm is not None
        if self.actor is not self.algorithm.policy:
            self.actor.load_state_dict(self.algorithm.policy.state_dict())

    def complete_iteration(
        self, collected: CollectedIteration, diagnostics: dict[str, float], updated_at: float
    ) -> dict[str, Any]:
        """After the update: the divergence check, the evaluation when due, and the record."""
        cfg, loop = self.config, self.loop
        assert self.algorithm is not None and self.obs_normalizer is not None  # built by begin()
        iteration = loop.iteration + 1
        steps = loop.steps + cfg.steps_per_iteration
        stats = collected.stats
        bad = [k for k, v in diagnostics.items() if not math.isfinite(v)]
        if bad or not self.algorithm.parameters_finite():
            what = f"diagnostics {', '.join(bad)}" if bad else "network parameters"
            raise TrainingDiverged(f"non-finite {what} at iteration {iteration} (step {steps})")

        top = None if loop.top_train_returns is None else highest_returns(loop.top_train_returns, stats.episode_returns)
        record: dict[str, Any] = {
            "iteration": iteration,
            "step": steps,
            "wall_time_s": 0.0,
            "train_return": float(np.mean(stats.episode_returns)) if stats.episode_returns else None,
            "train_episodes": len(stats.episode_returns),
        }
        if top is not None:  # unknown in a run resumed from an older checkpoint, whose table lacks the column
            record["train_return_top10"] = float(np.mean(top)) if len(top) == TOP_TRAIN_EPISODES else None
        record["eval_return"], record["eval_return_std"] = None, None
        if iteration == self.iterations:
            self._final_returns = self._evaluate(self.actor, self.obs_normalizer, cfg.final_eval_episodes)
            record["eval_return"], record["eval_return_std"] = (
                float(self._final_returns.mean()),
                float(self._final_returns.std()),
            )
        elif steps >= loop.next_eval:
            returns = self._evaluate(self.actor, self.obs_normalizer, cfg.eval_episodes)
            record["eval_return"], record["eval_return_std"] = float(returns.mean()), float(returns.std())
            while loop.next_eval <= steps:
                loop.next_eval += cfg.eval_interval_steps
        record["wall_time_s"] = self._wall_time_s()
        record["steps_per_second"] = cfg.steps_per_iteration / (updated_at - collected.started_at)
        record["rollout_time_s"] = collected.collected_at - collected.started_at
        record["update_time_s"] = updated_at - collected.collected_at
        record.update(diagnostics)
        # the iteration is complete: a checkpoint taken while the record is out resumes after it
        every = self._checkpoint_every
        passed_interval = every > 0 and steps // every > loop.steps // every
        loop.iteration, loop.steps, loop.top_train_returns = iteration, steps, top
        self.checkpoint_due = passed_interval and iteration < self.iterations
        return record

    def conclude(self) -> None:
        """Set :attr:`outcome` once the last iteration is done."""
        self.outcome = TrainingOutcome(
            steps=self.loop.steps,
            wall_time_s=self._wall_time_s(),
            final_eval_returns=self._final_returns,
            state=self.final_state(),
        )

    def final_state(self) -> dict[str, Any]:
        """Networks and normalisation statistics, as model.pt stores them."""
        if self.algorithm is None or self.obs_normalizer is None or self.reward_scaler is None:
            raise RuntimeError("final_state() is only defined once iterate() has started")
        return {
            "algorithm": self.algorithm.state_dict(),
            "obs_normalizer": self.obs_normalizer.state_dict(),
            "reward_scaler": self.reward_scaler.state_dict(),
        }


def _flat_size(space: gym.Space) -> int:
    """The length of a Box space's vectors (the trainer takes flat Box observations and actions)."""
    if space.shape is None:
        raise ValueError(f"expected a Box space, got {space}")
    return int(space.shape[0])

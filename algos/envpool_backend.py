"""An optional env backend on envpool, presented with the same semantics as gymnasium's
SAME_STEP vector env, so the rollout code cannot tell the two apart.

What differs from gymnasium and how it is bridged (the full list is in docs/envpool.md):

* Autoreset. envpool resets an env on the step *after* its episode ended (NEXT_STEP), and that
  step is not a transition. Here, when a step ends episodes, those envs alone are stepped once
  more with a dummy action (envpool steps a subset when given their ids), which resets them; the
  caller then gets the reset observation at once and the true last observation in
  ``info["final_obs"]``, exactly as gymnasium's SAME_STEP mode gives them. The batch holds only
  real transitions, so a 2048-step batch means the same under both backends.
* Seeding. envpool fixes every env's seed when the pool is built and ignores ``reset(seed=...)``.
  A seeded reset therefore rebuilds the pool with per-env seeds ``seed + i``, the rule gymnasium's
  vector envs use, so training (one seeded reset) and evaluation (a seeded reset per round) are
  reproducible. The same seed does not give the same initial states as gymnasium: the random
  streams differ.
* Dynamics. envpool runs its own C++ ports of the tasks on the MuJoCo it was built with, not on
  gymnasium's Python code and the pinned ``mujoco`` package; results from the two backends are
  different experiments, and every run records which backend made it.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any, cast

import gymnasium as gym
import numpy as np

from trbench.base.errors import UsageError

# envpool links its own MuJoCo into its extension modules; this is the version the pinned
# envpool release carries (read from the version string inside mujoco_gym_envpool.so).
ENVPOOL_PINNED = "1.2.5"
ENVPOOL_MUJOCO_VERSION = {"1.2.5": "3.6.0"}


def _import_envpool():
    try:
        import envpool  # noqa: PLC0415 - optional dependency, imported only when asked for
    except ImportError as exc:
        raise UsageError(
            "env_backend: 'envpool' needs the optional envpool extra (pip install -e '.[envpool]'); "
            f"import failed: {exc}; allowed without it: gymnasium"
        ) from exc
    return envpool


def supported_env_ids() -> list[str]:
    """MuJoCo tasks that envpool and gymnasium both run under the same name: v4 and later.
    envpool also ports v2/v3, but gymnasium 1.x cannot run those (they need mujoco-py), so there
    would be no reference to check them against; they are left out."""
    envpool = _import_envpool()
    return sorted(
        e
        for e in envpool.list_all_envs()
        if e in gym.registry and "mujoco" in str(gym.registry[e].entry_point) and (gym.registry[e].version or 0) >= 4
    )


def envpool_versions() -> dict[str, str]:
    """Versions that decide what an envpool run computed, for the run's provenance."""
    version = importlib.metadata.version("envpool")
    return {"envpool": version, "envpool_mujoco": ENVPOOL_MUJOCO_VERSION.get(version, "unknown")}


class EnvpoolVectorEnv:
    """The part of ``gymnasium.vector.VectorEnv`` that trbench uses, backed by an envpool pool,
    with SAME_STEP autoreset."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(self, env_id: str, num_envs: int, max_episode_steps: int | None = None):
        self._envpool = _import_envpool()
        supported = supported_env_ids()
        if env_id not in supported:
            raise UsageError(
                f"env: {env_id!r} is not available with env_backend=envpool; allowed: {', '.join(supported)}"
            )
        self.env_id = env_id
        self.num_envs = num_envs
        spec_limit = gym.spec(env_id).max_episode_steps
        # gymnasium's TimeLimit for the task decides truncation under both backends
        self.max_episode_steps = max_episode_steps if max_episode_steps is not None else spec_limit
        self._pool: Any = cast(Any, None)  # envpool's own vector env, built by _build
        self._build(list(range(num_envs)))
        # make_vector_env checks that both are Box, for either backend
        self.single_observation_space = self._pool.observation_space
        self.single_action_space = self._pool.action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._action_dim = self.single_action_space.shape[0]

    def _build(self, env_seeds: list[int]) -> None:
        if self._pool is not None:
            self._pool.close()
        self._pool = self._envpool.make_gymnasium(
            self.env_id,
            num_envs=self.num_envs,
            batch_size=self.num_envs,
            seed=int(env_seeds[0]),
            env_seed=[int(s) for s in env_seeds],
            max_episode_steps=self.max_episode_steps,
            num_threads=1,  # one thread per worker, like the gymnasium path; the runner parallelises runs
        )

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        if options:
            raise ValueError("EnvpoolVectorEnv.reset: options are not supported")
        if seed is not None:
            seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset: {len(seeds)} seeds for {self.num_envs} envs")
            self._build([_int32_seed(s) for s in seeds])
        obs, _ = self._pool.reset()
        return obs, {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, rewards, terminated, truncated, _ = self._pool.step(np.asarray(actions, dtype=np.float64))
        done = terminated | truncated
        info: dict[str, Any] = {}
        if done.any():
            ended = np.flatnonzero(done)
            obs = obs.copy()  # ours from here on, whatever envpool does with its buffers
            final_obs = np.empty(self.num_envs, dtype=object)
            for i in ended:
                final_obs[i] = obs[i].copy()
            # the step after an episode's end resets the env and ignores its action
            reset_obs, *_ = self._pool.step(np.zeros((ended.size, self._action_dim)), ended.astype(np.int32))
            obs[ended] = reset_obs
            info["final_obs"] = final_obs
            info["_final_obs"] = done.copy()
        return obs, rewards, terminated, truncated, info

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _int32_seed(seed: int) -> int:
    """envpool takes int32 seeds. trbench draws training seeds below 2^30 and evaluation seeds in
    [2^31, 2^31 + 2^30) (see trainer.py); this folds the latter onto [2^30, 2^31), so the two sets
    stay disjoint, and leaves the former as they are."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if seed < 2**31:
        return seed
    return 2**30 + (seed - 2**31) % 2**30

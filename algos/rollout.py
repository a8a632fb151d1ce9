"""Rollouts over gymnasium vector environments, GAE, and deterministic evaluation.

Autoreset: gymnasium 1.x vector envs default to NEXT_STEP autoreset, where the step after an
episode ends returns the reset observation with a zero reward, and that step is not a real
transition. We ask for SAME_STEP instead: the step that ends an episode returns the first
observation of the next one and puts the true last observation in ``info["final_obs"]``. Every
step is then a real transition, and a truncated episode can bootstrap from V(final_obs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from trbench.base.errors import UsageError

from .acting import RolloutActor
from .config import ENV_BACKENDS
from .library_warnings import env_building
from .networks import GaussianPolicy
from .normalization import ObservationNormalizer, RewardScaler


class FinalObsInfoSyncVectorEnv(gym.vector.VectorWrapper):
    """gymnasium's SyncVectorEnv in SAME_STEP mode, stepped without merging every env's info.

    ``SyncVectorEnv.step`` merges each sub-env's info dict into batched arrays key by key, every
    step; for the MuJoCo tasks (four to six info keys) that costs about as much per vector step as
    acting with a 64x64 policy. Training reads only ``final_obs``. This wrapper makes the same calls on
    the same sub-envs in the same order (``step``, and ``reset()`` without arguments when an
    episode ends), so observations, rewards, flags and final observations are identical to the
    wrapped env's; its info holds only ``final_obs`` and its mask ``_final_obs``, and only on
    steps where an episode ended. Reset, spaces and closing are the wrapped env's.
    """

    def __init__(self, env: gym.vector.SyncVectorEnv):
        super().__init__(env)
        if env.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise ValueError("FinalObsInfoSyncVectorEnv needs a SyncVectorEnv with SAME_STEP autoreset")
        self._sub_envs = env.envs
        self._obs_dtype = env.single_observation_space.dtype

    def step(self, actions):
        observations, rewards, terminated, truncated = [], [], [], []
        info: dict = {}
        for i, env in enumerate(self._sub_envs):
            obs, reward, term, trunc, _ = env.step(actions[i])
            if term or trunc:
                if not info:
                    n = len(self._sub_envs)
                    info = {"final_obs": np.full(n, None, dtype=object), "_final_obs": np.zeros(n, dtype=np.bool_)}
                info["final_obs"][i] = obs
                info["_final_obs"][i] = True
                obs, _ = env.reset()
            observations.append(obs)
            rewards.append(reward)
            terminated.append(term)
            truncated.append(trunc)
        # the dtypes SyncVectorEnv stores these in
        return (
            np.stack(observations).astype(self._obs_dtype, copy=False),
            np.array(rewards, dtype=np.float64),
            np.array(terminated, dtype=np.bool_),
            np.array(truncated, dtype=np.bool_),
            info,
        )


def make_vector_env(
    env_id: str, num_envs: int, backend: str = "gymnasium", full_info: bool = False
) -> gym.vector.VectorEnv:
    """A synchronous vector env with SAME_STEP autoreset; UsageError for unknown ids or
    non-Box action spaces. ``backend="envpool"`` gives the envpool adapter with the same semantics.

    With the gymnasium backend the SyncVectorEnv is wrapped in :class:`FinalObsInfoSyncVectorEnv`
    (same transitions, info reduced to ``final_obs``) unless ``full_info`` asks for gymnasium's
    env as it is, with every sub-env's info merged (the benchmark's reference stepping)."""
    if backend not in ENV_BACKENDS:
        raise UsageError(f"env_backend: must be one of {', '.join(ENV_BACKENDS)}, got {backend!r}")
    env: gym.vector.VectorEnv
    if backend == "envpool":
        from .envpool_backend import EnvpoolVectorEnv  # noqa: PLC0415 - envpool is an optional extra

        with env_building():
            env = cast(gym.vector.VectorEnv, EnvpoolVectorEnv(env_id, num_envs))  # the same interface
    elif env_id not in gym.registry:
        raise UsageError(f"env: unknown gymnasium env id {env_id!r} (e.g. Hopper-v5, InvertedPendulum-v5)")
    else:
        try:
            with env_building():
                env = gym.make_vec(
                    env_id,
                    num_envs=num_envs,
                    vectorization_mode="sync",
                    vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                )
        except gym.error.Error as exc:
            raise UsageError(f"env: {env_id!r} cannot be created: {str(exc).splitlines()[0]}") from exc
    if not isinstance(env.single_action_space, gym.spaces.Box):
        env.close()
        raise UsageError(
            f"env: {env_id!r} has a {type(env.single_action_space).__name__} action space; only Box is supported"
        )
    if not isinstance(env.single_observation_space, gym.spaces.Box):
        env.close()
        raise UsageError(
            f"env: {env_id!r} has a {type(env.single_observation_space).__name__} observation space; only Box is supported"
        )
    if backend == "gymnasium" and not full_info:
        env = FinalObsInfoSyncVectorEnv(cast(gym.vector.SyncVectorEnv, env))
    return env


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    done: np.ndarray,
    gamma: float,
    lam: float,
):
    """Generalised advantage estimation over a (time, env) block.

    delta_t = r_t + gamma * V(s'_t) * (1 - terminated_t) - V(s_t)
    A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}

    `next_values[t]` is V of the observation that followed step t: for a truncated step that is
    the episode's true last observation (bootstrapped), for a terminated step it is ignored.
    `done` = terminated or truncated cuts the recursion at episode ends. Returns
    (advantages, value targets = advantages + values).
    """
    advantages = np.zeros_like(rewards, dtype=np.float64)
    running = np.zeros(rewards.shape[1:], dtype=np.float64)
    not_terminated = 1.0 - terminated.astype(np.float64)
    not_done = 1.0 - done.astype(np.float64)
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * next_values[t] * not_terminated[t] - values[t]
        running = delta + gamma * lam * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values


@dataclass
class Batch:
    """One iteration's on-policy data, flattened over (time, env), on the update device."""

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor

    def __len__(self) -> int:
        return self.obs.shape[0]


@dataclass
class RolloutStats:
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)


class RolloutCollector:
    """Steps a vector env with the current policy and turns the data into a :class:`Batch`.

    The envs are reset from `env_seed` at construction. With `env_seed` None they are left as
    they are, for a collector whose state :meth:`load_state_dict` brings back from a checkpoint
    (the envs' own state is restored apart, see :mod:`.env_state`)."""

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        env_seed: int | None,
        obs_normalizer: ObservationNormalizer,
        reward_scaler: RewardScaler,
        generator: torch.Generator,
    ):
        self.env = env
        self.num_envs = env.num_envs
        self.obs_normalizer = obs_normalizer
        self.reward_scaler = reward_scaler
        self.generator = generator
        action_space, observation_space = env.single_action_space, env.single_observation_space
        assert isinstance(action_space, gym.spaces.Box) and isinstance(observation_space, gym.spaces.Box)
        self.action_low, self.action_high = action_space.low, action_space.high
        self.episode_return = np.zeros(self.num_envs, dtype=np.float64)
        self.episode_length = np.zeros(self.num_envs, dtype=np.int64)
        self.obs: np.ndarray = np.zeros((self.num_envs, *observation_space.shape), dtype=np.float32)
        if env_seed is not None:
            raw_obs, _ = env.reset(seed=env_seed)
            self.obs = obs_normalizer(raw_obs)

    def state_dict(self) -> dict[str, np.ndarray]:
        """What the collector carries from one rollout to the next: the current (normalised)
        observations and the running episode returns and lengths."""
        return {
            "obs": self.obs.copy(),
            "episode_return": self.episode_return.copy(),
            "episode_length": self.episode_length.copy(),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.obs = state["obs"].copy()
        self.episode_return = state["episode_return"].copy()
        self.episode_length = state["episode_length"].copy()

    def collect(
        self,
        actor: GaussianPolicy,
        value_fn,
        steps_per_env: int,
        gamma: float,
        lam: float,
        device: torch.device,
        bootstrap_truncated: bool = True,
        acting_backend: str = "torch",
    ) -> tuple[dict[str, np.ndarray], RolloutStats]:
        """Run `steps_per_env` vector steps and return the arrays GAE needs. With
        `bootstrap_truncated` false, a time-limit cut counts as a termination in GAE;
        `acting_backend` is :class:`RolloutActor`'s."""
        n, T = self.num_envs, steps_per_env
        obs_dim = self.obs.shape[1]
        obs_buf = np.zeros((T, n, obs_dim), dtype=np.float32)
        act_buf = np.zeros((T, n, self.action_low.shape[0]), dtype=np.float32)
        rew_buf = np.zeros((T, n), dtype=np.float32)
        term_buf = np.zeros((T, n), dtype=bool)
        done_buf = np.zeros((T, n), dtype=bool)
        final_obs: list[tuple[int, int, np.ndarray]] = []  # (t, env, normalised last obs) at episode ends
        stats = RolloutStats()
        acting = RolloutActor(actor, n, acting_backend)
        aux_buf = np.zeros((T, n, self.action_low.shape[0]) if acting.fast else (T, n), dtype=np.float32)
        # inference mode: nothing computed while acting is ever differentiated, and it skips the
        # autograd bookkeeping of every small tensor operation in the loop
        with torch.inference_mode():
            for t in range(T):
                obs_buf[t] = self.obs
                actions_np, aux_buf[t] = acting.step(self.obs, self.generator)
                act_buf[t] = actions_np
                # the Gaussian is unbounded; the env sees the clipped action, the policy its sample
                # (maximum then minimum is np.clip's definition, NaN included, without its wrapper)
                raw_obs, rewards, terminated, truncated, info = self.env.step(
                    np.minimum(np.maximum(actions_np, self.action_low), self.action_high)
                )
                done = terminated | truncated
                self.episode_return += rewards
                self.episode_length += 1
                if done.any():
                    ended = np.flatnonzero(done)
                    last = self.obs_normalizer(np.stack([info["final_obs"][i] for i in ended]), update=False)
                    for j, i in enumerate(ended):
                        final_obs.append((t, int(i), last[j]))
                        stats.episode_returns.append(float(self.episode_return[i]))
                        stats.episode_lengths.append(int(self.episode_length[i]))
                    self.episode_return[ended] = 0.0
                    self.episode_length[ended] = 0
                rew_buf[t] = self.reward_scaler(rewards, done)
                term_buf[t] = terminated if bootstrap_truncated else done
                done_buf[t] = done
                self.obs = self.obs_normalizer(raw_obs)
            logp_buf = acting.log_probs(torch.from_numpy(act_buf), torch.from_numpy(aux_buf)).numpy()

        # values of every visited state, of the state after the last step, and of the true final
        # states of episodes that ended inside the block, in one forward pass
        extra = [self.obs] + ([np.stack([o for _, _, o in final_obs])] if final_obs else [])
        all_obs = np.concatenate([obs_buf.reshape(T * n, obs_dim), *extra])
        with torch.no_grad():
            all_values = value_fn(torch.from_numpy(all_obs).to(device)).double().cpu().numpy()
        values = all_values[: T * n].reshape(T, n)
        next_values = np.empty_like(values)
        next_values[:-1] = values[1:]
        next_values[-1] = all_values[T * n : T * n + n]
        for k, (t, env_index, _) in enumerate(final_obs):
            next_values[t, env_index] = all_values[T * n + n + k]
        advantages, returns = compute_gae(rew_buf, values, next_values, term_buf, done_buf, gamma, lam)
        arrays = {
            "obs": obs_buf.reshape(T * n, obs_dim),
            "actions": act_buf.reshape(T * n, -1),
            "log_probs": logp_buf.reshape(-1),
            "advantages": advantages.reshape(-1),
            "returns": returns.reshape(-1),
            "values": values.reshape(-1),
        }
        return arrays, stats


def to_batch(arrays: dict[str, np.ndarray], device: torch.device, dtype: torch.dtype) -> Batch:
    return Batch(**{k: torch.as_tensor(v, dtype=dtype).to(device) for k, v in arrays.items()})


def evaluate_policy(
    actor: GaussianPolicy,
    env: gym.vector.VectorEnv,
    obs_normalizer: ObservationNormalizer,
    episodes: int,
    first_seed: int,
) -> np.ndarray:
    """Raw returns of `episodes` episodes with the deterministic (mean) action.

    Each episode starts from its own reset seed, first_seed + k, so periodic evaluations are
    reproducible and disjoint from training seeds. The normaliser must be a frozen copy.
    """
    returns: list[float] = []
    action_space = env.single_action_space
    assert isinstance(action_space, gym.spaces.Box)  # make_vector_env admits Box spaces only
    low, high = action_space.low, action_space.high
    n = env.num_envs
    next_episode = 0
    while next_episode < episodes:
        active = min(n, episodes - next_episode)
        seeds = [first_seed + next_episode + i for i in range(n)]
        raw_obs, _ = env.reset(seed=seeds)  # type: ignore[arg-type]  # vector envs take a seed per env
        running = np.zeros(n)
        live = np.zeros(n, dtype=bool)
        live[:active] = True
        while live.any():
            obs = torch.from_numpy(obs_normalizer(raw_obs, update=False))
            actions, _ = actor.act(obs, None, deterministic=True)
            raw_obs, rewards, terminated, truncated, _ = env.step(np.clip(actions.numpy(), low, high))
            running += np.where(live, rewards, 0.0)
            ended = live & (terminated | truncated)
            for i in np.flatnonzero(ended):
                returns.append(float(running[i]))
            live &= ~ended
        next_episode += active
    return np.asarray(returns)

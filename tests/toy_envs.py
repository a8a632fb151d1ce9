"""Tiny deterministic envs whose transitions are known exactly, for rollout tests."""

import gymnasium as gym
import numpy as np


class CounterEnv(gym.Env):
    """obs = [steps taken in this episode]; reward 1 per step; terminates after `terminate_at`
    steps when given (truncation comes from the TimeLimit wrapper at registration)."""

    def __init__(self, terminate_at: int | None = None):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.terminate_at = terminate_at
        self.count = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.count = 0
        return np.array([0.0]), {}

    def step(self, action):
        self.count += 1
        terminated = self.terminate_at is not None and self.count >= self.terminate_at
        return np.array([float(self.count)]), 1.0, terminated, False, {}


def register_toy_envs() -> None:
    if "trbench-test/CounterTruncated-v0" not in gym.registry:
        gym.register("trbench-test/CounterTruncated-v0", entry_point=CounterEnv, max_episode_steps=3)
        gym.register(
            "trbench-test/CounterTerminated-v0",
            entry_point=CounterEnv,
            max_episode_steps=100,
            kwargs={"terminate_at": 3},
        )

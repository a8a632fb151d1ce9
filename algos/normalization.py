"""Running statistics for observation normalisation and reward scaling.

Both live on the host in float64 numpy: they are updated once per environment step, where a
device round trip would cost more than the arithmetic. Their state is saved with the run, and
evaluation uses a frozen copy.
"""

from __future__ import annotations

import copy

import numpy as np


class RunningMeanStd:
    """Mean and variance of a stream, merged batch by batch (Chan et al.'s parallel update)."""

    def __init__(self, shape: tuple[int, ...] = (), initial_count: float = 1e-4):
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        # a tiny pseudo-count keeps the first update well defined without biasing later ones
        self.count = initial_count

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, dtype=np.float64)
        batch_count = batch.shape[0]
        # batch.mean(axis=0) and batch.var(axis=0) spelled out as numpy computes them (sum, divide;
        # squared deviations from that mean, sum, divide), so the results are bit-identical but
        # the mean is computed once and the wrappers' overhead, paid every env step, is gone
        batch_mean = np.add.reduce(batch, axis=0) / batch_count
        deviation = batch - batch_mean
        np.multiply(deviation, deviation, out=deviation)
        batch_var = np.add.reduce(deviation, axis=0) / batch_count
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.var = np.asarray(state["var"], dtype=np.float64)
        self.count = float(state["count"])


class ObservationNormalizer:
    """(obs - mean) / sqrt(var + epsilon), clipped; the identity when disabled. The defaults of
    `epsilon` and `initial_count` are those of the config (normalizer_epsilon, ..._initial_count)."""

    epsilon = 1e-8  # the default, also for normalisers pickled before the setting existed

    def __init__(
        self, shape: tuple[int, ...], enabled: bool, clip: float, epsilon: float = 1e-8, initial_count: float = 1e-4
    ):
        self.enabled = enabled
        self.clip = clip
        self.epsilon = epsilon  # guards constant observation dimensions
        self.stats = RunningMeanStd(shape, initial_count)
        self.frozen = False

    def __call__(self, obs: np.ndarray, update: bool = True) -> np.ndarray:
        if not self.enabled:
            return obs.astype(np.float32, copy=False)
        if update and not self.frozen:
            self.stats.update(obs)
        normalized = obs - self.stats.mean
        normalized /= np.sqrt(self.stats.var + self.epsilon)
        # in place, and maximum/minimum rather than np.clip's wrapper: the same values, NaN included
        np.maximum(normalized, -self.clip, out=normalized)
        np.minimum(normalized, self.clip, out=normalized)
        return normalized.astype(np.float32)

    def frozen_copy(self) -> ObservationNormalizer:
        clone = copy.deepcopy(self)
        clone.frozen = True
        return clone

    def state_dict(self) -> dict:
        return {"enabled": self.enabled, "clip": self.clip, "stats": self.stats.state_dict()}


class RewardScaler:
    """Divides rewards by the running std of the discounted return (no mean subtraction).

    This is the scaling of Baselines' VecNormalize that Engstrom et al. (2020) call reward
    scaling; the return accumulator restarts when an episode ends.
    """

    epsilon = 1e-8  # the default, also for scalers pickled before the setting existed

    def __init__(
        self,
        num_envs: int,
        gamma: float,
        enabled: bool,
        clip: float,
        epsilon: float = 1e-8,
        initial_count: float = 1e-4,
    ):
        self.enabled = enabled
        self.gamma = gamma
        self.clip = clip
        self.epsilon = epsilon
        self.stats = RunningMeanStd((), initial_count)
        self.discounted_return = np.zeros(num_envs, dtype=np.float64)

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return rewards.astype(np.float32, copy=False)
        self.discounted_return = self.discounted_return * self.gamma + rewards
        self.stats.update(self.discounted_return)
        scaled = rewards / np.sqrt(self.stats.var + self.epsilon)
        self.discounted_return[dones] = 0.0
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict:
        return {"enabled": self.enabled, "clip": self.clip, "stats": self.stats.state_dict()}

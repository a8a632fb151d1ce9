"""GAE and the rollout's handling of termination, truncation and gymnasium's autoreset."""

import numpy as np
import pytest
import torch
from toy_envs import register_toy_envs

from trbench.algos.networks import GaussianPolicy
from trbench.algos.normalization import ObservationNormalizer, RewardScaler, RunningMeanStd
from trbench.algos.rollout import RolloutCollector, compute_gae, make_vector_env
from trbench.base.errors import UsageError


def test_gae_matches_a_hand_computed_example_with_termination_and_truncation():
    gamma, lam = 0.9, 0.8
    # column 0: terminates at t=1; column 1: truncated at t=0 with V(final obs) = 5
    rewards = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    values = np.array([[0.5, 1.0], [0.6, 1.0], [0.7, 1.0]])
    next_values = np.array([[0.6, 5.0], [9.0, 1.0], [0.8, 2.0]])  # 9.0 follows a termination: ignored
    terminated = np.array([[False, False], [True, False], [False, False]])
    done = np.array([[False, True], [True, False], [False, False]])
    adv, returns = compute_gae(rewards, values, next_values, terminated, done, gamma, lam)
    # by hand: column 0: A2 = 3 + .9*.8 - .7 = 3.02; A1 = 2 - .6 = 1.4; A0 = 1 + .9*.6 - .5 + .72*1.4
    #          column 1: A2 = 1 + .9*2 - 1 = 1.8; A1 = .9 + .72*1.8; A0 = 1 + .9*5 - 1 = 4.5
    expected = np.array([[1.04 + 0.72 * 1.4, 4.5], [1.4, 0.9 + 0.72 * 1.8], [3.02, 1.8]])
    np.testing.assert_allclose(adv, expected, rtol=1e-12)
    np.testing.assert_allclose(returns, expected + values, rtol=1e-12)


def test_gae_with_lambda_one_and_no_episode_end_is_the_discounted_return_minus_value():
    rewards = np.ones((4, 1))
    values = np.zeros((4, 1))
    next_values = np.zeros((4, 1))
    flags = np.zeros((4, 1), dtype=bool)
    adv, _ = compute_gae(rewards, values, next_values, flags, flags, 0.5, 1.0)
    np.testing.assert_allclose(adv[:, 0], [1 + 0.5 + 0.25 + 0.125, 1 + 0.5 + 0.25, 1.5, 1.0])


class LinearValue:
    """V(obs) = 10 * obs[0]: values of the counter env are known exactly."""

    def __call__(self, obs):
        return 10.0 * obs[:, 0].double()


def collect(env_id, steps_per_env, num_envs=2, gamma=1.0, lam=1.0, bootstrap_truncated=True):
    register_toy_envs()
    env = make_vector_env(env_id, num_envs)
    normalizer = ObservationNormalizer((1,), enabled=False, clip=10.0)
    scaler = RewardScaler(num_envs, gamma, enabled=False, clip=10.0)
    collector = RolloutCollector(env, 0, normalizer, scaler, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    actor = GaussianPolicy(1, 1, (4,), "tanh", "orthogonal", 0.01, 0.0)
    arrays, stats = collector.collect(
        actor, LinearValue(), steps_per_env, gamma, lam, torch.device("cpu"), bootstrap_truncated
    )
    env.close()
    return arrays, stats


def test_truncation_bootstraps_from_the_true_final_observation():
    arrays, stats = collect("trbench-test/CounterTruncated-v0", steps_per_env=6)
    obs = arrays["obs"].reshape(6, 2)[:, 0]
    # SAME_STEP autoreset: every stored step is a real transition, episodes restart at 0
    np.testing.assert_array_equal(obs, [0, 1, 2, 0, 1, 2])
    adv = arrays["advantages"].reshape(6, 2)[:, 0]
    # gamma = lam = 1: A_t = remaining rewards + V(final obs = 3) = 30, minus V(s_t)
    np.testing.assert_allclose(adv, [3 + 30 - 0, 2 + 30 - 10, 1 + 30 - 20] * 2)
    assert stats.episode_returns == [3.0] * 4 and stats.episode_lengths == [3] * 4


def test_truncation_without_bootstrap_is_treated_as_termination():
    # Baselines' semantics: the time-limit cut ends the return like a terminal state, V = 0
    arrays, stats = collect("trbench-test/CounterTruncated-v0", steps_per_env=6, bootstrap_truncated=False)
    adv = arrays["advantages"].reshape(6, 2)[:, 0]
    np.testing.assert_allclose(adv, [3 - 0, 2 - 10, 1 - 20] * 2)
    assert stats.episode_returns == [3.0] * 4
    # a block end is not an episode end: it still bootstraps from the next observation
    arrays, _ = collect("trbench-test/CounterTruncated-v0", steps_per_env=2, bootstrap_truncated=False)
    np.testing.assert_allclose(arrays["advantages"].reshape(2, 2)[:, 0], [2 + 20 - 0, 1 + 20 - 10])


def test_termination_does_not_bootstrap():
    arrays, stats = collect("trbench-test/CounterTerminated-v0", steps_per_env=6)
    adv = arrays["advantages"].reshape(6, 2)[:, 0]
    np.testing.assert_allclose(adv, [3 - 0, 2 - 10, 1 - 20] * 2)


def test_block_end_bootstraps_from_the_next_observation():
    arrays, _ = collect("trbench-test/CounterTerminated-v0", steps_per_env=2)
    adv = arrays["advantages"].reshape(2, 2)[:, 0]
    # the block cuts the episode after 2 steps: bootstrap V(obs=2) = 20
    np.testing.assert_allclose(adv, [2 + 20 - 0, 1 + 20 - 10])


def test_running_mean_std_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 4))
    stats = RunningMeanStd((4,))
    for chunk in np.array_split(data, 7):
        stats.update(chunk)
    np.testing.assert_allclose(stats.mean, data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.var, data.var(0), rtol=1e-4)


def test_observation_normalizer_clips_and_freezes():
    normalizer = ObservationNormalizer((2,), enabled=True, clip=2.0)
    normalizer(np.array([[0.0, 0.0], [2.0, 2.0]]))
    frozen = normalizer.frozen_copy()
    before = frozen.stats.mean.copy()
    out = frozen(np.array([[1000.0, -1000.0]]))
    np.testing.assert_array_equal(out, [[2.0, -2.0]])
    np.testing.assert_array_equal(frozen.stats.mean, before)


def test_reward_scaler_divides_by_the_discounted_return_std_and_resets_at_episode_end():
    scaler = RewardScaler(1, 0.9, enabled=True, clip=100.0)
    for _ in range(50):
        scaler(np.array([1.0]), np.array([False]))
    assert scaler.discounted_return[0] > 1.0
    scaler(np.array([1.0]), np.array([True]))
    assert scaler.discounted_return[0] == 0.0


def test_discrete_action_space_is_refused():
    with pytest.raises(UsageError, match="Box"):
        make_vector_env("CartPole-v1", 1)


def test_unknown_env_is_refused():
    with pytest.raises(UsageError, match="unknown gymnasium env id"):
        make_vector_env("NoSuchEnv-v9", 1)

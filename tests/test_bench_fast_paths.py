"""The speed paths must compute exactly what the plain paths compute: the batched line search
accepts the same step as the sequential one, the rollout's acting equals ``GaussianPolicy.act``
bit for bit, the normaliser's spelled-out statistics equal numpy's mean and var, and the info-reduced vector
env steps exactly as gymnasium's SyncVectorEnv."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trbench.algos.acting import RolloutActor
from trbench.algos.networks import GaussianPolicy
from trbench.algos.normalization import RunningMeanStd
from trbench.algos.rollout import FinalObsInfoSyncVectorEnv, make_vector_env
from trbench.algos.trust_region import (
    backtracking_line_search,
    batched_line_search,
    flat_parameters,
)


def _quadratic_problem(kl_scale: float, gain: float):
    """One parameter vector; KL = kl_scale * |theta - theta0|^2, surrogate = gain . (theta - theta0)
    minus a curvature term, so larger steps raise the KL and eventually lower the surrogate."""
    theta0 = torch.tensor([0.3, -0.2, 0.5])
    param = torch.nn.Parameter(theta0.clone())
    direction = torch.tensor([1.0, 2.0, -1.0])

    def evaluate():
        d = param - theta0
        return gain * torch.dot(direction, d) - 0.8 * d.pow(2).sum(), kl_scale * d.pow(2).sum()

    return [param], direction, evaluate


CASES = [
    # (kl_scale, gain, max_kl, accept_ratio): accepted at once, after shrinking, never (KL), never
    # (no improvement), and with a demanding improvement ratio
    (0.001, 1.0, 0.01, 0.0),
    (1.0, 1.0, 0.05, 0.0),
    (100.0, 1.0, 1e-6, 0.0),
    (0.001, -1.0, 0.01, 0.0),
    (0.01, 1.0, 0.05, 0.9),
]


@pytest.mark.parametrize("kl_scale, gain, max_kl, accept_ratio", CASES)
def test_batched_line_search_accepts_the_same_step_as_the_sequential_one(kl_scale, gain, max_kl, accept_ratio):
    results, finals = [], []
    for search in (backtracking_line_search, batched_line_search):
        params, step, evaluate = _quadratic_problem(kl_scale, gain)
        with torch.no_grad():
            before, _ = evaluate()
        expected = gain * torch.dot(step, step)
        args = (params, step, evaluate, float(before), float(expected), max_kl, 0.5, 10, accept_ratio)
        results.append(search(*args))
        finals.append(flat_parameters(params))
    sequential, batched = results
    assert bool(batched.accepted) == sequential.accepted
    assert int(batched.backtracks) == sequential.backtracks
    assert float(batched.step_fraction) == sequential.step_fraction
    assert float(batched.kl) == sequential.kl
    assert float(batched.improvement) == sequential.improvement
    assert torch.equal(finals[0], finals[1])


def test_the_cases_cover_accept_shrink_and_reject():
    outcomes = set()
    for kl_scale, gain, max_kl, accept_ratio in CASES:
        params, step, evaluate = _quadratic_problem(kl_scale, gain)
        with torch.no_grad():
            before, _ = evaluate()
        r = backtracking_line_search(
            params, step, evaluate, float(before), float(gain * torch.dot(step, step)), max_kl, 0.5, 10, accept_ratio
        )
        outcomes.add("rejected" if not r.accepted else ("first" if r.backtracks == 0 else "shrunk"))
    assert outcomes == {"first", "shrunk", "rejected"}


def test_batched_line_search_restores_exactly_when_nothing_qualifies():
    params, step, evaluate = _quadratic_problem(100.0, 1.0)
    old = flat_parameters(params).clone()
    result = batched_line_search(params, step, evaluate, 0.0, 1.0, 1e-9, 0.5, 4)
    assert not bool(result.accepted) and int(result.backtracks) == 4 and float(result.step_fraction) == 0.0
    assert torch.equal(flat_parameters(params), old)


def test_batched_line_search_rejects_a_non_finite_candidate():
    param = torch.nn.Parameter(torch.zeros(2))
    step = torch.tensor([1.0, 0.0])

    def evaluate():  # NaN for every step longer than 0.3, fine below
        bad = param[0] > 0.3
        return torch.where(bad, torch.tensor(float("nan")), param[0]), torch.where(
            bad, torch.tensor(float("nan")), 0.0 * param[0]
        )

    result = batched_line_search([param], step, evaluate, 0.0, 1.0, 0.01, 0.5, 5)
    assert bool(result.accepted) and int(result.backtracks) == 2 and float(result.step_fraction) == 0.25
    assert torch.equal(param.detach(), torch.tensor([0.25, 0.0]))


TIMING = {"wall_time_s", "steps_per_second", "rollout_time_s", "update_time_s"}


def _trpo_run(env_id: str, total_steps: int, seed: int, overrides: dict):
    """(progress rows without timing, final policy parameters, final evaluation returns)."""
    from trbench.algos.registry import resolve_algorithm
    from trbench.algos.trainer import Trainer

    cls = resolve_algorithm("trpo")
    trainer = Trainer(cls, cls.Config.from_overrides(overrides), env_id, total_steps, seed)
    rows = []
    outcome = trainer.run(rows.append)
    trainer.close()
    return (
        [{k: v for k, v in r.items() if k not in TIMING} for r in rows],
        flat_parameters(list(trainer.algorithm.policy.parameters())),
        outcome.final_eval_returns,
    )


def _assert_same_run(a, b):
    assert a[0] == b[0]
    assert torch.equal(a[1], b[1])
    assert np.array_equal(a[2], b[2])


@pytest.mark.slow
def test_trpo_line_search_modes_train_identically():
    runs = {
        m: _trpo_run(
            "InvertedPendulum-v5",
            768,
            5,
            {
                "linesearch_mode": m,
                "steps_per_iteration": 256,
                "num_envs": 2,
                "critic_minibatch_size": 64,
                "eval_interval_steps": 0,
                "max_kl": 0.05,
            },
        )
        for m in ("sequential", "batched")
    }
    _assert_same_run(runs["sequential"], runs["batched"])


@pytest.mark.parametrize(
    "activation, act_dim, num_envs", [("tanh", 3, 8), ("relu", 6, 1), ("elu", 1, 5), ("tanh", 17, 16)]
)
def test_rollout_actor_equals_policy_act_bit_for_bit(activation, act_dim, num_envs):
    torch.manual_seed(0)
    policy = GaussianPolicy(11, act_dim, (64, 64), activation, "orthogonal", 0.5, -0.3)
    with torch.no_grad():
        policy.log_std.copy_(torch.linspace(-1.0, 0.5, act_dim))
    steps = 37
    obs = torch.randn(steps, num_envs, 11) * 3
    reference_gen, fast_gen = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    acting = RolloutActor(policy, num_envs)
    assert acting.fast
    ref_actions, ref_logp, actions, aux = [], [], [], []
    with torch.inference_mode():
        for t in range(steps):
            a, lp = policy.act(obs[t], reference_gen)
            ref_actions.append(a)
            ref_logp.append(lp)
            a, x = acting.sample(obs[t], fast_gen)
            actions.append(a)
            aux.append(x.clone())  # the mean lives in a buffer the next step overwrites
        logp = acting.log_probs(torch.stack(actions), torch.stack(aux))
    assert torch.equal(torch.stack(actions), torch.stack(ref_actions))
    assert torch.equal(logp, torch.stack(ref_logp))


def test_rollout_actor_falls_back_to_act_for_hooked_or_subclassed_policies():
    policy = GaussianPolicy(4, 2, (8,), "tanh", "orthogonal", 0.01, 0.0)
    handle = policy.mean_net.register_forward_hook(lambda module, args, out: out * 2)
    assert not RolloutActor(policy, 3).fast
    handle.remove()
    assert RolloutActor(policy, 3).fast

    class Scaled(GaussianPolicy):
        def forward(self, obs):
            mean, log_std = super().forward(obs)
            return mean * 2, log_std

    scaled = Scaled(4, 2, (8,), "tanh", "orthogonal", 0.01, 0.0)
    acting = RolloutActor(scaled, 3)
    assert not acting.fast
    obs = torch.randn(3, 4)
    a, lp = acting.sample(obs, torch.Generator().manual_seed(1))
    b, lq = scaled.act(obs, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(acting.log_probs(a[None], lp[None])[0], lq)


def test_running_mean_std_equals_numpy_mean_and_var_bit_for_bit():
    rng = np.random.default_rng(3)
    fast = RunningMeanStd((5,))
    mean, var, count = np.zeros(5), np.ones(5), 1e-4
    for _ in range(50):
        batch = rng.normal(size=(int(rng.integers(1, 9)), 5)) * rng.uniform(0.1, 100)
        fast.update(batch)
        # the textbook update with numpy's own mean and var
        b_mean, b_var, n = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
        delta = b_mean - mean
        total = count + n
        mean = mean + delta * n / total
        var = (var * count + b_var * n + delta**2 * count * n / total) / total
        count = total
    assert np.array_equal(fast.mean, mean) and np.array_equal(fast.var, var) and math.isclose(fast.count, count)


@pytest.mark.parametrize("env_id, num_envs, steps", [("Hopper-v5", 4, 300), ("Pendulum-v1", 3, 450)])
def test_info_reduced_stepping_equals_gymnasium_sync_vector_env_bit_for_bit(env_id, num_envs, steps):
    # Hopper's random-action episodes end by termination within tens of steps, Pendulum's by
    # truncation at 200: both ways of reaching the autoreset are covered
    reference = make_vector_env(env_id, num_envs, full_info=True)
    reduced = make_vector_env(env_id, num_envs)
    assert isinstance(reduced, FinalObsInfoSyncVectorEnv) and not isinstance(reference, FinalObsInfoSyncVectorEnv)
    obs_ref, _ = reference.reset(seed=11)
    obs, _ = reduced.reset(seed=11)
    assert np.array_equal(obs, obs_ref)
    low, high = reference.single_action_space.low, reference.single_action_space.high
    actions = np.random.default_rng(0).uniform(low, high, size=(steps, num_envs, *low.shape)).astype(np.float32)
    ends = {"terminated": 0, "truncated": 0}
    for t in range(steps):
        expected = reference.step(actions[t])
        got = reduced.step(actions[t])
        for a, b in zip(got[:4], expected[:4]):
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
        ended = expected[2] | expected[3]
        ends["terminated"] += int(expected[2].sum())
        ends["truncated"] += int(expected[3].sum())
        if ended.any():
            assert np.array_equal(got[4]["_final_obs"], expected[4]["_final_obs"])
            for i in np.flatnonzero(ended):
                assert np.array_equal(got[4]["final_obs"][i], expected[4]["final_obs"][i])
        else:
            assert got[4] == {}
    assert ends["terminated"] + ends["truncated"] > 0
    reference.close()
    reduced.close()


@pytest.mark.slow
def test_training_on_info_reduced_stepping_equals_training_on_gymnasium_sync_vector_env(monkeypatch):
    from trbench.algos import trainer as trainer_module

    runs = {}
    for full_info in (False, True):
        monkeypatch.setattr(
            trainer_module,
            "make_vector_env",
            lambda env_id, n, backend, full=full_info: make_vector_env(env_id, n, backend, full_info=full),
        )
        runs[full_info] = _trpo_run(
            "Hopper-v5",
            512,
            3,
            {"steps_per_iteration": 256, "num_envs": 2, "critic_minibatch_size": 64, "eval_interval_steps": 0},
        )
    _assert_same_run(runs[False], runs[True])


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu"])
def test_numpy_acting_draws_the_same_noise_around_the_same_mean_up_to_float32_rounding(activation):
    torch.manual_seed(1)
    policy = GaussianPolicy(11, 4, (64, 64), activation, "orthogonal", 1.0, -0.5)
    obs = (np.random.default_rng(2).normal(size=(20, 6, 11)) * 2).astype(np.float32)
    torch_acting, numpy_acting = RolloutActor(policy, 6), RolloutActor(policy, 6, "numpy")
    torch_gen, numpy_gen = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert numpy_acting.numpy_layers is not None
    bitwise_equal_steps = 0
    with torch.inference_mode():
        for t in range(obs.shape[0]):
            a_ref, mean_ref = torch_acting.step(obs[t], torch_gen)
            a, mean = numpy_acting.step(obs[t], numpy_gen)
            assert a.dtype == mean.dtype == np.float32 and a.shape == mean.shape == (6, 4)
            np.testing.assert_allclose(mean, mean_ref, rtol=1e-5, atol=1e-6)
            # the same standard-normal draws, scaled by the same std
            np.testing.assert_allclose(a - mean, a_ref - mean_ref, rtol=1e-5, atol=1e-6)
            bitwise_equal_steps += np.array_equal(mean, mean_ref)
    # numpy computes the mean itself (other rounding), it does not hand the step to torch
    assert bitwise_equal_steps < obs.shape[0]


def test_numpy_acting_refuses_what_it_cannot_compute():
    from trbench.base.errors import UsageError

    policy = GaussianPolicy(4, 2, (8,), "tanh", "orthogonal", 0.01, 0.0)
    handle = policy.mean_net.register_forward_hook(lambda module, args, out: out * 2)
    with pytest.raises(UsageError, match="acting_backend: 'numpy' needs a plain GaussianPolicy"):
        RolloutActor(policy, 3, "numpy")
    handle.remove()
    policy.mean_net.append(torch.nn.Dropout(0.0))
    with pytest.raises(UsageError, match="allowed for it: torch"):
        RolloutActor(policy, 3, "numpy")
    with pytest.raises(UsageError, match="acting_backend: must be one of torch, numpy"):
        RolloutActor(policy, 3, "jax")


def test_collected_rollout_equals_one_with_policy_act_every_step():
    # a forward hook that changes nothing turns the fast path off, so the second collector calls
    # GaussianPolicy.act every step; the fast path reuses its layer buffers from step to step,
    # and a mean it failed to copy out would show in the actions or the log-probabilities
    from trbench.algos.normalization import ObservationNormalizer, RewardScaler
    from trbench.algos.rollout import RolloutCollector

    torch.manual_seed(4)
    policy = GaussianPolicy(11, 3, (64, 64), "tanh", "orthogonal", 0.5, -0.5)
    critic = torch.nn.Linear(11, 1)
    arrays = {}
    for fast in (True, False):
        env = make_vector_env("Hopper-v5", 3)
        collector = RolloutCollector(
            env,
            5,
            ObservationNormalizer((11,), True, 10.0),
            RewardScaler(3, 0.99, False, 10.0),
            torch.Generator().manual_seed(6),
        )
        handle = None if fast else policy.register_forward_hook(lambda module, args, out: out)
        assert RolloutActor(policy, 3).fast is fast
        arrays[fast], _ = collector.collect(
            policy, lambda x: critic(x).squeeze(-1), 120, 0.99, 0.95, torch.device("cpu")
        )
        if handle is not None:
            handle.remove()
        env.close()
    for key in ("obs", "actions", "log_probs", "advantages"):
        assert np.array_equal(arrays[True][key], arrays[False][key]), key
    # the actions vary from step to step (a stale buffer would repeat one mean)
    assert np.unique(arrays[True]["actions"][:, 0]).size == arrays[True]["actions"].shape[0]

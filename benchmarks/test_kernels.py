"""FVP, CG, GAE, the acting step and the TRPO policy step, at Hopper-v5's default sizes
(11-dimensional observations, 3 actions, 64x64 networks, 2048 steps from 8 envs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trbench.algos import trust_region as tr
from trbench.algos.acting import RolloutActor
from trbench.algos.rollout import compute_gae
from trbench.bench import BenchSettings, synthetic_trpo

BATCH = 2048
NUM_ENVS = 8


@pytest.fixture(scope="module")
def problem():
    algorithm, batch = synthetic_trpo(BATCH, BenchSettings(hidden=(64, 64)), torch.device("cpu"))
    params = list(algorithm.policy.parameters())
    with torch.no_grad():
        mean_old, log_std_old = algorithm.policy(batch.obs)
    kl = algorithm.mean_kl_from(batch.obs, mean_old, log_std_old)
    fvp = tr.FisherVectorProduct(kl, params, algorithm.config.damping)
    ratio = torch.exp(algorithm.policy.log_prob(batch.obs, batch.actions) - batch.log_probs)
    gradient = tr.flat_gradient((ratio * batch.advantages).mean(), params)
    return algorithm, batch, fvp, gradient


def test_fisher_vector_product(benchmark, problem):
    _, _, fvp, gradient = problem
    product = benchmark(fvp, gradient)
    # F + damping I is positive definite: v^T (F + dI) v >= d |v|^2
    assert float(torch.dot(gradient, product)) >= 0.1 * float(torch.dot(gradient, gradient)) * (1 - 1e-5)


def test_conjugate_gradient(benchmark, problem):
    algorithm, _, fvp, gradient = problem
    cfg = algorithm.config
    result = benchmark(tr.conjugate_gradient, fvp, gradient, cfg.cg_iters, cfg.cg_tol)
    residual = torch.linalg.vector_norm(gradient - fvp(result.solution))
    assert float(residual) < float(torch.linalg.vector_norm(gradient))


def test_gae(benchmark):
    rng = np.random.default_rng(0)
    steps = BATCH // NUM_ENVS
    rewards = rng.normal(size=(steps, NUM_ENVS)).astype(np.float32)
    values = rng.normal(size=(steps, NUM_ENVS))
    next_values = rng.normal(size=(steps, NUM_ENVS))
    terminated = rng.random((steps, NUM_ENVS)) < 0.01
    done = terminated | (rng.random((steps, NUM_ENVS)) < 0.01)
    advantages, returns = benchmark(compute_gae, rewards, values, next_values, terminated, done, 0.99, 0.95)
    assert advantages.shape == (steps, NUM_ENVS) and np.allclose(returns - values, advantages)


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_acting_step(benchmark, problem, backend):
    algorithm, _, _, _ = problem
    acting = RolloutActor(algorithm.policy, NUM_ENVS, backend)
    obs = np.random.default_rng(0).normal(size=(NUM_ENVS, 11)).astype(np.float32)
    generator = torch.Generator().manual_seed(0)

    def act():
        with torch.inference_mode():
            return acting.step(obs, generator)

    actions, mean = benchmark(act)
    assert actions.shape == (NUM_ENVS, 3) and np.isfinite(actions).all() and not np.array_equal(actions, mean)


@pytest.mark.parametrize("mode", ["sequential", "batched"])
def test_trpo_policy_step(benchmark, mode):
    algorithm, batch = synthetic_trpo(BATCH, BenchSettings(hidden=(64, 64)), torch.device("cpu"))
    algorithm.config = algorithm.config.replace(linesearch_mode=mode)
    params = list(algorithm.policy.parameters())
    start = tr.flat_parameters(params).clone()

    def step():
        tr.assign_flat_parameters(params, start)  # every round from the same point
        return algorithm.update_policy(batch)

    diagnostics = benchmark(step)
    assert float(diagnostics["update_skipped"]) == 0.0 and float(diagnostics["sFs"]) > 0

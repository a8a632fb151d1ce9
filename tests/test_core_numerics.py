"""The trust-region numerics against exact references (float64 throughout)."""

import math

import pytest
import torch

from trbench.algos.networks import GaussianPolicy, gaussian_kl
from trbench.algos.trust_region import (
    FisherVectorProduct,
    assign_flat_parameters,
    backtracking_line_search,
    conjugate_gradient,
    flat_parameters,
    natural_gradient_step,
    trust_region_step_size,
)


def random_spd(n: int, seed: int, condition: float = 100.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eigenvalues = torch.logspace(0, math.log10(condition), n, dtype=torch.float64)
    return q @ torch.diag(eigenvalues) @ q.T


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cg_matches_linalg_solve_on_random_spd_systems(seed):
    n = 12
    A = random_spd(n, seed)
    b = torch.randn(n, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)
    expected = torch.linalg.solve(A, b)
    result = conjugate_gradient(lambda v: A @ v, b, max_iters=n + 5, tol=0.0)
    torch.testing.assert_close(result.solution, expected, rtol=1e-8, atol=1e-10)
    assert float(result.residual_norm) < 1e-8
    # in exact arithmetic CG terminates within n iterations: a tolerance just above round-off
    # makes the masked loop stop there while still running all max_iters products
    stopped = conjugate_gradient(lambda v: A @ v, b, max_iters=n + 5, tol=1e-16)
    assert int(stopped.iterations) <= n + 1
    torch.testing.assert_close(stopped.solution, expected, rtol=1e-6, atol=1e-8)


def test_cg_truncated_iterations_leave_a_residual_and_stop_is_masked():
    A = random_spd(30, 3, condition=1e4)
    b = torch.ones(30, dtype=torch.float64)
    few = conjugate_gradient(lambda v: A @ v, b, max_iters=3, tol=0.0)
    assert int(few.iterations) == 3
    assert float(few.residual_norm) > 1e-3
    true_residual = torch.linalg.norm(b - A @ few.solution)
    torch.testing.assert_close(few.residual_norm, true_residual, rtol=1e-6, atol=1e-9)
    # a loose tolerance stops early: later iterations must not move x
    loose = conjugate_gradient(lambda v: A @ v, b, max_iters=50, tol=1.0)
    again = conjugate_gradient(lambda v: A @ v, b, max_iters=int(loose.iterations), tol=0.0)
    torch.testing.assert_close(loose.solution, again.solution)


def test_cg_starts_at_zero_and_leaves_the_global_rng_alone():
    A = random_spd(5, 4)
    torch.manual_seed(123)
    conjugate_gradient(lambda v: A @ v, torch.ones(5, dtype=torch.float64), 5, 1e-20)
    after = torch.rand(1)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(1))
    zero = conjugate_gradient(lambda v: A @ v, torch.zeros(5, dtype=torch.float64), 5, 1e-20)
    assert torch.equal(zero.solution, torch.zeros(5, dtype=torch.float64))


def small_policy(seed=0):
    torch.manual_seed(seed)
    policy = GaussianPolicy(3, 2, (5,), "tanh", "orthogonal", 0.5, -0.3).double()
    obs = torch.randn(40, 3, dtype=torch.float64)
    return policy, obs


def explicit_kl_hessian(policy, obs):
    """Hessian of theta -> mean KL(pi_old || pi_theta) at theta_old, by torch.func, float64."""
    params = list(policy.parameters())
    theta_old = flat_parameters(params)
    with torch.no_grad():
        mean_old, log_std_old = policy(obs)

    def mean_kl(theta):
        shapes = [p.shape for p in params]
        pieces = torch.split(theta, [p.numel() for p in params])
        named = {name: piece.view(shape) for (name, _), piece, shape in zip(policy.named_parameters(), pieces, shapes)}
        mean, log_std = torch.func.functional_call(policy, named, (obs,))
        return gaussian_kl(mean_old, log_std_old, mean, log_std).mean()

    return torch.autograd.functional.hessian(mean_kl, theta_old)


@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_fisher_vector_product_matches_explicit_kl_hessian(damping):
    policy, obs = small_policy()
    H = explicit_kl_hessian(policy, obs)
    params = list(policy.parameters())
    with torch.no_grad():
        mean_old, log_std_old = policy(obs)
    mean, log_std = policy(obs)
    fvp = FisherVectorProduct(gaussian_kl(mean_old, log_std_old, mean, log_std).mean(), params, damping)
    g = torch.Generator().manual_seed(7)
    for _ in range(5):
        v = torch.randn(H.shape[0], generator=g, dtype=torch.float64)
        expected = H @ v + damping * v
        got = fvp(v)
        assert torch.linalg.norm(got - expected) <= 1e-6 * torch.linalg.norm(expected)
    # the Hessian of the KL at theta_old is a Fisher matrix: symmetric positive semi-definite
    torch.testing.assert_close(H, H.T)
    assert torch.linalg.eigvalsh(H).min() > -1e-10


def test_fisher_vector_product_only_touches_the_chosen_parameters():
    policy, obs = small_policy()
    chosen = [policy.log_std]  # a deliberate subset
    with torch.no_grad():
        mean_old, log_std_old = policy(obs)
    mean, log_std = policy(obs)
    fvp = FisherVectorProduct(gaussian_kl(mean_old, log_std_old, mean, log_std).mean(), chosen, 0.0)
    out = fvp(torch.ones(2, dtype=torch.float64))
    # for the log-std block, KL Hessian is 2 I per dimension (mean over states of d^2/dls^2)
    torch.testing.assert_close(out, torch.full((2,), 2.0, dtype=torch.float64))


def test_step_size_puts_the_quadratic_kl_on_the_radius():
    F = random_spd(6, 5)
    s = torch.randn(6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    delta = 0.01
    beta, sFs, valid = trust_region_step_size(s, F @ s, delta)
    assert bool(valid)
    torch.testing.assert_close(sFs, s @ F @ s)
    step = beta * s
    torch.testing.assert_close(0.5 * step @ F @ step, torch.tensor(delta, dtype=torch.float64))
    torch.testing.assert_close(beta, torch.sqrt(2 * delta / (s @ F @ s)))


@pytest.mark.parametrize("bad_curvature", [-1.0, 0.0, float("nan")])
def test_step_size_rejects_non_positive_or_nan_curvature(bad_curvature):
    s = torch.ones(3, dtype=torch.float64)
    Fs = torch.full((3,), bad_curvature / 3, dtype=torch.float64)
    beta, _, valid = trust_region_step_size(s, Fs, 0.01)
    assert not bool(valid)
    assert float(beta) == 0.0


def test_natural_step_with_broken_curvature_is_exactly_zero():
    # a "KL" whose Hessian is negative definite stands in for a wrong FVP graph
    w = torch.nn.Parameter(torch.tensor([0.3, -0.2], dtype=torch.float64))
    surrogate = (w * torch.tensor([1.0, 2.0], dtype=torch.float64)).sum()
    not_a_kl = -(w**2).sum()
    step = natural_gradient_step(surrogate, not_a_kl, [w], max_kl=0.01, damping=0.0, cg_iters=5, cg_tol=1e-12)
    assert not bool(step.valid)
    assert torch.equal(step.full_step, torch.zeros(2, dtype=torch.float64))


class Quadratic:
    """Surrogate = g.theta, KL = 0.5 theta^T F theta, around theta_old = 0 (exactly known)."""

    def __init__(self):
        self.theta = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        self.g = torch.tensor([1.0, 0.5], dtype=torch.float64)
        self.F = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)

    def evaluate(self):
        return self.g @ self.theta, 0.5 * self.theta @ self.F @ self.theta


def test_line_search_accepts_the_full_step_when_it_is_inside_the_region():
    q = Quadratic()
    full = torch.tensor([0.05, 0.05], dtype=torch.float64)  # KL = 0.00375
    result = backtracking_line_search([q.theta], full, q.evaluate, 0.0, float(q.g @ full), 0.01, 0.8, 10)
    assert result.accepted and result.backtracks == 0 and result.step_fraction == 1.0
    torch.testing.assert_close(q.theta.detach(), full)
    assert result.kl == pytest.approx(0.00375)


def test_line_search_shrinks_until_the_kl_holds():
    q = Quadratic()
    full = torch.tensor([0.2, 0.0], dtype=torch.float64)  # KL(f) = 0.04 f^2 <= 0.01 needs f <= 0.5
    result = backtracking_line_search([q.theta], full, q.evaluate, 0.0, 0.2, 0.01, 0.8, 10)
    # 0.8^k <= 0.5 first at k = 4 (0.4096)
    assert result.accepted and result.backtracks == 4
    assert result.step_fraction == pytest.approx(0.8**4)
    assert result.kl <= 0.01
    torch.testing.assert_close(q.theta.detach(), full * 0.8**4)


def test_line_search_rejects_and_restores_when_every_candidate_violates_the_kl():
    q = Quadratic()
    with torch.no_grad():
        q.theta.copy_(torch.tensor([0.123456789, -0.987654321], dtype=torch.float64))
    before = q.theta.detach().clone()
    full = torch.tensor([100.0, 100.0], dtype=torch.float64)  # 0.8^9 * that still far outside

    def evaluate():  # KL measured from the starting point
        d = q.theta - before
        return q.g @ q.theta, 0.5 * d @ q.F @ d

    result = backtracking_line_search([q.theta], full, evaluate, float(q.g @ before), 1.0, 0.01, 0.8, 10)
    assert not result.accepted and result.backtracks == 10 and result.step_fraction == 0.0
    assert torch.equal(q.theta.detach(), before)  # bit-for-bit restored


def test_line_search_rejects_steps_that_do_not_improve():
    q = Quadratic()
    full = torch.tensor([-0.01, -0.01], dtype=torch.float64)  # inside the region but downhill
    result = backtracking_line_search([q.theta], full, q.evaluate, 0.0, 0.015, 0.01, 0.8, 5)
    assert not result.accepted
    assert torch.equal(q.theta.detach(), torch.zeros(2, dtype=torch.float64))


def test_flat_parameter_round_trip():
    policy, _ = small_policy()
    params = list(policy.parameters())
    flat = flat_parameters(params)
    assign_flat_parameters(params, flat * 2)
    torch.testing.assert_close(flat_parameters(params), flat * 2)


def test_fisher_subsample_random_and_strided():
    from trbench.algos.trust_region import fisher_subsample

    device = torch.device("cpu")
    everything = fisher_subsample(1024, 1.0, torch.Generator().manual_seed(0), device)
    assert torch.equal(everything, torch.arange(1024))
    # Baselines' arr[::5] on a 1024-step batch: 205 states, 0, 5, ..., 1020, and no random draw
    generator = torch.Generator().manual_seed(0)
    strided = fisher_subsample(1024, 0.2, generator, device, "strided")
    assert torch.equal(strided, torch.arange(0, 1024, 5)) and len(strided) == 205
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(0).get_state())
    drawn = fisher_subsample(1024, 0.2, torch.Generator().manual_seed(0), device, "random")
    assert len(drawn) == 205 and len(set(drawn.tolist())) == 205 and 0 <= drawn.min() and drawn.max() < 1024
    assert torch.equal(drawn, fisher_subsample(1024, 0.2, torch.Generator().manual_seed(0), device, "random"))
    with pytest.raises(ValueError):
        fisher_subsample(1024, 0.2, generator, device, "blocks")

"""The trust-region projections (algos/projections.py) against their defining properties.

Every property follows from the definitions in Otto et al. 2021 (arXiv 2101.09207) for diagonal
Gaussians: identity inside the region, equality on its boundary, interpolation in each layer's
own parameterisation, idempotence, gradients (finite differences), and per-member bit identity
of a stacked computation.
"""

import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from trbench.algos.kl_weight_host import kl_weight_root
from trbench.algos.projections import (
    KL_SOLVER_ITERATIONS,
    KL_SOLVERS,
    MEAN_METRICS,
    PROJECTION_KINDS,
    covariance_distance,
    default_mean_metric,
    entropy_projection,
    gaussian_entropy,
    kl_covariance_distance,
    mean_distance,
    project,
    project_covariance,
    project_kl_covariance,
    project_mean,
    trust_region_regression,
)

F64 = torch.float64
EPS_MU, EPS_SIGMA = 0.03, 1e-3  # the layer defaults of the official code


def gaussians(n=5, k=4, mean_step=1.0, std_step=0.3, seed=0, dtype=F64, state_dependent_std=True):
    """(mean, log_std, old_mean, old_log_std): an old Gaussian and a network output moved from it."""
    g = torch.Generator().manual_seed(seed)
    std_shape = (n, k) if state_dependent_std else (k,)
    old_mean = torch.randn(n, k, generator=g, dtype=F64)
    old_log_std = 0.5 * torch.randn(std_shape, generator=g, dtype=F64)
    mean = old_mean + mean_step * torch.randn(n, k, generator=g, dtype=F64) * old_log_std.exp()
    log_std = old_log_std + std_step * torch.randn(std_shape, generator=g, dtype=F64)
    return tuple(x.to(dtype) for x in (mean, log_std, old_mean, old_log_std))


def distribution(mean, log_std):
    return Independent(Normal(mean, log_std.exp().expand_as(mean)), 1)


# ---------------------------------------------------------------------------------------------
# identity inside the trust region


@pytest.mark.parametrize("metric", MEAN_METRICS)
def test_mean_is_untouched_inside_the_region_with_identity_jacobian(metric):
    # a wide old Gaussian far from the means, so that the rounding of old_mean + (mean - old_mean)
    # would show if the inactive branch were computed rather than selected
    g = torch.Generator().manual_seed(5)
    old_mean = 10 * torch.randn(5, 4, generator=g, dtype=F64)
    old_log_std = 3 + 0.1 * torch.randn(5, 4, generator=g, dtype=F64)
    mean = torch.randn(5, 4, generator=g, dtype=F64)
    assert not torch.equal(old_mean + (mean - old_mean), mean)
    bound = 1.01 * float(mean_distance(mean, old_mean, old_log_std, metric).max())
    assert torch.equal(project_mean(mean, old_mean, old_log_std, bound, metric), mean)
    jac_mean, jac_old_mean, jac_old_log_std = torch.autograd.functional.jacobian(
        lambda m, om, ols: project_mean(m, om, ols, bound, metric), (mean, old_mean, old_log_std)
    )
    assert torch.equal(jac_mean.reshape(mean.numel(), -1), torch.eye(mean.numel(), dtype=F64))
    assert not jac_old_mean.any() and not jac_old_log_std.any()


@pytest.mark.parametrize("kind", PROJECTION_KINDS)
def test_covariance_is_untouched_inside_the_region_with_identity_jacobian(kind):
    _, log_std, _, old_log_std = gaussians(std_step=0.01)
    bound = 1.01 * float(covariance_distance(kind, log_std, old_log_std).max())
    assert torch.equal(project_covariance(kind, log_std, old_log_std, bound), log_std)
    jac, jac_old = torch.autograd.functional.jacobian(
        lambda ls, ols: project_covariance(kind, ls, ols, bound), (log_std, old_log_std)
    )
    assert torch.equal(jac.reshape(log_std.numel(), -1), torch.eye(log_std.numel(), dtype=F64))
    assert not jac_old.any()


def test_identical_policies_project_to_themselves_with_finite_gradients():
    # zero distances: the guarded square roots and the KL stand-in solve must not leak NaN
    mean, log_std, _, _ = gaussians()
    mean.requires_grad_(True)
    log_std.requires_grad_(True)
    for kind in PROJECTION_KINDS:
        result = project(kind, mean, log_std, mean.detach(), log_std.detach(), EPS_MU, EPS_SIGMA)
        assert torch.equal(result.mean, mean) and torch.equal(result.log_std, log_std)
        grads = torch.autograd.grad(result.mean.sum() + result.log_std.sum(), (mean, log_std))
        assert all(torch.equal(g, torch.ones_like(g)) for g in grads)


# ---------------------------------------------------------------------------------------------
# on the boundary when active


@pytest.mark.parametrize("metric", MEAN_METRICS)
def test_projected_mean_lies_on_the_boundary(metric):
    mean, _, old_mean, old_log_std = gaussians(n=50, mean_step=1.0)
    assert (mean_distance(mean, old_mean, old_log_std, metric) > EPS_MU).all()
    projected = project_mean(mean, old_mean, old_log_std, EPS_MU, metric)
    after = mean_distance(projected, old_mean, old_log_std, metric)
    torch.testing.assert_close(after, torch.full_like(after, EPS_MU), rtol=1e-14, atol=0)


@pytest.mark.parametrize("kind", ["frobenius", "w2"])
@pytest.mark.parametrize("precision_scaling", [True, False])
def test_closed_form_covariance_projections_lie_on_the_boundary(kind, precision_scaling):
    _, log_std, _, old_log_std = gaussians(n=50, std_step=0.3)
    before = covariance_distance(kind, log_std, old_log_std, precision_scaling)
    assert (before > EPS_SIGMA).all()
    projected = project_covariance(kind, log_std, old_log_std, EPS_SIGMA, precision_scaling)
    after = covariance_distance(kind, projected, old_log_std, precision_scaling)
    torch.testing.assert_close(after, torch.full_like(after, EPS_SIGMA), rtol=1e-12, atol=0)


@pytest.mark.parametrize("solver", KL_SOLVERS)
@pytest.mark.parametrize(("std_step", "eps_sigma"), [(0.05, 1e-3), (0.3, 1e-3), (1.0, 1e-5), (3.0, 0.1)])
def test_kl_covariance_part_reaches_the_bound_to_solver_accuracy(std_step, eps_sigma, solver):
    _, log_std, _, old_log_std = gaussians(n=200, k=6, std_step=std_step)
    active = kl_covariance_distance(log_std, old_log_std) > eps_sigma
    assert active.float().mean() > 0.5
    projected = project_kl_covariance(log_std[active], old_log_std[active], eps_sigma, solver=solver)
    relative_error = (kl_covariance_distance(projected, old_log_std[active]) - eps_sigma).abs() / eps_sigma
    assert relative_error.max() < 1e-10


@pytest.mark.parametrize("solver", KL_SOLVERS)
@pytest.mark.parametrize("direction", ["grown", "shrunk", "both"])
@pytest.mark.parametrize("k", [1, 5])
def test_kl_solver_stays_accurate_on_extreme_steps(direction, k, solver):
    # stds grown and/or shrunk by up to e^6 per dimension, bounds over nine orders of magnitude
    g = torch.Generator().manual_seed(3)
    old_log_std = torch.randn(400, k, generator=g, dtype=F64)
    step = 6 * torch.rand(400, k, generator=g, dtype=F64)
    sign = {"grown": 1.0, "shrunk": -1.0, "both": torch.randn(400, k, generator=g, dtype=F64).sign()}[direction]
    log_std = old_log_std + sign * step
    for eps_sigma in (1e-8, 1e-4, 1e-1, 1.0):
        active = kl_covariance_distance(log_std, old_log_std) > eps_sigma
        assert active.float().mean() > 0.5
        projected = project_kl_covariance(log_std[active], old_log_std[active], eps_sigma, solver=solver)
        after = kl_covariance_distance(projected, old_log_std[active])
        assert ((after - eps_sigma).abs() / eps_sigma).max() < 1e-10


@pytest.mark.parametrize("solver", KL_SOLVERS)
def test_kl_solver_in_float32_is_as_accurate_as_the_format_allows(solver):
    _, log_std, _, old_log_std = gaussians(n=200, k=6, std_step=0.3, dtype=torch.float32)
    projected = project_kl_covariance(log_std, old_log_std, EPS_SIGMA, solver=solver)
    assert projected.dtype == torch.float32
    # measured in float64: what is left is the float32 rounding of the projected log-std
    after = kl_covariance_distance(projected.double(), old_log_std.double())
    assert ((after - EPS_SIGMA).abs() / EPS_SIGMA).max() < 1e-4


def test_kl_layer_bounds_the_reverse_kl_by_the_sum_of_both_bounds():
    mean, log_std, old_mean, old_log_std = gaussians(n=30, k=3, mean_step=3.0, std_step=0.5)
    result = project("kl", mean, log_std, old_mean, old_log_std, EPS_MU, EPS_SIGMA)
    assert result.mean_active.all() and result.cov_active.all()
    reverse_kl = kl_divergence(distribution(result.mean, result.log_std), distribution(old_mean, old_log_std))
    torch.testing.assert_close(reverse_kl, torch.full_like(reverse_kl, EPS_MU + EPS_SIGMA), rtol=1e-10, atol=0)
    torch.testing.assert_close(result.mean_after + result.cov_after, reverse_kl, rtol=1e-12, atol=0)


def between_middle_values(distances):
    """A bound with half the distances above it, well away from each of them."""
    ordered = distances.flatten().sort().values
    middle = ordered.numel() // 2
    return float((ordered[middle - 1] * ordered[middle]).sqrt())


@pytest.mark.parametrize("kind", PROJECTION_KINDS)
def test_mixed_batch_projects_only_the_states_outside_the_region(kind):
    mean, log_std, old_mean, old_log_std = gaussians(n=40, k=3, mean_step=0.3, std_step=0.1)
    metric = default_mean_metric(kind)
    eps_mu = between_middle_values(mean_distance(mean, old_mean, old_log_std, metric))
    eps_sigma = between_middle_values(covariance_distance(kind, log_std, old_log_std))
    result = project(kind, mean, log_std, old_mean, old_log_std, eps_mu, eps_sigma)
    for active, before, after, new, old, bound in (
        (result.mean_active, result.mean_before, result.mean_after, result.mean, mean, eps_mu),
        (result.cov_active, result.cov_before, result.cov_after, result.log_std, log_std, eps_sigma),
    ):
        assert int(active.sum()) == 20  # half the states on each side
        assert torch.equal(active, before > bound)
        assert torch.equal(new[~active], old[~active]) and torch.equal(after[~active], before[~active])
        torch.testing.assert_close(after[active], torch.full_like(after[active], bound), rtol=1e-10, atol=0)
        assert (new[active] != old[active]).any(-1).all()


# ---------------------------------------------------------------------------------------------
# interpolation and idempotence


def segment_position(start, end, point):
    """t with point = (1 - t) start + t end, per element; the caller checks it is shared."""
    return (point - start) / (end - start)


@pytest.mark.parametrize("kind", PROJECTION_KINDS)
def test_projection_interpolates_in_the_layers_own_parameterisation(kind):
    mean, log_std, old_mean, old_log_std = gaussians(n=20, k=4, mean_step=1.0, std_step=0.4)
    result = project(kind, mean, log_std, old_mean, old_log_std, EPS_MU, EPS_SIGMA)
    assert result.mean_active.all() and result.cov_active.all()
    # the mean moves towards the old mean by w / (1 + w), w = sqrt(m / eps_mu) - 1
    t_mean = segment_position(mean, old_mean, result.mean)
    w = (result.mean_before / EPS_MU).sqrt() - 1
    torch.testing.assert_close(t_mean, (w / (1 + w)).unsqueeze(-1).expand_as(t_mean), rtol=1e-10, atol=1e-12)
    # the covariance in variances (Frobenius), stds (W2) or precisions (KL)
    power = {"frobenius": 2.0, "w2": 1.0, "kl": -2.0}[kind]
    t_cov = segment_position((power * log_std).exp(), (power * old_log_std).exp(), (power * result.log_std).exp())
    torch.testing.assert_close(t_cov, t_cov[..., :1].expand_as(t_cov), rtol=1e-9, atol=1e-12)
    assert ((t_cov > 0) & (t_cov < 1)).all()
    if kind != "kl":  # closed form: eta / (1 + eta) with eta = sqrt(c / eps_sigma) - 1
        eta = (result.cov_before / EPS_SIGMA).sqrt() - 1
        torch.testing.assert_close(t_cov[..., 0], eta / (1 + eta), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", PROJECTION_KINDS)
def test_projecting_twice_changes_nothing(kind):
    mean, log_std, old_mean, old_log_std = gaussians(n=20, k=4, mean_step=1.0, std_step=0.4)
    once = project(kind, mean, log_std, old_mean, old_log_std, EPS_MU, EPS_SIGMA)
    twice = project(kind, once.mean, once.log_std, old_mean, old_log_std, EPS_MU, EPS_SIGMA)
    torch.testing.assert_close(twice.mean, once.mean, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(twice.log_std, once.log_std, rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("kind", PROJECTION_KINDS)
@pytest.mark.parametrize("region", ["active", "inactive", "mixed"])
@pytest.mark.parametrize("state_dependent_std", [True, False])
def test_gradients_match_finite_differences(kind, region, state_dependent_std):
    inputs = gaussians(n=6, k=3, mean_step=0.5, std_step=0.2, seed=1, state_dependent_std=state_dependent_std)
    mean, log_std, old_mean, old_log_std = inputs
    mean_before = mean_distance(mean, old_mean, old_log_std, default_mean_metric(kind))
    cov_before = covariance_distance(kind, log_std, old_log_std)
    if region == "active":
        eps_mu, eps_sigma = 0.5 * float(mean_before.min()), 0.5 * float(cov_before.min())
    elif region == "inactive":
        eps_mu, eps_sigma = 2 * float(mean_before.max()), 2 * float(cov_before.max())
    else:  # a state-independent std is a single covariance: it is active or not
        eps_mu = between_middle_values(mean_before)
        eps_sigma = between_middle_values(cov_before) if state_dependent_std else 0.5 * float(cov_before)
    result = project(kind, *inputs, eps_mu, eps_sigma)
    if region != "mixed":
        expected = region == "active"
        assert (result.mean_active == expected).all() and (result.cov_active == expected).all()

    def layer(mean, log_std, old_mean, old_log_std):
        out = project(kind, mean, log_std, old_mean, old_log_std, eps_mu, eps_sigma)
        return out.mean, out.log_std

    assert torch.autograd.gradcheck(layer, tuple(x.requires_grad_(True) for x in inputs))


@pytest.mark.parametrize("region", ["active", "inactive"])
def test_host_kl_solver_gradients_match_finite_differences(region):
    _, log_std, _, old_log_std = gaussians(n=6, k=3, std_step=0.2, seed=1)
    eps_sigma = (0.5 if region == "active" else 2.0) * float(kl_covariance_distance(log_std, old_log_std).min())

    def layer(log_std, old_log_std):
        return project_kl_covariance(log_std, old_log_std, eps_sigma, solver="host")

    assert torch.autograd.gradcheck(layer, (log_std.requires_grad_(True), old_log_std.requires_grad_(True)))


def test_host_and_tensor_kl_solvers_find_the_same_root():
    # the same iteration in two arithmetics: float64 results agree to round-off, float32 ones to
    # the last bit or two of the projected log-std
    g = torch.Generator().manual_seed(7)
    for k in (1, 3, 6, 17):
        old_log_std = torch.randn(300, k, generator=g, dtype=F64)
        log_std = old_log_std + torch.logspace(-3, 0.5, 300, dtype=F64)[:, None] * torch.randn(
            300, k, generator=g, dtype=F64
        )
        for eps_sigma in (1e-6, 1e-3, 1e-1):
            tensor = project_kl_covariance(log_std, old_log_std, eps_sigma, solver="tensor")
            host = project_kl_covariance(log_std, old_log_std, eps_sigma, solver="host")
            torch.testing.assert_close(host, tensor, rtol=1e-13, atol=1e-14)
            host32 = project_kl_covariance(log_std.float(), old_log_std.float(), eps_sigma, solver="host")
            tensor32 = project_kl_covariance(log_std.float(), old_log_std.float(), eps_sigma, solver="tensor")
            torch.testing.assert_close(host32, tensor32, rtol=1e-6, atol=1e-6)


def test_host_kl_solver_solves_each_row_as_if_alone():
    # TRPL in lockstep: S members' stds, one row each, give each member the bits it gets alone
    members = [gaussians(n=1, k=6, std_step=0.02 * (i + 1), seed=20 + i, dtype=torch.float32) for i in range(4)]
    log_std = torch.stack([m[1] for m in members]).requires_grad_(True)  # [S, 1, k]
    old_log_std = torch.stack([m[3] for m in members])
    stacked = project_kl_covariance(log_std, old_log_std, 5e-3, solver="host")
    (stacked_grad,) = torch.autograd.grad(stacked.sin().sum(), log_std)
    assert (kl_covariance_distance(log_std, old_log_std) > 5e-3).sum() == 3  # the first stays inside
    for i, (_, alone_log_std, _, alone_old) in enumerate(members):
        alone_input = alone_log_std.clone().requires_grad_(True)
        alone = project_kl_covariance(alone_input, alone_old, 5e-3, solver="host")
        (alone_grad,) = torch.autograd.grad(alone.sin().sum(), alone_input)
        assert torch.equal(stacked[i], alone) and torch.equal(stacked_grad[i], alone_grad)


def test_host_kl_root_stops_once_it_is_exact_and_refuses_device_tensors():
    u = [0.3, -0.2, 0.05]
    root = kl_weight_root(u, 1e-3, KL_SOLVER_ITERATIONS, 0.0)
    assert kl_weight_root(u, 1e-3, 1000, 0.0) == root  # a fixed point well within the default
    assert kl_weight_root(u, 1e-3, 0, 0.0) != root  # the start is the bracket's midpoint
    c = 0.5 * sum(math.log1p(root * x) - root * x / (1 + root * x) for x in u)
    assert abs(c - 1e-3) < 1e-15
    # a precision ratio that rounded to 0 (u = -1: a std grown past what the format holds)
    extreme = [-1.0, 0.3]
    root = kl_weight_root(extreme, 1e-3, KL_SOLVER_ITERATIONS, 0.0)
    c = 0.5 * sum(math.log1p(root * x) - root * x / (1 + root * x) for x in extreme)
    assert 0 < root < 1 and abs(c - 1e-3) < 1e-14
    with pytest.raises(ValueError, match="CPU tensors"):
        project_kl_covariance(torch.zeros(1, 3, device="meta"), torch.ones(1, 3, device="meta"), 1e-3, solver="host")


def test_kl_implicit_gradient_matches_an_unrolled_solve():
    # the implicit-function gradient against plain autograd: bisection to the root with u detached, then
    # one Newton step with u attached, which carries the root's first-order dependence on u
    _, log_std, _, old_log_std = gaussians(n=4, k=3, std_step=0.5, seed=2)
    log_std.requires_grad_(True)
    projected = project_kl_covariance(log_std, old_log_std, EPS_SIGMA)
    (grad_implicit,) = torch.autograd.grad(projected.square().sum(), log_std)

    u = torch.expm1(-2 * (log_std - old_log_std))
    low, high = torch.zeros(4, dtype=F64), torch.ones(4, dtype=F64)
    for _ in range(100):
        middle = (low + high) / 2
        above = kl_covariance_distance(old_log_std - 0.5 * torch.log1p(middle[:, None] * u.detach()), old_log_std)
        low, high = torch.where(above > EPS_SIGMA, low, middle), torch.where(above > EPS_SIGMA, middle, high)
    s = (low + high).detach() / 2
    c = kl_covariance_distance(old_log_std - 0.5 * torch.log1p(s[:, None] * u), old_log_std)
    dc_ds = 0.5 * (u * (s[:, None] * u) / (1 + s[:, None] * u).square()).sum(-1).detach()
    s = s - (c - EPS_SIGMA) / dc_ds
    unrolled = old_log_std - 0.5 * torch.log1p(s[:, None] * u)
    torch.testing.assert_close(projected, unrolled, rtol=1e-12, atol=1e-14)
    (grad_unrolled,) = torch.autograd.grad(unrolled.square().sum(), log_std)
    torch.testing.assert_close(grad_implicit, grad_unrolled, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# lockstep: a stacked computation is bit-identical per member


@pytest.mark.parametrize("kind", PROJECTION_KINDS)
@pytest.mark.parametrize("state_dependent_std", [True, False])
@pytest.mark.parametrize("kl_iterations", [2, KL_SOLVER_ITERATIONS])  # a truncated solve shows its start too
def test_stacked_projection_is_bit_identical_to_each_member_alone(kind, state_dependent_std, kl_iterations):
    members = [
        gaussians(n=64, k=6, mean_step=0.2, std_step=0.05 * (i + 1), seed=10 + i, dtype=torch.float32) for i in range(3)
    ]
    if not state_dependent_std:  # one std per member, [S, 1, k] stacked, [1, k] alone
        members = [(m, ls[:1], om, ols[:1]) for m, ls, om, ols in members]
    stacked = [torch.stack(parts).requires_grad_(True) for parts in zip(*members)]
    # bounds that leave about half the states (members, for one std each) on either side
    with torch.no_grad():
        eps_mu = between_middle_values(mean_distance(stacked[0], *stacked[2:], default_mean_metric(kind)))
        eps_sigma = between_middle_values(covariance_distance(kind, stacked[1], stacked[3]))
    result = project(kind, *stacked, eps_mu, eps_sigma, kl_iterations=kl_iterations)
    stacked_grads = torch.autograd.grad((result.mean.sin().sum() + result.log_std.cos().sum()), stacked)
    for active in (result.mean_active, result.cov_active):
        assert active.any() and not active.all()
    for index, parts in enumerate(members):
        alone_inputs = [p.clone().requires_grad_(True) for p in parts]
        alone = project(kind, *alone_inputs, eps_mu, eps_sigma, kl_iterations=kl_iterations)
        for stacked_field, alone_field in zip(result, alone):
            assert torch.equal(stacked_field[index], alone_field)
        alone_grads = torch.autograd.grad((alone.mean.sin().sum() + alone.log_std.cos().sum()), alone_inputs)
        for stacked_grad, alone_grad in zip(stacked_grads, alone_grads):
            assert torch.equal(stacked_grad[index], alone_grad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", PROJECTION_KINDS)
def test_projection_never_synchronises_with_the_gpu(kind):
    # forward and backward queue on the device without a single host read
    inputs = [x.cuda().requires_grad_(True) for x in gaussians(n=64, k=6, mean_step=0.3, std_step=0.1)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        result = project(kind, *inputs, EPS_MU, EPS_SIGMA)
        penalty = trust_region_regression(*inputs[:2], result.mean, result.log_std, kind)
        loss = result.mean.sum() + result.log_std.sum() + penalty.sum() + entropy_projection(result.log_std, 0.0).sum()
        torch.autograd.grad(loss, inputs)
    finally:
        torch.cuda.set_sync_debug_mode(0)


# ---------------------------------------------------------------------------------------------
# entropy control, the regression penalty, the metric choice


def test_entropy_projection_raises_entropy_to_the_bound_exactly():
    mean, log_std, _, _ = gaussians(n=8, k=5)
    entropy = gaussian_entropy(log_std)
    torch.testing.assert_close(entropy, distribution(mean, log_std).entropy(), rtol=1e-14, atol=1e-14)
    bound = entropy.median()  # some states above, some below
    projected = entropy_projection(log_std, bound)
    below = entropy < bound
    torch.testing.assert_close(gaussian_entropy(projected[below]), bound.expand(int(below.sum())), rtol=0, atol=1e-13)
    assert torch.equal(projected[~below], log_std[~below])
    # every std of a state is scaled by the same factor: the shape of the Gaussian is kept
    ratio = (projected - log_std)[below]
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-12, atol=1e-14)
    # the mean is no input at all; a state-independent std [k] and stacked stds [S, 1, k] work alike
    single = entropy_projection(log_std[0], entropy.max())
    assert single.shape == (5,) and (gaussian_entropy(single) - entropy.max()).abs() < 1e-13
    stacked = entropy_projection(log_std[:, None], entropy.max())
    assert stacked.shape == (8, 1, 5)
    torch.testing.assert_close(gaussian_entropy(stacked), entropy.max().expand(8, 1), rtol=0, atol=1e-13)


@pytest.mark.parametrize("kind", PROJECTION_KINDS)
def test_trust_region_regression_is_the_mean_part_towards_the_detached_projection(kind):
    mean, log_std, old_mean, old_log_std = (x.requires_grad_(True) for x in gaussians(n=7, k=3, std_step=0.4))
    result = project(kind, mean, log_std, old_mean.detach(), old_log_std.detach(), EPS_MU, EPS_SIGMA)
    penalty = trust_region_regression(mean, log_std, result.mean, result.log_std, kind)
    metric = default_mean_metric(kind)
    expected = mean_distance(mean, result.mean, result.log_std, metric)
    torch.testing.assert_close(penalty, expected, rtol=1e-14, atol=0)
    assert penalty.shape == (7,) and (penalty > 0).all()
    # sg[pi~]: the gradient is d/d mu of m(mu; mu~ fixed) and nothing reaches log_std
    grad_mean, grad_log_std = torch.autograd.grad(penalty.sum(), (mean, log_std), allow_unused=True)
    scale = {"kl_mahalanobis": 1.0, "mahalanobis": 2.0}[metric]
    torch.testing.assert_close(grad_mean, scale * (mean - result.mean) * torch.exp(-2 * result.log_std))
    assert grad_log_std is None
    # the projection itself has zero penalty; the full variant adds the covariance part
    zero = trust_region_regression(result.mean, result.log_std, result.mean, result.log_std, kind)
    assert not zero.any()
    full = trust_region_regression(mean, log_std, result.mean, result.log_std, kind, include_covariance=True)
    covariance_part = covariance_distance(kind, log_std, result.log_std)
    torch.testing.assert_close(full, penalty + covariance_part)


def test_covariance_distances_match_their_matrix_definitions():
    log_std, old_log_std = gaussians(n=1, k=4, seed=6)[1][0], gaussians(n=1, k=4, seed=7)[1][0]
    sigma, old_sigma = torch.diag(torch.exp(2 * log_std)), torch.diag(torch.exp(2 * old_log_std))
    root, old_root = torch.diag(log_std.exp()), torch.diag(old_log_std.exp())
    identity = torch.eye(4, dtype=F64)
    expected = {
        ("frobenius", True): torch.linalg.matrix_norm(sigma - old_sigma).square(),
        ("w2", True): torch.linalg.matrix_norm(torch.linalg.inv(old_root) @ root - identity).square(),
        ("w2", False): torch.trace(old_sigma + sigma - 2 * old_root @ root),
        ("kl", True): 0.5
        * (torch.trace(torch.linalg.inv(old_sigma) @ sigma) - 4 + torch.logdet(old_sigma) - torch.logdet(sigma)),
    }
    for (kind, precision_scaling), value in expected.items():
        torch.testing.assert_close(covariance_distance(kind, log_std, old_log_std, precision_scaling), value)
    # the KL part is the whole KL of two Gaussians with one mean
    mean = torch.zeros(4, dtype=F64)
    same_mean = kl_divergence(distribution(mean, log_std), distribution(mean, old_log_std))
    torch.testing.assert_close(kl_covariance_distance(log_std, old_log_std), same_mean)


def test_mean_metrics_and_their_layers():
    mean, _, old_mean, old_log_std = gaussians(n=3, k=2)
    difference = mean - old_mean
    euclidean = difference.square().sum(-1)
    mahalanobis = (difference.square() / old_log_std.exp().square()).sum(-1)
    torch.testing.assert_close(mean_distance(mean, old_mean, old_log_std, "euclidean"), euclidean)
    torch.testing.assert_close(mean_distance(mean, old_mean, old_log_std, "mahalanobis"), mahalanobis)
    torch.testing.assert_close(mean_distance(mean, old_mean, old_log_std, "kl_mahalanobis"), mahalanobis / 2)
    assert default_mean_metric("kl") == "kl_mahalanobis"
    assert default_mean_metric("w2") == default_mean_metric("frobenius") == "mahalanobis"
    assert default_mean_metric("w2", precision_scaling=False) == "euclidean"
    # a pure mean shift: the KL layer's mean part is the exact KL in either direction
    same_std = distribution(mean, old_log_std), distribution(old_mean, old_log_std)
    torch.testing.assert_close(kl_divergence(*same_std), mahalanobis / 2)
    with pytest.raises(ValueError, match="unknown projection"):
        project("trpo", mean, old_log_std, old_mean, old_log_std, EPS_MU, EPS_SIGMA)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown mean metric"):
        mean_distance(mean, old_mean, old_log_std, "cosine")  # type: ignore[arg-type]


def test_bounds_may_be_tensors_per_member():
    # one bound per stacked member ([S, 1] for the mean, [S, 1] for a [S, 1, k] std)
    members = [gaussians(n=10, k=3, std_step=0.3, seed=20 + i, state_dependent_std=False) for i in range(2)]
    mean, log_std, old_mean, old_log_std = (torch.stack(p) for p in zip(*members))
    log_std, old_log_std = log_std[:, None], old_log_std[:, None]
    eps_mu, eps_sigma = torch.tensor([[0.01], [0.05]], dtype=F64), torch.tensor([[1e-3], [1e-2]], dtype=F64)
    for kind in PROJECTION_KINDS:
        result = project(kind, mean, log_std, old_mean, old_log_std, eps_mu, eps_sigma)
        for i in range(2):
            alone = project(
                kind, mean[i], log_std[i], old_mean[i], old_log_std[i], float(eps_mu[i]), float(eps_sigma[i])
            )
            torch.testing.assert_close(result.mean[i], alone.mean, rtol=1e-14, atol=0)
            torch.testing.assert_close(result.log_std[i], alone.log_std, rtol=1e-12, atol=0)


def test_solver_iterations_refine_the_solution():
    # the start (no iteration) is visibly off; each iteration is a real refinement
    _, log_std, _, old_log_std = gaussians(n=50, k=6, std_step=2.0, seed=4)
    errors = []
    for iterations in (0, 1, 2, KL_SOLVER_ITERATIONS):
        projected = project_kl_covariance(log_std, old_log_std, 1e-4, iterations=iterations)
        errors.append(float(((kl_covariance_distance(projected, old_log_std) - 1e-4).abs() / 1e-4).max()))
    assert errors[0] > 1e-4 and errors[0] > errors[1] > errors[2] and errors[3] < 1e-12
    assert all(math.isfinite(e) for e in errors)
    # a tolerance freezes an iterate once it is good enough
    loose = project_kl_covariance(log_std, old_log_std, 1e-4, tol=0.5)
    loose_error = ((kl_covariance_distance(loose, old_log_std) - 1e-4).abs() / 1e-4).max()
    assert errors[3] < loose_error <= 0.5

"""Differentiable trust-region projections for diagonal Gaussian policies (TRPL).

Otto, Becker, Ngo, Ziesche and Neumann, "Differentiable Trust Region Layers for Deep
Reinforcement Learning", ICLR 2021 (arXiv 2101.09207). Per state, a projection layer maps the
network's Gaussian N(mu, diag(sigma^2)) to the Gaussian closest to it that lies inside a trust
region around the old Gaussian N(mu_o, diag(sigma_o^2)). The mean and the covariance have separate
bounds eps_mu and eps_sigma, and three dissimilarities are offered: the reverse KL (the projected
Gaussian first), the Wasserstein-2 distance and the Frobenius norm. Every formula below was derived
for the diagonal case from the mathematics alone.

Every function takes a mean [..., k] and a log-std [..., k] whose leading dimensions broadcast:
[N, k] for one network, [S, N, k] for S stacked seeds. A state-independent std is passed as [k]
(one network) or [S, 1, k] (stacked: without the state axis, [S, k] would be matched against
[N, k]). A covariance result keeps the log-std's own leading shape, one value per network for such
a std. All reductions run over the last axis, everything else is elementwise, and no value is read
back to the host: member i of a stacked computation is bit-identical to the same computation alone,
and nothing waits for a GPU. Whether a projection is active is decided per element by torch.where,
so an inactive element returns its input's values bit for bit, with the identity as Jacobian.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch.autograd.function import FunctionCtx, once_differentiable

from .kl_weight_host import solve_kl_weight_rows

Tensor = torch.Tensor
Bound = float | Tensor  # a Python float, or a tensor broadcastable to the per-state shape [...]
MeanMetric = Literal["kl_mahalanobis", "mahalanobis", "euclidean"]
ProjectionKind = Literal["kl", "w2", "frobenius"]
# how the KL covariance projection's 1-D root is found: with whole-tensor operations (any device, no
# host read), or row by row in Python floats (CPU only; for a few rows, such as one std per network)
KLSolver = Literal["tensor", "host"]
KL_SOLVERS: tuple[KLSolver, ...] = ("tensor", "host")
MEAN_METRICS: tuple[MeanMetric, ...] = ("kl_mahalanobis", "mahalanobis", "euclidean")
PROJECTION_KINDS: tuple[ProjectionKind, ...] = ("kl", "w2", "frobenius")

# The KL covariance solve runs this many safeguarded Newton iterations (:func:`_solve_kl_weight`).
# Measured in float64 over k = 1 to 64 dimensions: steps with log-std differences below 1 and bounds
# from 1e-4 to 1e-1 reach round-off (relative residual about 4e-14) within 6 iterations; differences
# up to 10 per dimension with bounds from 1e-8 to 10 within 12. The default leaves a margin.
KL_SOLVER_ITERATIONS = 15
# An iterate whose relative residual |c - eps| / eps is at most this stops moving. Zero runs every
# iteration, so the result is as accurate as the floating-point format allows.
KL_SOLVER_TOLERANCE = 0.0


def _active_ratio(distance: Tensor, bound: Bound) -> tuple[Tensor, Tensor]:
    """(active, sqrt(bound / distance)), the ratio 1 where inactive. There the distance is replaced
    by the bound before the square root: the unused branch of a torch.where still gets a (zero)
    gradient, which sqrt'(0) = inf at a zero distance would turn into NaN."""
    active = distance > bound
    safe = torch.where(active, distance, torch.zeros_like(distance) + bound)
    return active, torch.sqrt(bound / safe)


# ---------------------------------------------------------------------------------------------
# mean


def mean_distance(mean: Tensor, old_mean: Tensor, old_log_std: Tensor, metric: MeanMetric = "mahalanobis") -> Tensor:
    """The mean-part distance m(mu) to the old mean, per state [...].

    * "kl_mahalanobis": 1/2 (mu - mu_o)^T Sigma_o^{-1} (mu - mu_o), the mean part of
      KL(pi || pi_old) (the KL layer).
    * "mahalanobis": (mu - mu_o)^T Sigma_o^{-1} (mu - mu_o), the W2 and Frobenius layers with
      precision scaling (the official default).
    * "euclidean": ||mu - mu_o||^2, the same layers without precision scaling.
    """
    difference = mean - old_mean
    if metric == "euclidean":
        return difference.square().sum(-1)
    whitened = difference * torch.exp(-old_log_std)  # Sigma_o^{-1/2} (mu - mu_o), diagonal
    squared = whitened.square().sum(-1)
    if metric == "mahalanobis":
        return squared
    if metric == "kl_mahalanobis":
        return 0.5 * squared
    raise ValueError(f"unknown mean metric {metric!r}; expected one of {MEAN_METRICS}")


def project_mean(
    mean: Tensor, old_mean: Tensor, old_log_std: Tensor, eps_mu: Bound, metric: MeanMetric = "mahalanobis"
) -> Tensor:
    """The projected mean (Otto et al. 2021, mean projection; the same form for every layer).

    If m(mu) <= eps_mu the mean is returned unchanged (bit for bit). Otherwise
    mu~ = (mu + w mu_o) / (1 + w) with w = sqrt(m(mu) / eps_mu) - 1. Every metric above is a
    quadratic form in mu - mu_o, so m(mu~) = m(mu) / (1 + w)^2 = eps_mu. It is computed as
    mu~ = mu_o + (mu - mu_o) sqrt(eps_mu / m), the same point, because that form rounds only the
    difference, which keeps m(mu~) = eps_mu to the last bits.
    """
    distance = mean_distance(mean, old_mean, old_log_std, metric)
    active, ratio = _active_ratio(distance, eps_mu)
    projected = old_mean + (mean - old_mean) * ratio.unsqueeze(-1)
    return torch.where(active.unsqueeze(-1), projected, mean)


# ---------------------------------------------------------------------------------------------
# Frobenius and W2 covariance projections: closed form
#
# Each is written through the log-std difference d = log_std - old_log_std, with expm1 and log1p,
# so that a small step keeps its relative precision: sigma^2 / sigma_o^2 - 1 = expm1(2 d) and
# sigma / sigma_o - 1 = expm1(d).


def frobenius_distance(log_std: Tensor, old_log_std: Tensor) -> Tensor:
    """c = ||Sigma - Sigma_o||_F^2 = sum_i (sigma_i^2 - sigma_o,i^2)^2 for diagonal covariances."""
    old_variance = torch.exp(2 * old_log_std)
    return (old_variance * torch.expm1(2 * (log_std - old_log_std))).square().sum(-1)


def project_frobenius(log_std: Tensor, old_log_std: Tensor, eps_sigma: Bound) -> Tensor:
    """The Frobenius projection's log-std.

    If c <= eps_sigma, log_std unchanged. Otherwise Sigma~ = (Sigma + eta Sigma_o) / (1 + eta),
    eta = sqrt(c / eps_sigma) - 1, so that Sigma~ - Sigma_o = (Sigma - Sigma_o) / (1 + eta) and
    c(Sigma~) = eps_sigma. Being a convex combination of two variances, Sigma~ stays positive.
    """
    distance = frobenius_distance(log_std, old_log_std)
    active, ratio = _active_ratio(distance, eps_sigma)
    relative = torch.expm1(2 * (log_std - old_log_std)) * ratio.unsqueeze(-1)  # Sigma~ / Sigma_o - 1
    projected = old_log_std + 0.5 * torch.log1p(relative)
    return torch.where(active.unsqueeze(-1), projected, log_std)


def w2_distance(log_std: Tensor, old_log_std: Tensor, precision_scaling: bool = True) -> Tensor:
    """The W2 covariance part for commuting (here diagonal) covariances, with S = Sigma^{1/2}.

    With precision scaling (the official default) c = ||S_o^{-1} S - I||_F^2 =
    tr(I + S_o^{-1} Sigma S_o^{-1} - 2 S_o^{-1} S); without it c = ||S - S_o||_F^2 =
    tr(Sigma_o + Sigma - 2 S_o S).
    """
    relative = torch.expm1(log_std - old_log_std)  # sigma / sigma_o - 1
    if precision_scaling:
        return relative.square().sum(-1)
    return (torch.exp(old_log_std) * relative).square().sum(-1)


def project_w2(log_std: Tensor, old_log_std: Tensor, eps_sigma: Bound, precision_scaling: bool = True) -> Tensor:
    """The W2 projection's log-std.

    If c <= eps_sigma, log_std unchanged. Otherwise S~ = (S + eta S_o) / (1 + eta),
    eta = sqrt(c / eps_sigma) - 1. Both distances are quadratic in S - S_o (one with the fixed
    weights S_o^{-1}), so c(S~) = c(S) / (1 + eta)^2 = eps_sigma.
    """
    distance = w2_distance(log_std, old_log_std, precision_scaling)
    active, ratio = _active_ratio(distance, eps_sigma)
    relative = torch.expm1(log_std - old_log_std) * ratio.unsqueeze(-1)  # S~ / S_o - 1
    projected = old_log_std + torch.log1p(relative)
    return torch.where(active.unsqueeze(-1), projected, log_std)


# ---------------------------------------------------------------------------------------------
# KL covariance projection: a one-dimensional solve
#
# With precisions p = sigma^-2, p_o = sigma_o^-2 and u = p / p_o - 1 = expm1(-2 d) (u > -1), the
# projected precisions q = (p + eta p_o) / (1 + eta) satisfy q / p_o = 1 + s u with
# s = 1 / (1 + eta) in (0, 1]. The covariance part of KL(pi~ || pi_old) is then
#     c(s) = 1/2 sum_i [p_o,i / q_i - 1 + ln(q_i / p_o,i)] = 1/2 sum_i g(s u_i),
#     g(t) = log1p(t) - t / (1 + t) >= 0,
# which rises from 0 at s = 0 to the unprojected value at s = 1 (dc/ds = s/2 sum u^2/(1+su)^2 > 0),
# so c(s) = eps_sigma has exactly one root in (0, 1) when the projection is active.


def kl_covariance_distance(log_std: Tensor, old_log_std: Tensor) -> Tensor:
    """c = 1/2 [tr(Sigma_o^{-1} Sigma) - k + ln det Sigma_o - ln det Sigma], the covariance part
    of KL(pi || pi_old), per diagonal covariance [...].

    Written as 1/2 sum_i (expm1(2 d_i) - 2 d_i), d = log_std - old_log_std, which stays finite where
    the precision ratio p / p_o = exp(-2 d) underflows (a std grown by more than e^8 in float32).
    """
    difference = log_std - old_log_std
    return 0.5 * (torch.expm1(2 * difference) - 2 * difference).sum(-1)


def _solve_kl_weight(u: Tensor, eps: Tensor, iterations: int, tol: float) -> Tensor:
    """The root s of c(s) = eps, for rows [..., k] of u where c(1) > eps (others: any value).

    Bracket: with x = 1 + s u, g lies between (x-1)^2 / (2 max(1, x)^2) and
    (x-1)^2 / (2 min(1, x)^2) (integrate g'(x) = (x - 1)/x^2 with 1/x^2 bounded on [1, x]). In terms
    of eta this gives c(eta) between sum u^2 / (4 (eta + R_max)^2) and sum u^2 / (4 (eta + R_min)^2)
    with R = 1 + u = p / p_o, R_max = max(1, max_i R_i), R_min = min(1, min_i R_i). Hence, with
    a = sqrt(sum u^2 / (4 eps)), eta lies in [max(a - R_max, 0), a - R_min]; the bracket holds s.

    Step: Newton on ln c, taken in two variables at once. Against ln eta, ln c is nearly straight
    where a std blew up (c ~ 1/(2 eta) near eta = 0); against ln s, it is nearly straight near
    s = 1 otherwise, and both are straight for large eta (c ~ sum u^2 / (4 eta^2)). Where one model
    is wrong its step falls short, so the longer of the two steps that stay inside the bracket is
    taken; if neither does, the bracket's geometric midpoint. The bracket shrinks with every
    residual's sign, so the iteration cannot diverge. Start: the bracket's geometric midpoint.
    """
    precision_ratio = 1 + u
    a = torch.sqrt(u.square().sum(-1) / (4 * eps))
    eta_high = a - torch.clamp(precision_ratio, max=1.0).amin(-1)
    eta_low = torch.clamp(a - torch.clamp(precision_ratio, min=1.0).amax(-1), min=0.0)
    s_low, s_high = 1 / (1 + eta_high), 1 / (1 + eta_low)
    s = torch.sqrt(s_low * s_high)
    log_eps = torch.log(eps)
    for _ in range(iterations):
        t = s.unsqueeze(-1) * u  # q / p_o - 1
        t_over_x = t / (1 + t)
        c = 0.5 * (torch.log1p(t) - t_over_x).sum(-1)  # 1/2 sum g(t), sharing t / x with the slope
        above = c > eps  # c decreases in eta: the root has a larger eta, a smaller s
        s_high = torch.where(above, s, s_high)
        s_low = torch.where(above, s_low, s)
        # slope = -d ln c / d ln s = (1 + eta) c'(eta) / c and d ln c / d ln eta = (1 - s) slope, from
        # c'(eta) = -(1/2) sum u^2 / ((1 + eta) (eta + 1 + u)^2), where u / (eta + 1 + u) = t / x
        slope = -0.5 * t_over_x.square().sum(-1) / c
        log_gap = torch.log(c) - log_eps
        s_by_s = s * torch.exp(log_gap / slope)
        s_by_eta = 1 / (1 + (1 / s - 1) * torch.exp(-log_gap / ((1 - s) * slope)))
        # NaN and inf (a zero slope at eta = 0, an overflow) fail these tests too
        eta_inside = (s_by_eta >= s_low) & (s_by_eta <= s_high)
        s_inside = (s_by_s >= s_low) & (s_by_s <= s_high)
        eta_longer = (s_by_eta < s_by_s) == above  # both steps go the same way
        s_newton = torch.where(eta_inside & (eta_longer | ~s_inside), s_by_eta, s_by_s)
        s_next = torch.where(eta_inside | s_inside, s_newton, torch.sqrt(s_low * s_high))
        # a Python branch on an argument, not on a tensor: tol = 0 saves the test
        s = torch.where((c - eps).abs() <= tol * eps, s, s_next) if tol > 0 else s_next
    return s


class _KLWeight(torch.autograd.Function):
    """s(u, eps) with c(s, u) = eps where active, s = 1 elsewhere; its gradient is implicit.

    Differentiating c(s(u), u) = eps (implicit-function theorem) gives
    ds/du_i = -(dc/du_i) / (dc/ds), with dc/du_i = (s/2) g'(s u_i) and dc/ds = (1/2) sum_j u_j g'(s u_j),
    g'(t) = t / (1 + t)^2; so ds/du_i = -s (u_i / x_i^2) / sum_j (u_j^2 / x_j^2) with x = 1 + s u.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, u: Tensor, eps: Tensor, active: Tensor, iterations: int, tol: float, solver: KLSolver
    ) -> Tensor:
        # inactive rows solve a fixed, well-posed stand-in (u = 1, c(1) = 0.0966 k > 0.01), so
        # that no NaN or inf is ever computed; their s is then replaced by 1
        u_solved = torch.where(active.unsqueeze(-1), u, torch.ones_like(u))
        eps_solved = torch.where(active, eps, torch.full_like(eps, 0.01))
        solve = solve_kl_weight_rows if solver == "host" else _solve_kl_weight
        s = torch.where(active, solve(u_solved, eps_solved, iterations, tol), torch.ones_like(eps))
        ctx.save_for_backward(u_solved, s, active)
        return s

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_s: Tensor) -> tuple[Tensor | None, ...]:
        u, s, active = ctx.saved_tensors  # type: ignore[attr-defined]
        weighted = u / (1 + s.unsqueeze(-1) * u).square()
        denominator = (u * weighted).sum(-1)  # > 0 on active rows, where c(1) > eps > 0 needs u != 0
        scale = torch.where(active, -grad_s * s / denominator, torch.zeros_like(s))
        return scale.unsqueeze(-1) * weighted, None, None, None, None, None


def project_kl_covariance(
    log_std: Tensor,
    old_log_std: Tensor,
    eps_sigma: Bound,
    iterations: int = KL_SOLVER_ITERATIONS,
    tol: float = KL_SOLVER_TOLERANCE,
    solver: KLSolver = "tensor",
) -> Tensor:
    """The KL projection's log-std (reverse KL, the projected Gaussian first).

    If c <= eps_sigma (c = :func:`kl_covariance_distance`), log_std unchanged. Otherwise the
    precisions are interpolated, Sigma~^{-1} = (Sigma^{-1} + eta Sigma_o^{-1}) / (1 + eta), with
    eta >= 0 the root of c(Sigma~(eta)) = eps_sigma, found by a fixed number of `iterations` of a
    safeguarded Newton solve (:func:`_solve_kl_weight`; `tol` is its relative residual to stop at;
    `solver` = "host" runs it row by row on the CPU, :mod:`trbench.algos.kl_weight_host`). The
    gradient through eta is implicit (:class:`_KLWeight`). The relative residual
    |c(Sigma~) - eps_sigma| / eps_sigma is about 1e-13 in float64 (1e-11 for bounds near 1e-8);
    in float32 it is limited by the rounding of the projected log-std, about 1e-5 at
    eps_sigma = 1e-3, growing as the per-dimension step shrinks.
    """
    u = torch.expm1(-2 * (log_std - old_log_std))  # p / p_o - 1
    distance = kl_covariance_distance(log_std, old_log_std)
    active = distance > eps_sigma
    eps = torch.zeros_like(distance) + eps_sigma
    if solver == "host" and u.device.type != "cpu":
        raise ValueError(f"the host KL solver takes CPU tensors, got a tensor on {u.device}")
    s = _KLWeight.apply(u, eps.detach(), active, iterations, tol, solver)
    projected = old_log_std - 0.5 * torch.log1p(s.unsqueeze(-1) * u)  # q / p_o = 1 + s u
    return torch.where(active.unsqueeze(-1), projected, log_std)


# ---------------------------------------------------------------------------------------------
# the layer


def default_mean_metric(kind: ProjectionKind, precision_scaling: bool = True) -> MeanMetric:
    """The mean metric that goes with each layer: the KL layer's own mean part; for W2 and
    Frobenius the Mahalanobis distance with precision scaling, else the Euclidean one."""
    if kind == "kl":
        return "kl_mahalanobis"
    if kind in ("w2", "frobenius"):
        return "mahalanobis" if precision_scaling else "euclidean"
    raise ValueError(f"unknown projection {kind!r}; expected one of {PROJECTION_KINDS}")


def covariance_distance(
    kind: ProjectionKind, log_std: Tensor, old_log_std: Tensor, precision_scaling: bool = True
) -> Tensor:
    """The covariance part of layer `kind`'s dissimilarity, per covariance [...]. The Frobenius
    distance has no precision-scaled form here; `precision_scaling` only affects W2."""
    if kind == "kl":
        return kl_covariance_distance(log_std, old_log_std)
    if kind == "w2":
        return w2_distance(log_std, old_log_std, precision_scaling)
    if kind == "frobenius":
        return frobenius_distance(log_std, old_log_std)
    raise ValueError(f"unknown projection {kind!r}; expected one of {PROJECTION_KINDS}")


def project_covariance(
    kind: ProjectionKind,
    log_std: Tensor,
    old_log_std: Tensor,
    eps_sigma: Bound,
    precision_scaling: bool = True,
    kl_iterations: int = KL_SOLVER_ITERATIONS,
    kl_tol: float = KL_SOLVER_TOLERANCE,
    kl_solver: KLSolver = "tensor",
) -> Tensor:
    """The projected log-std of layer `kind`."""
    if kind == "kl":
        return project_kl_covariance(log_std, old_log_std, eps_sigma, kl_iterations, kl_tol, kl_solver)
    if kind == "w2":
        return project_w2(log_std, old_log_std, eps_sigma, precision_scaling)
    if kind == "frobenius":
        return project_frobenius(log_std, old_log_std, eps_sigma)
    raise ValueError(f"unknown projection {kind!r}; expected one of {PROJECTION_KINDS}")


class Projection(NamedTuple):
    """A projection's result. Diagnostics are detached, masks bool. Mean entries have the per-state
    shape [...]; covariance entries the log-std's leading shape ([] or [S, 1] for one std each)."""

    mean: Tensor  # mu~ [..., k]
    log_std: Tensor  # log sigma~, the log-std's shape
    mean_before: Tensor  # m(mu), the network's mean against the bound eps_mu
    mean_after: Tensor  # m(mu~) <= eps_mu
    cov_before: Tensor  # c(Sigma) against eps_sigma
    cov_after: Tensor  # c(Sigma~) <= eps_sigma (to the KL solver's accuracy)
    mean_active: Tensor  # m(mu) > eps_mu: the mean was moved
    cov_active: Tensor  # c(Sigma) > eps_sigma: the covariance was moved


def project(
    kind: ProjectionKind,
    mean: Tensor,
    log_std: Tensor,
    old_mean: Tensor,
    old_log_std: Tensor,
    eps_mu: Bound,
    eps_sigma: Bound,
    *,
    precision_scaling: bool = True,
    mean_metric: MeanMetric | None = None,
    kl_iterations: int = KL_SOLVER_ITERATIONS,
    kl_tol: float = KL_SOLVER_TOLERANCE,
    kl_solver: KLSolver = "tensor",
) -> Projection:
    """Project the network's Gaussian (mean, log_std) onto the trust region around the old one.

    The mean and the covariance are projected independently (Otto et al. 2021 split the
    dissimilarity into the two parts, each with its own bound). For the KL layer the two parts
    add up to KL(pi~ || pi_old) <= eps_mu + eps_sigma at every state. The mean metric follows the
    layer (:func:`default_mean_metric`) unless `mean_metric` is given. Gradients flow to mean and
    log_std and also to the old parameters; detach those (as the old policy normally is) if that
    is not wanted.
    """
    metric = mean_metric if mean_metric is not None else default_mean_metric(kind, precision_scaling)
    projected_mean = project_mean(mean, old_mean, old_log_std, eps_mu, metric)
    projected_log_std = project_covariance(
        kind, log_std, old_log_std, eps_sigma, precision_scaling, kl_iterations, kl_tol, kl_solver
    )
    with torch.no_grad():
        mean_before = mean_distance(mean, old_mean, old_log_std, metric)
        mean_after = mean_distance(projected_mean, old_mean, old_log_std, metric)
        cov_before = covariance_distance(kind, log_std, old_log_std, precision_scaling)
        cov_after = covariance_distance(kind, projected_log_std, old_log_std, precision_scaling)
        mean_active, cov_active = mean_before > eps_mu, cov_before > eps_sigma
    return Projection(
        projected_mean, projected_log_std, mean_before, mean_after, cov_before, cov_after, mean_active, cov_active
    )


# ---------------------------------------------------------------------------------------------
# entropy control and the trust-region regression penalty


def gaussian_entropy(log_std: Tensor) -> Tensor:
    """H = sum_i log sigma_i + (k/2) log(2 pi e), per covariance [...]."""
    k = log_std.shape[-1]
    return log_std.sum(-1) + 0.5 * k * math.log(2 * math.pi * math.e)


def entropy_projection(log_std: Tensor, bound: Bound) -> Tensor:
    """Keep the entropy at least `bound` (the optional entropy control of Otto et al. 2021).

    If H < bound every log-std is raised by (bound - H) / k, i.e. every std multiplied by
    exp((bound - H) / k), which adds exactly bound - H to the entropy. Otherwise log_std is returned
    unchanged bit for bit. The mean is not involved.
    """
    entropy = gaussian_entropy(log_std)
    shift = (bound - entropy) / log_std.shape[-1]
    return torch.where((entropy < bound).unsqueeze(-1), log_std + shift.unsqueeze(-1), log_std)


def trust_region_regression(
    mean: Tensor,
    log_std: Tensor,
    projected_mean: Tensor,
    projected_log_std: Tensor,
    kind: ProjectionKind,
    *,
    precision_scaling: bool = True,
    mean_metric: MeanMetric | None = None,
    include_covariance: bool = False,
) -> Tensor:
    """The trust-region regression penalty d(pi_theta, sg[pi~]) per state [...].

    It pulls the network's output towards its own projection, so that the unprojected network,
    which becomes the next old policy, does not drift from the policy that was trained. The
    projection is detached here (sg), so only mean and log_std receive gradients. By default only
    the mean part is used, m(mu_theta) measured from mu~ with the projected covariance
    (:func:`mean_distance` with the layer's metric): the variant with a state-independent std, whose
    std parameter is instead overwritten with the projected std after each policy update. With
    `include_covariance` the covariance part c(Sigma_theta) against Sigma~ is added, the full
    dissimilarity. The weight alpha and the mean over states are the caller's.
    """
    metric = mean_metric if mean_metric is not None else default_mean_metric(kind, precision_scaling)
    target_mean, target_log_std = projected_mean.detach(), projected_log_std.detach()
    penalty = mean_distance(mean, target_mean, target_log_std, metric)
    if include_covariance:
        penalty = penalty + covariance_distance(kind, log_std, target_log_std, precision_scaling)
    return penalty

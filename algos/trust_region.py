"""Trust-region numerics shared by TRPO and NPG.

The natural-gradient step solves F s = g, where F is the Hessian of the mean KL divergence at
the current policy (for the Gaussian policies here, equal to the Fisher information matrix) and g
the gradient of the surrogate objective. F is never formed: conjugate gradient only needs
products F v, obtained by differentiating (grad KL) . v a second time. The step is scaled so
that its quadratic KL estimate equals the radius delta: beta = sqrt(2 delta / s^T F s).

Nothing in the CG loop reads a value back to the host, so on a GPU the whole solve is queued
without synchronisation; the early stop is a mask, not a branch. The line search comes in two
forms: the sequential one reads each candidate's KL and surrogate back and stops at the first
acceptable one; the batched one evaluates every candidate on the device and picks with tensor
operations, trading extra evaluations for no host round trip.

:func:`natural_gradient_step` marks its conjugate-gradient solve ("cg") and every Fisher-vector
product ("fvp") with the algorithm's phase hook (algos/timing.py), which does nothing unless a
benchmark installs a recorder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .config import NaturalGradientConfig
from .stacked import member_dot, per_member
from .timing import PhaseHook, untimed

# Every function here also takes the S members of a stacked ensemble (algos/stacked.py) at once:
# their parameters are [S, ...] tensors, their flat vectors [S, P] (row k is member k's flat
# vector, laid out as alone) and their scalars [S]. The single-network path is unchanged.


def flat_parameters(params: list[torch.nn.Parameter], members: bool = False) -> torch.Tensor:
    if members:
        return torch.cat([p.detach().reshape(p.size(0), -1) for p in params], dim=1)
    return torch.cat([p.detach().reshape(-1) for p in params])


def assign_flat_parameters(params: list[torch.nn.Parameter], flat: torch.Tensor) -> None:
    offset = 0
    with torch.no_grad():
        for p in params:
            if flat.dim() == 2:  # members
                n = p[0].numel()
                p.copy_(flat[:, offset : offset + n].reshape(p.shape))
            else:
                n = p.numel()
                p.copy_(flat[offset : offset + n].view_as(p))
            offset += n


def flat_gradient(
    output: torch.Tensor, params: list[torch.nn.Parameter], members: bool = False, **kwargs
) -> torch.Tensor:
    """The flat gradient of a scalar `output`; with `members`, [S, P]: row k the gradient of
    member k's entry of an [S] output (the gradient of their sum, as members share nothing)."""
    if members:
        grads = torch.autograd.grad(output.sum(), params, **kwargs)
        return torch.cat([g.reshape(g.size(0), -1) for g in grads], dim=1)
    grads = torch.autograd.grad(output, params, **kwargs)
    return torch.cat([g.reshape(-1) for g in grads])


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a, b) if a.dim() == 1 else member_dot(a, b)


def _scaled(scalar: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """scalar * vector, per member when both carry the member axis."""
    return scalar * vector if scalar.dim() == 0 else per_member(scalar, vector) * vector


def _where(condition: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(condition if condition.dim() == 0 else per_member(condition, a), a, b)


class FisherVectorProduct:
    """v -> (F + damping I) v, with F the Hessian of `mean_kl` w.r.t. `params`.

    `mean_kl` must be the mean KL(pi_old || pi_theta) with pi_old detached, evaluated at
    theta = theta_old, so that its gradient is zero and its Hessian is the Fisher matrix. The
    gradient graph is built once; each product is one more backward pass through it.
    """

    def __init__(
        self, mean_kl: torch.Tensor, params: list[torch.nn.Parameter], damping: float, phase: PhaseHook = untimed
    ):
        self.params = params
        self.damping = damping
        self.phase = phase
        self.members = mean_kl.dim() == 1
        self.kl_gradient = flat_gradient(mean_kl, params, self.members, create_graph=True)

    def __call__(self, vector: torch.Tensor) -> torch.Tensor:
        with self.phase("fvp"):
            # per member, only the gradient of this product matters, and it is exactly `vector`
            # whether the product is a dot or a sum of elementwise products
            if vector.dim() == 1:
                grad_dot_v = torch.dot(self.kl_gradient, vector.detach())
            else:
                grad_dot_v = (self.kl_gradient * vector.detach()).sum()
            hessian_v = flat_gradient(grad_dot_v, self.params, self.members, retain_graph=True)
            return hessian_v + self.damping * vector


@dataclass
class CGResult:
    solution: torch.Tensor
    residual_norm: torch.Tensor  # ||b - A x|| as carried by the recursion, a 0-d tensor
    iterations: torch.Tensor  # iterations that changed x, a 0-d tensor


def conjugate_gradient(
    matrix_vector: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, max_iters: int, tol: float
) -> CGResult:
    """Solve A x = b for symmetric positive-definite A, starting from x0 = 0.

    Runs exactly `max_iters` products; once the squared residual drops to `tol` or below, the
    remaining iterations leave x unchanged. Starting at zero (not at noise) keeps the solve
    deterministic and leaves the random-number streams untouched.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = _dot(r, r)
    iterations = torch.zeros(rr.shape, dtype=torch.int64, device=b.device)
    zero = torch.zeros((), dtype=b.dtype, device=b.device)
    for _ in range(max_iters):
        active = rr > tol
        Ap = matrix_vector(p)
        pAp = _dot(p, Ap)
        alpha = torch.where(active, rr / torch.where(active, pAp, torch.ones_like(pAp)), zero)
        x = x + _scaled(alpha, p)
        r = r - _scaled(alpha, Ap)
        rr_next = _dot(r, r)
        beta = torch.where(active, rr_next / torch.where(active, rr, torch.ones_like(rr)), zero)
        p = _where(active, r + _scaled(beta, p), p)
        rr = torch.where(active, rr_next, rr)
        iterations = iterations + active.to(torch.int64)
    return CGResult(solution=x, residual_norm=rr.sqrt(), iterations=iterations)


def trust_region_step_size(step_direction: torch.Tensor, fisher_step: torch.Tensor, max_kl: float):
    """beta = sqrt(2 delta / s^T F s), and whether the step is usable.

    s^T F s <= 0 (a curvature estimate that is not positive, e.g. from a broken graph) or a
    non-finite value makes the step unusable; beta is then 0 rather than NaN.
    Returns (beta, sFs, valid) as 0-d tensors.
    """
    sFs = _dot(step_direction, fisher_step)
    valid = torch.isfinite(sFs) & (sFs > 0)
    safe_sFs = torch.where(valid, sFs, torch.ones_like(sFs))
    beta = torch.where(valid, torch.sqrt(2 * max_kl / safe_sFs), torch.zeros_like(sFs))
    return beta, sFs, valid


@dataclass
class LineSearchResult:
    """What :func:`backtracking_line_search` found."""

    accepted: bool
    backtracks: int  # candidates rejected before the accepted one (all of them if none accepted)
    step_fraction: float  # fraction of the full step applied (0 when rejected)
    kl: float  # mean KL of the applied parameters (0 when rejected: the old ones are restored)
    improvement: float  # surrogate improvement of the applied parameters (0 when rejected)


@dataclass
class BatchedLineSearchResult:
    """What :func:`batched_line_search` found: the fields of :class:`LineSearchResult` as 0-d
    tensors on the device, so that nothing is read back to the host."""

    accepted: torch.Tensor
    backtracks: torch.Tensor
    step_fraction: torch.Tensor
    kl: torch.Tensor
    improvement: torch.Tensor


def backtracking_line_search(
    params: list[torch.nn.Parameter],
    full_step: torch.Tensor,
    evaluate: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    surrogate_before: float,
    expected_improvement: float,
    max_kl: float,
    shrink: float,
    max_candidates: int,
    accept_ratio: float = 0.0,
) -> LineSearchResult:
    """Try theta_old + shrink^k * full_step for k = 0, 1, ...; keep the first candidate whose mean
    KL is at most `max_kl` and whose surrogate improves (by more than `accept_ratio` times the
    linear prediction). If none qualifies, restore theta_old exactly.

    `evaluate()` returns (surrogate, mean KL) at the parameters currently assigned.
    """
    old = flat_parameters(params)
    for k in range(max_candidates):
        fraction = shrink**k
        assign_flat_parameters(params, old + fraction * full_step)
        with torch.no_grad():
            surrogate, kl = evaluate()
        surrogate_value, kl_value = float(surrogate), float(kl)
        improvement = surrogate_value - surrogate_before
        finite = torch.isfinite(torch.tensor([surrogate_value, kl_value])).all().item()
        accept = improvement > 0 and improvement > accept_ratio * expected_improvement * fraction
        if finite and kl_value <= max_kl and accept:
            return LineSearchResult(True, k, fraction, kl_value, improvement)
    assign_flat_parameters(params, old)
    return LineSearchResult(False, max_candidates, 0.0, 0.0, 0.0)


def batched_line_search(
    params: list[torch.nn.Parameter],
    full_step: torch.Tensor,
    evaluate: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    surrogate_before: torch.Tensor | float,
    expected_improvement: torch.Tensor | float,
    max_kl: float,
    shrink: float,
    max_candidates: int,
    accept_ratio: float = 0.0,
    stop_once_found: bool = False,
) -> BatchedLineSearchResult:
    """The same search as :func:`backtracking_line_search`, without reading anything back.

    Every candidate is evaluated (queued on the device, no ``.item()``), the first acceptable
    one is picked with tensor operations and its parameters assigned by ``torch.where``, so on a
    GPU the whole search runs without host synchronisation. Candidates are formed and tested
    exactly as the sequential search forms them (the same float32 product with a Python float;
    the acceptance test in float64, as Python floats are), so both accept the same candidate and
    leave bit-identical parameters. The fields of the result are 0-d tensors on
    the parameters' device; reading them is the caller's (single) synchronisation.

    With `stop_once_found` the search reads back, after each candidate, whether every member has
    found one, and stops then: the same result with fewer evaluations, for the CPU, where a read
    costs nothing.
    """
    old = flat_parameters(params, members=isinstance(surrogate_before, torch.Tensor) and surrogate_before.dim() == 1)
    device = old.device
    before = torch.as_tensor(surrogate_before, device=device).double()
    threshold = accept_ratio * torch.as_tensor(expected_improvement, device=device).double()
    zero = torch.zeros((), dtype=torch.float64, device=device)
    found = torch.zeros(before.shape, dtype=torch.bool, device=device)
    chosen = old
    backtracks = torch.full(before.shape, max_candidates, dtype=torch.int64, device=device)
    step_fraction, chosen_kl, chosen_improvement = zero, zero, zero
    for k in range(max_candidates):
        # Python scalars only: a host-to-device copy would synchronise as surely as a read
        fraction = shrink**k
        candidate = old + fraction * full_step
        assign_flat_parameters(params, candidate)
        with torch.no_grad():
            surrogate, kl = evaluate()
        surrogate, kl = surrogate.detach().double(), kl.detach().double()
        improvement = surrogate - before
        acceptable = (
            torch.isfinite(surrogate)
            & torch.isfinite(kl)
            & (kl <= max_kl)
            & (improvement > 0)
            & (improvement > threshold * fraction)
        )
        take = acceptable & ~found  # the first acceptable candidate, and only the first
        chosen = _where(take, candidate, chosen)
        backtracks = torch.where(take, k, backtracks)
        step_fraction = torch.where(take, fraction, step_fraction)
        chosen_kl = torch.where(take, kl, chosen_kl)
        chosen_improvement = torch.where(take, improvement, chosen_improvement)
        found = found | acceptable
        if stop_once_found and bool(found.all()):
            break
    assign_flat_parameters(params, chosen)
    return BatchedLineSearchResult(
        accepted=found, backtracks=backtracks, step_fraction=step_fraction, kl=chosen_kl, improvement=chosen_improvement
    )


@dataclass
class NaturalStep:
    """The pieces of one natural-gradient step, computed at theta_old."""

    full_step: torch.Tensor  # beta * s, where s ~ F^-1 g
    beta: torch.Tensor
    sFs: torch.Tensor
    valid: torch.Tensor  # s^T F s finite and positive
    expected_improvement: torch.Tensor  # g . full_step, the surrogate's linear prediction
    surrogate_before: torch.Tensor
    cg: CGResult


def natural_gradient_step(
    surrogate: torch.Tensor,
    fvp_mean_kl: torch.Tensor,
    params: list[torch.nn.Parameter],
    max_kl: float,
    damping: float,
    cg_iters: int,
    cg_tol: float,
    phase: PhaseHook = untimed,
) -> NaturalStep:
    """From a differentiable surrogate and mean KL at theta_old to the KL-scaled natural step.

    `params` are the actor's parameters, chosen explicitly by the caller; the critic never
    enters the Fisher-vector product. `phase` is the caller's timing hook.
    """
    gradient = flat_gradient(surrogate, params, surrogate.dim() == 1, retain_graph=False)
    fvp = FisherVectorProduct(fvp_mean_kl, params, damping, phase)
    with phase("cg"):
        cg = conjugate_gradient(fvp, gradient, cg_iters, cg_tol)
    beta, sFs, valid = trust_region_step_size(cg.solution, fvp(cg.solution), max_kl)
    # an unusable step must be exactly zero: beta = 0 times a NaN direction would still be NaN
    full_step = _where(valid, _scaled(beta, cg.solution), torch.zeros_like(cg.solution))
    return NaturalStep(
        full_step=full_step,
        beta=beta,
        sFs=sFs,
        valid=valid,
        expected_improvement=_dot(gradient, full_step),
        surrogate_before=surrogate.detach(),
        cg=cg,
    )


def configured_natural_step(
    config: NaturalGradientConfig,
    surrogate: torch.Tensor,
    fvp_mean_kl: torch.Tensor,
    params: list[torch.nn.Parameter],
    phase: PhaseHook = untimed,
) -> NaturalStep:
    """:func:`natural_gradient_step` with the radius, damping and CG settings of `config`."""
    return natural_gradient_step(
        surrogate, fvp_mean_kl, params, config.max_kl, config.damping, config.cg_iters, config.cg_tol, phase=phase
    )


def fisher_subsample(
    size: int, fraction: float, generator: torch.Generator, device: torch.device, mode: str = "random"
) -> torch.Tensor:
    """Indices of the states used for Fisher-vector products (all of them at fraction 1).

    ``random``: round(fraction * size) states drawn without replacement. ``strided``: every
    round(1 / fraction)-th state from the first, as OpenAI Baselines' trpo_mpi takes
    ``arr[::5]``; it draws nothing from the generator."""
    if fraction >= 1.0:
        return torch.arange(size, device=device)
    if mode == "strided":
        return torch.arange(0, size, max(1, round(1.0 / fraction)), device=device)
    if mode != "random":
        raise ValueError(f"mode must be random or strided, got {mode!r}")
    count = max(1, int(round(fraction * size)))
    return torch.randperm(size, generator=generator)[:count].to(device)

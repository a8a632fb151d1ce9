"""The KL covariance projection's one-dimensional solve, row by row in Python floats.

:func:`trbench.algos.projections._solve_kl_weight` solves c(s) = eps for every row of a tensor at
once, with a fixed number of iterations of whole-tensor operations, so that nothing is read back
from a GPU. For a CPU tensor of a few rows (TRPL projects its state-independent std once per
network: one row alone, S rows in lockstep) each of those operations costs microseconds of
dispatch for a handful of numbers, and the solve was about half of a TRPL policy update on
Hopper-v5. Here the same bracket and the same two Newton models run on each row in float64 Python
arithmetic, and a row stops as soon as its iterate no longer moves. Rows are solved independently,
so a row's root does not depend on the rows stacked beside it: a member of a lockstep pack gets
the bits it gets alone.

The derivation (the bracket, the two models of ln c) is in ``_solve_kl_weight``'s docstring.
"""

from __future__ import annotations

import math

import torch

# exp() of more than this overflows a float64; such a step is outside any bracket anyway
_MAX_EXPONENT = 700.0


def _exp_or_inf(x: float) -> float:
    return math.exp(x) if x < _MAX_EXPONENT else math.inf


def kl_weight_root(u: list[float], eps: float, iterations: int, tol: float) -> float:
    """The root s in (0, 1] of c(s) = 1/2 sum_i [log1p(s u_i) - s u_i / (1 + s u_i)] = eps for one
    row u (u_i > -1) with c(1) > eps > 0, by at most `iterations` safeguarded Newton steps; the
    iteration stops early once |c - eps| <= tol eps or the iterate is a fixed point."""
    squares = sum(x * x for x in u)
    a = math.sqrt(squares / (4 * eps))
    eta_high = a - min(1.0, 1 + min(u))
    eta_low = max(a - max(1.0, 1 + max(u)), 0.0)
    s_low, s_high = 1 / (1 + eta_high), 1 / (1 + eta_low)
    s = math.sqrt(s_low * s_high)
    log_eps = math.log(eps)
    for _ in range(iterations):
        t = [s * x for x in u]  # q / p_o - 1
        t_over_x: list[float] = []
        if min(t) <= -1:  # a precision ratio rounded to 0: that std is infinite, and so is c
            c = math.inf
        else:
            t_over_x = [ti / (1 + ti) for ti in t]
            c = 0.5 * sum(math.log1p(ti) - r for ti, r in zip(t, t_over_x))
        if abs(c - eps) <= tol * eps:
            break
        above = c > eps  # c decreases in eta: the root has a larger eta, a smaller s
        if above:
            s_high = s
        else:
            s_low = s
        # a step without a model (c = 0 at s = 0, c infinite; the eta model is singular at s = 1)
        # is NaN, which no bracket test passes, as on the tensor path
        s_by_s = s_by_eta = math.nan
        if 0 < c < math.inf:
            slope = -0.5 * sum(r * r for r in t_over_x) / c
            log_gap = math.log(c) - log_eps
            s_by_s = s * _exp_or_inf(log_gap / slope)
            if s < 1:
                s_by_eta = 1 / (1 + (1 / s - 1) * _exp_or_inf(-log_gap / ((1 - s) * slope)))
        eta_inside = s_low <= s_by_eta <= s_high
        s_inside = s_low <= s_by_s <= s_high
        if eta_inside and (((s_by_eta < s_by_s) == above) or not s_inside):
            s_next = s_by_eta  # the longer of the two steps that stay inside the bracket
        elif s_inside:
            s_next = s_by_s
        else:
            s_next = math.sqrt(s_low * s_high)
        if s_next == s:
            break
        s = s_next
    return s


def solve_kl_weight_rows(u: torch.Tensor, eps: torch.Tensor, iterations: int, tol: float) -> torch.Tensor:
    """:func:`kl_weight_root` for every row of a CPU tensor u [..., k] with bounds eps [...]: the
    roots [...] in u's dtype (each rounded once from float64)."""
    k = u.shape[-1]
    rows = u.detach().reshape(-1, k).tolist()
    bounds = eps.detach().reshape(-1).tolist()
    roots = [kl_weight_root(row, bound, iterations, tol) for row, bound in zip(rows, bounds)]
    return torch.tensor(roots, dtype=u.dtype).reshape(eps.shape)

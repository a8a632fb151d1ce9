"""Trust Region Policy Optimization (Schulman et al., 2015).

    maximise_theta  L(theta) = E[ pi_theta(a|s) / pi_old(a|s) * A(s, a) ]
    subject to      mean_s KL(pi_old(.|s) || pi_theta(.|s)) <= delta

Each update (Section 6 and Appendix C of the paper):
 1. g = grad L at theta_old; solve F s = g with conjugate gradient, F the Hessian of the mean KL
    (Fisher-vector products by double backprop, optionally on a subsample of the batch).
 2. Scale to the trust region: full step = sqrt(2 delta / s^T F s) * s.
 3. Backtracking line search: shrink the step until the KL constraint holds and L improves;
    if no candidate qualifies, keep theta_old.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .base import OnPolicyAlgorithm
from .config import TRPOConfig
from .lockstep import LockstepNaturalGradient
from .rollout import Batch
from .trust_region import (
    BatchedLineSearchResult,
    NaturalStep,
    backtracking_line_search,
    batched_line_search,
    configured_natural_step,
    fisher_subsample,
)


@dataclass
class SurrogateObjectives:
    surrogate: Callable[[], torch.Tensor]
    surrogate_and_kl: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    mean_old: torch.Tensor
    log_std_old: torch.Tensor


def step_diagnostics(step: NaturalStep) -> dict[str, torch.Tensor]:
    return {
        "cg_residual": step.cg.residual_norm,
        "cg_iterations": step.cg.iterations,
        "sFs": step.sFs,
        "expected_improvement": step.expected_improvement,
    }


def batched_search_diagnostics(step: NaturalStep, found: BatchedLineSearchResult) -> dict[str, torch.Tensor]:
    """The line search's diagnostics as tensors; an unusable step reports no backtracks."""
    return {
        "update_skipped": (~step.valid).double(),
        "linesearch_accepted": found.accepted.double(),
        "backtracks": torch.where(step.valid, found.backtracks, 0).double(),
        "step_size": step.beta * found.step_fraction,
        "surrogate_improvement": found.improvement,
    }


def configured_batched_search(
    config: TRPOConfig,
    params: list,
    step: NaturalStep,
    surrogate_and_kl: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    stop_once_found: bool = False,
) -> BatchedLineSearchResult:
    """:func:`batched_line_search` along `step` with the bounds and backtracking of `config`."""
    return batched_line_search(
        params,
        step.full_step,
        surrogate_and_kl,
        step.surrogate_before,
        step.expected_improvement,
        config.kl_accept_factor * config.max_kl,
        config.backtrack_coeff,
        config.backtrack_iters,
        config.accept_ratio,
        stop_once_found=stop_once_found,
    )


class TRPO(OnPolicyAlgorithm):
    name = "trpo"
    summary = "the natural gradient by conjugate gradient, scaled to the mean-KL radius, then a backtracking line search on the KL and the surrogate"
    paper = "Schulman et al. 2015, Trust Region Policy Optimization (ICML; arXiv 1502.05477)"
    Config = TRPOConfig
    config: TRPOConfig

    def objectives(self, batch: Batch) -> SurrogateObjectives:
        """The surrogate L(theta) and the mean KL from the current policy, as closures of theta."""
        advantages = self.normalized_advantages(batch)
        with torch.no_grad():
            mean_old, log_std_old = self.policy(batch.obs)

        def surrogate() -> torch.Tensor:
            ratio = torch.exp(self.policy.log_prob(batch.obs, batch.actions) - batch.log_probs)
            return (ratio * advantages).mean()

        def surrogate_and_kl() -> tuple[torch.Tensor, torch.Tensor]:
            return surrogate(), self.mean_kl_from(batch.obs, mean_old, log_std_old)

        return SurrogateObjectives(surrogate, surrogate_and_kl, mean_old, log_std_old)

    def update_policy(self, batch: Batch) -> dict:
        cfg = self.config
        actor_params = list(self.policy.parameters())
        objectives = self.objectives(batch)
        surrogate, surrogate_and_kl = objectives.surrogate, objectives.surrogate_and_kl
        mean_old, log_std_old = objectives.mean_old, objectives.log_std_old
        # the line search's KL bound; Baselines accepts up to 1.5 delta (kl_accept_factor)
        accept_kl = cfg.kl_accept_factor * cfg.max_kl

        fvp_idx = fisher_subsample(len(batch), cfg.fvp_subsample, self.generator, self.device, cfg.fvp_subsample_mode)
        step = configured_natural_step(
            cfg,
            surrogate(),
            self.mean_kl_from(batch.obs[fvp_idx], mean_old[fvp_idx], log_std_old[fvp_idx]),
            actor_params,
            phase=self.phase,
        )
        diagnostics = step_diagnostics(step)

        if cfg.linesearch_mode == "batched":
            # no host read anywhere: an unusable step is exactly zero, which the search rejects
            # (no improvement), so the parameters stay; the diagnostics follow `valid` by masking
            with self.phase("linesearch"):
                found = configured_batched_search(cfg, actor_params, step, surrogate_and_kl)
            return diagnostics | batched_search_diagnostics(step, found)
        if not bool(step.valid):  # s^T F s <= 0 or NaN: no trustworthy step exists; skip it
            return diagnostics | {
                "update_skipped": 1.0,
                "linesearch_accepted": 0.0,
                "backtracks": 0.0,
                "step_size": 0.0,
                "surrogate_improvement": 0.0,
            }
        with self.phase("linesearch"):
            search = backtracking_line_search(
                actor_params,
                step.full_step,
                surrogate_and_kl,
                float(step.surrogate_before),
                float(step.expected_improvement),
                accept_kl,
                cfg.backtrack_coeff,
                cfg.backtrack_iters,
                cfg.accept_ratio,
            )
        return diagnostics | {
            "update_skipped": 0.0,
            "linesearch_accepted": float(search.accepted),
            "backtracks": float(search.backtracks),
            "step_size": float(step.beta) * search.step_fraction,
            "surrogate_improvement": search.improvement,
        }


class LockstepTRPO(LockstepNaturalGradient):
    """TRPO's update for S members at once, each bit-identical on the CPU to :class:`TRPO` alone
    (both line-search modes give the same parameters and diagnostics; this one is the batched
    search, which takes each member's first acceptable candidate; on the CPU it stops once every
    member has one, on a GPU it evaluates all candidates without reading anything back)."""

    Config = TRPOConfig
    config: TRPOConfig

    def update_policy(self, batch: Batch) -> dict:
        cfg = self.config
        params = self.policy_params
        advantages = self.normalized_advantages(batch)
        with torch.no_grad():
            mean_old, log_std_old = self.policy(batch.obs)

        def surrogate() -> torch.Tensor:
            ratio = torch.exp(self.policy.log_prob(batch.obs, batch.actions) - batch.log_probs)
            return (ratio * advantages).mean(-1)

        def surrogate_and_kl() -> tuple[torch.Tensor, torch.Tensor]:
            return surrogate(), self.mean_kl_from(batch.obs, mean_old, log_std_old)

        step = configured_natural_step(
            cfg,
            surrogate(),
            self.fisher_mean_kl(batch, mean_old, log_std_old),
            params,
            phase=self.phase,
        )
        with self.phase("linesearch"):
            # on the CPU a read-back is free: stop at the candidate where every member has one
            found = configured_batched_search(
                cfg, params, step, surrogate_and_kl, stop_once_found=self.device.type == "cpu"
            )
        return step_diagnostics(step) | batched_search_diagnostics(step, found)


TRPO.lockstep = LockstepTRPO

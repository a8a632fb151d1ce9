"""Natural Policy Gradient (Kakade, 2001), in its truncated form (TNPG, Duan et al., 2016).

The step is the natural gradient F^-1 g from conjugate gradient, rescaled so that its quadratic
KL estimate equals the radius delta: theta <- theta + sqrt(2 delta / s^T F s) * s. Unlike TRPO
there is no line search, so the KL actually reached is delta only to second order. Here
``max_kl`` is that radius, not a raw step multiplier.
"""

from __future__ import annotations

import torch

from .base import OnPolicyAlgorithm
from .config import NPGConfig
from .lockstep import LockstepNaturalGradient
from .rollout import Batch
from .trust_region import (
    NaturalStep,
    assign_flat_parameters,
    configured_natural_step,
    fisher_subsample,
    flat_parameters,
)


def npg_diagnostics(step: NaturalStep) -> dict[str, torch.Tensor]:
    return {
        "cg_residual": step.cg.residual_norm,
        "cg_iterations": step.cg.iterations,
        "sFs": step.sFs,
        "expected_improvement": step.expected_improvement,
        "step_size": step.beta,
        "update_skipped": (~step.valid).to(torch.float64),
    }


class NPG(OnPolicyAlgorithm):
    name = "npg"
    summary = "the natural gradient by conjugate gradient, rescaled to the quadratic mean-KL radius, no line search"
    paper = "Kakade 2001, A Natural Policy Gradient (NeurIPS); Rajeswaran et al. 2017 (arXiv 1703.02660)"
    Config = NPGConfig
    config: NPGConfig

    def update_policy(self, batch: Batch) -> dict:
        cfg = self.config
        actor_params = list(self.policy.parameters())
        advantages = self.normalized_advantages(batch)
        with torch.no_grad():
            mean_old, log_std_old = self.policy(batch.obs)
        ratio = torch.exp(self.policy.log_prob(batch.obs, batch.actions) - batch.log_probs)
        fvp_idx = fisher_subsample(len(batch), cfg.fvp_subsample, self.generator, self.device, cfg.fvp_subsample_mode)
        step = configured_natural_step(
            cfg,
            (ratio * advantages).mean(),
            self.mean_kl_from(batch.obs[fvp_idx], mean_old[fvp_idx], log_std_old[fvp_idx]),
            actor_params,
            phase=self.phase,
        )
        # an unusable step has beta = 0, so applying it leaves the parameters unchanged without
        # a host round trip to decide
        assign_flat_parameters(actor_params, flat_parameters(actor_params) + step.full_step)
        return npg_diagnostics(step)


class LockstepNPG(LockstepNaturalGradient):
    """NPG's update for S members at once, each bit-identical on the CPU to :class:`NPG` alone."""

    Config = NPGConfig
    config: NPGConfig

    def update_policy(self, batch: Batch) -> dict:
        cfg = self.config
        params = self.policy_params
        advantages = self.normalized_advantages(batch)
        with torch.no_grad():
            mean_old, log_std_old = self.policy(batch.obs)
        ratio = torch.exp(self.policy.log_prob(batch.obs, batch.actions) - batch.log_probs)
        step = configured_natural_step(
            cfg,
            (ratio * advantages).mean(-1),
            self.fisher_mean_kl(batch, mean_old, log_std_old),
            params,
            phase=self.phase,
        )
        assign_flat_parameters(params, flat_parameters(params, members=True) + step.full_step)
        return npg_diagnostics(step)


NPG.lockstep = LockstepNPG

"""Truly PPO: trust-region-triggered clipping with rollback, TR-PPO-RB (Wang, He and Tan,
UAI 2019, PMLR v115 2020; arXiv 1903.07940, section 5).

Where PPO clips on the ratio, TR-PPO-RB acts on the per-state KL in TRPO's direction,
KL_s = KL(pi_old(.|s) || pi_theta(.|s)): a sample whose state has left the trust region
(KL_s >= delta) and whose objective has already improved (r A > A) is rolled back, its
objective replaced by -alpha r A, so that its gradient -alpha A grad r pushes the policy back
towards pi_old; every other sample keeps r A and the gradient A grad r:

    L(theta) = E[ -alpha r A  if KL_s >= delta and r A > A,   r A  otherwise ]

The paper's eq. 16 read literally rolls back only A > 0 samples; we use the condition of its own
argument for TR-PPO (eq. 15: act only once the objective improved) and of its official code,
which rolls back either sign. delta is TRPO's delta, in TRPO's direction, applied per state as
a trigger rather than as a bound on the mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .config import MinibatchPolicyConfig, TrustRegionRadius, setting
from .minibatch_policy import (
    LockstepMinibatchPolicyGradient,
    MinibatchPolicyGradient,
    PolicyMinibatch,
    SurrogateTerms,
)
from .networks import gaussian_kl, gaussian_log_prob


@dataclass(frozen=True)
class TrulyPPOConfig(MinibatchPolicyConfig):
    radius: ClassVar[TrustRegionRadius | None] = TrustRegionRadius("kl_trigger", "kl_old_new", "per_state")

    kl_trigger: float = setting(
        0.03,
        "delta: a sample rolls back once KL(old || new) at its state reaches this and its objective improved",
        source="Wang et al. 2019 section 6, TR-PPO-RB (delta 0.03; the official script differs)",
        gt=0,
    )
    rollback_slope: float = setting(
        0.05,
        "alpha: the objective of a rolled-back sample is -alpha r A",
        source="Wang et al. 2019 section 6, TR-PPO-RB (alpha 0.05; Humanoid and HalfCheetah 0.1)",
        ge=0,
    )


def rollback_objective(
    ratio: torch.Tensor, advantages: torch.Tensor, state_kl: torch.Tensor, delta: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-sample TR-PPO-RB objective (to maximise) and where the rollback fired."""
    improved = ratio * advantages
    triggered = (state_kl >= delta) & (improved > advantages)
    return torch.where(triggered, -alpha * improved, improved), triggered


class RollbackSurrogate:
    """TR-PPO-RB's objective for one minibatch, shared by :class:`TrulyPPO` and its twin."""

    config: TrulyPPOConfig
    policy: Any  # GaussianPolicy alone, StackedGaussianPolicy in lockstep: the same calls
    needs_old_policy: ClassVar[bool] = True

    def surrogate(self, mb: PolicyMinibatch) -> SurrogateTerms:
        assert mb.old_mean is not None and mb.old_log_std is not None
        cfg = self.config
        mean, log_std = self.policy(mb.obs)
        log_ratio = gaussian_log_prob(mean, log_std, mb.actions) - mb.old_log_probs
        ratio = log_ratio.exp()
        # the trigger is a switch, not a term: no gradient flows through KL_s
        state_kl = gaussian_kl(mb.old_mean, mb.old_log_std, mean, log_std).detach()
        objective, triggered = rollback_objective(ratio, mb.advantages, state_kl, cfg.kl_trigger, cfg.rollback_slope)
        with torch.no_grad():
            stats = {"trigger_fraction": triggered.float().mean(-1), "ratio_max": ratio.amax(-1)}
        return SurrogateTerms(-objective.mean(-1), log_ratio, stats)


class TrulyPPO(RollbackSurrogate, MinibatchPolicyGradient):
    name = "truly_ppo"
    summary = "TR-PPO-RB: samples whose state left a per-state KL region roll back with slope -alpha"
    paper = "Wang, He and Tan 2019, Truly Proximal Policy Optimization (UAI; arXiv 1903.07940)"
    Config = TrulyPPOConfig
    config: TrulyPPOConfig


class LockstepTrulyPPO(RollbackSurrogate, LockstepMinibatchPolicyGradient):
    Config = TrulyPPOConfig
    config: TrulyPPOConfig


TrulyPPO.lockstep = LockstepTrulyPPO

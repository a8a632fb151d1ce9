"""Simple Policy Optimization (Xie, Zhang, Yang, Hutter and Xu, ICML 2025; arXiv 2401.16025).

PPO with the clipped surrogate replaced by a quadratic penalty on the ratio (the paper's
eq. 16/18), everything else unchanged:

    J(theta) = E[ r A  -  (|A| / (2 eps)) (r - 1)^2 ],   r = pi_theta(a|s) / pi_old(a|s)

The penalty acts on every sample, not only outside [1 - eps, 1 + eps]. Its coefficient makes the
per-sample maximiser lie exactly on PPO's clip boundary, r* = 1 + sign(A) eps ("eps-aligned"),
where the objective is A + eps |A| / 2; the derivative in r, A - (|A| / eps)(r - 1), is A at
r = 1 and never vanishes elsewhere, so a sample outside the range is pulled back rather than
left without a gradient as under clipping. eps bounds the ratio per sample (a total-variation
style region), not a KL; the KL it keeps is measured.
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


@dataclass(frozen=True)
class SPOConfig(MinibatchPolicyConfig):
    radius: ClassVar[TrustRegionRadius | None] = TrustRegionRadius("ratio_epsilon", "other", "per_state")

    ratio_epsilon: float = setting(
        0.2,
        "eps of the ratio penalty |A| / (2 eps) (r - 1)^2: the per-sample optimum is r = 1 + sign(A) eps",
        source="Xie et al. 2025 official MuJoCo defaults (eps 0.2, the scale of PPO's clip)",
        gt=0,
    )


def spo_objective(ratio: torch.Tensor, advantages: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The per-sample objective r A - (|A| / 2 eps)(r - 1)^2 (to maximise)."""
    return ratio * advantages - advantages.abs() / (2 * epsilon) * (ratio - 1).pow(2)


class RatioPenaltySurrogate:
    """SPO's objective for one minibatch, shared by :class:`SPO` and its twin."""

    config: SPOConfig
    policy: Any  # GaussianPolicy alone, StackedGaussianPolicy in lockstep: the same calls

    def surrogate(self, mb: PolicyMinibatch) -> SurrogateTerms:
        eps = self.config.ratio_epsilon
        log_ratio = self.policy.log_prob(mb.obs, mb.actions) - mb.old_log_probs
        ratio = log_ratio.exp()
        loss = -spo_objective(ratio, mb.advantages, eps).mean(-1)
        with torch.no_grad():
            deviation = (ratio - 1).abs()
            stats = {
                # the paper's "ratio deviation": the mean of |r - 1|
                "ratio_deviation": deviation.mean(-1),
                "ratio_outside": (deviation > eps).float().mean(-1),
                "ratio_max": ratio.amax(-1),
            }
        return SurrogateTerms(loss, log_ratio, stats)


class SPO(RatioPenaltySurrogate, MinibatchPolicyGradient):
    name = "spo"
    summary = "a quadratic penalty on the ratio whose per-sample optimum is PPO's clip boundary"
    paper = "Xie et al. 2025, Simple Policy Optimization (ICML; arXiv 2401.16025)"
    Config = SPOConfig
    config: SPOConfig


class LockstepSPO(RatioPenaltySurrogate, LockstepMinibatchPolicyGradient):
    Config = SPOConfig
    config: SPOConfig


SPO.lockstep = LockstepSPO

"""Proximal Policy Optimization with the clipped surrogate (Schulman et al., 2017, eq. 7).

    L_clip(theta) = E[ min( r A, clip(r, 1 - eps, 1 + eps) A ) ],   r = pi_theta(a|s) / pi_old(a|s)

maximised by Adam over `epochs` passes of shuffled minibatches (algos/minibatch_policy.py), with
an optional entropy bonus, gradient clipping and an optional early stop once the approximate KL
passes `target_kl`. The critic is trained by the shared critic update (value clipping is its
`value_clip` switch), so PPO differs from TRPO, NPG and VPG in its policy update alone.
"""

from __future__ import annotations

from typing import Any

import torch

from .config import PPOConfig
from .minibatch_policy import (
    LockstepMinibatchPolicyGradient,
    MinibatchPolicyGradient,
    PolicyMinibatch,
    SurrogateTerms,
)


class ClippedSurrogate:
    """PPO's objective for one minibatch, shared by :class:`PPO` and its lockstep twin."""

    config: PPOConfig
    policy: Any  # GaussianPolicy alone, StackedGaussianPolicy in lockstep: the same calls

    def surrogate(self, mb: PolicyMinibatch) -> SurrogateTerms:
        eps = self.config.clip_range
        log_ratio = self.policy.log_prob(mb.obs, mb.actions) - mb.old_log_probs
        ratio = log_ratio.exp()
        clipped = ratio.clamp(1 - eps, 1 + eps)
        loss = -torch.minimum(ratio * mb.advantages, clipped * mb.advantages).mean(-1)
        with torch.no_grad():
            clip_fraction = ((ratio - 1).abs() > eps).float().mean(-1)
        return SurrogateTerms(loss, log_ratio, {"clip_fraction": clip_fraction})


class PPO(ClippedSurrogate, MinibatchPolicyGradient):
    name = "ppo"
    summary = "the clipped probability-ratio surrogate, Adam over minibatch epochs"
    paper = "Schulman et al. 2017, Proximal Policy Optimization Algorithms (arXiv 1707.06347), eq. 7"
    Config = PPOConfig
    config: PPOConfig


class LockstepPPO(ClippedSurrogate, LockstepMinibatchPolicyGradient):
    """PPO's update for S members at once, each bit-identical on the CPU to :class:`PPO` alone."""

    Config = PPOConfig
    config: PPOConfig


PPO.lockstep = LockstepPPO

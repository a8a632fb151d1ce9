"""Vanilla policy gradient (Williams, 1992) with a learned baseline and GAE advantages.

One gradient step per batch on  -E[ log pi_theta(a|s) * A(s, a) ]  (the REINFORCE estimator with
GAE in place of Monte-Carlo returns minus a baseline), as in Spinning Up's VPG.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import OnPolicyAlgorithm
from .config import VPGConfig
from .lockstep import LockstepAlgorithm
from .rollout import Batch
from .stacked import clip_member_grad_norms


class VPG(OnPolicyAlgorithm):
    name = "vpg"
    summary = "the likelihood-ratio policy gradient with GAE advantages, by Adam, no trust region"
    paper = "Williams 1992 (REINFORCE); Schulman et al. 2016, GAE (arXiv 1506.02438)"
    Config = VPGConfig
    config: VPGConfig

    def __init__(self, config: VPGConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self.policy_optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.policy_lr)

    def update_policy(self, batch: Batch) -> dict:
        cfg = self.config
        for group in self.policy_optimizer.param_groups:
            group["lr"] = self.annealed(cfg.policy_lr)
        advantages = self.normalized_advantages(batch)
        loss = -(self.policy.log_prob(batch.obs, batch.actions) * advantages).mean()
        self.policy_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.policy_max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.policy_max_grad_norm)
        self.policy_optimizer.step()
        return {"policy_loss": loss.detach()}


class LockstepVPG(LockstepAlgorithm):
    """VPG's update for S members at once, each bit-identical on the CPU to :class:`VPG` alone."""

    Config = VPGConfig
    config: VPGConfig

    def __init__(self, members: Sequence[OnPolicyAlgorithm]):
        super().__init__(members)
        self.policy_optimizer = self._member_adam(
            self.policy_params, self.config.policy_lr, lambda m: (m.policy_optimizer, list(m.policy.parameters()))
        )

    def update_policy(self, batch: Batch) -> dict:
        cfg = self.config
        self.policy_optimizer.lr = self.annealed(cfg.policy_lr)
        advantages = self.normalized_advantages(batch)
        loss = -(self.policy.log_prob(batch.obs, batch.actions) * advantages).mean(-1)
        self.policy_optimizer.zero_grad()
        loss.sum().backward()
        if cfg.policy_max_grad_norm > 0:
            clip_member_grad_norms(self.policy_params, cfg.policy_max_grad_norm)
        self.policy_optimizer.step()
        return {"policy_loss": loss.detach()}


VPG.lockstep = LockstepVPG

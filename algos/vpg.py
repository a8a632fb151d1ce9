"""Vanilla policy gradient (Williams, 1992) with a learned baseline and GAE advantages.

One gradient step per batch on  -E[ log pi_theta(a|s) * A(s, a) ]  (the REINFORCE estimator with
GAE in place of Monte-Carlo returns minus a baseline), as in Spinning Up's VPG.
"""

from __future__ import annotations

import torch

from .base import OnPolicyAlgorithm
from .config import VPGConfig
from .rollout import Batch


class VPG(OnPolicyAlgorithm):
    name = "vpg"
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

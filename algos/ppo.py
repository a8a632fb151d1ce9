"""Proximal Policy Optimization with the clipped surrogate (Schulman et al., 2017).

    L_clip(theta) = E[ min( r A, clip(r, 1 - eps, 1 + eps) A ) ],   r = pi_theta(a|s) / pi_old(a|s)

maximised by Adam over `epochs` passes of shuffled minibatches, with an optional entropy bonus,
gradient clipping and an optional early stop once the approximate KL passes `target_kl`. The
critic is trained by the shared critic update (value clipping is its `value_clip` switch), so
PPO differs from TRPO, NPG and VPG in its policy update alone.
"""

from __future__ import annotations

import torch

from .base import OnPolicyAlgorithm
from .config import PPOConfig
from .rollout import Batch


class PPO(OnPolicyAlgorithm):
    name = "ppo"
    Config = PPOConfig
    config: PPOConfig

    def __init__(self, config: PPOConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self.policy_optimizer = torch.optim.Adam(
            self.policy.parameters(), lr=config.policy_lr, eps=config.policy_adam_eps
        )

    def update_policy(self, batch: Batch) -> dict:
        cfg = self.config
        for group in self.policy_optimizer.param_groups:
            group["lr"] = self.annealed(cfg.policy_lr)
        advantages_all = batch.advantages
        losses, clip_fractions, approx_kls = [], [], []
        epochs_done = 0
        stop = False
        for _ in range(cfg.epochs):
            for idx in self.minibatches(len(batch), cfg.minibatch_size):
                adv = advantages_all[idx]
                # per-minibatch standardisation, as in the PPO2 / SB3 implementations
                if cfg.normalize_advantages and adv.numel() > 1:
                    adv = (adv - adv.mean()) / (adv.std() + cfg.advantage_norm_eps)
                log_ratio = self.policy.log_prob(batch.obs[idx], batch.actions[idx]) - batch.log_probs[idx]
                ratio = log_ratio.exp()
                clipped = ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range)
                loss = -torch.minimum(ratio * adv, clipped * adv).mean()
                if cfg.entropy_coef > 0:
                    loss = loss - cfg.entropy_coef * self.policy.entropy()
                self.policy_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.policy_max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.policy_max_grad_norm)
                self.policy_optimizer.step()
                with torch.no_grad():
                    # the low-variance KL estimator E[(r - 1) - log r] (Schulman, 2020)
                    approx_kl = ((ratio - 1) - log_ratio).mean()
                    losses.append(loss.detach())
                    approx_kls.append(approx_kl)
                    clip_fractions.append(((ratio - 1).abs() > cfg.clip_range).float().mean())
            epochs_done += 1
            # the early stop needs the value on the host: one read per epoch, only when enabled
            if cfg.target_kl > 0 and float(approx_kls[-1]) > cfg.target_kl:
                stop = True
            if stop:
                break
        return {
            "policy_loss": torch.stack(losses).mean(),
            "approx_kl": torch.stack(approx_kls).mean(),
            "clip_fraction": torch.stack(clip_fractions).mean(),
            "epochs": float(epochs_done),
        }

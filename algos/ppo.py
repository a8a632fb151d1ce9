"""Proximal Policy Optimization with the clipped surrogate (Schulman et al., 2017).

    L_clip(theta) = E[ min( r A, clip(r, 1 - eps, 1 + eps) A ) ],   r = pi_theta(a|s) / pi_old(a|s)

maximised by Adam over `epochs` passes of shuffled minibatches, with an optional entropy bonus,
gradient clipping and an optional early stop once the approximate KL passes `target_kl`. The
critic is trained by the shared critic update (value clipping is its `value_clip` switch), so
PPO differs from TRPO, NPG and VPG in its policy update alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import OnPolicyAlgorithm
from .config import PPOConfig
from .lockstep import LockstepAlgorithm
from .rollout import Batch
from .stacked import clip_member_grad_norms, member_rows


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


class LockstepPPO(LockstepAlgorithm):
    """PPO's update for S members at once, each bit-identical on the CPU to :class:`PPO` alone.

    A member whose approximate KL passes ``target_kl`` stops its epochs as it would alone: it
    draws no further minibatch orders, and the remaining steps leave its parameters and Adam
    state untouched while the other members go on."""

    Config = PPOConfig
    config: PPOConfig

    def __init__(self, members: Sequence[OnPolicyAlgorithm]):
        super().__init__(members)
        self.policy_optimizer = self._member_adam(
            self.policy_params,
            self.config.policy_lr,
            lambda m: (m.policy_optimizer, list(m.policy.parameters())),
            eps=self.config.policy_adam_eps,
        )

    def update_policy(self, batch: Batch) -> dict:
        cfg = self.config
        optimizer = self.policy_optimizer
        optimizer.lr = self.annealed(cfg.policy_lr)
        size = batch.obs.size(1)
        active = [True] * self.size
        losses, clip_fractions, approx_kls = [], [], []
        epochs_done = [0] * self.size
        full_batch = cfg.minibatch_size <= 0 or cfg.minibatch_size >= size
        for _ in range(cfg.epochs):
            running = [k for k in range(self.size) if active[k]]
            if not running:
                break
            data: tuple[torch.Tensor, ...] = (batch.obs, batch.actions, batch.log_probs, batch.advantages)
            if not full_batch:
                # gathered once per epoch and sliced: the same rows a lone run gathers per minibatch
                order = self.member_orders(size, running)
                data = tuple(member_rows(t, order) for t in data)
            step = size if full_batch else cfg.minibatch_size
            for start in range(0, size, step):
                obs, actions, old_log_probs, adv = (t[:, start : start + step] for t in data)
                if cfg.normalize_advantages and adv.size(-1) > 1:
                    adv = (adv - adv.mean(-1, keepdim=True)) / (adv.std(-1, keepdim=True) + cfg.advantage_norm_eps)
                log_ratio = self.policy.log_prob(obs, actions) - old_log_probs
                ratio = log_ratio.exp()
                clipped = ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range)
                loss = -torch.minimum(ratio * adv, clipped * adv).mean(-1)
                if cfg.entropy_coef > 0:
                    loss = loss - cfg.entropy_coef * self.policy.entropy()
                optimizer.zero_grad()
                loss.sum().backward()
                if cfg.policy_max_grad_norm > 0:
                    clip_member_grad_norms(self.policy_params, cfg.policy_max_grad_norm)
                optimizer.step(active)
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - log_ratio).mean(-1)
                    losses.append((loss.detach(), active))
                    approx_kls.append((approx_kl, active))
                    clip_fractions.append((((ratio - 1).abs() > cfg.clip_range).float().mean(-1), active))
            for k in running:
                epochs_done[k] += 1
            if cfg.target_kl > 0:
                last_kl = approx_kls[-1][0].tolist()  # one read per epoch, as alone
                active = [a and not last_kl[k] > cfg.target_kl for k, a in enumerate(active)]
        return {
            "policy_loss": _member_means(losses, self.size),
            "approx_kl": _member_means(approx_kls, self.size),
            "clip_fraction": _member_means(clip_fractions, self.size),
            "epochs": [float(n) for n in epochs_done],
        }


def _member_means(values: list[tuple[torch.Tensor, list[bool]]], members: int) -> torch.Tensor:
    """Per member, the mean of its [S]-entries over the steps it took part in: the entries a
    lone run would have stacked, laid out contiguously so that the mean sums them in its order."""
    stacked = torch.stack([v for v, _ in values], dim=1)  # [S, steps]
    if all(all(active) for _, active in values):
        return stacked.mean(-1)
    return torch.stack(
        [
            stacked[k][[i for i, (_, active) in enumerate(values) if active[k]]].contiguous().mean()
            for k in range(members)
        ]
    )


PPO.lockstep = LockstepPPO

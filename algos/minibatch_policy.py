"""The policy optimiser that PPO and its family share: Adam over epochs of shuffled minibatches
on a surrogate of the importance ratio r = pi_theta(a|s) / pi_old(a|s).

PPO-clip, PPO with the adaptive KL penalty, SPO, Truly PPO, on-policy MDPO and the trust-region
projection layers differ only in the surrogate each minibatch maximises and in what happens
around the epochs (a penalty coefficient adapted after them, a projected std written back). So
each of them is one :meth:`~MinibatchPolicyGradient.surrogate` (and, where needed, one
:meth:`~MinibatchPolicyGradient.after_epochs`) in its own file, and this module owns the loop:
learning-rate annealing, per-minibatch advantage standardisation, the entropy bonus, gradient
clipping, the optional early stop on the approximate KL, and the diagnostics every member of the
family reports.

The same surrogate serves the lone algorithm and its lockstep twin: a method is written once,
in a mixin that both :class:`MinibatchPolicyGradient` and :class:`LockstepMinibatchPolicyGradient`
take, on tensors whose last axis is the minibatch (shape [n] alone, [S, n] for S stacked
members). Reductions over the last axis only (``mean(-1)``, ``sum(-1)``, ``amax(-1)``) give each
member the numbers it gets alone, bit for bit on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch

from .base import OnPolicyAlgorithm
from .config import MinibatchPolicyConfig
from .lockstep import LockstepAlgorithm
from .rollout import Batch
from .stacked import clip_member_grad_norms, member_rows

# a per-minibatch statistic whose name ends so is the maximum over the update's minibatches;
# every other one is their mean
MAX_SUFFIX = "_max"


@dataclass(frozen=True)
class PolicyMinibatch:
    """One minibatch, as the surrogate sees it. The last axis of every tensor but `obs`,
    `actions`, `old_mean` and `old_log_std` (which have one more, the feature axis) is the
    minibatch; lockstep twins have a leading member axis."""

    obs: torch.Tensor
    actions: torch.Tensor
    old_log_probs: torch.Tensor
    advantages: torch.Tensor  # standardised per minibatch when normalize_advantages is on
    # the behaviour policy's per-state Gaussian, for methods that set needs_old_policy
    old_mean: torch.Tensor | None = None
    old_log_std: torch.Tensor | None = None


class SurrogateTerms(NamedTuple):
    """What a surrogate returns for one minibatch."""

    loss: torch.Tensor  # to minimise: [] alone, [S] in lockstep
    log_ratio: torch.Tensor  # log r per sample, for the approximate-KL diagnostic and early stop
    stats: dict[str, torch.Tensor]  # the method's own per-minibatch diagnostics, [] or [S] each


class SurrogateHooks:
    """What a method of the family defines, with the defaults of both loops: its surrogate (no
    default), whether it needs the behaviour policy per state, and what it does after the epochs."""

    # whether the surrogate needs the behaviour policy's mean and log-std per state (a KL term)
    needs_old_policy: ClassVar[bool] = False

    def surrogate(self, mb: PolicyMinibatch) -> SurrogateTerms:
        raise NotImplementedError

    def after_epochs(self, batch: Batch, old_mean: torch.Tensor | None, old_log_std: torch.Tensor | None) -> dict:
        """Called once the epochs are done; returns extra diagnostics. Nothing by default."""
        return {}


class MinibatchPolicyGradient(SurrogateHooks, OnPolicyAlgorithm):
    """The lone loop. A subclass (through its surrogate mixin) defines :meth:`surrogate`."""

    Config = MinibatchPolicyConfig
    config: MinibatchPolicyConfig

    def __init__(self, config: MinibatchPolicyConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self.policy_optimizer = torch.optim.Adam(
            self.policy.parameters(), lr=config.policy_lr, eps=config.policy_adam_eps
        )

    def update_policy(self, batch: Batch) -> dict:
        cfg = self.config
        for group in self.policy_optimizer.param_groups:
            group["lr"] = self.annealed(cfg.policy_lr)
        old_mean = old_log_std = None
        if self.needs_old_policy:
            with torch.no_grad():
                old_mean, old_log_std = self.policy(batch.obs)
        advantages_all = batch.advantages
        losses, approx_kls = [], []
        stats: dict[str, list[torch.Tensor]] = {}
        epochs_done = 0
        for _ in range(cfg.epochs):
            for idx in self.minibatches(len(batch), cfg.minibatch_size):
                adv = advantages_all[idx]
                # per-minibatch standardisation, as in the PPO2 / SB3 implementations
                if cfg.normalize_advantages and adv.numel() > 1:
                    adv = (adv - adv.mean()) / (adv.std() + cfg.advantage_norm_eps)
                mb = PolicyMinibatch(
                    batch.obs[idx],
                    batch.actions[idx],
                    batch.log_probs[idx],
                    adv,
                    None if old_mean is None else old_mean[idx],
                    None if old_log_std is None else old_log_std[idx],
                )
                loss, log_ratio, minibatch_stats = self.surrogate(mb)
                if cfg.entropy_coef > 0:
                    loss = loss - cfg.entropy_coef * self.policy.entropy()
                self.policy_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.policy_max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.policy_max_grad_norm)
                self.policy_optimizer.step()
                with torch.no_grad():
                    # the low-variance KL estimator E[(r - 1) - log r] (Schulman, 2020)
                    approx_kl = ((log_ratio.exp() - 1) - log_ratio).mean()
                    losses.append(loss.detach())
                    approx_kls.append(approx_kl)
                    for name, value in minibatch_stats.items():
                        stats.setdefault(name, []).append(value.detach())
            epochs_done += 1
            # the early stop needs the value on the host: one read per epoch, only when enabled
            if cfg.target_kl > 0 and float(approx_kls[-1]) > cfg.target_kl:
                break
        diagnostics: dict[str, Any] = {
            "policy_loss": torch.stack(losses).mean(),
            "approx_kl": torch.stack(approx_kls).mean(),
        }
        for name, values in stats.items():
            stacked = torch.stack(values)
            diagnostics[name] = stacked.amax() if name.endswith(MAX_SUFFIX) else stacked.mean()
        diagnostics["epochs"] = float(epochs_done)
        diagnostics.update(self.after_epochs(batch, old_mean, old_log_std))
        return diagnostics


class LockstepMinibatchPolicyGradient(SurrogateHooks, LockstepAlgorithm):
    """The lockstep loop for S members, each bit-identical on the CPU to the lone loop.

    A member whose approximate KL passes ``target_kl`` stops its epochs as it would alone: it
    draws no further minibatch orders, and the remaining steps leave its parameters and Adam
    state untouched while the other members go on. State a method keeps between updates on the
    algorithm object (PPO-KL's beta) is named in ``member_state``: it is stacked from the members
    when the twin is built and written back into them after every update."""

    Config = MinibatchPolicyConfig
    config: MinibatchPolicyConfig
    member_state: ClassVar[tuple[str, ...]] = ()

    def __init__(self, members: Sequence[OnPolicyAlgorithm]):
        super().__init__(members)
        self.policy_optimizer = self._member_adam(
            self.policy_params,
            self.config.policy_lr,
            lambda m: (m.policy_optimizer, list(m.policy.parameters())),
            eps=self.config.policy_adam_eps,
        )
        for name in self.member_state:
            setattr(self, name, torch.stack([getattr(m, name) for m in members]))

    def update_policy(self, batch: Batch) -> dict:
        cfg = self.config
        optimizer = self.policy_optimizer
        optimizer.lr = self.annealed(cfg.policy_lr)
        size = batch.obs.size(1)
        old_mean = old_log_std = None
        if self.needs_old_policy:
            with torch.no_grad():
                old_mean, old_log_std = self.policy(batch.obs)
        active = [True] * self.size
        losses, approx_kls = [], []
        stats: dict[str, list[tuple[torch.Tensor, list[bool]]]] = {}
        epochs_done = [0] * self.size
        full_batch = cfg.minibatch_size <= 0 or cfg.minibatch_size >= size
        for _ in range(cfg.epochs):
            running = [k for k in range(self.size) if active[k]]
            if not running:
                break
            data: tuple[torch.Tensor, ...] = (batch.obs, batch.actions, batch.log_probs, batch.advantages)
            if old_mean is not None and old_log_std is not None:
                data += (old_mean, old_log_std)
            if not full_batch:
                # gathered once per epoch and sliced: the same rows a lone run gathers per minibatch
                order = self.member_orders(size, running)
                data = tuple(member_rows(t, order) for t in data)
            step = size if full_batch else cfg.minibatch_size
            for start in range(0, size, step):
                obs, actions, old_log_probs, adv, *old = (t[:, start : start + step] for t in data)
                if cfg.normalize_advantages and adv.size(-1) > 1:
                    adv = (adv - adv.mean(-1, keepdim=True)) / (adv.std(-1, keepdim=True) + cfg.advantage_norm_eps)
                mb = PolicyMinibatch(obs, actions, old_log_probs, adv, *old)
                loss, log_ratio, minibatch_stats = self.surrogate(mb)
                if cfg.entropy_coef > 0:
                    loss = loss - cfg.entropy_coef * self.policy.entropy()
                optimizer.zero_grad()
                loss.sum().backward()
                if cfg.policy_max_grad_norm > 0:
                    clip_member_grad_norms(self.policy_params, cfg.policy_max_grad_norm)
                optimizer.step(active)
                with torch.no_grad():
                    approx_kl = ((log_ratio.exp() - 1) - log_ratio).mean(-1)
                    losses.append((loss.detach(), active))
                    approx_kls.append((approx_kl, active))
                    for name, value in minibatch_stats.items():
                        stats.setdefault(name, []).append((value.detach(), active))
            for k in running:
                epochs_done[k] += 1
            if cfg.target_kl > 0:
                last_kl = approx_kls[-1][0].tolist()  # one read per epoch, as alone
                active = [a and not last_kl[k] > cfg.target_kl for k, a in enumerate(active)]
        diagnostics: dict[str, Any] = {
            "policy_loss": member_reduce(losses, self.size),
            "approx_kl": member_reduce(approx_kls, self.size),
        }
        for name, values in stats.items():
            diagnostics[name] = member_reduce(values, self.size, maximum=name.endswith(MAX_SUFFIX))
        diagnostics["epochs"] = [float(n) for n in epochs_done]
        diagnostics.update(self.after_epochs(batch, old_mean, old_log_std))
        for name in self.member_state:
            stacked = getattr(self, name)
            for k, member in enumerate(self.members):
                setattr(member, name, stacked[k].clone())
        return diagnostics


def member_reduce(values: list[tuple[torch.Tensor, list[bool]]], members: int, maximum: bool = False) -> torch.Tensor:
    """Per member, the mean (or max) of its [S]-entries over the steps it took part in: the
    entries a lone run would have stacked, laid out contiguously so that the mean sums them in
    its order."""
    stacked = torch.stack([v for v, _ in values], dim=1)  # [S, steps]
    reduce = (lambda t: t.amax(-1)) if maximum else (lambda t: t.mean(-1))
    if all(all(active) for _, active in values):
        return reduce(stacked)
    return torch.stack(
        [
            reduce(stacked[k][[i for i, (_, active) in enumerate(values) if active[k]]].contiguous())
            for k in range(members)
        ]
    )

"""What every on-policy algorithm shares: the networks, the critic update, the KL diagnostics.

An algorithm subclasses :class:`OnPolicyAlgorithm`, names its config dataclass in ``Config``,
and implements :meth:`update_policy`. Everything else (rollouts, GAE, normalisation, critic,
evaluation) is common, so a comparison measures the policy update rule alone.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from .config import OnPolicyConfig
from .networks import GaussianPolicy, ValueNetwork, gaussian_kl
from .rollout import Batch
from .timing import PhaseHook, untimed


def diagnostics_on_host(diagnostics: dict, device: torch.device, shape: tuple[int, ...]) -> list:
    """Every diagnostic (a tensor or a number of `shape`) as Python floats, in one transfer at the
    end of an update rather than one per value inside it; one list per diagnostic, in order."""
    return (
        torch.stack(
            [torch.as_tensor(v, dtype=torch.float64, device=device).reshape(shape) for v in diagnostics.values()]
        )
        .cpu()
        .tolist()
    )


class OnPolicyAlgorithm:
    """Base class. Subclasses set ``name`` and ``Config`` and implement ``update_policy``."""

    name: ClassVar[str] = ""
    # one line each for `trbench config`: what the update does, and the paper it follows
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    Config: ClassVar[type[OnPolicyConfig]] = OnPolicyConfig
    # the lockstep twin (algos/lockstep.py) that updates S members of this class at once; read
    # from the class's own body only, so a subclass with another update never inherits it
    lockstep: ClassVar[type | None] = None
    # marks the update's phases for a benchmark (algos/timing.py); a class attribute, so the
    # default costs nothing and algorithms pickled before the hook existed still load
    phase: PhaseHook = staticmethod(untimed)

    def __init__(
        self, config: OnPolicyConfig, obs_dim: int, act_dim: int, device: torch.device, generator: torch.Generator
    ):
        self.config = config
        self.device = device
        # minibatch shuffling draws from its own seeded stream, on the CPU, so it is identical
        # whichever device the update runs on
        self.generator = generator
        self.policy = GaussianPolicy(
            obs_dim,
            act_dim,
            config.policy_hidden,
            config.activation,
            config.init,
            config.policy_output_gain,
            config.log_std_init,
        ).to(device)
        self.value_fn = ValueNetwork(obs_dim, config.value_hidden, config.activation, config.init).to(device)
        # foreach: the same arithmetic as the default per-tensor loop on the CPU (bit-identical),
        # in fewer calls; the critic takes hundreds of small steps per iteration
        self.critic_optimizer = torch.optim.Adam(self.value_fn.parameters(), lr=config.critic_lr, foreach=True)
        self.progress = 0.0  # fraction of the run completed, for learning-rate annealing

    # --- the part each algorithm defines --------------------------------------------------------
    def update_policy(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------------------
    def update(self, batch: Batch, progress: float) -> dict[str, float]:
        """One policy update then one critic update on the same batch; returns diagnostics."""
        self.progress = progress
        with torch.no_grad():
            mean_old, log_std_old = self.policy(batch.obs)
        with self.phase("policy"):
            diagnostics = dict(self.update_policy(batch))
        with torch.no_grad():
            mean_new, log_std_new = self.policy(batch.obs)
            kl = gaussian_kl(mean_old, log_std_old, mean_new, log_std_new)
            diagnostics["kl"] = kl.mean()
            diagnostics["kl_max"] = kl.amax()
            diagnostics["entropy"] = self.policy.entropy()
        with self.phase("critic"):
            diagnostics.update(self.update_critic(batch))
        return dict(zip(diagnostics.keys(), diagnostics_on_host(diagnostics, self.device, ())))

    def annealed(self, lr: float) -> float:
        return lr * (1.0 - self.progress) if self.config.anneal_lr else lr

    def minibatches(self, size: int, minibatch_size: int):
        """Random disjoint index sets covering range(size); the full batch when size is 0."""
        if minibatch_size <= 0 or minibatch_size >= size:
            yield torch.arange(size, device=self.device)
            return
        order = torch.randperm(size, generator=self.generator).to(self.device)
        for start in range(0, size, minibatch_size):
            yield order[start : start + minibatch_size]

    def shuffled_minibatches(self, size: int, minibatch_size: int, *tensors: torch.Tensor):
        """The minibatches of :meth:`minibatches` (same random order, same generator draws), as
        slices of `tensors` gathered once per pass: one gather per tensor and pass instead of one
        per minibatch, with bit-identical contents."""
        if minibatch_size <= 0 or minibatch_size >= size:
            yield tensors
            return
        order = torch.randperm(size, generator=self.generator).to(self.device)
        gathered = [t[order] for t in tensors]
        for start in range(0, size, minibatch_size):
            yield tuple(t[start : start + minibatch_size] for t in gathered)

    def update_critic(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Regress V onto the GAE value targets for `critic_epochs` passes (optionally clipped
        around the rollout's value predictions, as in PPO2)."""
        cfg = self.config
        for group in self.critic_optimizer.param_groups:
            group["lr"] = self.annealed(cfg.critic_lr)
        losses = []
        data = (batch.obs, batch.returns) + ((batch.values,) if cfg.value_clip > 0 else ())
        for _ in range(cfg.critic_epochs):
            for obs, returns, *old_values in self.shuffled_minibatches(len(batch), cfg.critic_minibatch_size, *data):
                predicted = self.value_fn(obs)
                loss = (predicted - returns).pow(2)
                if cfg.value_clip > 0:
                    old = old_values[0]
                    clipped = old + (predicted - old).clamp(-cfg.value_clip, cfg.value_clip)
                    loss = torch.maximum(loss, (clipped - returns).pow(2))
                loss = loss.mean()
                self.critic_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.critic_max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.value_fn.parameters(), cfg.critic_max_grad_norm)
                self.critic_optimizer.step()
                losses.append(loss.detach())
        with torch.no_grad():
            residual = batch.returns - batch.values
            explained_variance = 1.0 - residual.var() / batch.returns.var().clamp_min(1e-12)
        return {"value_loss": torch.stack(losses).mean(), "explained_variance": explained_variance}

    def normalized_advantages(self, batch: Batch) -> torch.Tensor:
        adv = batch.advantages
        if self.config.normalize_advantages and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + self.config.advantage_norm_eps)
        return adv

    def mean_kl_from(self, obs: torch.Tensor, mean_old: torch.Tensor, log_std_old: torch.Tensor) -> torch.Tensor:
        """Mean KL(pi_old || pi_theta) over `obs`, differentiable in theta."""
        mean, log_std = self.policy(obs)
        return gaussian_kl(mean_old, log_std_old, mean, log_std).mean()

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "value_fn": self.value_fn.state_dict()}

    def parameters_finite(self) -> bool:
        params = list(self.policy.parameters()) + list(self.value_fn.parameters())
        return bool(torch.stack([torch.isfinite(p).all() for p in params]).all())

"""Lockstep updates: the S members of one algorithm (same settings, one seed each) updated as one
batched computation, each member's numbers bit-identical on the CPU to its update alone.

Each member is a full single-network algorithm object (:class:`~.base.OnPolicyAlgorithm`): it
owns the member's state (networks, optimiser moments, random-number generator) between updates,
and everything a lone run does with it (acting, value predictions, checkpoints, model.pt) works
on it unchanged. A :class:`LockstepAlgorithm` is built from the members, runs their updates as
stacked tensors (:mod:`.stacked`), and writes the results back: the networks after every update
(:meth:`store_networks`), the optimiser state when asked (:meth:`store_state`, before a
checkpoint or a change of members). Members draw their minibatch orders and Fisher subsamples
from their own generators, in the order they would alone.

An algorithm declares lockstep support by setting its twin on its own class
(``TRPO.lockstep = LockstepTRPO``, or ``lockstep = ...`` in the class body); a subclass that does not declare one of its own, such as a user's
variant of a built-in, runs one member per process, since its update is not the twin's.

Shapes: a member batch's [N, ...] tensors become [S, N, ...]; every per-member scalar is [S].
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch

from .base import OnPolicyAlgorithm, diagnostics_on_host
from .config import NaturalGradientConfig, OnPolicyConfig
from .networks import gaussian_kl
from .rollout import Batch
from .stacked import (
    MemberAdam,
    StackedGaussianPolicy,
    StackedValueNetwork,
    clip_member_grad_norms,
    member_rows,
)
from .timing import PhaseHook, untimed
from .trust_region import fisher_subsample


def lockstep_class(algorithm_cls: type[OnPolicyAlgorithm]) -> type[LockstepAlgorithm] | None:
    """The lockstep twin set on `algorithm_cls` itself (not inherited), or None."""
    twin = algorithm_cls.__dict__.get("lockstep")
    return twin if isinstance(twin, type) and issubclass(twin, LockstepAlgorithm) else None


def lockstep_unsupported_reason(algorithm_cls: type[OnPolicyAlgorithm]) -> str:
    """Why runs of `algorithm_cls` cannot share a worker in lockstep ("" when they can)."""
    if lockstep_class(algorithm_cls) is None:
        return f"{algorithm_cls.__module__}.{algorithm_cls.__qualname__} declares no lockstep update"
    return ""


def stack_batches(batches: list[Batch]) -> Batch:
    """Member batches of one size as one batch of [S, N, ...] tensors (copies, exact)."""
    sizes = {len(b) for b in batches}
    if len(sizes) != 1:
        raise ValueError(f"lockstep members collected batches of different sizes: {sorted(sizes)}")
    return Batch(**{name: torch.stack([getattr(b, name) for b in batches]) for name in Batch.__dataclass_fields__})


class LockstepAlgorithm:
    """Base of the lockstep twins. A twin sets ``Config`` as its single-network class does and
    implements :meth:`update_policy` on stacked tensors; the critic, the KL diagnostics and the
    bookkeeping are here, mirroring :class:`~.base.OnPolicyAlgorithm` operation for operation."""

    Config: ClassVar[type[OnPolicyConfig]] = OnPolicyConfig
    phase: PhaseHook = staticmethod(untimed)

    def __init__(self, members: Sequence[OnPolicyAlgorithm]):
        if not members:
            raise ValueError("a lockstep update needs at least one member")
        for member in members:
            if not (StackedGaussianPolicy.stackable(member.policy) and StackedValueNetwork.stackable(member.value_fn)):
                raise ValueError(
                    "lockstep updates need GaussianPolicy and ValueNetwork MLPs of Linear layers and "
                    f"tanh/relu/elu; {type(member).__name__} has {type(member.policy).__name__}"
                )
        first = members[0]
        self.members = list(members)
        self.config = first.config
        self.device = first.device
        self.generators = [m.generator for m in members]
        self.progress = first.progress
        self.policy = StackedGaussianPolicy([m.policy for m in members])
        self.value_fn = StackedValueNetwork([m.value_fn for m in members])
        self.policy_params = self.policy.ordered_parameters()
        self.value_params = self.value_fn.ordered_parameters()
        self._adams: list[tuple[MemberAdam, Any]] = []  # with how to find each member's own Adam
        self.critic_optimizer = self._member_adam(
            self.value_params, self.config.critic_lr, lambda m: (m.critic_optimizer, list(m.value_fn.parameters()))
        )
        # members whose own part of the last update raised (a twin whose policy step runs member
        # by member fills it): by place in the stack; the trainer ends them alone
        self.failed: dict[int, Exception] = {}

    @property
    def size(self) -> int:
        return len(self.members)

    def _member_adam(self, params, lr: float, member_optimizer, eps: float = 1e-8) -> MemberAdam:
        """A :class:`MemberAdam` over `params` holding each member's own Adam state."""
        optimizer = MemberAdam(params, lr, eps)
        self._adams.append((optimizer, member_optimizer))
        for k, member in enumerate(self.members):
            optimizer.load_member(k, *member_optimizer(member))
        return optimizer

    # --- moving state between the members and the stack ------------------------------------------
    def store_networks(self) -> None:
        """Write the stacked networks into the members' own (exact copies)."""
        self.policy.store_into([m.policy for m in self.members])
        self.value_fn.store_into([m.value_fn for m in self.members])

    def store_state(self) -> None:
        """Write everything back: networks, optimiser moments and step counts, progress."""
        self.store_networks()
        for optimizer, member_optimizer in self._adams:
            for k, member in enumerate(self.members):
                optimizer.store_member(k, *member_optimizer(member))
        for member in self.members:
            member.progress = self.progress

    # --- the part each algorithm defines -----------------------------------------------------------
    def update_policy(self, batch: Batch) -> dict[str, Any]:
        raise NotImplementedError

    # --- shared --------------------------------------------------------------------------------------
    def update(self, batch: Batch, progress: float) -> list[dict[str, float]]:
        """:meth:`OnPolicyAlgorithm.update` for every member of the stacked `batch`; one
        diagnostics dict per member, with the keys in the same order."""
        self.progress = progress
        self.failed = {}
        with torch.no_grad():
            mean_old, log_std_old = self.policy(batch.obs)
        with self.phase("policy"):
            diagnostics = dict(self.update_policy(batch))
        with torch.no_grad():
            mean_new, log_std_new = self.policy(batch.obs)
            kl = gaussian_kl(mean_old, log_std_old, mean_new, log_std_new)
            diagnostics["kl"] = kl.mean(-1)
            diagnostics["kl_max"] = kl.amax(-1)
            diagnostics["entropy"] = self.policy.entropy()
        with self.phase("critic"):
            diagnostics.update(self.update_critic(batch))
        values = diagnostics_on_host(diagnostics, self.device, (self.size,))
        return [dict(zip(diagnostics.keys(), (row[k] for row in values))) for k in range(self.size)]

    def annealed(self, lr: float) -> float:
        return lr * (1.0 - self.progress) if self.config.anneal_lr else lr

    def member_orders(self, size: int, members: list[int] | None = None) -> torch.Tensor:
        """A random order of range(size) per member, each from its own generator as alone;
        members left out (not in `members`) draw nothing and get the identity order."""
        drawing = range(self.size) if members is None else members
        orders = [torch.arange(size)] * self.size
        for k in drawing:
            orders[k] = torch.randperm(size, generator=self.generators[k])
        return torch.stack(orders).to(self.device)

    def shuffled_minibatches(self, size: int, minibatch_size: int, *tensors: torch.Tensor) -> Iterator[tuple]:
        """:meth:`OnPolicyAlgorithm.shuffled_minibatches` per member, on [S, N, ...] tensors."""
        if minibatch_size <= 0 or minibatch_size >= size:
            yield tensors
            return
        order = self.member_orders(size)
        gathered = [member_rows(t, order) for t in tensors]
        for start in range(0, size, minibatch_size):
            yield tuple(t[:, start : start + minibatch_size] for t in gathered)

    def update_critic(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        optimizer = self.critic_optimizer
        optimizer.lr = self.annealed(cfg.critic_lr)
        losses = []
        data = (batch.obs, batch.returns) + ((batch.values,) if cfg.value_clip > 0 else ())
        size = batch.obs.size(1)
        for _ in range(cfg.critic_epochs):
            for obs, returns, *old_values in self.shuffled_minibatches(size, cfg.critic_minibatch_size, *data):
                predicted = self.value_fn(obs)
                loss = (predicted - returns).pow(2)
                if cfg.value_clip > 0:
                    old = old_values[0]
                    clipped = old + (predicted - old).clamp(-cfg.value_clip, cfg.value_clip)
                    loss = torch.maximum(loss, (clipped - returns).pow(2))
                loss = loss.mean(-1)
                optimizer.zero_grad()
                loss.sum().backward()
                if cfg.critic_max_grad_norm > 0:
                    clip_member_grad_norms(self.value_params, cfg.critic_max_grad_norm)
                optimizer.step()
                losses.append(loss.detach())
        with torch.no_grad():
            residual = batch.returns - batch.values
            explained_variance = 1.0 - residual.var(-1) / batch.returns.var(-1).clamp_min(1e-12)
        # stacked along the last axis: a row-wise mean sums in the order of a lone 1-D mean
        return {"value_loss": torch.stack(losses, dim=1).mean(-1), "explained_variance": explained_variance}

    def normalized_advantages(self, batch: Batch) -> torch.Tensor:
        adv = batch.advantages
        if self.config.normalize_advantages and adv.size(-1) > 1:
            adv = (adv - adv.mean(-1, keepdim=True)) / (adv.std(-1, keepdim=True) + self.config.advantage_norm_eps)
        return adv

    def mean_kl_from(self, obs: torch.Tensor, mean_old: torch.Tensor, log_std_old: torch.Tensor) -> torch.Tensor:
        """Per member, the mean KL(pi_old || pi_theta) over its `obs`, differentiable in theta."""
        mean, log_std = self.policy(obs)
        return gaussian_kl(mean_old, log_std_old, mean, log_std).mean(-1)

    def parameters_finite(self) -> torch.Tensor:
        """Per member, whether all its parameters are finite ([S] bool)."""
        flags = [torch.isfinite(p).reshape(self.size, -1).all(1) for p in self.policy_params + self.value_params]
        return torch.stack(flags).all(0)


class LockstepNaturalGradient(LockstepAlgorithm):
    """Base of the natural-gradient twins (TRPO, NPG): the Fisher subsample, as alone."""

    Config: ClassVar[type[OnPolicyConfig]] = NaturalGradientConfig
    config: NaturalGradientConfig

    def fisher_mean_kl(self, batch: Batch, mean_old: torch.Tensor, log_std_old: torch.Tensor) -> torch.Tensor:
        """Per member, the mean KL whose Hessian the Fisher-vector products use: over the states
        of the subsample :func:`fisher_subsample` draws from the member's generator as alone (the
        whole batch at fvp_subsample 1, where indexing by arange would copy the same values)."""
        cfg = self.config
        if cfg.fvp_subsample >= 1.0:
            return self.mean_kl_from(batch.obs, mean_old, log_std_old)
        size = batch.obs.size(1)
        index = torch.stack(
            [fisher_subsample(size, cfg.fvp_subsample, g, self.device, cfg.fvp_subsample_mode) for g in self.generators]
        )
        return self.mean_kl_from(*(member_rows(t, index) for t in (batch.obs, mean_old, log_std_old)))

"""ACKTR's policy update: the K-FAC natural gradient inside a KL trust region (Wu et al., 2017).

Each update, with F_hat the block-diagonal K-FAC Fisher of the policy (algos/kfac.py:
A_l ⊗ S_l + eps I per linear layer of the mean network, Martens & Grosse 2015; exactly 2 I for
the log-std vector):

 1. Curvature: per linear layer, A_batch = E[a_bar a_bar^T] of its input (with a 1 for the bias)
    and S_batch = E[g g^T] of the gradient of log pi(a~|s) at its pre-activation, with a~ drawn
    from the current policy (the true Fisher, Martens & Grosse 2015). They enter running
    averages X <- d X + (1 - d) X_batch (d = stats_decay, or min(1 - 1/k, stats_decay) over the
    first batches); the eigenbases of A and S are recomputed every ``eigen_refresh_interval``
    updates.
 2. Direction: g = grad_theta E[log pi_theta(a|s) A(s, a)] and dtheta = F_hat^{-1} g, solved
    exactly in the joint eigenbasis of each layer.
 3. Trust region, the step-size rule of Wu et al. 2017 (as restated in the project's trust-region
    reference, which marks it as not yet checked against the paper's text):

        eta = min(eta_max, sqrt(2 delta / (dtheta^T F_hat dtheta))),    theta <- theta + eta dtheta,

    so that the quadratic KL model 1/2 step^T F_hat step of step = eta dtheta is at most delta,
    with equality when the radius binds. ``max_kl`` is delta in this (the paper's) convention;
    OpenAI Baselines' ``clip_kl`` bounds step^T F_hat step itself, so clip_kl = 2 delta and its
    default 0.01 is delta = 0.005 here.
 4. Momentum (off by default; Baselines uses m = 0.9): with the velocity
    v <- m v + (eta / eta_max) dtheta, the applied update is (1 - m) eta_max v. With m = 0 that is
    the step eta dtheta itself; with m > 0 it averages the recent steps, and a change of eta_max
    rescales the whole velocity at once, as Baselines' momentum optimiser does.
 5. eta_max adaptation (Baselines' continuous-control ACKTR, a second, measured trust region):
    after the update the mean KL(old || new) on the batch is measured; above 2 desired_kl,
    eta_max /= factor; below desired_kl / 2, eta_max *= factor; clamped to [lr_min, lr_max].

The critic is the shared one of algos/base.py (Adam on the squared error), not the paper's K-FAC
Gauss-Newton critic, so a comparison with TRPO, NPG or PPO isolates the policy update rule.

Deviations from Baselines' ``acktr_cont.py``, each a trbench choice: no momentum by default; the
policy sees the observation alone (Baselines feeds [obs, previous obs]); the eigendecompositions
are synchronous (Baselines computes them on a background queue, so its solves may use older
ones); there are no warm-up SGD iterations before the first
K-FAC step; the first batches' statistics are averaged with equal weights (stats_warm_start);
the rollout length, GAE lambda, networks and critic are trbench's shared defaults.

All state kept between updates (running factors, eigenbases, momentum velocity, eta_max, the
update count) lives on this object, so a checkpoint that pickles it resumes bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from trbench.base.errors import UsageError

from .base import OnPolicyAlgorithm
from .config import OnPolicyConfig, TrustRegionRadius
from .kfac import (
    KroneckerCurvature,
    PolicyBlocks,
    add_to_policy,
    as_blocks,
    batch_factors,
    fisher_quadratic,
    natural_direction,
    policy_tensors,
    sampled_backprop_gradients,
    trust_region_scale,
)
from .lockstep import LockstepAlgorithm
from .rollout import Batch
from .settings import setting

BASELINES = "OpenAI Baselines acktr/acktr_cont.py"


@dataclass(frozen=True)
class ACKTRConfig(OnPolicyConfig):
    """ACKTR's policy update; everything else (rollouts, GAE, critic) is the shared default."""

    # delta bounds the quadratic model of the mean KL(old || new), as TRPO's does the KL itself
    radius: ClassVar[TrustRegionRadius | None] = TrustRegionRadius("max_kl", "kl_old_new", "mean")

    learning_rate: float = setting(
        0.03,
        "initial eta_max, the upper bound on the multiplier eta of the K-FAC natural direction "
        "(adapted after every update while desired_kl > 0; times 1 - progress with anneal_lr)",
        source=f"{BASELINES} (stepsize 0.03)",
        gt=0,
    )
    max_kl: float = setting(
        0.005,
        "trust-region radius delta of the quadratic KL model: eta <= sqrt(2 delta / dtheta^T F_hat dtheta), "
        "so 1/2 step^T F_hat step <= delta; Baselines' clip_kl bounds step^T F_hat step, so clip_kl = 2 delta",
        source="OpenAI Baselines KfacOptimizer clip_kl=0.01 (its default, which acktr_cont.py keeps) = 2 * 0.005",
        gt=0,
    )
    kfac_damping: float = setting(
        1e-2,
        "eps added to every product of eigenvalues l_S,i l_A,j, so that each layer's solve inverts "
        "A ⊗ S + eps I exactly",
        source=f"{BASELINES} (KfacOptimizer epsilon=1e-2)",
        gt=0,
    )
    stats_decay: float = setting(
        0.99,
        "decay of the running averages of A and S, X <- decay X + (1 - decay) X_batch (for the first "
        "batches see stats_warm_start)",
        source=f"{BASELINES} (stats_decay=0.99)",
        ge=0,
        lt=1,
    )
    stats_warm_start: bool = setting(
        True,
        "average the first batches' statistics with equal weights until 1 - 1/k reaches stats_decay (k = "
        "batches seen); off: the first batch initialises the averages and each later one enters with "
        "weight 1 - stats_decay, so the first batch weighs most for about 1 / (1 - stats_decay) updates",
        source="on: Martens & Grosse 2015 (decay min(1 - 1/k, 0.95)); off: OpenAI Baselines KfacOptimizer "
        "(stats accumulated over cold_iter=1 iteration, then decayed)",
    )
    eigen_refresh_interval: int = setting(
        2,
        "recompute the eigendecompositions of A and S every this many updates, from the first; the "
        "solves in between use the last ones",
        source=f"{BASELINES} (kfac_update=2; there on a background queue, here synchronously)",
        ge=1,
    )
    momentum: float = setting(
        0.0,
        "momentum m: velocity v <- m v + (eta / eta_max) dtheta, applied update (1 - m) eta_max v "
        "(0 = apply each trust-region step eta dtheta as it is)",
        source="0: the step-size rule of Wu et al. 2017 applied as it is, so the trust region bounds the applied "
        f"update; {BASELINES} uses 0.9 (MomentumOptimizer with lr * (1 - 0.9)), which learned InvertedPendulum-v5 "
        "far more slowly here (return 210 against 1000 after 49k steps, seed 0)",
        ge=0,
        lt=1,
    )
    desired_kl: float = setting(
        0.002,
        "target of the measured mean KL(old || new) per update: above 2 desired_kl, eta_max /= lr_adapt_factor; "
        "below desired_kl / 2, eta_max *= lr_adapt_factor (0 = off: eta_max stays learning_rate)",
        source=f"{BASELINES} (desired_kl=0.002)",
        ge=0,
    )
    lr_adapt_factor: float = setting(
        1.5, "factor by which eta_max is divided or multiplied", source=f"{BASELINES} (1.5)", gt=1
    )
    lr_min: float = setting(1e-8, "lower clamp of the adapted eta_max", source=f"{BASELINES} (min_stepsize)", gt=0)
    lr_max: float = setting(1.0, "upper clamp of the adapted eta_max", source=f"{BASELINES} (max_stepsize)", gt=0)

    def check(self) -> None:
        super().check()
        if not self.lr_min <= self.learning_rate <= self.lr_max:
            raise UsageError(
                f"learning_rate: must lie in [lr_min, lr_max] = [{self.lr_min:g}, {self.lr_max:g}], "
                f"got {self.learning_rate:g}"
            )


def adapted_learning_rate(
    lr: float, measured_kl: float, desired_kl: float, factor: float, lr_min: float, lr_max: float
) -> tuple[float, int]:
    """The next eta_max from the KL the last update reached, and the direction it moved (-1, 0, 1).

    KL > 2 desired_kl divides by `factor`, KL < desired_kl / 2 multiplies by it (both strict),
    anything between leaves it; the result is clamped to [lr_min, lr_max]. desired_kl = 0 turns
    the adaptation off."""
    new = lr
    if desired_kl > 0 and measured_kl > 2 * desired_kl:
        new = max(lr_min, lr / factor)
    elif desired_kl > 0 and measured_kl < desired_kl / 2:
        new = min(lr_max, lr * factor)
    return new, (new > lr) - (new < lr)


class ACKTR(OnPolicyAlgorithm):
    name = "acktr"
    summary = "the K-FAC natural gradient (Kronecker-factored Fisher per layer) scaled into a quadratic-KL radius"
    paper = "Wu et al. 2017, Scalable trust-region method for deep RL using Kronecker-factored approximation (NeurIPS; arXiv 1708.05144)"
    Config = ACKTRConfig
    config: ACKTRConfig

    def __init__(self, config: ACKTRConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self.curvature = KroneckerCurvature()
        self.lr = config.learning_rate  # eta_max, adapted between updates
        self.updates = 0
        with torch.no_grad():
            self.velocity = PolicyBlocks.zeros_like(as_blocks(policy_tensors(self.policy)))

    def update_policy(self, batch: Batch) -> dict:
        cfg = self.config
        params = policy_tensors(self.policy)
        with self.phase("curvature"):
            traces, grads = sampled_backprop_gradients(self.policy, batch.obs, self.generator)
            self.curvature.observe(batch_factors(traces, grads), cfg.stats_decay, cfg.stats_warm_start)
            if self.updates % cfg.eigen_refresh_interval == 0:
                self.curvature.refresh()

        advantages = self.normalized_advantages(batch)
        with torch.no_grad():
            mean_old, log_std_old = self.policy(batch.obs)
        surrogate = (self.policy.log_prob(batch.obs, batch.actions) * advantages).mean()
        gradient = as_blocks(list(torch.autograd.grad(surrogate, params)))
        direction = natural_direction(gradient, self.curvature, cfg.kfac_damping)
        eta_max = self.annealed(self.lr)
        scale = trust_region_scale(fisher_quadratic(direction, self.curvature, cfg.kfac_damping), eta_max, cfg.max_kl)
        # an unusable step is exactly zero: eta = 0 times a NaN direction would still be NaN
        scaled = direction.map(lambda x: torch.where(scale.valid, scale.fraction * x, torch.zeros_like(x)))
        m = cfg.momentum
        self.velocity = self.velocity.combine(scaled, lambda v, s: m * v + s)
        applied = self.velocity.map(lambda v: (1.0 - m) * eta_max * v)
        add_to_policy(self.policy, applied)
        step = scaled.map(lambda s: eta_max * s)  # eta dtheta, the trust-region step

        with torch.no_grad():
            measured_kl = float(self.mean_kl_from(batch.obs, mean_old, log_std_old))
        self.lr, lr_change = adapted_learning_rate(
            self.lr, measured_kl, cfg.desired_kl, cfg.lr_adapt_factor, cfg.lr_min, cfg.lr_max
        )
        self.updates += 1
        min_eig_a, min_eig_s = self.curvature.min_eigenvalues()
        return {
            "predicted_kl": 0.5 * fisher_quadratic(step, self.curvature, cfg.kfac_damping),
            "applied_predicted_kl": 0.5 * fisher_quadratic(applied, self.curvature, cfg.kfac_damping),
            "kl_clip_active": scale.clip_active.double(),
            "step_scale": scale.eta,
            "update_skipped": (~scale.valid).double(),
            "acktr_lr": eta_max,
            "acktr_lr_change": float(lr_change),
            "kfac_min_eig_a": min_eig_a,
            "kfac_min_eig_s": min_eig_s,
            "kfac_damped_condition": self.curvature.max_damped_condition(cfg.kfac_damping),
        }


class LockstepACKTR(LockstepAlgorithm):
    """ACKTR's lockstep twin: the critic's Adam steps (most of a lone ACKTR update) run stacked, as
    for every twin; the K-FAC policy step runs member after member, each through its own
    :meth:`ACKTR.update_policy` on a fresh copy of its batch rows. Its running factors, float64
    eigendecompositions and solves are at most 65 x 65 per layer, and each member keeps them, its
    eta_max, velocity and update count on its own object, exactly as alone."""

    Config = ACKTRConfig

    def update_policy(self, batch: Batch) -> dict[str, torch.Tensor]:
        members: list[ACKTR] = self.members  # type: ignore[assignment]  # the twin of ACKTR only
        rows: list[dict | None] = []
        for k, member in enumerate(members):
            member.progress = self.progress  # annealing reads it, as in a lone update
            own = Batch(**{name: getattr(batch, name)[k].clone() for name in Batch.__dataclass_fields__})
            try:
                rows.append(member.update_policy(own))
            except Exception as exc:  # noqa: BLE001 - this member's step alone: it ends, the others go on
                self.failed[k] = exc
                rows.append(None)
        done = [row for row in rows if row is not None]
        self.policy.load_from([member.policy for member in members])
        missing = float("nan")  # the diagnostics of a failed member, which nobody reads
        return {
            key: torch.stack(
                [
                    torch.as_tensor(missing if row is None else row[key], dtype=torch.float64, device=self.device)
                    for row in rows
                ]
            )
            for key in (done[0] if done else ())
        }


ACKTR.lockstep = LockstepACKTR

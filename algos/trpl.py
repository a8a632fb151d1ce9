"""Differentiable trust-region projection layers, TRPL (Otto, Becker, Ngo, Ziesche and Neumann,
ICLR 2021; arXiv 2101.09207).

A layer after the policy network maps, per state s, the network's Gaussian pi_theta(.|s) =
N(mu, Sigma) to the closest Gaussian pi~ inside a trust region around the behaviour policy
pi_old(.|s) = N(mu_o, Sigma_o), with separate bounds on the mean and the covariance parts of a
dissimilarity d (algos/projections.py derives each projection):

    pi~ = argmin d(pi~, pi_theta)   s.t.   d_mean(mu~, mu_o) <= eps_mu,   d_cov(Sigma~, Sigma_o) <= eps_Sigma

with d the reverse KL (projected first), the Wasserstein-2 distance or the Frobenius norm
(``projection`` = kl | w2 | frobenius; the mean parts are Mahalanobis distances under Sigma_o,
with the KL's factor 1/2 for the KL layer). The policy is trained by Adam over minibatch epochs
(algos/minibatch_policy.py) on the importance-sampled surrogate of the *projected* policy minus
the trust-region regression penalty, which keeps the network itself near its projection:

    L(theta) = E[ (pi~_theta(a|s) / pi_old(a|s)) A ]  -  alpha E_s[ d_mean(mu_theta(s), sg[mu~(s)]) ]

Because the bounds hold at every state, the KL layer keeps KL(pi~ || pi_old) <= eps_mu + eps_Sigma
state by state, not on average as TRPO does (and in the other direction). The std is state
independent here, so its projection is one per update; after the epochs the std parameter is
overwritten with the projected std (the variant for a state-independent std, whose regression
term is then the mean part alone), and the next behaviour policy is the network's output. The
optional entropy control keeps H(pi~) above a bound that decays from the initial entropy
towards ``entropy_target`` per action dimension, beta_i = k H_t + (H_0 - k H_t) tau^(10 i / N)
(the exponential schedule of the authors' implementation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch

from .config import MinibatchPolicyConfig, TrustRegionRadius, setting
from .minibatch_policy import (
    LockstepMinibatchPolicyGradient,
    MinibatchPolicyGradient,
    PolicyMinibatch,
    SurrogateTerms,
)
from .networks import gaussian_log_prob
from .projections import (
    PROJECTION_KINDS,
    Projection,
    ProjectionKind,
    entropy_projection,
    project,
    trust_region_regression,
)
from .rollout import Batch

OTTO = "Otto et al. 2021"


@dataclass(frozen=True)
class TRPLConfig(MinibatchPolicyConfig):
    radius: ClassVar[TrustRegionRadius | None] = TrustRegionRadius("mean_bound", "kl_new_old", "per_state")

    projection: str = setting(
        "kl",
        "the dissimilarity of the projection layer: reverse KL, Wasserstein-2 (diagonal, commuting) or Frobenius",
        source=f"{OTTO}: the three layers",
        choices=PROJECTION_KINDS,
    )
    mean_bound: float = setting(
        0.03,
        "eps_mu: bound on the mean part at every state (KL layer: 1/2 the Mahalanobis distance under the "
        "old covariance; W2 and Frobenius: the Mahalanobis distance, precision scaled)",
        source=f"{OTTO}, the authors' layer default 0.03 (their W2 HalfCheetah example: 0.085)",
        gt=0,
    )
    cov_bound: float = setting(
        1e-3,
        "eps_Sigma: bound on the covariance part (KL layer: the KL's covariance part; W2: the precision-"
        "scaled squared distance of the stds; Frobenius: the squared Frobenius distance of the covariances)",
        source=f"{OTTO}, the authors' layer default 1e-3 (their W2 example: 5e-5)",
        gt=0,
    )
    precision_scaling: bool = setting(
        True,
        "W2 and Frobenius layers: measure the mean part (and W2's covariance part) in the old policy's "
        "precision rather than Euclidean (the KL layer always does)",
        source=f"{OTTO}, the authors' MuJoCo configuration",
    )
    regression_coef: float = setting(
        1.0,
        "alpha: weight of the trust-region regression penalty d_mean(mu_theta, sg[mu~])",
        source=f"{OTTO}, the authors' W2 example (trust_region_coeff 1.0)",
        ge=0,
    )
    entropy_control: bool = setting(
        False,
        "keep the projected policy's entropy above the decaying bound of entropy_target and entropy_temperature",
        source=f"{OTTO}: optional, off in the authors' W2 example",
    )
    entropy_target: float = setting(
        0.0,
        "H_t: the entropy bound's final value per action dimension",
        source=f"{OTTO}, the authors' implementation (target 0)",
    )
    entropy_temperature: float = setting(
        0.5,
        "tau of the bound's schedule beta_i = k H_t + (H_0 - k H_t) tau^(10 i / N)",
        source=f"{OTTO}, the authors' implementation (temperature 0.5)",
        gt=0,
        lt=1,
    )

    def nominal_kl(self) -> float | None:
        # the KL layer bounds both parts of KL(pi~ || pi_old), so their sum at every state
        return self.mean_bound + self.cov_bound if self.projection == "kl" else None

    def trust_region_record(self) -> dict[str, Any] | None:
        record = super().trust_region_record()
        if record is not None and self.projection != "kl":
            record["measure"] = "other"  # W2 and Frobenius bounds are not KLs
        return record


class ProjectedSurrogate:
    """TRPL's objective for one minibatch and the std write-back, shared by :class:`TRPL` and its
    lockstep twin (every projection reduces over the last axis only)."""

    config: TRPLConfig
    policy: Any  # GaussianPolicy alone, StackedGaussianPolicy in lockstep: the same calls
    progress: float
    needs_old_policy: ClassVar[bool] = True

    def entropy_bound(self, action_dims: int) -> float:
        cfg = self.config
        initial = action_dims * (cfg.log_std_init + 0.5 * math.log(2 * math.pi * math.e))
        final = action_dims * cfg.entropy_target
        return final + (initial - final) * cfg.entropy_temperature ** (10.0 * self.progress)

    @property
    def layer(self) -> ProjectionKind:
        return cast(ProjectionKind, self.config.projection)  # validated against PROJECTION_KINDS

    def projected(self, mean, log_std, old_mean, old_log_std) -> Projection:
        """The layer's output per state. The std is state independent, so its projection is
        solved once on the first state's row ([..., 1, k], the same values at every state)
        rather than at each of them: the KL layer's 1-D solve is the layer's main cost. On the CPU
        that solve runs on the host, one row per network (on Hopper-v5 it halves the policy
        update's time); elsewhere on the device, without a host read."""
        cfg = self.config
        result = project(
            self.layer,
            mean,
            log_std[..., :1, :],
            old_mean,
            old_log_std[..., :1, :],
            cfg.mean_bound,
            cfg.cov_bound,
            precision_scaling=cfg.precision_scaling,
            kl_solver="host" if mean.device.type == "cpu" else "tensor",
        )
        if cfg.entropy_control:
            result = result._replace(log_std=entropy_projection(result.log_std, self.entropy_bound(mean.shape[-1])))
        return result

    def surrogate(self, mb: PolicyMinibatch) -> SurrogateTerms:
        assert mb.old_mean is not None and mb.old_log_std is not None
        cfg = self.config
        mean, log_std = self.policy(mb.obs)
        layer = self.projected(mean, log_std, mb.old_mean, mb.old_log_std)
        log_ratio = gaussian_log_prob(layer.mean, layer.log_std, mb.actions) - mb.old_log_probs
        loss = -(log_ratio.exp() * mb.advantages).mean(-1)
        regression = trust_region_regression(
            mean, log_std, layer.mean, layer.log_std, self.layer, precision_scaling=cfg.precision_scaling
        ).mean(-1)
        if cfg.regression_coef > 0:
            loss = loss + cfg.regression_coef * regression
        with torch.no_grad():
            stats = {"mean_projected": layer.mean_active.float().mean(-1), "regression_loss": regression.detach()}
        return SurrogateTerms(loss, log_ratio, stats)

    def after_epochs(self, batch: Batch, old_mean, old_log_std) -> dict:
        with torch.no_grad():
            mean, log_std = self.policy(batch.obs)
            layer = self.projected(mean, log_std, old_mean, old_log_std)
            # the std is one per network: every state's projected std is the same
            self.policy.log_std.copy_(layer.log_std[..., 0, :])
            return {
                "mean_constraint": layer.mean_before.mean(-1),
                "mean_constraint_max": layer.mean_before.amax(-1),
                "mean_projected_after": layer.mean_active.float().mean(-1),
                "cov_constraint_before": layer.cov_before[..., 0],
                "cov_constraint": layer.cov_after[..., 0],
                "cov_projected": layer.cov_active[..., 0].float(),
            }


class TRPL(ProjectedSurrogate, MinibatchPolicyGradient):
    name = "trpl"
    summary = "per-state projections of mean and covariance onto a KL, W2 or Frobenius trust region, trained through"
    paper = (
        "Otto et al. 2021, Differentiable Trust Region Layers for Deep Reinforcement Learning (ICLR; arXiv 2101.09207)"
    )
    Config = TRPLConfig
    config: TRPLConfig


class LockstepTRPL(ProjectedSurrogate, LockstepMinibatchPolicyGradient):
    Config = TRPLConfig
    config: TRPLConfig


TRPL.lockstep = LockstepTRPL

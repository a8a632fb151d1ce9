"""PPO with the adaptive KL penalty (Schulman et al., 2017, section 4, eq. 8).

Each update maximises, by Adam over epochs of shuffled minibatches (algos/minibatch_policy.py),

    L_KLPEN(theta) = E[ r A  -  beta * KL(pi_old(.|s) || pi_theta(.|s)) ],   r = pi_theta(a|s) / pi_old(a|s)

with the KL in closed form for the diagonal Gaussians. After the epochs, d = E_s[KL(pi_old ||
pi_theta)] over the whole batch sets the next update's coefficient:

    d < d_targ / band    ->  beta <- beta / factor
    d > d_targ * band    ->  beta <- beta * factor
    otherwise               beta unchanged

with band 1.5 and factor 2 (the paper's heuristic values, to which it reports the method is not
sensitive) and beta_0 = 1 (Table 1's caption). d_targ plays the role of TRPO's delta, in TRPO's
KL direction, kept only on average and one update late. The paper leaves beta unbounded; the
bounds here are a guard that ordinary runs never reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .config import MinibatchPolicyConfig, TrustRegionRadius, setting
from .minibatch_policy import (
    LockstepMinibatchPolicyGradient,
    MinibatchPolicyGradient,
    PolicyMinibatch,
    SurrogateTerms,
)
from .networks import gaussian_kl, gaussian_log_prob
from .rollout import Batch


@dataclass(frozen=True)
class PPOKLConfig(MinibatchPolicyConfig):
    radius: ClassVar[TrustRegionRadius | None] = TrustRegionRadius("kl_target", "kl_old_new", "mean")

    kl_target: float = setting(
        0.01,
        "d_targ: the mean KL(old || new) per update that the penalty coefficient is adapted towards",
        source="Schulman et al. 2017 Table 1: searched {0.003, 0.01, 0.03}, 0.01 best",
        gt=0,
    )
    beta_init: float = setting(
        1.0, "initial KL penalty coefficient beta_0", source="Schulman et al. 2017, Table 1 caption", gt=0
    )
    beta_band: float = setting(
        1.5,
        "beta changes only when d leaves [d_targ / beta_band, d_targ * beta_band]",
        source="Schulman et al. 2017 section 4 (1.5)",
        gt=1,
    )
    beta_factor: float = setting(
        2.0, "factor beta is divided or multiplied by", source="Schulman et al. 2017 section 4 (2)", gt=1
    )
    beta_min: float = setting(
        1e-4,
        "floor of beta",
        source="trbench guard: the paper leaves beta unbounded; the floor and ceiling keep it finite in float32",
        gt=0,
    )
    beta_max: float = setting(1e4, "ceiling of beta", source="trbench guard, as beta_min", gt=0)


def next_beta(beta: torch.Tensor, mean_kl: torch.Tensor, cfg: PPOKLConfig) -> torch.Tensor:
    """The paper's rule for the next coefficient (strict inequalities), clamped to the guard."""
    halved = mean_kl < cfg.kl_target / cfg.beta_band
    doubled = mean_kl > cfg.kl_target * cfg.beta_band
    beta = torch.where(halved, beta / cfg.beta_factor, torch.where(doubled, beta * cfg.beta_factor, beta))
    return beta.clamp(cfg.beta_min, cfg.beta_max)


class KLPenaltySurrogate:
    """The penalised objective and the beta rule, shared by :class:`PPOKL` and its twin. The
    coefficient is a tensor ([] alone, [S] in lockstep) so that both multiply the same float32."""

    config: PPOKLConfig
    policy: Any  # GaussianPolicy alone, StackedGaussianPolicy in lockstep: the same calls
    beta: torch.Tensor
    needs_old_policy: ClassVar[bool] = True

    def surrogate(self, mb: PolicyMinibatch) -> SurrogateTerms:
        assert mb.old_mean is not None and mb.old_log_std is not None
        mean, log_std = self.policy(mb.obs)
        log_ratio = gaussian_log_prob(mean, log_std, mb.actions) - mb.old_log_probs
        kl = gaussian_kl(mb.old_mean, mb.old_log_std, mean, log_std).mean(-1)
        loss = -(log_ratio.exp() * mb.advantages).mean(-1) + self.beta * kl
        return SurrogateTerms(loss, log_ratio, {})

    def after_epochs(self, batch: Batch, old_mean, old_log_std) -> dict:
        with torch.no_grad():
            mean, log_std = self.policy(batch.obs)
            d = gaussian_kl(old_mean, old_log_std, mean, log_std).mean(-1)
            used = self.beta
            self.beta = next_beta(used, d, self.config)
        return {"beta": used, "kl_to_target": d / self.config.kl_target}


class PPOKL(KLPenaltySurrogate, MinibatchPolicyGradient):
    name = "ppo_kl"
    summary = "a KL(old || new) penalty whose coefficient is halved or doubled around a target KL"
    paper = "Schulman et al. 2017, Proximal Policy Optimization Algorithms (arXiv 1707.06347), section 4"
    Config = PPOKLConfig
    config: PPOKLConfig

    def __init__(self, config: PPOKLConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self.beta = torch.tensor(config.beta_init, dtype=torch.float32, device=self.device)


class LockstepPPOKL(KLPenaltySurrogate, LockstepMinibatchPolicyGradient):
    """PPO-KL for S members at once; each member's beta is its own."""

    Config = PPOKLConfig
    config: PPOKLConfig
    member_state = ("beta",)


PPOKL.lockstep = LockstepPPOKL

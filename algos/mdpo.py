"""On-policy Mirror Descent Policy Optimization (Tomar, Shani, Efroni and Ghavamzadeh, ICLR 2022;
arXiv 2005.09814, on-policy MDPO).

Each update approximately solves the mirror-descent step of iteration k by m full-batch Adam
steps from theta = theta_k on

    L_k(theta) = E[ r A ]  -  (1 / t_k) E_s[ KL(pi_theta(.|s) || pi_k(.|s)) ],   r = pi_theta(a|s) / pi_k(a|s)

with the KL in the mirror-descent (Bregman) direction, new policy first, which is the reverse of
TRPO's, in closed form for the diagonal Gaussians. The step size is annealed, t_k = 1 - k / K
over the K updates of the run (the official code's schedule), so the penalty 1/t_k grows from 1
and the region the method allows shrinks as training goes on. Since the KL's gradient vanishes
at theta_k, a single step (m = 1) is the vanilla policy gradient. There is no radius: MDPO never
enforces a KL, and t_0 is the knob that sizes its steps.
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
class MDPOConfig(MinibatchPolicyConfig):
    # the initial step size sizes the steps (a larger t allows more), but it bounds no quantity
    radius: ClassVar[TrustRegionRadius | None] = TrustRegionRadius("step_size_init", "other", "mean")

    epochs: int = setting(
        10,
        "m: full-batch gradient steps per update on the mirror-descent objective",
        source="Tomar et al. 2022 (m = 10 best across tasks, m = 1 worse)",
        ge=1,
    )
    minibatch_size: int = setting(
        0,
        "policy minibatch size (0 = the full batch, as MDPO takes every step on the whole batch)",
        source="Tomar et al. 2022 on-policy MDPO: full-batch steps",
        ge=0,
    )
    step_size_init: float = setting(
        1.0,
        "t_0: the mirror-descent step size at the start, 1/t_k the KL coefficient",
        source="Tomar et al. 2022",
        gt=0,
    )
    anneal_step_size: bool = setting(
        True,
        "anneal t_k = t_0 (1 - k / K) over the run's K updates (false: t_k = t_0 throughout)",
        source="Tomar et al. 2022 and its official code (t_k = 1 - k / K)",
    )


class MirrorDescentSurrogate:
    """MDPO's objective for one minibatch, shared by :class:`MDPO` and its twin."""

    config: MDPOConfig
    policy: Any  # GaussianPolicy alone, StackedGaussianPolicy in lockstep: the same calls
    progress: float
    needs_old_policy: ClassVar[bool] = True

    def kl_coefficient(self) -> float:
        """1 / t_k, with t_k = t_0 (1 - k / K); `progress` is k / K, below 1 at every update."""
        cfg = self.config
        step_size = cfg.step_size_init * ((1.0 - self.progress) if cfg.anneal_step_size else 1.0)
        return 1.0 / step_size

    def surrogate(self, mb: PolicyMinibatch) -> SurrogateTerms:
        assert mb.old_mean is not None and mb.old_log_std is not None
        mean, log_std = self.policy(mb.obs)
        log_ratio = gaussian_log_prob(mean, log_std, mb.actions) - mb.old_log_probs
        reverse_kl = gaussian_kl(mean, log_std, mb.old_mean, mb.old_log_std).mean(-1)
        loss = -(log_ratio.exp() * mb.advantages).mean(-1) + self.kl_coefficient() * reverse_kl
        return SurrogateTerms(loss, log_ratio, {})

    def after_epochs(self, batch: Batch, old_mean, old_log_std) -> dict:
        with torch.no_grad():
            mean, log_std = self.policy(batch.obs)
            reverse = gaussian_kl(mean, log_std, old_mean, old_log_std)
        return {
            "kl_coef": reverse.new_full(reverse.shape[:-1], self.kl_coefficient()),  # [] alone, [S] in lockstep
            "reverse_kl": reverse.mean(-1),
            "reverse_kl_max": reverse.amax(-1),
        }


class MDPO(MirrorDescentSurrogate, MinibatchPolicyGradient):
    name = "mdpo"
    summary = "mirror descent: full-batch steps on the surrogate minus an annealed (1/t_k) reverse-KL penalty"
    paper = "Tomar et al. 2022, Mirror Descent Policy Optimization (ICLR; arXiv 2005.09814)"
    Config = MDPOConfig
    config: MDPOConfig


class LockstepMDPO(MirrorDescentSurrogate, LockstepMinibatchPolicyGradient):
    Config = MDPOConfig
    config: MDPOConfig


MDPO.lockstep = LockstepMDPO

"""A KL-penalty policy update (Schulman et al., 2017, Section 4), written outside trbench.

    maximise  E[ r(theta) A ] - beta * mean KL(pi_old || pi_theta)

with beta adapted after each update: halved when the KL came out below kl_target / 1.5,
doubled when above kl_target * 1.5. Use it by import path:

    PYTHONPATH=examples trbench train --algo kl_penalty:AdaptiveKLPenalty --env Hopper-v5 --steps 100000 --out runs/klpen
"""

from dataclasses import dataclass

import torch

from trbench.algos.base import OnPolicyAlgorithm
from trbench.algos.config import OnPolicyConfig, setting


@dataclass(frozen=True)
class KLPenaltyConfig(OnPolicyConfig):
    kl_target: float = setting(0.01, "target mean KL per update", source="Schulman et al. 2017, Table 1", gt=0)
    initial_beta: float = setting(1.0, "initial penalty coefficient", source="Schulman et al. 2017", gt=0)
    policy_lr: float = setting(3e-4, "Adam learning rate of the policy", gt=0)
    epochs: int = setting(10, "passes over the batch per update", ge=1)
    minibatch_size: int = setting(64, "policy minibatch size", ge=1)


class AdaptiveKLPenalty(OnPolicyAlgorithm):
    name = "kl_penalty"
    Config = KLPenaltyConfig
    config: KLPenaltyConfig

    def __init__(self, config: KLPenaltyConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self.beta = config.initial_beta
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.policy_lr)

    def update_policy(self, batch):
        cfg = self.config
        advantages = self.normalized_advantages(batch)
        with torch.no_grad():
            mean_old, log_std_old = self.policy(batch.obs)
        for _ in range(cfg.epochs):
            for idx in self.minibatches(len(batch), cfg.minibatch_size):
                ratio = torch.exp(self.policy.log_prob(batch.obs[idx], batch.actions[idx]) - batch.log_probs[idx])
                kl = self.mean_kl_from(batch.obs[idx], mean_old[idx], log_std_old[idx])
                loss = -(ratio * advantages[idx]).mean() + self.beta * kl
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
        with torch.no_grad():
            kl = float(self.mean_kl_from(batch.obs, mean_old, log_std_old))
        if kl < cfg.kl_target / 1.5:
            self.beta /= 2
        elif kl > cfg.kl_target * 1.5:
            self.beta *= 2
        return {"kl_penalty_beta": self.beta}

"""Deliberately broken algorithms, importable as plugins.broken:NAME, for failure-path tests."""

import torch

from trbench.algos.base import OnPolicyAlgorithm
from trbench.algos.config import VPGConfig


class NaNPolicy(OnPolicyAlgorithm):
    Config = VPGConfig

    def update_policy(self, batch):
        with torch.no_grad():
            self.policy.log_std.fill_(float("nan"))
        return {}


class RaisingUpdate(OnPolicyAlgorithm):
    Config = VPGConfig

    def update_policy(self, batch):
        raise RuntimeError("update exploded on purpose")

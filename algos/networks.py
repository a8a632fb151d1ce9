"""Gaussian MLP policy with a state-independent log-std, and the value network."""

from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def mlp(sizes: list[int], activation: str, init: str, output_gain: float) -> nn.Sequential:
    """Linear layers with `activation` between them (none after the last).

    With ``init="orthogonal"`` hidden layers get gain sqrt(2) and the output layer `output_gain`,
    biases zero (the scheme of Tianshou and SB3); ``"default"`` keeps PyTorch's initialisation.
    """
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(fan_in, fan_out)
        is_output = i == len(sizes) - 2
        if init == "orthogonal":
            nn.init.orthogonal_(linear.weight, gain=output_gain if is_output else math.sqrt(2))
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not is_output:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class GaussianPolicy(nn.Module):
    """pi(a|s) = N(mu(s), diag(exp(log_std))^2), with log_std a free parameter vector."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...],
        activation: str,
        init: str,
        output_gain: float,
        log_std_init: float,
    ):
        super().__init__()
        self.mean_net = mlp([obs_dim, *hidden, act_dim], activation, init, output_gain)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean_net(obs)
        # a fresh tensor, not an expand() view of the parameter: callers keep (mean, log_std) as
        # the "old" policy while the parameter is updated in place, and a view would follow it
        return mean, self.log_std + torch.zeros_like(mean)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = self(obs)
        return gaussian_log_prob(mean, log_std, actions)

    def entropy(self) -> torch.Tensor:
        """Entropy of the action distribution (the same in every state)."""
        return (self.log_std + 0.5 * math.log(2 * math.pi * math.e)).sum()

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None, deterministic: bool = False):
        """Sample actions (or take the mean); returns (actions, log-probabilities)."""
        mean, log_std = self(obs)
        if deterministic:
            return mean, gaussian_log_prob(mean, log_std, mean)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        actions = mean + noise * log_std.exp()
        return actions, gaussian_log_prob(mean, log_std, actions)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Log-density of a diagonal Gaussian, summed over action dimensions."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def gaussian_kl(
    mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor, log_std_q: torch.Tensor
) -> torch.Tensor:
    """KL(p || q) between diagonal Gaussians, per state (summed over action dimensions)."""
    var_p = torch.exp(2 * log_std_p)
    var_q = torch.exp(2 * log_std_q)
    return (log_std_q - log_std_p + (var_p + (mean_p - mean_q).pow(2)) / (2 * var_q) - 0.5).sum(-1)


class ValueNetwork(nn.Module):
    def __init__(self, obs_dim: int, hidden: tuple[int, ...], activation: str, init: str):
        super().__init__()
        self.net = mlp([obs_dim, *hidden, 1], activation, init, output_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)

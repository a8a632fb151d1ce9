"""Kronecker-factored curvature (K-FAC, Martens & Grosse 2015) for the Gaussian MLP policy.

For a fully connected layer s = W_bar a_bar (W_bar = [W | b], a_bar = [a; 1] the layer's input with a
1 appended for the bias) the gradient of log pi(a~|s_env) is g a_bar^T, where g is the gradient at
the pre-activation s. With column-stacked vec, vec(g a_bar^T) = a_bar ⊗ g, so the layer's Fisher block

    F_l = E[(a_bar a_bar^T) ⊗ (g g^T)]  ≈  E[a_bar a_bar^T] ⊗ E[g g^T]  =  A ⊗ S

assumes the activations independent of the backpropagated gradients, and blocks of different
layers are treated as independent (block diagonal), as in Martens & Grosse 2015. The action a~ is
*sampled from the current policy*, so S estimates the true Fisher, not the empirical one built
from given targets (Martens & Grosse 2015; Wu et al. 2017 likewise sample from the policy).

With A = Q_A diag(l_A) Q_A^T and S = Q_S diag(l_S) Q_S^T, the damped block
A ⊗ S + eps I = (Q_A ⊗ Q_S) diag(l_A ⊗ l_S + eps) (Q_A ⊗ Q_S)^T, so

    (A ⊗ S + eps I)^{-1} vec(G) = vec( Q_S [ (Q_S^T G Q_A) / (l_S l_A^T + eps) ] Q_A^T )

exactly, with an elementwise division (the eigenbasis damping of OpenAI Baselines' ACKTR; without
damping it is vec(S^{-1} G A^{-1})). The log-std vector is no layer: for a diagonal Gaussian the
Fisher with respect to log sigma is exactly 2 I, and its cross terms with the mean's parameters
vanish in expectation, so that block is used exactly, undamped.

Everything here is a pure function of its inputs apart from :class:`KroneckerCurvature`, the
running averages and eigenbases an algorithm keeps between updates. Factors, eigenbases and
solves are held in float64 whatever the network's dtype (they are at most 65 x 65 for a 64-64
policy); the random actions come from the caller's generator, drawn on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .networks import GaussianPolicy, gaussian_log_prob

# d^2 KL / d(log sigma_i) d(log sigma_j) at sigma_old, for N(mu, diag(sigma^2)): 2 delta_ij
LOG_STD_FISHER = 2.0
FACTOR_DTYPE = torch.float64


# --- the layers and their statistics ---------------------------------------------------------------
def linear_layers(mean_net: nn.Sequential) -> list[nn.Linear]:
    """The nn.Linear layers of the mean network, in order; every other module must be a
    parameter-free elementwise activation, which K-FAC's per-layer blocks cover."""
    layers = []
    for module in mean_net:
        if isinstance(module, nn.Linear):
            layers.append(module)
        elif next(module.parameters(), None) is not None:
            raise ValueError(f"K-FAC covers nn.Linear layers only; {type(module).__name__} has parameters")
    return layers


@dataclass
class LayerTrace:
    """One nn.Linear layer during a forward pass over a batch."""

    inputs: torch.Tensor  # [N, in + 1]: the layer's input with a 1 appended (a_bar), detached
    preactivation: torch.Tensor  # [N, out]: s = W a + b, still in the autograd graph


def traced_forward(mean_net: nn.Sequential, obs: torch.Tensor) -> tuple[torch.Tensor, list[LayerTrace]]:
    """The mean network's output on `obs`, recomputed module by module so that each linear
    layer's input and pre-activation are at hand (the same operations as ``mean_net(obs)``)."""
    traces = []
    x = obs
    for module in mean_net:
        if isinstance(module, nn.Linear):
            ones = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
            s = module(x)
            traces.append(LayerTrace(inputs=torch.cat([x.detach(), ones], dim=1), preactivation=s))
            x = s
        else:
            x = module(x)
    return x, traces


def sampled_backprop_gradients(
    policy: GaussianPolicy, obs: torch.Tensor, generator: torch.Generator
) -> tuple[list[LayerTrace], list[torch.Tensor]]:
    """Per state, the layer inputs a_bar and the gradients g = d log pi(a~|s) / d s at each layer's
    pre-activation, for one action a~ ~ pi(.|s) per state drawn from `generator` (on the CPU).

    The states are independent, so the gradient of the summed log-probability with respect to
    the [N, out] pre-activations holds each state's own g in its row."""
    mean, traces = traced_forward(policy.mean_net, obs)
    log_std = policy.log_std.detach()
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
    sampled_actions = mean.detach() + noise * log_std.exp()
    log_prob = gaussian_log_prob(mean, log_std, sampled_actions).sum()
    grads = torch.autograd.grad(log_prob, [t.preactivation for t in traces])
    return traces, [g.detach() for g in grads]


def second_moment(rows: torch.Tensor) -> torch.Tensor:
    """E[x x^T] over the rows of an [N, d] tensor, in float64."""
    x = rows.to(FACTOR_DTYPE)
    return x.T @ x / x.shape[0]


@dataclass
class KroneckerFactors:
    """One layer's factors: A = E[a_bar a_bar^T] ([in+1, in+1]) and S = E[g g^T] ([out, out])."""

    A: torch.Tensor
    S: torch.Tensor


def batch_factors(traces: list[LayerTrace], grads: list[torch.Tensor]) -> list[KroneckerFactors]:
    return [KroneckerFactors(second_moment(t.inputs), second_moment(g)) for t, g in zip(traces, grads)]


def running_average(old: torch.Tensor, new: torch.Tensor, decay: float) -> torch.Tensor:
    """X <- decay X + (1 - decay) X_batch."""
    return decay * old + (1.0 - decay) * new


# --- the eigenbasis and the damped solve -------------------------------------------------------------
@dataclass
class Eigenbasis:
    """A = Q_A diag(l_A) Q_A^T and S = Q_S diag(l_S) Q_S^T for one layer. Eigenvalues below zero
    (round-off of these positive semi-definite matrices) are set to zero."""

    q_a: torch.Tensor
    l_a: torch.Tensor
    q_s: torch.Tensor
    l_s: torch.Tensor

    @classmethod
    def of(cls, factors: KroneckerFactors) -> Eigenbasis:
        l_a, q_a = torch.linalg.eigh(factors.A)
        l_s, q_s = torch.linalg.eigh(factors.S)
        return cls(q_a=q_a, l_a=l_a.clamp_min(0.0), q_s=q_s, l_s=l_s.clamp_min(0.0))

    def damped_eigenvalues(self, damping: float) -> torch.Tensor:
        """[out, in+1]: entry (i, j) is l_S,i l_A,j + eps, the eigenvalue of A ⊗ S + eps I whose
        eigenvector is vec(q_S,i q_A,j^T)."""
        return torch.outer(self.l_s, self.l_a) + damping

    def solve(self, G: torch.Tensor, damping: float) -> torch.Tensor:
        """X with vec(X) = (A ⊗ S + eps I)^{-1} vec(G), for G of shape [out, in+1]."""
        rotated = self.q_s.T @ G @ self.q_a
        return self.q_s @ (rotated / self.damped_eigenvalues(damping)) @ self.q_a.T

    def quadratic(self, X: torch.Tensor, damping: float) -> torch.Tensor:
        """vec(X)^T (A ⊗ S + eps I) vec(X)."""
        rotated = self.q_s.T @ X @ self.q_a
        return (rotated.pow(2) * self.damped_eigenvalues(damping)).sum()

    def damped_condition(self, damping: float) -> torch.Tensor:
        """Condition number of A ⊗ S + eps I: its largest eigenvalue over its smallest."""
        eigenvalues = self.damped_eigenvalues(damping)
        return eigenvalues.max() / eigenvalues.min()


class KroneckerCurvature:
    """The running factors A and S of every layer, and the eigenbases the solves use.

    The k-th batch's statistics enter as X <- d X + (1 - d) X_batch. With `warm_start`,
    d = min(1 - 1/k, decay): the first batches are averaged with equal weights until 1 - 1/k
    reaches `decay`, so no early batch outweighs later ones (the schedule of Martens & Grosse
    2015, there with decay 0.95); without it, the first batch initialises the averages and every
    later one enters with d = decay. The eigenbases are recomputed only when :meth:`refresh` is
    called, so between refreshes the solves use the last ones."""

    def __init__(self) -> None:
        self.factors: list[KroneckerFactors] = []
        self.eigenbases: list[Eigenbasis] = []
        self.batches_seen = 0

    def observe(self, batch: list[KroneckerFactors], decay: float, warm_start: bool = True) -> None:
        self.batches_seen += 1
        if not self.factors:
            self.factors = [KroneckerFactors(f.A.clone(), f.S.clone()) for f in batch]
            return
        d = min(1.0 - 1.0 / self.batches_seen, decay) if warm_start else decay
        self.factors = [
            KroneckerFactors(running_average(old.A, new.A, d), running_average(old.S, new.S, d))
            for old, new in zip(self.factors, batch)
        ]

    def refresh(self) -> None:
        self.eigenbases = [Eigenbasis.of(f) for f in self.factors]

    def min_eigenvalues(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The smallest eigenvalue of any layer's A, and of any layer's S, in the bases in use."""
        return (
            torch.stack([e.l_a.min() for e in self.eigenbases]).min(),
            torch.stack([e.l_s.min() for e in self.eigenbases]).min(),
        )

    def max_damped_condition(self, damping: float) -> torch.Tensor:
        return torch.stack([e.damped_condition(damping) for e in self.eigenbases]).max()


# --- the policy's parameters as K-FAC blocks -----------------------------------------------------------
@dataclass
class PolicyBlocks:
    """The policy's parameters as K-FAC sees them: the log-std vector and, per linear layer,
    the matrix [W | b] of shape [out, in+1]; the same layout serves for gradients and steps."""

    log_std: torch.Tensor
    layers: list[torch.Tensor]

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> PolicyBlocks:
        return PolicyBlocks(fn(self.log_std), [fn(x) for x in self.layers])

    def combine(self, other: PolicyBlocks, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> PolicyBlocks:
        return PolicyBlocks(fn(self.log_std, other.log_std), [fn(x, y) for x, y in zip(self.layers, other.layers)])

    @classmethod
    def zeros_like(cls, blocks: PolicyBlocks) -> PolicyBlocks:
        return blocks.map(torch.zeros_like)


def policy_tensors(policy: GaussianPolicy) -> list[torch.Tensor]:
    """[log_std, W_1, b_1, W_2, b_2, ...]; checked to be every parameter of the policy."""
    layers = linear_layers(policy.mean_net)
    tensors = [policy.log_std] + [p for layer in layers for p in (layer.weight, layer.bias)]
    if {id(p) for p in tensors} != {id(p) for p in policy.parameters()}:
        raise ValueError("K-FAC needs a policy whose parameters are log_std and its mean's linear layers")
    return tensors


def as_blocks(tensors: list[torch.Tensor]) -> PolicyBlocks:
    """Gradients or values laid out as :func:`policy_tensors`, as float64 blocks."""
    weights, biases = tensors[1::2], tensors[2::2]
    layers = [torch.cat([w, b[:, None]], dim=1).to(FACTOR_DTYPE) for w, b in zip(weights, biases)]
    return PolicyBlocks(tensors[0].to(FACTOR_DTYPE), layers)


def add_to_policy(policy: GaussianPolicy, step: PolicyBlocks) -> None:
    """theta <- theta + step, in the parameters' own dtype."""
    params = policy_tensors(policy)
    with torch.no_grad():
        params[0].add_(step.log_std.to(params[0].dtype))
        for weight, bias, block in zip(params[1::2], params[2::2], step.layers):
            weight.add_(block[:, :-1].to(weight.dtype))
            bias.add_(block[:, -1].to(bias.dtype))


# --- the natural step and the trust region -------------------------------------------------------------
def natural_direction(gradient: PolicyBlocks, curvature: KroneckerCurvature, damping: float) -> PolicyBlocks:
    """F_hat^{-1} grad: the damped Kronecker solve per layer, grad / 2 for the log-std."""
    layers = [basis.solve(G, damping) for basis, G in zip(curvature.eigenbases, gradient.layers)]
    return PolicyBlocks(gradient.log_std / LOG_STD_FISHER, layers)


def fisher_quadratic(step: PolicyBlocks, curvature: KroneckerCurvature, damping: float) -> torch.Tensor:
    """step^T F_hat step for the block-diagonal F_hat = diag(2 I, A_1 ⊗ S_1 + eps I, ...)."""
    total = LOG_STD_FISHER * step.log_std.pow(2).sum()
    for basis, X in zip(curvature.eigenbases, step.layers):
        total = total + basis.quadratic(X, damping)
    return total


@dataclass
class TrustRegionScale:
    eta: torch.Tensor  # the multiplier of the natural direction; 0 when the step is unusable
    fraction: torch.Tensor  # eta / eta_max, in [0, 1]
    clip_active: torch.Tensor  # the radius, not eta_max, set eta
    valid: torch.Tensor  # dtheta^T F_hat dtheta finite and positive


def trust_region_scale(direction_quadratic: torch.Tensor, eta_max: float, max_kl: float) -> TrustRegionScale:
    """eta = min(eta_max, sqrt(2 delta / dtheta^T F_hat dtheta)), so that the step eta dtheta has
    quadratic KL 1/2 eta^2 dtheta^T F_hat dtheta <= delta, with equality when the radius binds.

    A curvature that is not finite and positive (a zero gradient, a broken graph) makes the step
    unusable: eta is then 0, not NaN."""
    valid = torch.isfinite(direction_quadratic) & (direction_quadratic > 0)
    safe = torch.where(valid, direction_quadratic, torch.ones_like(direction_quadratic))
    radius_eta = torch.sqrt(2.0 * max_kl / safe)
    clip_active = valid & (radius_eta < eta_max)
    eta = torch.where(valid, torch.clamp(radius_eta, max=eta_max), torch.zeros_like(safe))
    return TrustRegionScale(eta=eta, fraction=eta / eta_max, clip_active=clip_active, valid=valid)

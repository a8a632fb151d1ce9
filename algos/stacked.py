"""Stacked ensembles: S independent members of one network held as one set of tensors, so that
one batched kernel does the work of S small ones.

A member's weight is slice k of a [S, out, in] tensor and its inputs slice k of [S, N, in]. On the
CPU every member computes bit for bit what the same network computes alone, which is what lets a
lockstep run reproduce single-seed runs exactly. That rests on four facts, each checked by
``tests/test_lockstep.py``:

* Slice k of ``torch.bmm`` / ``torch.baddbmm`` is the ``torch.mm`` / ``torch.addmm`` of slice k
  with the same strides (the CPU kernel splits the batch and calls the same GEMM per member), except
  below :data:`NAIVE_BATCHED_PRODUCT`, where the batched kernel runs a naive loop, and for a
  one-row or one-column result (a value network's output layer, a one-dimensional action), which
  mm hands to a matrix-vector kernel; there the members are computed one by one with mm/addmm.
* PyTorch's backward of ``mm`` picks its GEMM by the operands' strides (a column-major operand
  gets its gradient computed transposed). :class:`_MemberMatmul` and :class:`_MemberLinear` make
  the same choices per member, and create their gradients in the same order as ``addmm``'s
  backward, so first- and second-order gradients (the Fisher-vector products of TRPO) accumulate
  in the same order as alone.
* Elementwise operations, and reductions along the last or a middle dimension, give each member
  what they give it alone. Dot products do not: a BLAS ``dot`` sums in another order than any
  batched reduction, so :func:`member_dot` calls ``torch.dot`` per member.
* BLAS dot and matrix-vector kernels sum in an order that depends on where a vector starts
  relative to a 64-byte boundary. Where members are computed one by one, each member's slice is
  placed at member 0's offset from that boundary (the offset a lone run's tensor has).

Off the CPU the batched kernels are used throughout; results there are close to, not identical
with, single-member runs (other kernels sum in other orders).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from .networks import GaussianPolicy, ValueNetwork, gaussian_log_prob

# torch's CPU bmm/baddbmm loop naively when contraction * rows * columns is below this, where mm
# calls BLAS (aten/src/ATen/native/LinearAlgebra.cpp, bmm_out_or_baddbmm_)
NAIVE_BATCHED_PRODUCT = 400
ACTIVATION_TYPES = (nn.Tanh, nn.ReLU, nn.ELU)
ALIGNMENT_BYTES = 64  # what torch's CPU allocator aligns every new tensor to


def _exact_per_member(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the members must be multiplied one by one to compute what mm computes alone: on
    the CPU, below the naive-loop size, and for a one-row or one-column result, which mm hands
    to a matrix-vector kernel that sums in another order than the batched GEMM."""
    if a.device.type != "cpu":
        return False
    rows, inner, columns = a.size(1), a.size(2), b.size(2)
    return rows == 1 or columns == 1 or rows * inner * columns < NAIVE_BATCHED_PRODUCT


def _aligned_like(t: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Member slice `t`, starting at the same offset from an alignment boundary as `reference`
    (member 0's slice, which sits where a lone run's tensor would): the matrix-vector kernels sum
    in an order that depends on where a vector starts. A copy (same strides) when it does not."""
    wanted = reference.data_ptr() % ALIGNMENT_BYTES
    if t.data_ptr() % ALIGNMENT_BYTES == wanted:
        return t
    span = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
    start = wanted // t.element_size()
    buffer = torch.empty(start + span, dtype=t.dtype, device=t.device)
    copy = buffer.as_strided(t.shape, t.stride(), start)
    copy.copy_(t)
    return copy


def _members(t: torch.Tensor) -> list[torch.Tensor]:
    return [_aligned_like(t[k], t[0]) for k in range(t.size(0))]


def _bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if _exact_per_member(a, b):
        return torch.stack([torch.mm(x, y) for x, y in zip(_members(a), _members(b))])
    return torch.bmm(a, b)


def _baddbmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if _exact_per_member(a, b):
        return torch.stack([torch.addmm(c, x, y) for c, x, y in zip(_members(bias), _members(a), _members(b))])
    return torch.baddbmm(bias.unsqueeze(1), a, b)


def _column_major(t: torch.Tensor) -> bool:
    """Whether each [n, k] slice of `t` is column-major, the test mm's backward makes."""
    return t.stride(1) == 1 and t.stride(2) == t.size(1)


def _grad_of_left(grad: torch.Tensor, right: torch.Tensor, left_column_major: bool) -> torch.Tensor:
    # mm_mat1_backward: a column-major left operand gets its gradient as (right grad^T)^T
    if left_column_major:
        return _MemberMatmul.apply(right, grad.transpose(1, 2)).transpose(1, 2)
    return _MemberMatmul.apply(grad, right.transpose(1, 2))


def _grad_of_right(grad: torch.Tensor, left: torch.Tensor, right_column_major: bool) -> torch.Tensor:
    # mm_mat2_backward: a column-major right operand (a weight used as weight.t()) gets grad^T left
    if right_column_major:
        return _MemberMatmul.apply(grad.transpose(1, 2), left).transpose(1, 2)
    return _MemberMatmul.apply(left.transpose(1, 2), grad)


class _MemberMatmul(torch.autograd.Function):
    """Per-member matrix product [S, n, k] x [S, k, m], differentiable any number of times with
    the gradient formulas, and the stride-dependent choices, of ``torch.mm``."""

    @staticmethod
    def forward(ctx, left, right):
        ctx.save_for_backward(left, right)
        ctx.column_major = (_column_major(left), _column_major(right))
        return _bmm(left, right)

    @staticmethod
    def backward(ctx, grad):
        left, right = ctx.saved_tensors
        grad_left = _grad_of_left(grad, right, ctx.column_major[0]) if ctx.needs_input_grad[0] else None
        grad_right = _grad_of_right(grad, left, ctx.column_major[1]) if ctx.needs_input_grad[1] else None
        return grad_left, grad_right


class _MemberLinear(torch.autograd.Function):
    """Per-member ``addmm(bias, x, weight.t())``, the product ``nn.Linear`` computes, with
    ``addmm``'s gradients: input and weight first, the bias (the broadcast's sum over rows) last."""

    @staticmethod
    def forward(ctx, bias, x, weight_t):
        ctx.save_for_backward(x, weight_t)
        ctx.column_major = (_column_major(x), _column_major(weight_t))
        return _baddbmm(bias, x, weight_t)

    @staticmethod
    def backward(ctx, grad):
        x, weight_t = ctx.saved_tensors
        grad_x = _grad_of_left(grad, weight_t, ctx.column_major[0]) if ctx.needs_input_grad[1] else None
        grad_w = _grad_of_right(grad, x, ctx.column_major[1]) if ctx.needs_input_grad[2] else None
        grad_bias = grad.sum(1) if ctx.needs_input_grad[0] else None
        return grad_bias, grad_x, grad_w


def stackable_mlp(net: nn.Module) -> bool:
    """Whether `net` is an MLP :class:`StackedMLP` reproduces: a plain ``nn.Sequential`` of
    Linear layers with biases and tanh, relu or elu between them, and no hooks."""
    if type(net) is not nn.Sequential or net._forward_hooks or net._forward_pre_hooks:
        return False
    for module in net:
        if module._forward_hooks or module._forward_pre_hooks:
            return False
        if not ((type(module) is nn.Linear and module.bias is not None) or type(module) in ACTIVATION_TYPES):
            return False
    return True


def _linear(module: nn.Module) -> nn.Linear:
    assert isinstance(module, nn.Linear)  # stackable_mlp() has checked the architecture
    return module


class StackedMLP(nn.Module):
    """The members' ``nn.Sequential`` MLPs (same architecture) as one module on [S, N, in]."""

    def __init__(self, members: list[nn.Sequential]):
        super().__init__()
        first = members[0]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        # a Linear is None here, an activation is the (stateless) module that member 0 applies
        self.steps: list[nn.Module | None] = []
        for index, module in enumerate(first):
            if type(module) is nn.Linear:
                linears = [_linear(m[index]) for m in members]
                self.weights.append(nn.Parameter(torch.stack([linear.weight.detach() for linear in linears])))
                self.biases.append(nn.Parameter(torch.stack([linear.bias.detach() for linear in linears])))
                self.steps.append(None)
            else:
                self.steps.append(copy.deepcopy(module))

    def ordered_parameters(self) -> list[nn.Parameter]:
        """Weight, bias, weight, bias, ...: the order of ``nn.Sequential.parameters()``."""
        return [p for pair in zip(self.weights, self.biases) for p in pair]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = 0
        for step in self.steps:
            if step is None:
                x = _MemberLinear.apply(self.biases[layer], x, self.weights[layer].transpose(1, 2))
                layer += 1
            else:
                x = step(x)
        return x

    def store_into(self, members: list[nn.Sequential]) -> None:
        self._copy(members, into_members=True)

    def load_from(self, members: list[nn.Sequential]) -> None:
        """The members' own weights into the stack (exact copies): after updates made member by member."""
        self._copy(members, into_members=False)

    def _copy(self, members: list[nn.Sequential], into_members: bool) -> None:
        with torch.no_grad():
            layer = 0
            for index, step in enumerate(self.steps):
                if step is None:
                    for k, member in enumerate(members):
                        linear = _linear(member[index])
                        for own, stacked in (
                            (linear.weight, self.weights[layer][k]),
                            (linear.bias, self.biases[layer][k]),
                        ):
                            _copy_between(own, stacked, into_members)
                    layer += 1


def _copy_between(own: torch.Tensor, stacked: torch.Tensor, into_members: bool) -> None:
    """Copy a member's tensor from its slice of the stack, or the slice from the member's tensor."""
    destination, source = (own, stacked) if into_members else (stacked, own)
    destination.copy_(source)


class StackedGaussianPolicy(nn.Module):
    """S :class:`GaussianPolicy` members: means [S, N, act] from observations [S, N, obs]."""

    def __init__(self, members: list[GaussianPolicy]):
        super().__init__()
        self.mean_net = StackedMLP([m.mean_net for m in members])
        self.log_std = nn.Parameter(torch.stack([m.log_std.detach() for m in members]))

    @staticmethod
    def stackable(policy: nn.Module) -> bool:
        return type(policy) is GaussianPolicy and stackable_mlp(policy.mean_net)

    def ordered_parameters(self) -> list[nn.Parameter]:
        """In the order of ``GaussianPolicy.parameters()`` (a module's own parameters before its
        children's: log_std first), which fixes the flat vectors' layout."""
        return [self.log_std, *self.mean_net.ordered_parameters()]

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean_net(obs)
        return mean, self.log_std.unsqueeze(1) + torch.zeros_like(mean)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = self(obs)
        return gaussian_log_prob(mean, log_std, actions)

    def entropy(self) -> torch.Tensor:
        """Per member, as ``GaussianPolicy.entropy``."""
        return (self.log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)

    def store_into(self, members: list[GaussianPolicy]) -> None:
        self.mean_net.store_into([m.mean_net for m in members])
        self._copy_log_std(members, into_members=True)

    def load_from(self, members: list[GaussianPolicy]) -> None:
        """The members' own parameters into the stack (exact copies)."""
        self.mean_net.load_from([m.mean_net for m in members])
        self._copy_log_std(members, into_members=False)

    def _copy_log_std(self, members: list[GaussianPolicy], into_members: bool) -> None:
        with torch.no_grad():
            for k, member in enumerate(members):
                _copy_between(member.log_std, self.log_std[k], into_members)


class StackedValueNetwork(nn.Module):
    """S :class:`ValueNetwork` members: values [S, N] from observations [S, N, obs]."""

    def __init__(self, members: list[ValueNetwork]):
        super().__init__()
        self.net = StackedMLP([m.net for m in members])

    @staticmethod
    def stackable(value_fn: nn.Module) -> bool:
        return type(value_fn) is ValueNetwork and stackable_mlp(value_fn.net)

    def ordered_parameters(self) -> list[nn.Parameter]:
        return self.net.ordered_parameters()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)

    def store_into(self, members: list[ValueNetwork]) -> None:
        self.net.store_into([m.net for m in members])


def member_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products of [S, P] tensors: ``torch.dot`` per member on the CPU (the only
    batched form that sums in BLAS dot's order), one batched kernel elsewhere."""
    if a.device.type == "cpu":
        return torch.stack([torch.dot(x, y) for x, y in zip(_members(a), _members(b))])
    return torch.linalg.vecdot(a, b)


def per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[S] values shaped to broadcast against `like`, a [S, ...] tensor."""
    return values.reshape(values.shape + (1,) * (like.dim() - values.dim()))


def member_rows(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows `index[k]` of member k: [S, N, ...] and [S, n] indices to [S, n, ...]."""
    members = torch.arange(tensor.size(0), device=tensor.device).unsqueeze(1)
    return tensor[members, index]


def clip_member_grad_norms(params: Sequence[torch.Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` applied to each member's gradients on its own.

    Per member: the 2-norm of each parameter's gradient, the 2-norm of those, and the scale
    ``clamp(max_norm / (total + 1e-6), max=1)``, the formula and order of clip_grad_norm_."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    members = grads[0].size(0)
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(members, -1), 2.0, dim=1) for g in grads], dim=1)
    total = torch.linalg.vector_norm(norms, 2.0, dim=1)
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(per_member(scale, g))


class MemberAdam:
    """Adam over stacked parameters in which every member keeps its own step count, and a step
    can leave some members out (PPO's early stop ends one member's epochs, not the others').

    Per member it is ``torch.optim.Adam`` (no weight decay, no amsgrad) step for step: the same
    operations in the order of torch's single-tensor and foreach implementations, which compute
    the same values. The moments live in :attr:`state` in the layout of ``torch.optim.Adam``'s
    per-parameter state, one slice per member, so :meth:`load_member` and :meth:`member_state`
    move a member's optimiser between this and its own ``torch.optim.Adam`` exactly."""

    def __init__(self, params: Sequence[torch.Tensor], lr: float, eps: float = 1e-8, betas=(0.9, 0.999)):
        self.params: list[torch.Tensor] = list(params)
        self.lr, self.eps = lr, eps
        self.beta1, self.beta2 = betas
        members = params[0].size(0)
        self.steps = [0] * members
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]

    def _gradients(self) -> list[torch.Tensor]:
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):
            raise ValueError("MemberAdam.step() needs a gradient for every parameter")
        return grads  # type: ignore[return-value]  # checked just above

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: list[bool] | None = None) -> None:
        """One Adam step for the members where `active` is true (all when None)."""
        members = len(self.steps)
        taking = [True] * members if active is None else list(active)
        self.steps = [n + 1 if take else n for n, take in zip(self.steps, taking)]
        uniform = all(taking) and len(set(self.steps)) == 1
        device = self.params[0].device
        if not uniform:
            mask = torch.tensor(taking, device=device)
            # bias corrections as torch computes them, in Python floats, then rounded to float32
            # exactly as a Python scalar operand is inside the kernels
            bc1 = [1 - self.beta1 ** float(max(n, 1)) for n in self.steps]
            bc2_sqrt = [(1 - self.beta2 ** float(max(n, 1))) ** 0.5 for n in self.steps]
            neg_step = torch.tensor([-(self.lr / b) for b in bc1], dtype=self.params[0].dtype, device=device)
            bc2_sqrt_t = torch.tensor(bc2_sqrt, dtype=self.params[0].dtype, device=device)
        if uniform:
            # every member at the same step: torch's foreach Adam, operation for operation
            step = float(self.steps[0])
            grads = self._gradients()
            torch._foreach_lerp_(self.exp_avg, grads, 1 - self.beta1)
            torch._foreach_mul_(self.exp_avg_sq, self.beta2)
            torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - self.beta2)
            denoms = torch._foreach_sqrt(self.exp_avg_sq)
            torch._foreach_div_(denoms, (1 - self.beta2**step) ** 0.5)
            torch._foreach_add_(denoms, self.eps)
            torch._foreach_addcdiv_(self.params, self.exp_avg, denoms, -(self.lr / (1 - self.beta1**step)))
            return
        for p, grad, exp_avg, exp_avg_sq in zip(self.params, self._gradients(), self.exp_avg, self.exp_avg_sq):
            keep = per_member(mask, p)
            new_avg = exp_avg.lerp(grad, 1 - self.beta1)
            new_avg_sq = (exp_avg_sq * self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            denom = (new_avg_sq.sqrt() / per_member(bc2_sqrt_t, p)).add_(self.eps)
            # addcdiv computes self + value * t1 / t2, left to right
            new_p = p + (per_member(neg_step, p) * new_avg) / denom
            p.copy_(torch.where(keep, new_p, p))
            exp_avg.copy_(torch.where(keep, new_avg, exp_avg))
            exp_avg_sq.copy_(torch.where(keep, new_avg_sq, exp_avg_sq))

    def load_member(self, k: int, optimizer: torch.optim.Adam, member_params: list[nn.Parameter]) -> None:
        """Take member k's moments and step count from its own Adam (empty before its first step)."""
        counts = set()
        for i, p in enumerate(member_params):
            state = optimizer.state.get(p, {})
            if state:
                self.exp_avg[i][k].copy_(state["exp_avg"])
                self.exp_avg_sq[i][k].copy_(state["exp_avg_sq"])
                counts.add(int(state["step"]))
            else:
                counts.add(0)
        if len(counts) != 1:
            raise ValueError(f"member {k}'s parameters have taken different numbers of Adam steps: {sorted(counts)}")
        self.steps[k] = counts.pop()

    def store_member(self, k: int, optimizer: torch.optim.Adam, member_params: list[nn.Parameter]) -> None:
        """Write member k's moments and step count into its own Adam, as it keeps them."""
        if self.steps[k] == 0:
            return
        for i, p in enumerate(member_params):
            optimizer.state[p] = {
                "step": torch.tensor(float(self.steps[k]), dtype=torch.float32),
                "exp_avg": self.exp_avg[i][k].clone(),
                "exp_avg_sq": self.exp_avg_sq[i][k].clone(),
            }

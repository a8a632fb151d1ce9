"""Acting during a rollout: the policy's action at every env step, for a few envs at a time.

At that size fixed per-call costs outweigh the arithmetic, so :class:`RolloutActor` runs the
policy's layers directly, bit-identical to ``GaussianPolicy.act``, or with ``acting_backend =
"numpy"`` computes the mean action from float32 numpy copies of the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from trbench.base.errors import UsageError

from .config import ACTING_BACKENDS
from .networks import GaussianPolicy

# (weight transposed, bias, activation applied in place or None)
NumpyLayer = tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray] | None]
_NUMPY_ACTIVATIONS: dict[type[nn.Module], Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: lambda x: np.tanh(x, out=x),
    nn.ReLU: lambda x: np.maximum(x, 0.0, out=x),
    nn.ELU: lambda x: np.where(x > 0.0, x, np.expm1(x)),  # alpha = 1, the only one mlp() builds
}


def _numpy_layers(mean_net: nn.Sequential) -> list[NumpyLayer] | None:
    """(weight transposed, bias, activation or None) per Linear layer, as float32 numpy copies;
    None if the network holds anything else (or an ELU with another alpha)."""
    layers: list = []
    for module in mean_net:
        if type(module) is nn.Linear and module.bias is not None:
            layers.append(
                (module.weight.detach().cpu().numpy().T.copy(), module.bias.detach().cpu().numpy().copy(), None)
            )
        elif (
            type(module) in _NUMPY_ACTIVATIONS
            and layers
            and layers[-1][2] is None
            and getattr(module, "alpha", 1.0) == 1.0
        ):
            layers[-1] = (*layers[-1][:2], _NUMPY_ACTIVATIONS[type(module)])
        else:
            return None
    if not layers or any(w.dtype != np.float32 for w, _, _ in layers):
        return None
    return layers


class RolloutActor:
    """Acting for one rollout, equal bit for bit to calling ``actor.act(obs, generator)`` every step,
    with a fraction of its cost; the parameters must not change during the rollout.

    Acting runs once per env step at a batch of a few envs, where fixed costs dominate:
    ``nn.Module.__call__`` (hook checks, dispatch) costs more than a 64-unit layer's arithmetic,
    and so does each small tensor operation. For a plain GaussianPolicy whose mean network is an
    ``nn.Sequential`` without hooks, :meth:`sample` runs the layers without ``nn.Module.__call__``
    and only draws the action; the log-probabilities of the whole block come afterwards from
    :meth:`log_probs` in one pass. Each Linear layer is the ``addmm(bias, input, weight.t())`` that
    ``F.linear`` performs, written with tanh or relu in place into a buffer allocated once per
    rollout (same kernels, same operands, so the same rounding), which spares an allocation and a
    module call per layer per step. The state-independent terms (log_std broadcast to the batch,
    exp(log_std), exp(-log_std)) are computed once, on the per-step shape, and every remaining
    operation is the one ``GaussianPolicy.act`` and ``gaussian_log_prob`` perform, in the same
    order. Those are exactly rounded elementwise operations plus a sum over the action dimension,
    so the results do not depend on how many steps are processed at once (tests compare them with
    ``actor.act`` bit for bit). Anything else (a subclass, hooks) calls ``actor.act`` every step.

    ``backend="numpy"`` (the ``acting_backend`` setting) computes the mean action with the same
    float32 weights in numpy, whose per-call cost is a fraction of torch's; the noise still comes
    from the torch generator, in the same order. numpy's matrix product rounds differently from
    torch's, so the same seed gives a different trajectory; the stored log-probabilities are those
    of the distribution the actions were drawn from (the numpy mean).
    """

    def __init__(self, actor: GaussianPolicy, num_envs: int, backend: str = "torch"):
        if backend not in ACTING_BACKENDS:
            raise UsageError(f"acting_backend: must be one of {', '.join(ACTING_BACKENDS)}, got {backend!r}")
        self.actor = actor
        hooked = any(m._forward_hooks or m._forward_pre_hooks for m in actor.modules()) or bool(
            nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks
        )
        self.fast = type(actor) is GaussianPolicy and type(actor.mean_net) is nn.Sequential and not hooked
        if self.fast:
            self.layers = self._buffered_layers(actor.mean_net, num_envs)
            with torch.no_grad():
                param = actor.log_std
                self.log_std = param + torch.zeros((num_envs, param.shape[0]), dtype=param.dtype, device=param.device)
                self.std = self.log_std.exp()
                self.inv_std = torch.exp(-self.log_std)
        self.numpy_layers = None
        if backend == "numpy":
            self.numpy_layers = _numpy_layers(actor.mean_net) if self.fast else None
            if self.numpy_layers is None:
                raise UsageError(
                    "acting_backend: 'numpy' needs a plain GaussianPolicy (Linear layers with tanh, relu "
                    f"or elu between them, no hooks), got {type(actor).__name__}; allowed for it: torch"
                )
            self.numpy_std = self.std.numpy()

    @staticmethod
    def _buffered_layers(mean_net: nn.Sequential, num_envs: int) -> list:
        """One callable per module of `mean_net`, for a batch of `num_envs` rows. A Linear layer
        writes into its own buffer, and a tanh or relu right after it works in place on that
        buffer; any other module is called as it is. The buffers belong to this rollout: every
        step overwrites them, so a step's mean must be copied before the next step."""
        layers: list = []
        for module in mean_net:
            if type(module) is nn.Linear and module.bias is not None:
                # detached (an out= call refuses inputs that require grad when grad mode is on);
                # views of the parameters' storage, not copies
                weight_t, bias = module.weight.detach().t(), module.bias.detach()
                out = torch.empty((num_envs, module.out_features), dtype=bias.dtype, device=bias.device)
                layers.append(lambda x, w=weight_t, b=bias, out=out: torch.addmm(b, x, w, out=out))
            elif type(module) in (nn.Tanh, nn.ReLU) and layers and type(mean_net[len(layers) - 1]) is nn.Linear:
                in_place = torch.tanh_ if type(module) is nn.Tanh else torch.relu_
                layers.append(in_place)
            else:
                layers.append(module.forward)
        return layers

    def step(self, obs: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sample` on numpy arrays, computed by the chosen backend. On the torch fast path
        the mean is a view of a buffer the next step overwrites."""
        if self.numpy_layers is None:
            actions, aux = self.sample(torch.from_numpy(obs), generator)
            return actions.numpy(), aux.numpy()
        mean = obs
        for weight_t, bias, activation in self.numpy_layers:
            mean = mean @ weight_t
            mean += bias
            if activation is not None:
                mean = activation(mean)
        # the noise comes from the same generator, in the same order, as on the torch path
        noise = torch.randn(mean.shape, generator=generator, dtype=torch.float32).numpy()
        return mean + noise * self.numpy_std, mean

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(actions, aux): aux is the mean action on the fast path (in a buffer the next call
        overwrites), else the log-probabilities."""
        if not self.fast:
            return self.actor.act(obs, generator)
        mean = obs
        for layer in self.layers:
            mean = layer(mean)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + noise * self.std, mean

    def log_probs(self, actions: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of (steps, envs, act_dim) actions from the (steps, ...) aux values."""
        if not self.fast:
            return aux
        steps = actions.shape[0]
        z = (actions - aux) * self.inv_std.repeat(steps, 1, 1)
        return (-0.5 * z.pow(2) - self.log_std.repeat(steps, 1, 1) - 0.5 * math.log(2 * math.pi)).sum(-1)

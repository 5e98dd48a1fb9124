"""LogicLayer: a layer of two-input logic-gate neurons, drop-in for ``difflogic.LogicLayer``.

Each of ``out_dim`` neurons reads two fixed inputs (``connections``, chosen at init, never learned)
and learns which of the 16 gates of ``diffgates.gates`` it is. By default (``'softmax16'``, the
original's) it learns 16 logits and training mode outputs the softmax mixture of the 16 relaxations;
``'iwp'`` and ``'walsh'`` learn 4 numbers per gate instead (``diffgates.kernels.parametrizations``
defines all three, the inits and the samplings). Eval mode uses the discrete gate only, which is exact
on {0, 1} inputs.

Example::

    import torch
    from diffgates import LogicLayer, GroupSum
    model = torch.nn.Sequential(torch.nn.Flatten(), LogicLayer(784, 8000), LogicLayer(8000, 8000),
                                GroupSum(k=10, tau=10))
    fast = LogicLayer(784, 8000, parametrization='iwp', sampling='hard')  # 4 parameters, residual init
"""
from __future__ import annotations

import torch

from .. import kernels
from ..kernels import parametrizations as param
from .connections import CONNECTION_KINDS, make_connections


class GradFactor(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by ``factor`` (against vanishing gradients)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.factor, None


class LogicLayer(torch.nn.Module):
    """A layer of ``out_dim`` learnable two-input gates over ``in_dim`` inputs.

    Args:
        in_dim: number of input features (inputs of shape (N, in_dim, ...) are flattened after N).
        out_dim: number of gate neurons.
        device: where the parameters live.
        grad_factor: scales the gradient flowing into this layer's input (identity forward).
        implementation: None (fused kernel for the device, reference fallback), 'reference'/'python',
            'cpu', or 'gpu'/'cuda'. See ``diffgates.kernels``.
        connections: 'random' or 'unique' (see ``diffgates.nn.connections``).
        parametrization: 'softmax16' (16 gate logits), 'iwp' (4 truth-table-entry logits) or 'walsh'
            (4 Walsh coefficients).
        init: 'gaussian' or 'residual' (every gate starts as the pass-through gate A); None: the
            parametrization's default (``param.DEFAULT_INIT``: gaussian for softmax16, as the original;
            residual for iwp and walsh, which do not train deep from Gaussian entry logits).
        residual_logit: the pass-through logit of the residual init (None: ``param.DEFAULT_RESIDUAL_LOGIT``,
            5 for softmax16 as the conv paper, 3 for iwp/walsh).
        sampling: training-mode forward: 'soft' (the relaxation), 'hard' (discrete gate forward,
            relaxation gradient), 'gumbel_soft', 'gumbel_hard' (the same with noise on the logits at
            temperature ``gumbel_tau``; torch's RNG). Eval mode always uses the discrete gate.

    Attributes:
        weights: Parameter (out_dim, P): P = 16 gate logits in the canonical order of ``diffgates.gates``
            (softmax16), or 4 parameters per gate (iwp: entries (0,0), (0,1), (1,0), (1,1); walsh:
            coefficients of 1, s_a, s_b, s_a s_b).
        connections: int64 buffer (2, out_dim): input indices of a and b; saved in ``state_dict``.
    """

    def __init__(self, in_dim: int, out_dim: int, device: str | torch.device = "cpu",
                 grad_factor: float = 1.0, implementation: str | None = None,
                 connections: str = "random", parametrization: str = "softmax16", init: str | None = None,
                 residual_logit: float | None = None, sampling: str = "soft", gumbel_tau: float = 1.0):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"LogicLayer {name} must be a positive integer, got {name}={value!r}")
        if connections not in CONNECTION_KINDS:
            raise ValueError(f"connections={connections!r} is not known; expected one of {CONNECTION_KINDS}")
        if not grad_factor > 0:
            raise ValueError(f"grad_factor must be > 0, got grad_factor={grad_factor!r}")
        param.check_parametrization(parametrization)
        param.check_sampling(sampling, gumbel_tau)
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.grad_factor = float(grad_factor)
        self.implementation = kernels.canonical_implementation(implementation)
        self.connection_kind = connections
        self.parametrization, self.sampling, self.gumbel_tau = parametrization, sampling, float(gumbel_tau)
        self.init = param.DEFAULT_INIT[parametrization] if init is None else init
        self.residual_logit = float(param.DEFAULT_RESIDUAL_LOGIT[parametrization] if residual_logit is None
                                    else residual_logit)
        # Drawn before the connections, so softmax16's default init consumes torch's RNG as the original.
        self.weights = torch.nn.Parameter(param.initial_weights(parametrization, self.out_dim, self.init,
                                                                self.residual_logit, device=device))
        conn = make_connections(connections, self.in_dim, self.out_dim)
        self.register_buffer("connections", conn.to(device=device, dtype=torch.int64))

    @property
    def indices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) index tensors, named as in the original package."""
        return self.connections[0], self.connections[1]

    def gate_options(self) -> dict:
        """The keyword arguments that fix how this layer's gates are parametrized and trained."""
        return {"parametrization": self.parametrization, "init": self.init, "residual_logit": self.residual_logit,
                "sampling": self.sampling, "gumbel_tau": self.gumbel_tau}

    def gate_ids(self) -> torch.Tensor:
        """(out_dim,) int64: the discrete gate of every neuron (the gate eval mode and circuits use)."""
        return param.gate_ids(self.parametrization, self.weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"LogicLayer expects input of shape (N, {self.in_dim}) (extra dims after N are "
                             f"flattened), got shape {tuple(x.shape)}")
        if x.dim() > 2:
            x = x.flatten(1)
        if x.shape[1] != self.in_dim:
            raise ValueError(f"LogicLayer(in_dim={self.in_dim}) got input of shape {tuple(x.shape)}: "
                             f"expected {self.in_dim} features per sample, got {x.shape[1]}")
        if not x.is_floating_point():
            x = x.to(self.weights.dtype)  # bool/uint8 bits are valid probabilities
        if self.grad_factor != 1.0:
            x = GradFactor.apply(x, self.grad_factor)
        return kernels.logic_layer(x, self.weights, self.connections, self.training, self.implementation,
                                   parametrization=self.parametrization, sampling=self.sampling,
                                   gumbel_tau=self.gumbel_tau)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A checkpoint of a different width would otherwise surface as a cryptic copy error.
        key = prefix + "connections"
        if key in state_dict and state_dict[key].shape != self.connections.shape:
            raise ValueError(f"state_dict[{key!r}] has shape {tuple(state_dict[key].shape)}, this layer "
                             f"expects {tuple(self.connections.shape)} (in_dim={self.in_dim}, "
                             f"out_dim={self.out_dim})")
        if key in state_dict and state_dict[key].numel():
            lo, hi = int(state_dict[key].min()), int(state_dict[key].max())
            if lo < 0 or hi >= self.in_dim:
                raise ValueError(f"state_dict[{key!r}] holds input indices in [{lo}, {hi}], outside "
                                 f"[0, {self.in_dim - 1}] for in_dim={self.in_dim}: corrupt or foreign checkpoint")
        # A different parametrization (16 vs 4 columns) would otherwise be a bare size mismatch.
        weights = state_dict.get(prefix + "weights")
        if weights is not None and weights.shape != self.weights.shape:
            raise ValueError(f"state_dict[{prefix + 'weights'!r}] has shape {tuple(weights.shape)}, this layer "
                             f"expects {tuple(self.weights.shape)} (out_dim={self.out_dim}, "
                             f"parametrization={self.parametrization!r})")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        extra = f", grad_factor={self.grad_factor}" if self.grad_factor != 1.0 else ""
        impl = f", implementation={self.implementation!r}" if self.implementation else ""
        if self.parametrization != "softmax16":
            extra += f", parametrization={self.parametrization!r}"
        if self.sampling != "soft":
            extra += f", sampling={self.sampling!r}" + (f", gumbel_tau={self.gumbel_tau}"
                                                         if self.sampling.startswith("gumbel") else "")
        return f"{self.in_dim}, {self.out_dim}, connections={self.connection_kind!r}{extra}{impl}"

"""LogicLayer: a layer of two-input logic-gate neurons, drop-in for ``difflogic.LogicLayer``.

Each of ``out_dim`` neurons reads two fixed inputs (``connections``, chosen at init, never learned)
and learns 16 logits over the gates of ``diffgates.gates``. Training mode outputs the softmax mixture
of the 16 relaxations; eval mode uses the argmax gate only, which is exact on {0, 1} inputs.

Example::

    import torch
    from diffgates import LogicLayer, GroupSum
    model = torch.nn.Sequential(torch.nn.Flatten(), LogicLayer(784, 8000), LogicLayer(8000, 8000),
                                GroupSum(k=10, tau=10))
"""
from __future__ import annotations

import torch

from .. import gates, kernels
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

    Attributes:
        weights: Parameter (out_dim, 16), gate logits in the canonical order of ``diffgates.gates``.
        connections: int64 buffer (2, out_dim): input indices of a and b; saved in ``state_dict``.
    """

    def __init__(self, in_dim: int, out_dim: int, device: str | torch.device = "cpu",
                 grad_factor: float = 1.0, implementation: str | None = None,
                 connections: str = "random"):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"LogicLayer {name} must be a positive integer, got {name}={value!r}")
        if connections not in CONNECTION_KINDS:
            raise ValueError(f"connections={connections!r} is not known; expected one of {CONNECTION_KINDS}")
        if not grad_factor > 0:
            raise ValueError(f"grad_factor must be > 0, got grad_factor={grad_factor!r}")
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.grad_factor = float(grad_factor)
        self.implementation = kernels.canonical_implementation(implementation)
        self.connection_kind = connections
        # The original API's init: standard-normal logits, so every gate starts near-uniform.
        self.weights = torch.nn.Parameter(torch.randn(self.out_dim, gates.NUM_GATES, device=device))
        conn = make_connections(connections, self.in_dim, self.out_dim)
        self.register_buffer("connections", conn.to(device=device, dtype=torch.int64))

    @property
    def indices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) index tensors, named as in the original package."""
        return self.connections[0], self.connections[1]

    def gate_ids(self) -> torch.Tensor:
        """(out_dim,) int64: the argmax gate of every neuron (the gate eval mode and circuits use)."""
        return self.weights.detach().argmax(-1)

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
        return kernels.logic_layer(x, self.weights, self.connections, self.training, self.implementation)

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
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        extra = f", grad_factor={self.grad_factor}" if self.grad_factor != 1.0 else ""
        impl = f", implementation={self.implementation!r}" if self.implementation else ""
        return f"{self.in_dim}, {self.out_dim}, connections={self.connection_kind!r}{extra}{impl}"

"""LogicConv2d and OrPool2d: convolutional logic-tree layers (Petersen et al., NeurIPS 2024).

Each of ``out_channels`` output channels is a complete binary tree of depth d (default 3: 8 leaves,
7 gates) of learnable two-input gates. The leaves are drawn once, at construction, from the k x k
receptive field, reading at most ``channels_per_tree`` input channels; the tree's gates and leaf
offsets are shared by every output position (zero padding and stride as a normal convolution). The
gates are parametrized, initialised and sampled as LogicLayer's (``kernels/parametrizations.py``);
the default init is residual (every gate starts as A, the conv paper's z_A = 5 for softmax16), which
the paper found necessary for deep conv nets. ``OrPool2d`` is the paper's OR pooling: the max in
training (the max t-conorm), the logical OR on {0, 1}.

Leaf sampling (not fixed by the paper; ours): per tree, ``min(channels_per_tree, in_channels)``
distinct channels at random; leaf i reads the i-th of them modulo their number, so each is used
equally (before the leaves are shuffled); each leaf's (dy, dx) is uniform over the kernel; a level-0
gate whose two leaves coincide redraws its second leaf's offset (when the kernel has more than one
position). torch's global RNG (or ``generator``) draws it all, so ``torch.manual_seed`` fixes it.

Example::

    import torch
    from diffgates import LogicConv2d, OrPool2d, GroupSum, LogicLayer
    net = torch.nn.Sequential(LogicConv2d(1, 16, 5), OrPool2d(2), torch.nn.Flatten(),
                              LogicLayer(16 * 12 * 12, 4000), GroupSum(10, tau=10))
"""
from __future__ import annotations

import torch

from .. import kernels
from ..kernels import parametrizations as param


def _pair(value, name: str) -> tuple[int, int]:
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or int(v) != v or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive integer or a pair of them, got {name}={value!r}")
    return int(pair[0]), int(pair[1])


def _count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    return int(value)


def tree_connections(in_channels: int, out_channels: int, kernel_size: tuple[int, int], depth: int,
                     channels_per_tree: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(out_channels, 2^depth, 3) int64 leaves (channel, dy, dx), drawn as the module docstring says."""
    leaves = 2 ** depth
    kh, kw = kernel_size
    used = min(channels_per_tree, in_channels)
    chosen = torch.stack([torch.randperm(in_channels, generator=generator)[:used] for _ in range(out_channels)])
    share = chosen[:, torch.arange(leaves) % used]  # each chosen channel used equally
    order = torch.argsort(torch.rand(out_channels, leaves, generator=generator), dim=1)
    channel = torch.gather(share, 1, order)
    offset = torch.randint(0, kh * kw, (out_channels, leaves), generator=generator)
    if kh * kw > 1:
        for _ in range(64):  # each redraw fixes a clash with probability >= 1/2; 64 rounds suffice
            clash = (channel[:, 0::2] == channel[:, 1::2]) & (offset[:, 0::2] == offset[:, 1::2])
            if not bool(clash.any()):
                break
            redraw = torch.randint(0, kh * kw, clash.shape, generator=generator)
            offset[:, 1::2] = torch.where(clash, redraw, offset[:, 1::2])
    return torch.stack([channel, offset // kw, offset % kw], dim=-1).to(torch.int64)


class LogicConv2d(torch.nn.Module):
    """A convolution whose every output channel is a tree of learnable two-input gates.

    Args:
        in_channels, out_channels: channels of the input and the output (one tree per output channel).
        kernel_size: k or (kh, kw), the receptive field the leaves are drawn from.
        depth: the trees' depth d: 2^d leaves, 2^d - 1 gates (the paper: 3).
        stride, padding: as ``torch.nn.Conv2d`` (padding with zeros).
        channels_per_tree: how many input channels one tree may read (the paper: 2).
        init, residual_logit, parametrization, sampling, gumbel_tau: as ``LogicLayer``; init defaults to
            'residual' here (every gate starts as A).
        pool: None, or the kernel size k (or (kh, kw)) of a non-overlapping OR pool applied to the
            trees' outputs in the same pass: the same numbers as following the layer with
            ``OrPool2d(k)``, without storing the unpooled map.
        device: where the parameters live.
        implementation: None (fused kernels for the device), 'reference', 'cpu' or 'gpu' (``diffgates.kernels``).

    Attributes:
        weights: Parameter (out_channels, 2^d - 1, P), P parameters per gate (16 for softmax16, 4 for
            iwp/walsh). Gate order within a tree: level 0 first (gate i reads leaves 2i and 2i+1),
            then level 1 (gate j reads level-0 gates 2j and 2j+1), ..., the root last.
        connections: int64 buffer (out_channels, 2^d, 3): each leaf's (input channel, dy, dx); at
            output (i, j) the leaf reads the zero-padded input at (channel, i*stride + dy, j*stride + dx).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, depth: int = 3, stride: int = 1,
                 padding: int = 0, channels_per_tree: int = 2, init: str | None = "residual",
                 parametrization: str = "softmax16", device: str | torch.device = "cpu",
                 implementation: str | None = None, residual_logit: float | None = None, sampling: str = "soft",
                 gumbel_tau: float = 1.0, pool=None):
        super().__init__()
        self.in_channels = _count(in_channels, "in_channels", 1)
        self.out_channels = _count(out_channels, "out_channels", 1)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.depth = _count(depth, "depth", 1)
        if self.depth > 8:
            raise ValueError(f"depth={depth} gives trees of {2 ** depth} leaves; expected depth <= 8 (the paper: 3)")
        self.stride = _count(stride, "stride", 1)
        self.padding = _count(padding, "padding", 0)
        self.channels_per_tree = _count(channels_per_tree, "channels_per_tree", 1)
        # A following OR pool, fused into the trees' pass (the paper's kernel design); None: no pool.
        self.pool = None if pool is None else OrPool2d(pool)
        param.check_parametrization(parametrization)
        param.check_sampling(sampling, gumbel_tau)
        self.implementation = kernels.canonical_implementation(implementation)
        self.parametrization, self.sampling, self.gumbel_tau = parametrization, sampling, float(gumbel_tau)
        self.init = param.DEFAULT_INIT[parametrization] if init is None else init
        self.residual_logit = float(param.DEFAULT_RESIDUAL_LOGIT[parametrization] if residual_logit is None
                                    else residual_logit)
        gates_per_tree = 2 ** self.depth - 1
        w = param.initial_weights(parametrization, self.out_channels * gates_per_tree, self.init,
                                  self.residual_logit, device=device)
        self.weights = torch.nn.Parameter(w.reshape(self.out_channels, gates_per_tree, -1))
        conn = tree_connections(self.in_channels, self.out_channels, self.kernel_size, self.depth,
                                self.channels_per_tree)
        self.register_buffer("connections", conn.to(device=device))

    def gate_options(self) -> dict:
        """The keyword arguments that fix how this layer's gates are parametrized and trained."""
        return {"parametrization": self.parametrization, "init": self.init, "residual_logit": self.residual_logit,
                "sampling": self.sampling, "gumbel_tau": self.gumbel_tau}

    def gate_ids(self) -> torch.Tensor:
        """(out_channels, 2^d - 1) int64: every tree's discrete gates (what eval mode and circuits use)."""
        flat = self.weights.reshape(-1, self.weights.shape[-1])
        return param.gate_ids(self.parametrization, flat).reshape(self.weights.shape[:2])

    def conv_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(out_channels, H, W) of the trees' outputs, before the fused pool (if any)."""
        h_out, w_out = kernels.output_size(height, width, self.kernel_size, self.stride, self.padding)
        return self.out_channels, h_out, w_out

    def output_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(out_channels, H_out, W_out) of the layer's output for an input of spatial size (height, width)."""
        shape = self.conv_shape(height, width)
        return shape if self.pool is None or min(shape[1:]) < 1 else self.pool.output_shape(*shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"LogicConv2d(in_channels={self.in_channels}) expects input of shape "
                             f"(N, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        _, h_out, w_out = self.conv_shape(x.shape[2], x.shape[3])
        if h_out < 1 or w_out < 1:
            raise ValueError(f"LogicConv2d with kernel_size={self.kernel_size}, padding={self.padding} needs an "
                             f"input of at least {self.kernel_size[0] - 2 * self.padding} x "
                             f"{self.kernel_size[1] - 2 * self.padding}, got {x.shape[2]} x {x.shape[3]}")
        if self.pool is not None and (h_out < self.pool.kernel_size[0] or w_out < self.pool.kernel_size[1]):
            raise ValueError(f"LogicConv2d's {self.pool.kernel_size} OR pool needs at least that many positions, "
                             f"the trees give {h_out} x {w_out} on a {x.shape[2]} x {x.shape[3]} input")
        if not x.is_floating_point():
            x = x.to(self.weights.dtype)  # bool/uint8 bits are valid probabilities
        pool = None if self.pool is None else (*self.pool.kernel_size, *self.pool.stride)
        return kernels.logic_tree_conv(x, self.weights, self.connections, self.kernel_size, self.stride,
                                       self.padding, self.training, self.implementation, pool=pool,
                                       parametrization=self.parametrization, sampling=self.sampling,
                                       gumbel_tau=self.gumbel_tau)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "connections"
        conn = state_dict.get(key)
        if conn is not None:
            if conn.shape != self.connections.shape:
                raise ValueError(f"state_dict[{key!r}] has shape {tuple(conn.shape)}, this layer expects "
                                 f"{tuple(self.connections.shape)} (out_channels={self.out_channels}, "
                                 f"depth={self.depth})")
            limits = (self.in_channels, *self.kernel_size)
            for k, (what, limit) in enumerate(zip(("channel", "dy", "dx"), limits)):
                column = conn[..., k]
                if column.numel() and (int(column.min()) < 0 or int(column.max()) >= limit):
                    raise ValueError(f"state_dict[{key!r}] holds leaf {what} values in [{int(column.min())}, "
                                     f"{int(column.max())}], outside [0, {limit - 1}]: corrupt or foreign checkpoint")
        weights = state_dict.get(prefix + "weights")
        if weights is not None and weights.shape != self.weights.shape:
            raise ValueError(f"state_dict[{prefix + 'weights'!r}] has shape {tuple(weights.shape)}, this layer "
                             f"expects {tuple(self.weights.shape)} (out_channels={self.out_channels}, "
                             f"depth={self.depth}, parametrization={self.parametrization!r})")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        extra = f", stride={self.stride}" if self.stride != 1 else ""
        extra += f", padding={self.padding}" if self.padding else ""
        extra += f", depth={self.depth}" if self.depth != 3 else ""
        extra += f", parametrization={self.parametrization!r}" if self.parametrization != "softmax16" else ""
        extra += f", sampling={self.sampling!r}" if self.sampling != "soft" else ""
        extra += f", pool={self.pool.kernel_size}" if self.pool is not None else ""
        extra += f", implementation={self.implementation!r}" if self.implementation else ""
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}{extra}"


class OrPool2d(torch.nn.Module):
    """OR pooling: max over each window (the max t-conorm in training; the logical OR on {0, 1}).

    The gradient flows to one maximum per window (the first in row-major window order on ties, as
    ``torch.nn.functional.max_pool2d``). Windows do not overlap by default (stride = kernel_size).
    """

    def __init__(self, kernel_size=2, stride=None):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")

    def output_shape(self, channels: int, height: int, width: int) -> tuple[int, int, int]:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        return channels, (height - kh) // sh + 1, (width - kw) // sw + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[2] < self.kernel_size[0] or x.shape[3] < self.kernel_size[1]:
            raise ValueError(f"OrPool2d(kernel_size={self.kernel_size}) expects input of shape (N, C, H, W) with "
                             f"H >= {self.kernel_size[0]} and W >= {self.kernel_size[1]}, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            x = x.float()
        return torch.nn.functional.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"

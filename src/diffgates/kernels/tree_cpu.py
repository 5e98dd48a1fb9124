"""Fused CPU kernel for LogicConv2d (``tree_kernel.c``), optionally fused with the following max (OR) pool.

``logic_tree_conv(x, coeffs, connections, kernel_size, stride, padding, pool=None)`` evaluates every
tree of a logic-tree convolution at every output position in one pass: per output element and batch
chunk the tree's gates run in small per-thread arrays, so the intermediate levels are never written
to memory (``kernels.logic_tree_conv`` without this kernel runs d dense layers and stores each). With
``pool=(kh, kw, sh, sw)`` it also takes the max over each pool window - the paper's OR pooling, as
``torch.nn.functional.max_pool2d`` (the first maximum wins ties; a NaN wins) - and stores only the
pooled output and a uint8 winner per element; backward recomputes only the winning tree. The numbers
are ``reference.logic_tree_conv_reference`` with ``coeffs`` the 4-coefficient form of the weights
(``kernels._coefficients``), differentiable in ``x`` and ``coeffs``.

It calls the op ``torch.ops.diffgates.logic_tree_conv`` (defined here: schema, fake function,
autograd), whose backward is ``diffgates::logic_tree_conv_backward``, so it also works under
``torch.compile`` and ``torch.library.opcheck``. The ops have a CPU implementation only.

``diffgates::logic_tree_conv(Tensor x, Tensor coeffs, Tensor connections, int[] kernel_size, int stride,
int padding, int[]? pool=None) -> (Tensor, Tensor)``
    (N, C, H, W) x -> (y (N, out, H_out, W_out), winners): winners is the (out H_out W_out, N) uint8
    window index of every pooled element (row-major in the window), empty without a pool.
``diffgates::logic_tree_conv_backward(Tensor grad, Tensor x, Tensor coeffs, Tensor connections,
Tensor winners, int[] kernel_size, int stride, int padding, int[]? pool, bool need_x, bool need_coeffs)
-> (Tensor, Tensor)``
    (dL/dx, dL/dcoeffs); an empty tensor for a gradient not requested. No double backward.

Layout: feature-major like ``cpu.py``. x is read as (C H W, N) - no copy when x already is laid out
so, e.g. the previous tree layer's output - and the output is a view of an (out H_out W_out, N)
buffer, ``buf.t().reshape(N, out, H_out, W_out)`` (batch stride 1); so is dL/dx.

The library is compiled on first use with ``cpu.py``'s flags (``diffgates._native.open_library``,
cached by source hash); ``unavailable_reason()`` says why it cannot run here. Threads:
``torch.get_num_threads()`` at call time, one for calls too small to gain (``PARALLEL_GRAIN``).

Usage::

    from diffgates.kernels import gate_coefficients, tree_cpu
    coeffs = gate_coefficients(layer.weights.reshape(-1, 16), True)
    y = tree_cpu.logic_tree_conv(x, coeffs, layer.connections, (3, 3), 1, 1, pool=(2, 2, 2, 2))
"""
from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Sequence

import torch

from .. import _native
from . import cpu
from .arguments import index_error

_SOURCE = Path(__file__).with_name("tree_kernel.c")
FLOAT_DTYPES = cpu.FLOAT_DTYPES

_ptr = ctypes.c_void_p
_i64 = ctypes.c_int64
_GEOMETRY = ("n", "height", "width", "out", "leaves", "stride", "padding", "pool_h", "pool_w", "pool_sh",
             "pool_sw", "h_out", "w_out", "rows")  # the order of tree_kernel.c's enum


@lru_cache(maxsize=None)
def _library() -> ctypes.CDLL:
    """Build (or fetch from the cache) and load the kernel library; raises CompilationError/OSError."""
    lib = _native.open_library(_SOURCE.read_text(), "diffgates_tree_kernel", cpu._build_flags())[1]
    lib.dg_tree_check_connections.argtypes = [_ptr, _i64, _i64, _i64, _i64, _i64]
    lib.dg_tree_check_connections.restype = _i64
    lib.dg_tree_has_openmp.restype = ctypes.c_int
    geometry = ctypes.POINTER(_i64)
    for suffix in ("f32", "f64"):
        fwd = getattr(lib, f"dg_tree_forward_{suffix}")
        fwd.argtypes = [_ptr, _ptr, _ptr, _ptr, _ptr, geometry, ctypes.c_int]
        fwd.restype = ctypes.c_int
        bwd = getattr(lib, f"dg_tree_backward_{suffix}")
        bwd.argtypes = [_ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, geometry, ctypes.c_int]
        bwd.restype = ctypes.c_int
    return lib


@lru_cache(maxsize=None)
def unavailable_reason() -> str | None:
    """None when the kernel (and ``cpu.py``'s, whose layout transpose it uses) builds and loads here, else why not."""
    reason = cpu.unavailable_reason()
    if reason is not None:
        return reason
    return _native.load_failure(_library)


def has_openmp() -> bool:
    """Whether the built kernel runs multi-threaded (it was compiled with OpenMP)."""
    return bool(_library().dg_tree_has_openmp())


# Gate evaluations (batch columns x gates) per thread below which a call runs single-threaded, as
# cpu.PARALLEL_GRAIN. Tests set it to 1 to exercise the multi-threaded paths at small sizes.
PARALLEL_GRAIN = 32768


def _threads(work: int) -> int:
    return max(1, min(torch.get_num_threads(), work // PARALLEL_GRAIN))


class _Plan(NamedTuple):
    """A validated call: sizes and the kernels' geometry array."""
    n: int
    channels: int
    height: int
    width: int
    out: int
    leaves: int
    h_out: int
    w_out: int
    window: int  # pool window elements (1 without a pool)
    geometry: ctypes.Array


def _ints(value, name: str, length: int) -> list[int]:
    """``value`` as a list of ``length`` Python ints, else ValueError naming it."""
    items = list(value) if isinstance(value, (tuple, list, torch.Size)) else None
    if items is None or len(items) != length or any(isinstance(v, bool) or not isinstance(v, int) for v in items):
        raise ValueError(f"{name} must be a sequence of {length} integers, got {name}={value!r}")
    return items


def _check_int(value, name: str, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value}")


def _sizes(height, width, kernel_size: Sequence[int], stride: int, padding: int,
           pool: Sequence[int] | None) -> tuple:
    """(conv H_out, conv W_out, output H, output W): the pooled sizes with a pool (max_pool2d's floor)."""
    kh, kw = kernel_size
    h_conv, w_conv = (height + 2 * padding - kh) // stride + 1, (width + 2 * padding - kw) // stride + 1
    if pool is None:
        return h_conv, w_conv, h_conv, w_conv
    ph, pw, sh, sw = pool
    return h_conv, w_conv, (h_conv - ph) // sh + 1, (w_conv - pw) // sw + 1


def _plan(x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor, kernel_size: Sequence[int],
          stride: int, padding: int, pool: Sequence[int] | None) -> _Plan:
    """Validate shapes, dtypes, devices, geometry and leaf ranges (the C code trusts all of them)."""
    for name, t in (("x", x), ("coeffs", coeffs), ("connections", connections)):
        if t.device.type != "cpu":
            raise ValueError(f"the fused CPU tree kernel needs CPU tensors, got {name} on {t.device}")
    if x.dim() != 4:
        raise ValueError(f"logic_tree_conv expects x of shape (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"logic_tree_conv supports {', '.join(str(t) for t in FLOAT_DTYPES)}; got "
                         f"x.dtype={x.dtype}")
    if coeffs.dtype != x.dtype:
        raise ValueError(f"coeffs.dtype={coeffs.dtype} must equal x.dtype={x.dtype}")
    if connections.dtype != torch.int64:
        raise ValueError(f"connections must be int64, got {connections.dtype}")
    if connections.dim() != 3 or connections.shape[2] != 3:
        raise ValueError(f"connections must have shape (out, 2^depth, 3), got {tuple(connections.shape)}")
    out, leaves = connections.shape[0], connections.shape[1]
    if leaves < 2 or leaves & (leaves - 1):
        raise ValueError(f"connections must have 2^depth >= 2 leaves per tree, got {leaves} "
                         f"(shape {tuple(connections.shape)})")
    if tuple(coeffs.shape) != (out * (leaves - 1), 4):
        raise ValueError(f"coeffs must have shape (out * (2^depth - 1), 4) = ({out * (leaves - 1)}, 4) to match "
                         f"connections {tuple(connections.shape)}, got {tuple(coeffs.shape)}")
    kh, kw = _ints(kernel_size, "kernel_size", 2)
    _check_int(kh, "kernel_size[0]", 1), _check_int(kw, "kernel_size[1]", 1)
    _check_int(stride, "stride", 1), _check_int(padding, "padding", 0)
    n, channels, height, width = x.shape
    h_conv, w_conv, h_out, w_out = _sizes(height, width, (kh, kw), stride, padding, None)
    if h_conv < 1 or w_conv < 1:
        raise ValueError(f"kernel_size=({kh}, {kw}) with padding={padding} needs an input of at least "
                         f"{kh - 2 * padding} x {kw - 2 * padding}, got {height} x {width}")
    ph = pw = sh = sw = 1
    if pool is not None:
        ph, pw, sh, sw = _ints(pool, "pool", 4)
        if min(ph, pw, sh, sw) < 1:
            raise ValueError(f"pool (kh, kw, sh, sw) must be positive, got pool={tuple(pool)}")
        if ph * pw > 256:
            raise ValueError(f"pool windows hold at most 256 elements (a uint8 winner index), got pool={tuple(pool)}")
        if h_conv < ph or w_conv < pw:
            raise ValueError(f"pool={tuple(pool)} needs a convolution output of at least {ph} x {pw}, got "
                             f"{h_conv} x {w_conv}")
        h_out, w_out = (h_conv - ph) // sh + 1, (w_conv - pw) // sw + 1
    conn = connections.contiguous()
    bad = _library().dg_tree_check_connections(conn.data_ptr(), out, leaves, channels, kh, kw)
    if bad >= 0:
        tree, rest = divmod(int(bad), leaves * 3)
        leaf, field = divmod(rest, 3)
        limit, what = ((channels, f"x with {channels} channels"), (kh, f"kernel_size[0] = {kh} (dy)"),
                       (kw, f"kernel_size[1] = {kw} (dx)"))[field]
        raise index_error("connections", (tree, leaf, field), int(conn.view(-1)[bad]), limit, what)
    values = (n, height, width, out, leaves, stride, padding, ph, pw, sh, sw, h_out, w_out, channels * height * width)
    return _Plan(n, channels, height, width, out, leaves, h_out, w_out, ph * pw,
                 (_i64 * len(_GEOMETRY))(*values))


def _float_suffix(t: torch.Tensor) -> str:
    return "f32" if t.dtype == torch.float32 else "f64"


def forward(x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor, kernel_size: Sequence[int],
            stride: int, padding: int, pool: Sequence[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The C implementation of ``diffgates::logic_tree_conv``: (y feature-major, winners)."""
    plan = _plan(x, coeffs, connections, kernel_size, stride, padding, pool)
    n, elements = plan.n, plan.out * plan.h_out * plan.w_out
    y = x.new_empty((elements, n))
    winners = x.new_empty((elements, n) if pool is not None else (0,), dtype=torch.uint8)
    if n and elements:
        xf = cpu._feature_major(x.reshape(n, plan.channels * plan.height * plan.width))
        c, conn = coeffs.contiguous(), connections.contiguous()
        work = n * elements * plan.window * (plan.leaves - 1)
        if getattr(_library(), f"dg_tree_forward_{_float_suffix(x)}")(
                xf.data_ptr(), c.data_ptr(), conn.data_ptr(), y.data_ptr(),
                winners.data_ptr() if pool is not None else None, plan.geometry, _threads(work)):
            raise MemoryError("the tree kernel could not allocate its per-thread scratch")
    return y.t().reshape(n, plan.out, plan.h_out, plan.w_out), winners


def backward(grad: torch.Tensor, x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor,
             winners: torch.Tensor, kernel_size: Sequence[int], stride: int, padding: int,
             pool: Sequence[int] | None, need_x: bool, need_coeffs: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The C implementation of ``diffgates::logic_tree_conv_backward``: (grad_x feature-major, grad_coeffs),
    an empty tensor for a gradient not requested."""
    plan = _plan(x, coeffs, connections, kernel_size, stride, padding, pool)
    n, elements, rows = plan.n, plan.out * plan.h_out * plan.w_out, plan.channels * plan.height * plan.width
    expected = (n, plan.out, plan.h_out, plan.w_out)
    if tuple(grad.shape) != expected or grad.dtype != x.dtype:
        raise ValueError(f"grad must be {expected} {x.dtype}, got {tuple(grad.shape)} {grad.dtype}")
    # Only the shape matters for safety: a winner outside the window selects no leaf (zero gradient).
    want = (elements, n) if pool is not None else (0,)
    if tuple(winners.shape) != want or winners.dtype != torch.uint8:
        raise ValueError(f"winners must be {want} torch.uint8 (from the forward op), got {tuple(winners.shape)} "
                         f"{winners.dtype}")
    gx = x.new_empty((rows, n)) if need_x else x.new_empty(0)
    gc = coeffs.new_empty(coeffs.shape) if need_coeffs else coeffs.new_empty(0)
    if (need_x or need_coeffs) and not (n and elements):  # empty batch or layer: zero gradients
        gx.zero_(), gc.zero_()
    elif need_x or need_coeffs:
        g = cpu._feature_major(grad.reshape(n, elements))
        xf = cpu._feature_major(x.reshape(n, rows))
        c, conn, win = coeffs.contiguous(), connections.contiguous(), winners.contiguous()
        if getattr(_library(), f"dg_tree_backward_{_float_suffix(x)}")(
                g.data_ptr(), xf.data_ptr(), c.data_ptr(), conn.data_ptr(),
                win.data_ptr() if pool is not None else None, gx.data_ptr() if need_x else None,
                gc.data_ptr() if need_coeffs else None, plan.geometry, _threads(n * elements * (plan.leaves - 1))):
            raise MemoryError("the tree kernel could not allocate its per-thread scratch")
    if need_x:
        gx = gx.t().reshape(n, plan.channels, plan.height, plan.width)
    return gx, gc


# ---- the custom ops --------------------------------------------------------------------------------

torch.library.define("diffgates::logic_tree_conv",
                     "(Tensor x, Tensor coeffs, Tensor connections, int[] kernel_size, int stride, int padding, "
                     "int[]? pool=None) -> (Tensor, Tensor)")
torch.library.define("diffgates::logic_tree_conv_backward",
                     "(Tensor grad, Tensor x, Tensor coeffs, Tensor connections, Tensor winners, int[] kernel_size, "
                     "int stride, int padding, int[]? pool, bool need_x, bool need_coeffs) -> (Tensor, Tensor)")
tree_conv_op = torch.ops.diffgates.logic_tree_conv.default
tree_conv_backward_op = torch.ops.diffgates.logic_tree_conv_backward.default


@torch.library.impl("diffgates::logic_tree_conv", "cpu")
def _tree_conv_cpu(x, coeffs, connections, kernel_size, stride, padding, pool=None):
    return forward(x, coeffs, connections, kernel_size, stride, padding, pool)


@torch.library.register_fake("diffgates::logic_tree_conv")
def _tree_conv_fake(x, coeffs, connections, kernel_size, stride, padding, pool=None):
    n, _, height, width = x.shape
    out = connections.shape[0]
    h_out, w_out = _sizes(height, width, kernel_size, stride, padding, pool)[2:]
    y = x.new_empty((out * h_out * w_out, n)).t().reshape(n, out, h_out, w_out)
    return y, x.new_empty((out * h_out * w_out, n) if pool is not None else (0,), dtype=torch.uint8)


@torch.library.impl("diffgates::logic_tree_conv_backward", "cpu")
def _tree_conv_backward_cpu(grad, x, coeffs, connections, winners, kernel_size, stride, padding, pool, need_x,
                            need_coeffs):
    return backward(grad, x, coeffs, connections, winners, kernel_size, stride, padding, pool, need_x, need_coeffs)


@torch.library.register_fake("diffgates::logic_tree_conv_backward")
def _tree_conv_backward_fake(grad, x, coeffs, connections, winners, kernel_size, stride, padding, pool, need_x,
                             need_coeffs):
    n, channels, height, width = x.shape
    gx = x.new_empty((channels * height * width, n)).t().reshape(n, channels, height, width) if need_x \
        else x.new_empty(0)
    return gx, coeffs.new_empty(coeffs.shape) if need_coeffs else coeffs.new_empty(0)


class _TreeConvFunction(torch.autograd.Function):
    """Autograd of ``diffgates::logic_tree_conv``: the forward op below autograd, the backward op for the gradients."""

    @staticmethod
    def forward(ctx, x, coeffs, connections, kernel_size, stride, padding, pool):
        with torch._C._AutoDispatchBelowAutograd():
            y, winners = tree_conv_op(x, coeffs, connections, kernel_size, stride, padding, pool)
        # The inputs and the winners only: the trees are recomputed in backward.
        ctx.save_for_backward(x, coeffs, connections, winners)
        ctx.geometry = (kernel_size, stride, padding, pool)
        ctx.mark_non_differentiable(winners)
        return y, winners

    @staticmethod
    def backward(ctx, grad, _grad_winners):
        need_x, need_coeffs = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gx, gc = tree_conv_backward_op(grad, *ctx.saved_tensors, *ctx.geometry, need_x, need_coeffs)
        return (gx if need_x else None, gc if need_coeffs else None) + (None,) * 5


@torch.library.impl("diffgates::logic_tree_conv", "Autograd")
def _tree_conv_autograd(x, coeffs, connections, kernel_size, stride, padding, pool=None):
    if torch.is_grad_enabled() and (x.requires_grad or coeffs.requires_grad):
        return _TreeConvFunction.apply(x, coeffs, connections, kernel_size, stride, padding, pool)
    with torch._C._AutoDispatchBelowAutograd():
        return tree_conv_op(x, coeffs, connections, kernel_size, stride, padding, pool)


def logic_tree_conv(x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor, kernel_size: Sequence[int],
                    stride: int, padding: int, pool: Sequence[int] | None = None) -> torch.Tensor:
    """Fused LogicConv2d (+ max pool) over the 4-coefficient form, on CPU.

    Args:
        x: (N, C, H, W) float32 or float64 CPU tensor of probabilities (any strides).
        coeffs: (out * (2^d - 1), 4) tensor of x's dtype: row o (2^d - 1) + g is gate g of tree o
            (level 0 first, the root last; ``reference.gate_coefficients(weights.reshape(-1, P), training)``).
        connections: (out, 2^d, 3) int64 leaves (channel, dy, dx), channel < C, dy < kh, dx < kw.
        kernel_size: (kh, kw); stride >= 1; padding >= 0 (zeros), as a convolution's.
        pool: None, or (kh, kw, sh, sw) of a max pool over the tree outputs (at most 256 window elements).

    Returns:
        (N, out, H_out, W_out) (the pooled size with a pool), a view of a feature-major
        (out H_out W_out, N) buffer, differentiable in ``x`` and ``coeffs``.

    Raises:
        ValueError: a wrong shape, dtype, device, geometry or a leaf out of range (the message names it).
    """
    kernel = _ints(kernel_size, "kernel_size", 2)
    windows = None if pool is None else _ints(pool, "pool", 4)
    for name, value in (("stride", stride), ("padding", padding)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {name}={value!r}")
    return tree_conv_op(x, coeffs, connections, kernel, stride, padding, windows)[0]

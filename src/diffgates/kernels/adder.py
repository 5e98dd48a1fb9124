"""The AdderNet similarity -sum|x - w| with AdderNet's gradients: a plain reference and a fused CPU kernel.

AdderNet (Chen et al., CVPR 2020) replaces a layer's multiply-accumulate by the negative L1 distance
between the input and each output's weights. Both implementations here compute, for rows a (M, K)
and weights w (O, K),

    y[i, o]   = -sum_k |a[i, k] - w[o, k]|
    dL/dw[o, k] = sum_i g[i, o] (a[i, k] - w[o, k])          (full precision, not the sign: the paper's)
    dL/da[i, k] = sum_o g[i, o] clamp(w[o, k] - a[i, k], -1, 1)   (the paper's HardTanh)

and the layers build on them: ``adder_linear(x, w)`` (a = x) and ``adder_conv2d(x, w, stride,
padding)`` (a = the unfolded patches, ``torch.nn.functional.unfold``; zero padding as a convolution).
The layer-wise adaptive learning rate of the paper is not part of these gradients: it is applied to
the weight gradient by the optimizer (``diffgates.nn.adder.AdaptiveGradientScale``).

Implementations (``implementation=``):
  ``'reference'``: the paper's code path, one broadcast of shape (M, O, K) - what AdderNet's own
      im2col does, and why its README warns that it is slow and memory-hungry. It defines the numbers.
  ``'cpu'``: ``adder_kernel.c`` (C11/OpenMP) for the forward and the input gradient, never storing
      anything of size M x O x K; the weight gradient is the matrix product g^T a - w * colsum(g).
      Equal to the reference within float rounding (the sums run in another order); bitwise the same
      for any thread count.
``None`` picks ``'cpu'`` for float32/float64 CPU tensors where the kernel builds, else the reference
(one warning when the kernel cannot be built here).

Usage::

    from diffgates.kernels.adder import adder_conv2d
    y = adder_conv2d(x, weight, stride=1, padding=0)   # x (N, C, H, W), weight (O, C, kh, kw)
"""
from __future__ import annotations

import ctypes
import warnings
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import _native
from . import cpu

IMPLEMENTATIONS = ("reference", "cpu")
_SOURCE = Path(__file__).with_name("adder_kernel.c")
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
FLOAT_DTYPES = tuple(_SUFFIX)
_ptr, _i64 = ctypes.c_void_p, ctypes.c_int64
# Absolute differences per thread below which a call runs on one thread (tests set it to 1).
PARALLEL_GRAIN = 1 << 18


@lru_cache(maxsize=None)
def _library() -> ctypes.CDLL:
    """Build (or fetch from the cache) and load the kernel; raises CompilationError/OSError."""
    lib = _native.open_library(_SOURCE.read_text(), "diffgates_adder_kernel", cpu._build_flags())[1]
    lib.dg_adder_has_openmp.restype = ctypes.c_int
    for suffix in _SUFFIX.values():
        fwd = getattr(lib, f"dg_adder_forward_{suffix}")
        fwd.argtypes = [_ptr, _ptr, _ptr, _i64, _i64, _i64, ctypes.c_int]
        fwd.restype = ctypes.c_int
        bwd = getattr(lib, f"dg_adder_grad_input_{suffix}")
        bwd.argtypes = [_ptr, _ptr, _ptr, _ptr, _i64, _i64, _i64, ctypes.c_int]
        bwd.restype = ctypes.c_int
    return lib


@lru_cache(maxsize=None)
def unavailable_reason() -> str | None:
    """None when the fused kernel builds and loads here, else a one-line reason."""
    return _native.load_failure(_library)


def has_openmp() -> bool:
    """Whether the built kernel runs multi-threaded (it was compiled with OpenMP)."""
    return bool(_library().dg_adder_has_openmp())


def _threads(work: int) -> int:
    return max(1, min(torch.get_num_threads(), work // PARALLEL_GRAIN))


def _check_rows(a: torch.Tensor, w: torch.Tensor) -> None:
    if a.dim() != 2 or w.dim() != 2:
        raise ValueError(f"the adder similarity takes rows a (M, K) and weights w (O, K), got shapes "
                         f"{tuple(a.shape)} and {tuple(w.shape)}")
    if a.shape[1] != w.shape[1]:
        raise ValueError(f"a has {a.shape[1]} values per row but the weights have {w.shape[1]} "
                         f"(a {tuple(a.shape)}, w {tuple(w.shape)})")
    if a.dtype != w.dtype or a.device != w.device:
        raise ValueError(f"a and w must share dtype and device, got {a.dtype} on {a.device} and {w.dtype} on {w.device}")


def _weight_grad(g: torch.Tensor, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum_i g[i, o] (a[i, k] - w[o, k]), as a matrix product (no M x O x K temporary)."""
    return g.t().mm(a) - w * g.sum(0).unsqueeze(1)


class _ReferenceRows(torch.autograd.Function):
    """The paper's formulas over one (M, O, K) broadcast."""

    @staticmethod
    def forward(ctx, a, w):
        ctx.save_for_backward(a, w)
        return -(a.unsqueeze(1) - w.unsqueeze(0)).abs().sum(2)

    @staticmethod
    def backward(ctx, g):
        a, w = ctx.saved_tensors
        diff = a.unsqueeze(1) - w.unsqueeze(0)  # (M, O, K): a - w
        ga = (g.unsqueeze(2) * (-diff).clamp(-1, 1)).sum(1) if ctx.needs_input_grad[0] else None
        gw = (g.unsqueeze(2) * diff).sum(0) if ctx.needs_input_grad[1] else None
        return ga, gw


class _FusedRows(torch.autograd.Function):
    """``adder_kernel.c`` for the forward and dL/da; dL/dw as a matrix product."""

    @staticmethod
    def forward(ctx, a, w):
        a, w = a.contiguous(), w.contiguous()
        m, k = a.shape
        o = w.shape[0]
        y = a.new_empty((m, o))
        if m and o:
            getattr(_library(), f"dg_adder_forward_{_SUFFIX[a.dtype]}")(
                a.data_ptr(), w.data_ptr(), y.data_ptr(), m, k, o, _threads(m * o * k))
        ctx.save_for_backward(a, w)
        return y

    @staticmethod
    def backward(ctx, g):
        a, w = ctx.saved_tensors
        g = g.contiguous()
        m, k = a.shape
        o = w.shape[0]
        ga = gw = None
        if ctx.needs_input_grad[0]:
            ga = a.new_empty((m, k))
            if m and o:
                getattr(_library(), f"dg_adder_grad_input_{_SUFFIX[a.dtype]}")(
                    g.data_ptr(), a.data_ptr(), w.data_ptr(), ga.data_ptr(), m, k, o, _threads(m * o * k))
            else:
                ga.zero_()
        if ctx.needs_input_grad[1]:
            gw = _weight_grad(g, a, w)
        return ga, gw


_warned: set[str] = set()


def _resolve(a: torch.Tensor, implementation: str | None) -> str:
    if implementation is not None:
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation={implementation!r} is not known; expected one of {IMPLEMENTATIONS} or None")
        if implementation == "cpu":
            if a.device.type != "cpu" or a.dtype not in FLOAT_DTYPES:
                raise ValueError(f"the fused adder kernel takes float32/float64 CPU tensors, got {a.dtype} on {a.device}")
            reason = unavailable_reason()
            if reason:
                raise RuntimeError(f"the fused adder kernel cannot run here: {reason}")
        return implementation
    if a.device.type != "cpu" or a.dtype not in FLOAT_DTYPES:
        return "reference"
    reason = unavailable_reason()
    if reason:
        if reason not in _warned:
            _warned.add(reason)
            warnings.warn(f"diffgates: the fused adder kernel cannot run here ({reason}); using the reference, "
                          f"which stores an (M, O, K) temporary", RuntimeWarning, stacklevel=3)
        return "reference"
    return "cpu"


def adder_rows(a: torch.Tensor, w: torch.Tensor, implementation: str | None = None) -> torch.Tensor:
    """(M, O): -sum_k |a[i, k] - w[o, k]| for rows ``a`` (M, K) and weights ``w`` (O, K), AdderNet's gradients."""
    _check_rows(a, w)
    fn = _FusedRows if _resolve(a, implementation) == "cpu" else _ReferenceRows
    return fn.apply(a, w)


def adder_linear(x: torch.Tensor, weight: torch.Tensor, implementation: str | None = None) -> torch.Tensor:
    """(N, O) adder outputs of a dense layer: ``x`` (N, K), ``weight`` (O, K)."""
    if x.dim() != 2:
        raise ValueError(f"adder_linear expects x of shape (N, in_features), got {tuple(x.shape)}")
    return adder_rows(x, weight, implementation)


def adder_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0,
                 implementation: str | None = None) -> torch.Tensor:
    """(N, O, H', W') adder outputs of a convolution: ``x`` (N, C, H, W), ``weight`` (O, C, kh, kw), zero padding."""
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(f"adder_conv2d expects x (N, C, H, W) and weight (O, C, kh, kw), got {tuple(x.shape)} "
                         f"and {tuple(weight.shape)}")
    n, c, h, w_in = x.shape
    o, wc, kh, kw = weight.shape
    if wc != c:
        raise ValueError(f"weight {tuple(weight.shape)} expects {wc} input channels, x has {c}")
    h_out, w_out = (h + 2 * padding - kh) // stride + 1, (w_in + 2 * padding - kw) // stride + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"a {kh}x{kw} kernel with padding {padding} needs an input of at least "
                         f"{kh - 2 * padding}x{kw - 2 * padding}, got {h}x{w_in}")
    cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # (N, C kh kw, L)
    rows = cols.transpose(1, 2).reshape(n * h_out * w_out, c * kh * kw)
    y = adder_rows(rows, weight.reshape(o, -1), implementation)  # (N L, O)
    return y.view(n, h_out * w_out, o).transpose(1, 2).reshape(n, o, h_out, w_out)

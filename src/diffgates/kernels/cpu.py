"""Fused CPU kernel for LogicLayer: C11/OpenMP source (``cpu_kernel.c``) exposed as torch custom ops.

``logic_layer(x, coeffs, connections)`` computes ``c0 + c1 a + c2 b + c3 ab`` per neuron, with
``a = x[:, connections[0]]``, ``b = x[:, connections[1]]`` - the same numbers as
``reference.logic_layer_coefficients_reference`` - in one pass over memory, differentiable in ``x`` and
``coeffs``. It is registered as ``torch.ops.diffgates.logic_layer_cpu`` (with a fake/meta function and
autograd whose backward is the second op ``torch.ops.diffgates.logic_layer_cpu_backward``), so it also
works under ``torch.compile`` and ``torch.library.opcheck``.

Layout: the kernel keeps activations feature-major (see ``cpu_kernel.c`` for the measurements), so the
(N, out) output is returned as the transpose of an (out, N) buffer: ``y.stride() == (1, N)``. Stacked
layers hand these views to each other without copies; code that needs ``.view`` on an output calls
``.contiguous()`` first, as for any transposed tensor.

The C library is compiled on first use through ``diffgates._native.build_shared_library`` (cached on
disk by source hash, about a second) and loaded with ctypes. ``unavailable_reason()`` says why it
cannot be built here (no compiler: ``DIFFGATES_CC=/nonexistent``), and ``diffgates.kernels`` then
falls back to the reference with one warning. Threads: ``torch.get_num_threads()`` at call time
(one for layers too small to gain from more, see ``PARALLEL_GRAIN``).

Usage::

    from diffgates.kernels import cpu, gate_coefficients
    y = cpu.logic_layer(x, gate_coefficients(weights, training=True), connections)
"""
from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path

import torch

from .. import _native
from .arguments import check_logic_layer_args

if not hasattr(torch.library, "register_autograd"):  # the dispatcher turns this into "unavailable", not a crash
    raise ImportError(f"the fused CPU kernel needs torch >= 2.4 (torch.library.register_autograd), "
                      f"found {torch.__version__}")

_SOURCE = Path(__file__).with_name("cpu_kernel.c")
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}

_ptr = ctypes.c_void_p
_i64 = ctypes.c_int64


def _isa_flags() -> list[str]:
    """Vector ISA flags for this CPU (torch's own runtime dispatch level); part of the cache key."""
    level = torch.backends.cpu.get_cpu_capability()
    if level.startswith("AVX512") and _native.compiler_supports("-mavx512f"):
        return ["-mavx512f", "-mavx512vl", "-mavx2", "-mfma"]
    if level.startswith("AVX") and _native.compiler_supports("-mavx2"):
        return ["-mavx2", "-mfma"]
    return []


def _build_flags() -> list[str]:
    flags = ["-O3", "-std=c11"]
    # Without OpenMP the same source builds single-threaded; -fopenmp-simd still honours the
    # `omp simd reduction` pragmas, which let the compiler vectorise the float sums.
    if _native.compiler_supports("-fopenmp"):
        flags.append("-fopenmp")
    elif _native.compiler_supports("-fopenmp-simd"):
        flags.append("-fopenmp-simd")
    return flags + _isa_flags()


@lru_cache(maxsize=None)
def _library() -> ctypes.CDLL:
    """Build (or fetch from the cache) and load the kernel library; raises CompilationError/OSError."""
    lib = _native.load_library(_native.build_shared_library(_SOURCE.read_text(), "diffgates_cpu_kernel",
                                                            _build_flags()))
    lib.dg_check_connections.argtypes = [_ptr, _i64, _i64]
    lib.dg_check_connections.restype = _i64
    lib.dg_has_openmp.restype = ctypes.c_int
    for suffix in _SUFFIX.values():
        fwd = getattr(lib, f"dg_forward_{suffix}")
        fwd.argtypes = [_ptr, _ptr, _ptr, _ptr, _i64, _i64, _i64, ctypes.c_int]
        fwd.restype = ctypes.c_int
        bwd = getattr(lib, f"dg_backward_{suffix}")
        bwd.argtypes = [_ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _i64, _i64, _i64, ctypes.c_int]
        bwd.restype = ctypes.c_int
        tr = getattr(lib, f"dg_transpose_{suffix}")
        tr.argtypes = [_ptr, _ptr, _i64, _i64, ctypes.c_int]
        tr.restype = ctypes.c_int
    return lib


@lru_cache(maxsize=None)
def unavailable_reason() -> str | None:
    """None when the kernel builds and loads here, else why not (cached for the process).

    Returns:
        ``None``, or a one-line reason such as ``"no C compiler found (looked for '/nonexistent'...)"``.
    """
    try:
        _library()
    except (_native.CompilationError, OSError) as exc:
        return str(exc).splitlines()[0]
    return None


def has_openmp() -> bool:
    """Whether the built kernel runs multi-threaded (it was compiled with OpenMP)."""
    return bool(_library().dg_has_openmp())


# Work (output elements) per thread below which a call runs single-threaded, as torch's own grain
# size: waking a second thread costs more than it saves on small layers, and on an oversubscribed
# machine every parallel region can wait a scheduler slice for a descheduled thread. Tests set it to
# 1 to exercise the multi-threaded paths at small sizes.
PARALLEL_GRAIN = 32768


def _threads(work: int) -> int:
    """Threads for a call producing ``work`` elements: torch.get_num_threads(), fewer for small work."""
    return max(1, min(torch.get_num_threads(), work // PARALLEL_GRAIN))


def _feature_major(t: torch.Tensor) -> torch.Tensor:
    """(rows, features) tensor as a contiguous (features, rows) block; no copy if already laid out so."""
    if t.t().is_contiguous():
        return t.t()
    src = t.contiguous()  # batch-major (the usual other case) or arbitrary strides
    out = src.new_empty((src.shape[1], src.shape[0]))
    if src.numel():
        getattr(_library(), f"dg_transpose_{_SUFFIX[src.dtype]}")(
            src.data_ptr(), out.data_ptr(), src.shape[0], src.shape[1], _threads(src.numel()))
    return out


def _check(x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor) -> None:
    """Validate shapes, dtypes, devices and index ranges; the C code trusts all of them."""
    for name, t in (("x", x), ("coeffs", coeffs), ("connections", connections)):
        if t.device.type != "cpu":
            raise ValueError(f"logic_layer_cpu needs CPU tensors, got {name} on {t.device}")
    check_logic_layer_args("logic_layer_cpu", x, coeffs, connections, float_dtypes=tuple(_SUFFIX))
    out = connections.shape[1]
    conn = connections.contiguous()
    bad = _library().dg_check_connections(conn.data_ptr(), out, x.shape[1])
    if bad >= 0:
        row, col = divmod(int(bad), out)
        raise ValueError(f"connections[{row}, {col}] = {int(conn.view(-1)[bad])} is outside [0, {x.shape[1] - 1}] "
                         f"for x with {x.shape[1]} features")


# The ops are declared with torch.library.define/impl rather than the torch.library.custom_op
# decorator: same schema, fake and autograd registrations, but custom_op wraps the kernel in a lazy
# torch._dynamo import on first call, measured at +150 MB RSS and seconds of start-up in processes
# that would not load it otherwise (inference, circuit extraction; torch.optim loads it anyway).
torch.library.define("diffgates::logic_layer_cpu", "(Tensor x, Tensor coeffs, Tensor connections) -> Tensor")
torch.library.define("diffgates::logic_layer_cpu_backward",
                     "(Tensor grad, Tensor x, Tensor coeffs, Tensor connections, bool need_x, bool need_coeffs) "
                     "-> (Tensor, Tensor)")


@torch.library.impl("diffgates::logic_layer_cpu", "cpu")
def _forward_op(x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor) -> torch.Tensor:
    _check(x, coeffs, connections)
    n, in_dim = x.shape
    out = connections.shape[1]
    y = x.new_empty((out, n))
    if n and out:
        xf, c, conn = _feature_major(x), coeffs.contiguous(), connections.contiguous()
        getattr(_library(), f"dg_forward_{_SUFFIX[x.dtype]}")(
            xf.data_ptr(), c.data_ptr(), conn.data_ptr(), y.data_ptr(), n, in_dim, out, _threads(n * out))
    return y.t()


@torch.library.register_fake("diffgates::logic_layer_cpu")
def _forward_fake(x, coeffs, connections):
    return x.new_empty((connections.shape[1], x.shape[0])).t()


@torch.library.impl("diffgates::logic_layer_cpu_backward", "cpu")
def _backward_op(grad: torch.Tensor, x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor,
                 need_x: bool, need_coeffs: bool) -> tuple[torch.Tensor, torch.Tensor]:
    _check(x, coeffs, connections)
    n, in_dim = x.shape
    out = connections.shape[1]
    if tuple(grad.shape) != (n, out) or grad.dtype != x.dtype:
        raise ValueError(f"grad must be ({n}, {out}) {x.dtype}, got {tuple(grad.shape)} {grad.dtype}")
    gx = x.new_empty((in_dim, n)) if need_x else x.new_empty((0, n))
    gc = coeffs.new_empty((out, 4)) if need_coeffs else coeffs.new_empty((0, 4))
    if (need_x or need_coeffs) and not (n and out):  # empty batch or layer: zero gradients
        gx.zero_(), gc.zero_()
    elif need_x or need_coeffs:
        threads = _threads(n * out)
        partial = x.new_empty((threads - 1) * out * 4 if need_coeffs else 0)
        g, xf, c, conn = _feature_major(grad), _feature_major(x), coeffs.contiguous(), connections.contiguous()
        getattr(_library(), f"dg_backward_{_SUFFIX[x.dtype]}")(
            g.data_ptr(), xf.data_ptr(), c.data_ptr(), conn.data_ptr(), gx.data_ptr() if need_x else None,
            gc.data_ptr() if need_coeffs else None, partial.data_ptr() if partial.numel() else None,
            n, in_dim, out, threads)
    return gx.t(), gc


@torch.library.register_fake("diffgates::logic_layer_cpu_backward")
def _backward_fake(grad, x, coeffs, connections, need_x, need_coeffs):
    n, in_dim = x.shape
    out = connections.shape[1]
    return x.new_empty((in_dim if need_x else 0, n)).t(), coeffs.new_empty((out if need_coeffs else 0, 4))


def _setup_context(ctx, inputs, output):
    x, coeffs, connections = inputs
    ctx.save_for_backward(x, coeffs, connections)  # the forward saves only its inputs: a, b are recomputed


def _backward(ctx, grad):
    x, coeffs, connections = ctx.saved_tensors
    need_x, need_coeffs = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    gx, gc = torch.ops.diffgates.logic_layer_cpu_backward(grad, x, coeffs, connections, need_x, need_coeffs)
    return (gx if need_x else None), (gc if need_coeffs else None), None


torch.library.register_autograd("diffgates::logic_layer_cpu", _backward, setup_context=_setup_context)


def logic_layer(x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor) -> torch.Tensor:
    """Fused LogicLayer over the 4-coefficient form, on CPU.

    Args:
        x: (N, in_dim) float32 or float64 CPU tensor of probabilities (any strides).
        coeffs: (out_dim, 4) tensor of x's dtype, (c0, c1, c2, c3) per neuron
            (``reference.gate_coefficients(weights, training)``).
        connections: (2, out_dim) int64 input indices in [0, in_dim): row 0 feeds a, row 1 feeds b.

    Returns:
        (N, out_dim) tensor ``c0 + c1 a + c2 b + c3 ab``, stored feature-major (stride (1, N)),
        differentiable in ``x`` and ``coeffs``.

    Raises:
        ValueError: a wrong shape, dtype, device or an index out of range (the message names it).
    """
    return torch.ops.diffgates.logic_layer_cpu(x, coeffs, connections)

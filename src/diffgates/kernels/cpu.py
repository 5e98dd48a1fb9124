"""Fused CPU kernel for LogicLayer: C11/OpenMP source (``cpu_kernel.c``), the CPU implementation of the ops.

``logic_layer(x, coeffs, connections, coeff_index=None)`` computes ``c0 + c1 a + c2 b + c3 ab`` per
neuron, with ``a = x[:, connections[0]]``, ``b = x[:, connections[1]]`` and the neuron's coefficient
row (``coeffs[coeff_index[j]]`` when given) - the same numbers as
``reference.logic_layer_coefficients_reference`` - in one pass over memory, differentiable in ``x`` and
``coeffs``. It calls the op ``torch.ops.diffgates.logic_layer`` (``kernels/ops.py``: schema, fake
function, autograd), whose CPU implementation is ``forward`` here and whose backward op's is
``backward``; so it also works under ``torch.compile`` and ``torch.library.opcheck``.
``coefficients_forward``/``coefficients_backward`` are the CPU implementation of
``diffgates::gate_coefficients``: softmax over the 16 logits -> 4 coefficients in one pass (measured
35 + 50 us forward + backward for 8000 neurons, float32, 2 threads, vs 150 us for the reference's
softmax and matmul through autograd); ``entry_coefficients_forward``/``_backward`` the same for the
iwp and walsh parametrizations' sigmoids (``diffgates::entry_coefficients``).

Layout: the kernel keeps activations feature-major (see ``cpu_kernel.c`` for the measurements), so the
(N, out) output is returned as the transpose of an (out, N) buffer: ``y.stride() == (1, N)``. Stacked
layers hand these views to each other without copies; code that needs ``.view`` on an output calls
``.contiguous()`` first, as for any transposed tensor.

The C library is compiled on first use through ``diffgates._native.open_library`` (cached on disk by
source hash, about a second; checked, and rebuilt when damaged, before loading) and loaded with
ctypes. ``unavailable_reason()`` says why it cannot be built here (no compiler:
``DIFFGATES_CC=/nonexistent``), and ``diffgates.kernels`` then falls back to the reference with one
warning. Threads: ``torch.get_num_threads()`` at call time (one for layers too small to gain from
more, see ``PARALLEL_GRAIN``).

Usage::

    from diffgates.kernels import cpu, gate_coefficients
    y = cpu.logic_layer(x, gate_coefficients(weights, training=True), connections)
"""
from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path

import torch

from .. import _native, gates
from . import ops, parametrizations
from .arguments import check_logic_layer_args, index_error

_SOURCE = Path(__file__).with_name("cpu_kernel.c")
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
FLOAT_DTYPES = tuple(_SUFFIX)  # what the C kernel computes in

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
    lib = _native.open_library(_SOURCE.read_text(), "diffgates_cpu_kernel", _build_flags())[1]
    lib.dg_check_connections.argtypes = [_ptr, _i64, _i64]
    lib.dg_check_connections.restype = _i64
    lib.dg_check_index.argtypes = [_ptr, _i64, _i64]
    lib.dg_check_index.restype = _i64
    lib.dg_has_openmp.restype = ctypes.c_int
    for suffix in _SUFFIX.values():
        fwd = getattr(lib, f"dg_forward_{suffix}")
        fwd.argtypes = [_ptr, _ptr, _ptr, _ptr, _ptr, _i64, _i64, _i64, ctypes.c_int]
        fwd.restype = ctypes.c_int
        bwd = getattr(lib, f"dg_backward_{suffix}")
        bwd.argtypes = [_ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, ctypes.c_int]
        bwd.restype = ctypes.c_int
        tr = getattr(lib, f"dg_transpose_{suffix}")
        tr.argtypes = [_ptr, _ptr, _i64, _i64, ctypes.c_int]
        tr.restype = ctypes.c_int
        cf = getattr(lib, f"dg_coefficients_forward_{suffix}")
        cf.argtypes = [_ptr, _ptr, _ptr, _i64, ctypes.c_int]
        cf.restype = ctypes.c_int
        cb = getattr(lib, f"dg_coefficients_backward_{suffix}")
        cb.argtypes = [_ptr, _ptr, _ptr, _ptr, _i64, ctypes.c_int]
        cb.restype = ctypes.c_int
        ef = getattr(lib, f"dg_entry_coefficients_forward_{suffix}")
        ef.argtypes = [_ptr, _ptr, _ptr, _ptr, _i64, ctypes.c_int]
        ef.restype = ctypes.c_int
        eb = getattr(lib, f"dg_entry_coefficients_backward_{suffix}")
        eb.argtypes = [_ptr, _ptr, _ptr, _ptr, _ptr, _i64, ctypes.c_int]
        eb.restype = ctypes.c_int
    return lib


@lru_cache(maxsize=None)
def unavailable_reason() -> str | None:
    """None when the kernel builds and loads here, else why not (cached for the process).

    Returns:
        ``None``, or a one-line reason such as ``"no C compiler found (looked for '/nonexistent'...)"``.
    """
    return _native.load_failure(_library)


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


def _check(x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor,
           coeff_index: torch.Tensor | None) -> None:
    """Validate shapes, dtypes, devices and index ranges; the C code trusts all of them."""
    for name, t in (("x", x), ("coeffs", coeffs), ("connections", connections), ("coeff_index", coeff_index)):
        if t is not None and t.device.type != "cpu":
            raise ValueError(f"the fused CPU kernel needs CPU tensors, got {name} on {t.device}")
    check_logic_layer_args("the fused CPU kernel", x, coeffs, connections, coeff_index, float_dtypes=FLOAT_DTYPES)
    out = connections.shape[1]
    lib = _library()
    conn = connections.contiguous()
    bad = lib.dg_check_connections(conn.data_ptr(), out, x.shape[1])
    if bad >= 0:
        raise index_error("connections", divmod(int(bad), out), int(conn.view(-1)[bad]), x.shape[1],
                          f"x with {x.shape[1]} features")
    if coeff_index is not None:
        index = coeff_index.contiguous()
        bad = lib.dg_check_index(index.data_ptr(), out, coeffs.shape[0])
        if bad >= 0:
            raise index_error("coeff_index", (int(bad),), int(index[bad]), coeffs.shape[0],
                              f"coeffs with {coeffs.shape[0]} rows")


def _pointer(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


def forward(x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor,
            coeff_index: torch.Tensor | None) -> torch.Tensor:
    """The C implementation of ``diffgates::logic_layer``: (N, out) output, feature-major."""
    _check(x, coeffs, connections, coeff_index)
    n, in_dim = x.shape
    out = connections.shape[1]
    y = x.new_empty((out, n))
    if n and out:
        xf, c, conn = _feature_major(x), coeffs.contiguous(), connections.contiguous()
        index = None if coeff_index is None else coeff_index.contiguous()
        getattr(_library(), f"dg_forward_{_SUFFIX[x.dtype]}")(
            xf.data_ptr(), c.data_ptr(), conn.data_ptr(), _pointer(index), y.data_ptr(), n, in_dim, out,
            _threads(n * out))
    return y.t()


def backward(grad: torch.Tensor, x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor,
             coeff_index: torch.Tensor | None, need_x: bool, need_coeffs: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The C implementation of ``diffgates::logic_layer_backward``: (grad_x feature-major, grad_coeffs),
    an empty tensor for a gradient not requested."""
    _check(x, coeffs, connections, coeff_index)
    n, in_dim = x.shape
    out, rows = connections.shape[1], coeffs.shape[0]
    if tuple(grad.shape) != (n, out) or grad.dtype != x.dtype:
        raise ValueError(f"grad must be ({n}, {out}) {x.dtype}, got {tuple(grad.shape)} {grad.dtype}")
    gx = x.new_empty((in_dim, n)) if need_x else x.new_empty(0)
    gc = coeffs.new_empty((rows, 4)) if need_coeffs else coeffs.new_empty(0)
    if (need_x or need_coeffs) and not (n and out):  # empty batch or layer: zero gradients
        gx.zero_(), gc.zero_()
    elif need_x or need_coeffs:
        threads = _threads(n * out)
        partial = x.new_empty((threads - 1) * rows * 4 if need_coeffs else 0)
        g, xf, c, conn = _feature_major(grad), _feature_major(x), coeffs.contiguous(), connections.contiguous()
        index = None if coeff_index is None else coeff_index.contiguous()
        getattr(_library(), f"dg_backward_{_SUFFIX[x.dtype]}")(
            g.data_ptr(), xf.data_ptr(), c.data_ptr(), conn.data_ptr(), _pointer(index),
            gx.data_ptr() if need_x else None, gc.data_ptr() if need_coeffs else None,
            partial.data_ptr() if partial.numel() else None, n, in_dim, out, rows, threads)
    return (gx.t() if need_x else gx), gc


@lru_cache(maxsize=None)
def _coeff_table(dtype: torch.dtype) -> torch.Tensor:
    """``gates.COEFFS`` transposed, (4, 16): the kernel reads each coefficient's 16 gate values in a row."""
    return torch.as_tensor(gates.COEFFS.T.copy(), dtype=dtype)


def _check_weights(weights: torch.Tensor, width: int = 16) -> None:
    """(out_dim, width) CPU float weights: 16 gate logits, or 4 iwp/walsh parameters."""
    if weights.device.type != "cpu":
        raise ValueError(f"the fused CPU kernel needs CPU tensors, got weights on {weights.device}")
    if weights.dim() != 2 or weights.shape[1] != width:
        raise ValueError(f"weights must have shape (out_dim, {width}), got {tuple(weights.shape)}")
    if weights.dtype not in FLOAT_DTYPES:
        raise ValueError(f"the fused CPU kernel supports {', '.join(str(t) for t in FLOAT_DTYPES)}; got "
                         f"weights.dtype={weights.dtype}")


def coefficients_forward(weights: torch.Tensor) -> torch.Tensor:
    """The C implementation of ``diffgates::gate_coefficients``: softmax(weights) @ COEFFS, fused."""
    _check_weights(weights)
    w = weights.contiguous()
    c = w.new_empty((w.shape[0], 4))
    if w.shape[0]:
        getattr(_library(), f"dg_coefficients_forward_{_SUFFIX[w.dtype]}")(
            w.data_ptr(), _coeff_table(w.dtype).data_ptr(), c.data_ptr(), w.shape[0], _threads(w.numel()))
    return c


def coefficients_backward(weights: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The C implementation of ``diffgates::gate_coefficients_backward`` (the softmax is recomputed)."""
    _check_weights(weights)
    if tuple(grad.shape) != (weights.shape[0], 4) or grad.dtype != weights.dtype:
        raise ValueError(f"grad must be ({weights.shape[0]}, 4) {weights.dtype}, got {tuple(grad.shape)} {grad.dtype}")
    w, g = weights.contiguous(), grad.contiguous()
    gw = torch.empty_like(w)
    if w.shape[0]:
        getattr(_library(), f"dg_coefficients_backward_{_SUFFIX[w.dtype]}")(
            w.data_ptr(), _coeff_table(w.dtype).data_ptr(), g.data_ptr(), gw.data_ptr(), w.shape[0],
            _threads(w.numel()))
    return gw


@lru_cache(maxsize=None)
def _entry_tables(parametrization: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, E): the entry-logit transform of ``parametrization`` and ``gates.ENTRY_COEFFS``, contiguous."""
    return (parametrizations.logit_transform(parametrization, dtype, "cpu").contiguous(),
            torch.as_tensor(gates.ENTRY_COEFFS, dtype=dtype).contiguous())


def entry_coefficients_forward(weights: torch.Tensor, parametrization: str) -> torch.Tensor:
    """The C implementation of ``diffgates::entry_coefficients``: sigmoid(entry logits) @ ENTRY_COEFFS, fused."""
    _check_weights(weights, 4)
    w = weights.contiguous()
    c = w.new_empty((w.shape[0], 4))
    if w.shape[0]:
        tt, et = _entry_tables(parametrization, w.dtype)
        getattr(_library(), f"dg_entry_coefficients_forward_{_SUFFIX[w.dtype]}")(
            w.data_ptr(), tt.data_ptr(), et.data_ptr(), c.data_ptr(), w.shape[0], _threads(w.numel()))
    return c


def entry_coefficients_backward(weights: torch.Tensor, grad: torch.Tensor, parametrization: str) -> torch.Tensor:
    """The C implementation of ``diffgates::entry_coefficients_backward`` (the sigmoids are recomputed)."""
    _check_weights(weights, 4)
    if tuple(grad.shape) != (weights.shape[0], 4) or grad.dtype != weights.dtype:
        raise ValueError(f"grad must be ({weights.shape[0]}, 4) {weights.dtype}, got {tuple(grad.shape)} {grad.dtype}")
    w, g = weights.contiguous(), grad.contiguous()
    gw = torch.empty_like(w)
    if w.shape[0]:
        tt, et = _entry_tables(parametrization, w.dtype)
        getattr(_library(), f"dg_entry_coefficients_backward_{_SUFFIX[w.dtype]}")(
            w.data_ptr(), tt.data_ptr(), et.data_ptr(), g.data_ptr(), gw.data_ptr(), w.shape[0], _threads(w.numel()))
    return gw


def logic_layer(x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor,
                coeff_index: torch.Tensor | None = None) -> torch.Tensor:
    """Fused LogicLayer over the 4-coefficient form, on CPU.

    Args:
        x: (N, in_dim) float32 or float64 CPU tensor of probabilities (any strides).
        coeffs: (out_dim, 4) tensor of x's dtype, (c0, c1, c2, c3) per neuron
            (``reference.gate_coefficients(weights, training)``); or (rows, 4) with ``coeff_index``.
        connections: (2, out_dim) int64 input indices in [0, in_dim): row 0 feeds a, row 1 feeds b.
        coeff_index: optional (out_dim,) int64 rows of coeffs in [0, rows): neuron j uses
            ``coeffs[coeff_index[j]]``, and a row's gradient sums over the neurons that use it.

    Returns:
        (N, out_dim) tensor ``c0 + c1 a + c2 b + c3 ab``, stored feature-major (stride (1, N)),
        differentiable in ``x`` and ``coeffs``.

    Raises:
        ValueError: a wrong shape, dtype, device or an index out of range (the message names it).
    """
    return ops.logic_layer(x, coeffs, connections, coeff_index)

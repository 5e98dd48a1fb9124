"""Triton implementation of the LogicLayer ops (``kernels/ops.py``) for CUDA tensors, and its entry points.

``logic_layer(x, coeffs, connections, coeff_index=None)`` computes ``c0 + c1 a + c2 b + c3 ab`` per
neuron, with ``a = x[:, connections[0]]``, ``b = x[:, connections[1]]`` and the neuron's row of
``coeffs`` (row ``coeff_index[j]`` when given), differentiable in ``x`` and ``coeffs``: the op
``torch.ops.diffgates.logic_layer`` with the wiring below. ``gate_coefficients(weights, training)``
is the fused softmax -> 4 coefficients step (``torch.ops.diffgates.gate_coefficients``), one launch
each way instead of the reference's five. ``forward``/``backward``/``coefficients_*`` are what the
ops' CUDA implementations (and their CPU ones, under the interpreter) run.

Input gradient, two ways (``set_backward_mode`` or ``DIFFGATES_GPU_BACKWARD``):
  ``'csr'`` (default, deterministic): connections are fixed, so every layer gets once a CSR "fan-out"
      index (``fanout_index``: for each input, the (neuron, operand) pairs reading it), cached per
      connections tensor; the gradient is a gather-and-sum in a fixed order, no atomics. Shared
      coefficient rows likewise get a CSR of ``coeff_index`` (``coeff_index_csr``) and a fixed-order
      segment sum of the per-neuron coefficient gradients.
  ``'atomic'``: scatter-adds with atomics inside the coefficient-gradient kernel (one kernel fewer,
      results vary in the last bits between runs). ``torch.use_deterministic_algorithms(True)``
      forces ``'csr'``.

Devices: CUDA tensors. CPU tensors run these kernels only under Triton's interpreter
(``TRITON_INTERPRET=1`` set before the kernels are first used) and only when asked: the functions here
pass ``interpret=True`` to the ops for CPU tensors (``diffgates.kernels.logic_layer`` does so for
``implementation='gpu'``); the ops' CPU implementation otherwise runs the C kernel. That is how the
test-suite checks the kernels without a GPU. ``unavailable_reason()`` says why the kernels cannot
run here, for ``diffgates.kernels`` to fall back.

The first call with a new connections (or coefficient index) tensor builds its CSR index (one device
sync, and the index-range check); later calls are sync-free, so a warmed-up training step can be
captured in a CUDA graph.

Example::

    from diffgates.kernels import gpu
    coeffs = gpu.gate_coefficients(layer.weights, training=True)
    y = gpu.logic_layer(x.cuda(), coeffs, layer.connections)
"""
from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

import torch

from .._triton import interpreting, triton_module, unavailable_reason
from . import ops
from .arguments import check_index_range, check_logic_layer_args
from .reference import gate_coefficients as _reference_gate_coefficients

__all__ = ["BACKWARD_MODES", "CoeffIndex", "Wiring", "backward_mode", "coeff_index_csr", "fanout_index",
           "gate_coefficients", "interpreting", "logic_layer", "set_backward_mode", "unavailable_reason", "wiring"]

BACKWARD_MODES = ("csr", "atomic")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_INDEX_DTYPES = (torch.int64, torch.int32)
_backward_mode = os.environ.get("DIFFGATES_GPU_BACKWARD", "csr").strip().lower() or "csr"


def _kernels(device: torch.device):
    """The training-kernel module, checked to suit tensors on ``device``."""
    return triton_module("diffgates.kernels.gpu_triton", device, "the diffgates GPU kernels")


# ---- backward mode ---------------------------------------------------------------------------------

def set_backward_mode(mode: str) -> None:
    """Choose how the input gradient is computed: ``'csr'`` (deterministic) or ``'atomic'``."""
    global _backward_mode
    key = str(mode).strip().lower()
    if key not in BACKWARD_MODES:
        raise ValueError(f"backward mode {mode!r} is not known; expected one of {BACKWARD_MODES}")
    _backward_mode = key


def backward_mode() -> str:
    """The input-gradient method in effect (``'csr'`` whenever torch demands determinism)."""
    if _backward_mode not in BACKWARD_MODES:
        raise ValueError(f"DIFFGATES_GPU_BACKWARD={_backward_mode!r} is not known; expected one of "
                         f"{BACKWARD_MODES}")
    return "csr" if torch.are_deterministic_algorithms_enabled() else _backward_mode


# ---- wiring: int32 copies and CSR indices, cached per index tensor ----------------------------------

@dataclass(frozen=True)
class Wiring:
    """Per-layer index data the kernels read.

    Attributes:
        conn: int32 (2, out) copy of the connections.
        fan_offsets: int32 (in + 1,): input i's consumers are ``fan_entries[fan_offsets[i]:fan_offsets[i+1]]``.
        fan_entries: int32 (2 * out,): entry ``slot * out + j`` says input i is operand ``slot`` (0 = a,
            1 = b) of neuron j; entries of one input are in increasing order.
    """

    conn: torch.Tensor
    fan_offsets: torch.Tensor
    fan_entries: torch.Tensor


@dataclass(frozen=True)
class CoeffIndex:
    """A coefficient index in the kernels' form.

    Attributes:
        index: int32 (out,) copy of coeff_index.
        row_offsets: int32 (rows + 1,): row r's neurons are ``row_entries[row_offsets[r]:row_offsets[r+1]]``.
        row_entries: int32 (out,): neuron ids grouped by row, increasing within a row.
    """

    index: torch.Tensor
    row_offsets: torch.Tensor
    row_entries: torch.Tensor


def _csr(flat: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(offsets int32 (groups + 1,), entries int32): positions of ``flat`` grouped by value, in order."""
    flat = flat.to(torch.int64)
    entries = torch.argsort(flat, stable=True)  # stable: a fixed summation order per group
    # offsets[g] = number of entries with a value < g (searchsorted: deterministic, no atomics).
    bounds = torch.arange(groups + 1, dtype=torch.int64, device=flat.device)
    offsets = torch.searchsorted(flat[entries], bounds)
    return offsets.to(torch.int32), entries.to(torch.int32)


def fanout_index(connections: torch.Tensor, in_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR index of each input's consumers (see ``Wiring``), built on the connections' device.

    Args:
        connections: (2, out) integer tensor with values in [0, in_dim).
        in_dim: number of inputs.

    Returns:
        (fan_offsets int32 (in_dim + 1,), fan_entries int32 (2 * out,)).
    """
    return _csr(connections.reshape(-1), in_dim)


_cache: dict[tuple[str, int], tuple[weakref.ref, int, int, object]] = {}


def _cached(kind: str, tensor: torch.Tensor, size: int, build):
    """``build()`` for ``tensor``, reused while the tensor object, its version and ``size`` are unchanged.

    The version counter is bumped by in-place writes (``load_state_dict``), so a modified or new
    tensor gets a fresh index; an entry goes when its tensor is freed.
    """
    key = (kind, id(tensor))
    hit = _cache.get(key)
    if hit is not None and hit[0]() is tensor and hit[1] == tensor._version and hit[2] == size:
        return hit[3]
    result = build()
    try:
        ref = weakref.ref(tensor, lambda _r, k=key: _cache.pop(k, None))
    except TypeError:  # tensors that cannot be weakly referenced are simply not cached
        return result
    _cache[key] = (ref, tensor._version, size, result)
    return result


def wiring(connections: torch.Tensor, in_dim: int) -> Wiring:
    """The ``Wiring`` of a connections tensor (range-checked), built once and reused while unchanged."""
    def build() -> Wiring:
        if connections.numel() >= 2 ** 31 or in_dim >= 2 ** 31:
            raise ValueError(f"connections of shape {tuple(connections.shape)} with in_dim={in_dim} exceed the "
                             f"kernels' int32 indices")
        check_index_range("connections", connections, in_dim, f"x with {in_dim} features")
        offsets, entries = fanout_index(connections, in_dim)
        return Wiring(connections.to(torch.int32).contiguous(), offsets, entries)
    return _cached("wiring", connections, in_dim, build)


def coeff_index_csr(coeff_index: torch.Tensor, rows: int) -> CoeffIndex:
    """The ``CoeffIndex`` of an (out,) coefficient index into ``rows`` rows (range-checked), cached like ``wiring``."""
    def build() -> CoeffIndex:
        if coeff_index.numel() >= 2 ** 31 or rows >= 2 ** 29:  # 4 * row must fit in int32
            raise ValueError(f"coeff_index of shape {tuple(coeff_index.shape)} into {rows} rows exceeds the "
                             f"kernels' int32 indices")
        check_index_range("coeff_index", coeff_index, rows, f"coeffs with {rows} rows")
        offsets, entries = _csr(coeff_index, rows)
        return CoeffIndex(coeff_index.to(torch.int32).contiguous(), offsets, entries)
    return _cached("coeff_index", coeff_index, rows, build)


# ---- the ops' implementation (called by kernels/ops.py) --------------------------------------------

def _check(x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor,
           coeff_index: torch.Tensor | None) -> None:
    """Validate shapes, dtypes and devices (no sync); index ranges are checked once per index tensor."""
    check_logic_layer_args("logic_layer (Triton)", x, coeffs, connections, coeff_index, float_dtypes=FLOAT_DTYPES,
                           index_dtypes=_INDEX_DTYPES)
    for name, t in (("coeffs", coeffs), ("connections", connections), ("coeff_index", coeff_index)):
        if t is not None and t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but x is on {x.device}; all must be on one device")
    _kernels(x.device)


def _resolve_wiring(x, coeffs, connections, coeff_index, fan_offsets, fan_entries, row_offsets, row_entries):
    """The kernels' index tensors: the ones passed, else built (and cached) here from the raw indices."""
    if fan_offsets is None or fan_entries is None:
        w = wiring(connections, x.shape[1])
        connections, fan_offsets, fan_entries = w.conn, w.fan_offsets, w.fan_entries
    if coeff_index is not None and (row_offsets is None or row_entries is None):
        c = coeff_index_csr(coeff_index, coeffs.shape[0])
        coeff_index, row_offsets, row_entries = c.index, c.row_offsets, c.row_entries
    return connections.contiguous(), coeff_index, fan_offsets, fan_entries, row_offsets, row_entries


def forward(x, coeffs, connections, coeff_index, fan_offsets, fan_entries, row_offsets, row_entries,
            deterministic) -> torch.Tensor:
    """The Triton implementation of ``diffgates::logic_layer`` (see ``ops.py`` for the arguments)."""
    _check(x, coeffs, connections, coeff_index)
    conn, index, *_ = _resolve_wiring(x, coeffs, connections, coeff_index, fan_offsets, fan_entries,
                                      row_offsets, row_entries)
    return _kernels(x.device).forward(x.contiguous(), coeffs.contiguous(), conn,
                                      None if index is None else index.contiguous())


def backward(grad, x, coeffs, connections, coeff_index, fan_offsets, fan_entries, row_offsets, row_entries,
             deterministic, need_x, need_coeffs) -> tuple[torch.Tensor, torch.Tensor]:
    """The Triton implementation of ``diffgates::logic_layer_backward``; empty tensors where not requested."""
    _check(x, coeffs, connections, coeff_index)
    n, out = x.shape[0], connections.shape[1]
    if tuple(grad.shape) != (n, out):
        raise ValueError(f"grad must have shape ({n}, {out}), got {tuple(grad.shape)}")
    conn, index, fan_offsets, fan_entries, row_offsets, row_entries = _resolve_wiring(
        x, coeffs, connections, coeff_index, fan_offsets, fan_entries, row_offsets, row_entries)
    grad_x, grad_coeffs = _kernels(x.device).backward(
        grad.contiguous(), x.contiguous(), coeffs.contiguous(), conn, fan_offsets, fan_entries, deterministic,
        need_x, need_coeffs, coeff_index=None if index is None else index.contiguous(), row_offsets=row_offsets,
        row_entries=row_entries)
    # An op returns tensors only: an empty one stands for "not requested".
    return (grad_x if grad_x is not None else x.new_empty(0),
            grad_coeffs if grad_coeffs is not None else coeffs.new_empty(0))


def _check_weights(weights: torch.Tensor) -> None:
    if weights.dim() != 2 or weights.shape[1] != 16:
        raise ValueError(f"weights must have shape (out_dim, 16), got {tuple(weights.shape)}")
    if weights.dtype not in FLOAT_DTYPES:
        raise ValueError(f"weights must be floating point, got dtype {weights.dtype}")


def coefficients_forward(weights: torch.Tensor) -> torch.Tensor:
    """The Triton implementation of ``diffgates::gate_coefficients``."""
    _check_weights(weights)
    return _kernels(weights.device).coefficients_forward(weights.contiguous())


def coefficients_backward(weights: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The Triton implementation of ``diffgates::gate_coefficients_backward``."""
    _check_weights(weights)
    return _kernels(weights.device).coefficients_backward(weights.contiguous(), grad.contiguous())


# ---- public entry points ---------------------------------------------------------------------------

def logic_layer(x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor,
                coeff_index: torch.Tensor | None = None) -> torch.Tensor:
    """(N, in) activations, coefficients, (2, out) connections -> (N, out); differentiable in x and coeffs.

    Args:
        x: float16/bfloat16/float32/float64 probabilities on a CUDA device (CPU under the interpreter).
        coeffs: (out, 4) in x's dtype, e.g. ``reference.gate_coefficients(weights, training)``; or
            (rows, 4) with ``coeff_index``.
        connections: (2, out) int64/int32 input indices (row 0 feeds a, row 1 feeds b).
        coeff_index: optional (out,) int64/int32: neuron j uses ``coeffs[coeff_index[j]]``; the
            coefficient gradient of a row sums over its neurons.

    Returns:
        (N, out) tensor in x's dtype: ``c0 + c1 a + c2 b + c3 ab``.
    """
    _check(x, coeffs, connections, coeff_index)
    w = wiring(connections, x.shape[1])
    index = row_offsets = row_entries = None
    if coeff_index is not None:
        c = coeff_index_csr(coeff_index, coeffs.shape[0])
        index, row_offsets, row_entries = c.index, c.row_offsets, c.row_entries
    return ops.logic_layer(x, coeffs, w.conn, index, w.fan_offsets, w.fan_entries, row_offsets, row_entries,
                           deterministic=backward_mode() == "csr", interpret=x.device.type == "cpu")


def gate_coefficients(weights: torch.Tensor, training: bool) -> torch.Tensor:
    """(out, 16) logits -> (out, 4) coefficients; the fused kernel in training mode.

    Eval mode (one-hot argmax, no gradient) is the reference's indexing: nothing to fuse there.
    """
    if not training:
        return _reference_gate_coefficients(weights, training)
    _check_weights(weights)
    _kernels(weights.device)
    return ops.gate_coefficients(weights, interpret=weights.device.type == "cpu")


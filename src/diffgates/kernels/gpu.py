"""Fused Triton kernels for LogicLayer training on CUDA tensors, exposed as torch custom ops.

``logic_layer(x, coeffs, connections)`` computes ``c0 + c1 a + c2 b + c3 ab`` per neuron, with
``a = x[:, connections[0]]`` and ``b = x[:, connections[1]]`` (the numbers of
``reference.logic_layer_coefficients_reference``), differentiable in ``x`` and ``coeffs``. It is the op
``torch.ops.diffgates.logic_layer_gpu`` (fake function + registered autograd; the backward is the op
``torch.ops.diffgates.logic_layer_gpu_backward``). ``gate_coefficients(weights, training)`` is the
fused softmax -> 4 coefficients step (``torch.ops.diffgates.gate_coefficients_gpu``), one launch each
way instead of the reference's five.

Input gradient, two ways (``set_backward_mode`` or ``DIFFGATES_GPU_BACKWARD``):
  ``'csr'`` (default, deterministic): connections are fixed, so every layer gets once a CSR "fan-out"
      index (``fanout_index``: for each input, the (neuron, operand) pairs reading it), cached per
      connections tensor; the gradient is a gather-and-sum in a fixed order, no atomics.
  ``'atomic'``: scatter-add with atomics inside the coefficient-gradient kernel (one kernel fewer,
      results vary in the last bits between runs). ``torch.use_deterministic_algorithms(True)``
      forces ``'csr'``.

Devices: CUDA tensors; CPU tensors only under Triton's interpreter (``TRITON_INTERPRET=1`` set before
the kernels are first used), which is how the test-suite checks the kernels without a GPU.
``unavailable_reason()`` says why the kernels cannot run here, for ``diffgates.kernels`` to fall back.

The first call with a new connections tensor builds its fan-out index (one device sync); later calls
are sync-free, so a warmed-up training step can be captured in a CUDA graph.

Example::

    from diffgates.kernels import gpu
    coeffs = gpu.gate_coefficients(layer.weights, training=True)
    y = gpu.logic_layer(x.cuda(), coeffs, layer.connections)
"""
from __future__ import annotations

import importlib
import os
import weakref
from dataclasses import dataclass

import torch

from .arguments import check_logic_layer_args
from .reference import gate_coefficients as _reference_gate_coefficients

BACKWARD_MODES = ("csr", "atomic")
_FLOAT_TYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_backward_mode = os.environ.get("DIFFGATES_GPU_BACKWARD", "csr").strip().lower() or "csr"


# ---- availability --------------------------------------------------------------------------------

def interpreting() -> bool:
    """Whether Triton's interpreter is requested (``TRITON_INTERPRET`` set to a true value)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def unavailable_reason() -> str | None:
    """Why the Triton kernels cannot run here, or None when they can.

    Returns:
        None with Triton installed and either a CUDA device or ``TRITON_INTERPRET=1``; else one line.
    """
    try:
        importlib.import_module("triton")
    except ImportError as exc:
        return f"triton is not installed ({exc}); install it with `pip install triton` (or diffgates[gpu])"
    if torch.cuda.is_available() or interpreting():
        return None
    return ("no CUDA device is visible to torch (torch.cuda.is_available() is False); set "
            "TRITON_INTERPRET=1 to run the Triton kernels on CPU tensors (slow, for testing)")


_modules: dict[str, object] = {}  # Triton kernel modules once imported: later calls only check the device


def triton_module(name: str, device: torch.device, what: str):
    """Import ``diffgates.kernels.<name>`` (Triton kernels) and check that it can run on ``device``.

    CUDA devices always suit; CPU tensors only when the kernels were built for Triton's interpreter
    (TRITON_INTERPRET=1 before their first import). ``what`` names the caller in error messages.
    """
    module = _modules.get(name)
    if module is None:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"{what} cannot run: {reason}")
        module = _modules[name] = importlib.import_module(f".{name}", __package__)
    if device.type == "cuda":
        return module
    if device.type != "cpu":
        raise ValueError(f"{what} run on CUDA tensors, got tensors on {device}")
    if not module.interpreted():
        raise RuntimeError(f"{what} got CPU tensors, but were compiled for the GPU: set TRITON_INTERPRET=1 "
                           f"before diffgates.kernels.{name} is first imported to run them on the CPU, or "
                           f"move the tensors to CUDA")
    return module


def _kernels(device: torch.device):
    """The training-kernel module, checked to suit tensors on ``device``."""
    return triton_module("gpu_triton", device, "the diffgates GPU kernels")


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


# ---- wiring: int32 connections and the fan-out index, cached per connections tensor -----------------

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


def fanout_index(connections: torch.Tensor, in_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR index of each input's consumers (see ``Wiring``), built on the connections' device.

    Args:
        connections: (2, out) integer tensor with values in [0, in_dim).
        in_dim: number of inputs.

    Returns:
        (fan_offsets int32 (in_dim + 1,), fan_entries int32 (2 * out,)).
    """
    flat = connections.reshape(-1).to(torch.int64)
    entries = torch.argsort(flat, stable=True)  # stable: a fixed summation order per input
    # offsets[i] = number of slots reading an input < i (searchsorted: deterministic, no atomics).
    bounds = torch.arange(in_dim + 1, dtype=torch.int64, device=connections.device)
    offsets = torch.searchsorted(flat[entries], bounds)
    return offsets.to(torch.int32), entries.to(torch.int32)


def _check_connection_range(connections: torch.Tensor, in_dim: int) -> None:
    if connections.numel() == 0:
        return
    bad = (connections < 0) | (connections >= in_dim)
    if bool(bad.any()):
        row, col = (int(v) for v in bad.nonzero()[0])
        raise ValueError(f"connections[{row}, {col}] = {int(connections[row, col])} is outside "
                         f"[0, {in_dim - 1}] for x with {in_dim} features")


_wiring_cache: dict[int, tuple[weakref.ref, int, int, Wiring]] = {}


def wiring(connections: torch.Tensor, in_dim: int) -> Wiring:
    """The ``Wiring`` of a connections tensor, built once and reused while the tensor is unchanged.

    The cache key is the tensor object and its version counter (bumped by in-place writes such as
    ``load_state_dict``), so a modified or new connections tensor gets a fresh index.
    """
    key = id(connections)
    hit = _wiring_cache.get(key)
    if hit is not None and hit[0]() is connections and hit[1] == connections._version and hit[2] == in_dim:
        return hit[3]
    if connections.numel() >= 2 ** 31 or in_dim >= 2 ** 31:
        raise ValueError(f"connections of shape {tuple(connections.shape)} with in_dim={in_dim} exceed the "
                         f"kernels' int32 indices")
    _check_connection_range(connections, in_dim)
    offsets, entries = fanout_index(connections, in_dim)
    result = Wiring(connections.to(torch.int32).contiguous(), offsets, entries)
    try:
        ref = weakref.ref(connections, lambda _r, k=key: _wiring_cache.pop(k, None))
    except TypeError:  # tensors that cannot be weakly referenced are simply not cached
        return result
    _wiring_cache[key] = (ref, connections._version, in_dim, result)
    return result


# ---- custom ops ----------------------------------------------------------------------------------

@torch.library.custom_op("diffgates::logic_layer_gpu", mutates_args=())
def _forward_op(x: torch.Tensor, coeffs: torch.Tensor, conn: torch.Tensor, fan_offsets: torch.Tensor,
                fan_entries: torch.Tensor, deterministic: bool) -> torch.Tensor:
    return _kernels(x.device).forward(x.contiguous(), coeffs.contiguous(), conn.contiguous())


@_forward_op.register_fake
def _forward_fake(x, coeffs, conn, fan_offsets, fan_entries, deterministic):
    return x.new_empty((x.shape[0], conn.shape[1]))


@torch.library.custom_op("diffgates::logic_layer_gpu_backward", mutates_args=())
def _backward_op(grad_y: torch.Tensor, x: torch.Tensor, coeffs: torch.Tensor, conn: torch.Tensor,
                 fan_offsets: torch.Tensor, fan_entries: torch.Tensor, deterministic: bool, need_x: bool,
                 need_coeffs: bool) -> tuple[torch.Tensor, torch.Tensor]:
    grad_x, grad_coeffs = _kernels(x.device).backward(
        grad_y.contiguous(), x.contiguous(), coeffs.contiguous(), conn.contiguous(), fan_offsets, fan_entries,
        deterministic, need_x, need_coeffs)
    # An op returns tensors only: an empty one stands for "not requested".
    return (grad_x if grad_x is not None else x.new_empty(0),
            grad_coeffs if grad_coeffs is not None else coeffs.new_empty(0))


@_backward_op.register_fake
def _backward_fake(grad_y, x, coeffs, conn, fan_offsets, fan_entries, deterministic, need_x, need_coeffs):
    return (x.new_empty(x.shape) if need_x else x.new_empty(0),
            coeffs.new_empty(coeffs.shape) if need_coeffs else coeffs.new_empty(0))


def _forward_setup(ctx, inputs, output):
    x, coeffs, conn, fan_offsets, fan_entries, deterministic = inputs
    ctx.save_for_backward(x, coeffs, conn, fan_offsets, fan_entries)
    ctx.deterministic = deterministic


def _forward_backward(ctx, grad_y):
    x, coeffs, conn, fan_offsets, fan_entries = ctx.saved_tensors
    need_x, need_coeffs = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    grad_x, grad_coeffs = torch.ops.diffgates.logic_layer_gpu_backward(
        grad_y, x, coeffs, conn, fan_offsets, fan_entries, ctx.deterministic, need_x, need_coeffs)
    return (grad_x if need_x else None, grad_coeffs if need_coeffs else None, None, None, None, None)


_forward_op.register_autograd(_forward_backward, setup_context=_forward_setup)


@torch.library.custom_op("diffgates::gate_coefficients_gpu", mutates_args=())
def _coeffs_op(weights: torch.Tensor) -> torch.Tensor:
    return _kernels(weights.device).coefficients_forward(weights.contiguous())


@_coeffs_op.register_fake
def _coeffs_fake(weights):
    return weights.new_empty((weights.shape[0], 4))


@torch.library.custom_op("diffgates::gate_coefficients_gpu_backward", mutates_args=())
def _coeffs_backward_op(weights: torch.Tensor, grad_coeffs: torch.Tensor) -> torch.Tensor:
    return _kernels(weights.device).coefficients_backward(weights.contiguous(), grad_coeffs.contiguous())


@_coeffs_backward_op.register_fake
def _coeffs_backward_fake(weights, grad_coeffs):
    return torch.empty_like(weights)


def _coeffs_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _coeffs_backward(ctx, grad_coeffs):
    (weights,) = ctx.saved_tensors
    return torch.ops.diffgates.gate_coefficients_gpu_backward(weights, grad_coeffs)


_coeffs_op.register_autograd(_coeffs_backward, setup_context=_coeffs_setup)


# ---- public entry points ---------------------------------------------------------------------------

def _check(x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor) -> None:
    """Validate shapes, dtypes and devices; index ranges are checked once per connections in ``wiring``."""
    check_logic_layer_args("logic_layer_gpu", x, coeffs, connections, float_dtypes=_FLOAT_TYPES,
                           index_dtypes=(torch.int64, torch.int32))
    for name, t in (("coeffs", coeffs), ("connections", connections)):
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but x is on {x.device}; all must be on one device")
    _kernels(x.device)


def logic_layer(x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor) -> torch.Tensor:
    """(N, in) activations, (out, 4) coefficients, (2, out) connections -> (N, out); differentiable.

    Args:
        x: float16/bfloat16/float32/float64 probabilities on a CUDA device (CPU under the interpreter).
        coeffs: (out, 4) in x's dtype, e.g. ``reference.gate_coefficients(weights, training)``.
        connections: (2, out) int64/int32 input indices (row 0 feeds a, row 1 feeds b).

    Returns:
        (N, out) tensor in x's dtype: ``c0 + c1 a + c2 b + c3 ab``.
    """
    _check(x, coeffs, connections)
    w = wiring(connections, x.shape[1])
    return torch.ops.diffgates.logic_layer_gpu(x, coeffs, w.conn, w.fan_offsets, w.fan_entries,
                                               backward_mode() == "csr")


def gate_coefficients(weights: torch.Tensor, training: bool) -> torch.Tensor:
    """(out, 16) logits -> (out, 4) coefficients; the fused kernel in training mode.

    Eval mode (one-hot argmax, no gradient) is the reference's indexing: nothing to fuse there.
    """
    if not training:
        return _reference_gate_coefficients(weights, training)
    if weights.dim() != 2 or weights.shape[1] != 16:
        raise ValueError(f"weights must have shape (out_dim, 16), got {tuple(weights.shape)}")
    if weights.dtype not in _FLOAT_TYPES:
        raise ValueError(f"weights must be floating point, got dtype {weights.dtype}")
    _kernels(weights.device)
    return torch.ops.diffgates.gate_coefficients_gpu(weights)

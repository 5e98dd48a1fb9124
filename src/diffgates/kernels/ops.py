"""The LogicLayer torch custom ops: each computation defined once, with one implementation per device.

Ops (namespace ``diffgates``; every one has a fake/meta function, so ``torch.compile`` and
``torch.library.opcheck`` see through them):

``logic_layer(Tensor x, Tensor coeffs, Tensor connections, Tensor? coeff_index=None,
Tensor? fan_offsets=None, Tensor? fan_entries=None, Tensor? row_offsets=None, Tensor? row_entries=None,
bool deterministic=True, bool interpret=False) -> Tensor``
    (N, in) x, (2, out) connections -> (N, out) ``c0 + c1 a + c2 b + c3 ab``, with neuron j's
    coefficients ``coeffs[j]``, or ``coeffs[coeff_index[j]]`` when an (out,) coefficient index is
    given (coeffs is then (rows, 4); many neurons share a row and its gradient is their sum).
    Differentiable in x and coeffs (autograd registered here; the backward is the next op).
    ``fan_offsets``/``fan_entries`` (the input fan-out CSR), ``row_offsets``/``row_entries`` (the CSR
    of coeff_index) and ``deterministic`` (CSR gathers and segment sums, or atomics) are for the
    Triton implementation: pass ``gpu.wiring(...)``'s and ``gpu.coeff_index_csr(...)``'s tensors,
    which range-check the indices once per index tensor (the kernels then trust them); when they are
    None it builds (and checks) them itself. The C kernel ignores them: it checks the indices on
    every call (an O(out) scan) and is deterministic for a given thread count.
``logic_layer_backward(Tensor grad, Tensor x, Tensor coeffs, Tensor connections, Tensor? coeff_index,
Tensor? fan_offsets, Tensor? fan_entries, Tensor? row_offsets, Tensor? row_entries, bool deterministic,
bool interpret, bool need_x, bool need_coeffs) -> (Tensor, Tensor)``
    (dL/dx, dL/dcoeffs); an empty tensor for a gradient not requested. No double backward.
``gate_coefficients(Tensor weights, bool interpret=False) -> Tensor``
    (out, 16) gate logits -> (out, 4) coefficients of the softmax mixture (training mode), and
``gate_coefficients_backward(Tensor weights, Tensor grad, bool interpret=False) -> Tensor`` its gradient.
``entry_coefficients(Tensor weights, str parametrization) -> Tensor``
    (out, 4) iwp or walsh parameters -> (out, 4) coefficients of the soft relaxation (training mode,
    ``parametrizations.coefficients(..., training=True, sampling='soft')``), and
``entry_coefficients_backward(Tensor weights, Tensor grad, str parametrization) -> Tensor`` its gradient.

Per-device implementations:
  CUDA: the Triton kernels (``gpu.py`` / ``gpu_triton.py``).
  CPU:  the fused C kernels (``cpu.py``); gate_coefficients and entry_coefficients fall back to plain
        torch for dtypes other than float32/float64 or without a C compiler.
  entry_coefficients on CUDA: plain torch (a few elementwise ops, no Triton kernel of its own).
  CPU with ``interpret=True``: the Triton kernels, under Triton's interpreter (``TRITON_INTERPRET=1``
        before the kernels' first import), for testing them without a GPU. Only the Triton entry
        points set it, for CPU tensors (``gpu.logic_layer``, ``gpu.gate_coefficients``, hence
        ``diffgates.kernels.logic_layer(implementation='gpu')``); ``implementation=None`` never does.
        It is an op argument, not a global switch, so that the backward - which runs later, outside
        any context - takes the same path as its forward. CUDA tensors ignore it.

Output layouts differ per implementation and the fake functions say so: the C kernel returns
feature-major views (``y.stride() == (1, N)``, see ``cpu.py``), Triton contiguous tensors.

The ops are declared with torch.library.define/impl rather than the torch.library.custom_op
decorator: same schema, fake and autograd registrations, but custom_op wraps the kernel in a lazy
torch._dynamo import on first call, measured at +150 MB RSS and seconds of start-up in processes that
would not load it otherwise (inference, circuit extraction; torch.optim loads it anyway). Autograd is
an ``Autograd``-key kernel running a ``torch.autograd.Function`` (the forward op redispatched below
autograd) rather than ``torch.library.register_autograd``, whose generic wrapper costs about 3.5 us
per op argument per call: forward + backward of a 1-neuron layer measured 57 us with it for 3
arguments, 80 us for these 10, and 52 us with this kernel - on every layer of every step.
``torch.library.opcheck`` (autograd registration, AOT dispatch) and ``torch.compile`` accept both.

Not run directly; ``diffgates.kernels.logic_layer`` is the public entry point. Example::

    y = torch.ops.diffgates.logic_layer(x, coeffs, connections)          # C kernel on CPU tensors
"""
from __future__ import annotations

import torch

from . import parametrizations
from .reference import coefficient_matrix

if not hasattr(torch.library, "register_fake"):  # the dispatcher turns this into "unavailable", not a crash
    raise ImportError(f"the diffgates kernels need torch >= 2.4 (torch.library.register_fake), "
                      f"found {torch.__version__}")

_WIRING_ARGS = ("Tensor? fan_offsets, Tensor? fan_entries, Tensor? row_offsets, Tensor? row_entries, "
                "bool deterministic, bool interpret")
torch.library.define("diffgates::logic_layer",
                     "(Tensor x, Tensor coeffs, Tensor connections, Tensor? coeff_index=None, "
                     "Tensor? fan_offsets=None, Tensor? fan_entries=None, Tensor? row_offsets=None, "
                     "Tensor? row_entries=None, bool deterministic=True, bool interpret=False) -> Tensor")
torch.library.define("diffgates::logic_layer_backward",
                     f"(Tensor grad, Tensor x, Tensor coeffs, Tensor connections, Tensor? coeff_index, "
                     f"{_WIRING_ARGS}, bool need_x, bool need_coeffs) -> (Tensor, Tensor)")
torch.library.define("diffgates::gate_coefficients", "(Tensor weights, bool interpret=False) -> Tensor")
torch.library.define("diffgates::gate_coefficients_backward",
                     "(Tensor weights, Tensor grad, bool interpret=False) -> Tensor")
torch.library.define("diffgates::entry_coefficients", "(Tensor weights, str parametrization) -> Tensor")
torch.library.define("diffgates::entry_coefficients_backward",
                     "(Tensor weights, Tensor grad, str parametrization) -> Tensor")

# The overloads, resolved once (calling them skips overload resolution on every step).
logic_layer = torch.ops.diffgates.logic_layer.default
logic_layer_backward = torch.ops.diffgates.logic_layer_backward.default
gate_coefficients = torch.ops.diffgates.gate_coefficients.default
gate_coefficients_backward = torch.ops.diffgates.gate_coefficients_backward.default
entry_coefficients = torch.ops.diffgates.entry_coefficients.default
entry_coefficients_backward = torch.ops.diffgates.entry_coefficients_backward.default


def _c_kernel(t: torch.Tensor, interpret: bool) -> bool:
    """Whether the C kernel (not Triton) serves a call on ``t``'s device."""
    return t.device.type == "cpu" and not interpret


def _cpu():
    from . import cpu  # imported on first use: builds nothing until a kernel runs
    return cpu


def _gpu():
    from . import gpu  # its Triton kernels are imported later still, on the first launch
    return gpu


# ---- logic_layer -----------------------------------------------------------------------------------

@torch.library.impl("diffgates::logic_layer", "cpu")
def _logic_layer_cpu(x, coeffs, connections, coeff_index=None, fan_offsets=None, fan_entries=None,
                     row_offsets=None, row_entries=None, deterministic=True, interpret=False):
    if interpret:
        return _gpu().forward(x, coeffs, connections, coeff_index, fan_offsets, fan_entries, row_offsets,
                              row_entries, deterministic)
    return _cpu().forward(x, coeffs, connections, coeff_index)


@torch.library.impl("diffgates::logic_layer", "cuda")
def _logic_layer_cuda(x, coeffs, connections, coeff_index=None, fan_offsets=None, fan_entries=None,
                      row_offsets=None, row_entries=None, deterministic=True, interpret=False):
    return _gpu().forward(x, coeffs, connections, coeff_index, fan_offsets, fan_entries, row_offsets,
                          row_entries, deterministic)


@torch.library.register_fake("diffgates::logic_layer")
def _logic_layer_fake(x, coeffs, connections, coeff_index=None, fan_offsets=None, fan_entries=None,
                      row_offsets=None, row_entries=None, deterministic=True, interpret=False):
    n, out = x.shape[0], connections.shape[1]
    if _c_kernel(x, interpret):
        return x.new_empty((out, n)).t()
    return x.new_empty((n, out))


@torch.library.impl("diffgates::logic_layer_backward", "cpu")
def _logic_layer_backward_cpu(grad, x, coeffs, connections, coeff_index, fan_offsets, fan_entries, row_offsets,
                              row_entries, deterministic, interpret, need_x, need_coeffs):
    if interpret:
        return _gpu().backward(grad, x, coeffs, connections, coeff_index, fan_offsets, fan_entries, row_offsets,
                               row_entries, deterministic, need_x, need_coeffs)
    return _cpu().backward(grad, x, coeffs, connections, coeff_index, need_x, need_coeffs)


@torch.library.impl("diffgates::logic_layer_backward", "cuda")
def _logic_layer_backward_cuda(grad, x, coeffs, connections, coeff_index, fan_offsets, fan_entries, row_offsets,
                               row_entries, deterministic, interpret, need_x, need_coeffs):
    return _gpu().backward(grad, x, coeffs, connections, coeff_index, fan_offsets, fan_entries, row_offsets,
                           row_entries, deterministic, need_x, need_coeffs)


@torch.library.register_fake("diffgates::logic_layer_backward")
def _logic_layer_backward_fake(grad, x, coeffs, connections, coeff_index, fan_offsets, fan_entries, row_offsets,
                               row_entries, deterministic, interpret, need_x, need_coeffs):
    n, in_dim = x.shape
    if not need_x:
        gx = x.new_empty(0)
    elif _c_kernel(x, interpret):
        gx = x.new_empty((in_dim, n)).t()
    else:
        gx = x.new_empty((n, in_dim))
    return gx, coeffs.new_empty(coeffs.shape) if need_coeffs else coeffs.new_empty(0)


class _LogicLayerFunction(torch.autograd.Function):
    """Autograd of ``diffgates::logic_layer``: the forward op below autograd, the backward op for the gradients."""

    @staticmethod
    def forward(ctx, x, coeffs, connections, coeff_index, fan_offsets, fan_entries, row_offsets, row_entries,
                deterministic, interpret):
        with torch._C._AutoDispatchBelowAutograd():
            y = logic_layer(x, coeffs, connections, coeff_index, fan_offsets, fan_entries, row_offsets, row_entries,
                            deterministic, interpret)
        # Only the inputs are saved: a and b are recomputed in backward (cheaper than an (N, 2 out) buffer).
        ctx.save_for_backward(x, coeffs, connections, coeff_index, fan_offsets, fan_entries, row_offsets,
                              row_entries)
        ctx.flags = (deterministic, interpret)
        return y

    @staticmethod
    def backward(ctx, grad):
        need_x, need_coeffs = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gx, gc = logic_layer_backward(grad, *ctx.saved_tensors, *ctx.flags, need_x, need_coeffs)
        return (gx if need_x else None, gc if need_coeffs else None) + (None,) * 8


@torch.library.impl("diffgates::logic_layer", "Autograd")
def _logic_layer_autograd(x, coeffs, connections, coeff_index=None, fan_offsets=None, fan_entries=None,
                          row_offsets=None, row_entries=None, deterministic=True, interpret=False):
    args = (x, coeffs, connections, coeff_index, fan_offsets, fan_entries, row_offsets, row_entries, deterministic,
            interpret)
    if torch.is_grad_enabled() and (x.requires_grad or coeffs.requires_grad):
        return _LogicLayerFunction.apply(*args)
    with torch._C._AutoDispatchBelowAutograd():
        return logic_layer(*args)


# ---- gate_coefficients -----------------------------------------------------------------------------

def _check_weights(weights: torch.Tensor) -> None:
    if weights.dim() != 2 or weights.shape[1] != 16:
        raise ValueError(f"weights must have shape (out_dim, 16), got {tuple(weights.shape)}")
    if not weights.is_floating_point():
        raise ValueError(f"weights must be floating point, got dtype {weights.dtype}")


def _c_coefficients(weights: torch.Tensor) -> bool:
    """Whether the C kernel computes the coefficients of ``weights`` (else plain torch does)."""
    cpu = _cpu()
    return weights.dtype in cpu.FLOAT_DTYPES and cpu.unavailable_reason() is None


@torch.library.impl("diffgates::gate_coefficients", "cpu")
def _gate_coefficients_cpu(weights, interpret=False):
    if interpret:
        return _gpu().coefficients_forward(weights)
    _check_weights(weights)
    if _c_coefficients(weights):
        return _cpu().coefficients_forward(weights)
    return torch.softmax(weights, dim=-1) @ coefficient_matrix(weights.dtype, weights.device)


@torch.library.impl("diffgates::gate_coefficients", "cuda")
def _gate_coefficients_cuda(weights, interpret=False):
    return _gpu().coefficients_forward(weights)


@torch.library.register_fake("diffgates::gate_coefficients")
def _gate_coefficients_fake(weights, interpret=False):
    return weights.new_empty((weights.shape[0], 4))


@torch.library.impl("diffgates::gate_coefficients_backward", "cpu")
def _gate_coefficients_backward_cpu(weights, grad, interpret=False):
    if interpret:
        return _gpu().coefficients_backward(weights, grad)
    _check_weights(weights)
    if _c_coefficients(weights):
        return _cpu().coefficients_backward(weights, grad)
    p = torch.softmax(weights, dim=-1)  # recomputed: cheaper than saving the (out, 16) probabilities
    gp = grad @ coefficient_matrix(weights.dtype, weights.device).t()  # d loss / d probabilities
    return p * (gp - (p * gp).sum(-1, keepdim=True))  # softmax backward


@torch.library.impl("diffgates::gate_coefficients_backward", "cuda")
def _gate_coefficients_backward_cuda(weights, grad, interpret=False):
    return _gpu().coefficients_backward(weights, grad)


@torch.library.register_fake("diffgates::gate_coefficients_backward")
def _gate_coefficients_backward_fake(weights, grad, interpret=False):
    return torch.empty_like(weights, memory_format=torch.contiguous_format)


class _GateCoefficientsFunction(torch.autograd.Function):
    """Autograd of ``diffgates::gate_coefficients`` (the backward op recomputes the softmax)."""

    @staticmethod
    def forward(ctx, weights, interpret):
        with torch._C._AutoDispatchBelowAutograd():
            c = gate_coefficients(weights, interpret)
        ctx.save_for_backward(weights)
        ctx.interpret = interpret
        return c

    @staticmethod
    def backward(ctx, grad):
        (weights,) = ctx.saved_tensors
        return gate_coefficients_backward(weights, grad, ctx.interpret), None


@torch.library.impl("diffgates::gate_coefficients", "Autograd")
def _gate_coefficients_autograd(weights, interpret=False):
    if torch.is_grad_enabled() and weights.requires_grad:
        return _GateCoefficientsFunction.apply(weights, interpret)
    with torch._C._AutoDispatchBelowAutograd():
        return gate_coefficients(weights, interpret)


# ---- entry_coefficients (iwp, walsh) ---------------------------------------------------------------

def _check_entry_weights(weights: torch.Tensor, parametrization: str) -> None:
    if parametrization not in ("iwp", "walsh"):
        raise ValueError(f"entry_coefficients takes parametrization 'iwp' or 'walsh', got {parametrization!r}")
    if weights.dim() != 2 or weights.shape[1] != 4:
        raise ValueError(f"{parametrization} weights must have shape (rows, 4), got {tuple(weights.shape)}")
    if not weights.is_floating_point():
        raise ValueError(f"weights must be floating point, got dtype {weights.dtype}")


def _entry_probabilities(weights: torch.Tensor, parametrization: str) -> torch.Tensor:
    return torch.sigmoid(parametrizations.entry_logits(parametrization, weights))


def _entry_coefficients_torch(weights, parametrization):
    return _entry_probabilities(weights, parametrization) @ parametrizations.basis(parametrization, weights.dtype,
                                                                                   weights.device)


def _entry_coefficients_backward_torch(weights, grad, parametrization):
    p = _entry_probabilities(weights, parametrization)  # recomputed, as the C kernel does
    gl = grad @ parametrizations.basis(parametrization, weights.dtype, weights.device).t() * p * (1 - p)
    return gl @ parametrizations.logit_transform(parametrization, weights.dtype, weights.device)


@torch.library.impl("diffgates::entry_coefficients", "cpu")
def _entry_coefficients_cpu(weights, parametrization):
    _check_entry_weights(weights, parametrization)
    if _c_coefficients(weights):
        return _cpu().entry_coefficients_forward(weights, parametrization)
    return _entry_coefficients_torch(weights, parametrization)


@torch.library.impl("diffgates::entry_coefficients", "cuda")
def _entry_coefficients_cuda(weights, parametrization):
    _check_entry_weights(weights, parametrization)
    return _entry_coefficients_torch(weights, parametrization)


@torch.library.register_fake("diffgates::entry_coefficients")
def _entry_coefficients_fake(weights, parametrization):
    return weights.new_empty((weights.shape[0], 4))


@torch.library.impl("diffgates::entry_coefficients_backward", "cpu")
def _entry_coefficients_backward_cpu(weights, grad, parametrization):
    _check_entry_weights(weights, parametrization)
    if _c_coefficients(weights):
        return _cpu().entry_coefficients_backward(weights, grad, parametrization)
    return _entry_coefficients_backward_torch(weights, grad, parametrization)


@torch.library.impl("diffgates::entry_coefficients_backward", "cuda")
def _entry_coefficients_backward_cuda(weights, grad, parametrization):
    _check_entry_weights(weights, parametrization)
    return _entry_coefficients_backward_torch(weights, grad, parametrization)


@torch.library.register_fake("diffgates::entry_coefficients_backward")
def _entry_coefficients_backward_fake(weights, grad, parametrization):
    return torch.empty_like(weights, memory_format=torch.contiguous_format)


class _EntryCoefficientsFunction(torch.autograd.Function):
    """Autograd of ``diffgates::entry_coefficients`` (the backward op recomputes the sigmoids)."""

    @staticmethod
    def forward(ctx, weights, parametrization):
        with torch._C._AutoDispatchBelowAutograd():
            c = entry_coefficients(weights, parametrization)
        ctx.save_for_backward(weights)
        ctx.parametrization = parametrization
        return c

    @staticmethod
    def backward(ctx, grad):
        (weights,) = ctx.saved_tensors
        return entry_coefficients_backward(weights, grad, ctx.parametrization), None


@torch.library.impl("diffgates::entry_coefficients", "Autograd")
def _entry_coefficients_autograd(weights, parametrization):
    if torch.is_grad_enabled() and weights.requires_grad:
        return _EntryCoefficientsFunction.apply(weights, parametrization)
    with torch._C._AutoDispatchBelowAutograd():
        return entry_coefficients(weights, parametrization)

"""Kernel dispatch for LogicLayer and LogicConv2d: one reference (plain PyTorch) and fused kernels beside it.

Implementations:
  ``'reference'`` (alias ``'python'``): ``reference.logic_layer_reference``, the 16-op mixture (the spec).
  ``'cpu'``: fused C/OpenMP kernel over the 4-coefficient form (``kernels/cpu.py``), CPU tensors.
  ``'gpu'`` (alias ``'cuda'``, ``'triton'``): fused Triton kernels (``kernels/gpu.py``), CUDA tensors;
      also CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``), for testing without a GPU.
``None`` picks the fused kernel for the tensor's device (never the interpreter), and falls back to the
reference with one warning when that kernel cannot run here (no C compiler, no Triton) or not in the
tensor's dtype (the C kernel computes in float32/float64 only), so importing never fails.

The fused kernels are torch custom ops defined once in ``kernels/ops.py`` (``diffgates::logic_layer``,
``diffgates::gate_coefficients`` and their backward ops), with a CPU and a CUDA implementation each.
A fused kernel module exposes ``unavailable_reason() -> str | None``, ``FLOAT_DTYPES`` and
``logic_layer(x, coeffs, connections, coeff_index=None) -> Tensor`` (differentiable in x and coeffs).

``parametrization``, ``sampling`` and ``gumbel_tau`` choose how the parameters become a gate
(``kernels/parametrizations.py``); every implementation runs every combination: the fused ones turn
the parameters into the 4 coefficients first (a fused op per parametrization family: softmax over 16
logits, or sigmoids of 4 entry logits) and then run the one 4-coefficient kernel.

``coeff_index`` (optional, (out,) int64): neuron j uses row ``coeff_index[j]`` of the (rows, P) parameters,
so many neurons (a convolution's positions) share one gate's parameters; the shared rows' gradients
are the sums over their neurons. Every implementation supports it.

``logic_tree_conv`` (LogicConv2d) has its own fused CPU kernel (``kernels/tree_cpu.py``: each tree,
and the max over its OR-pool window, evaluated in one pass without storing the tree's levels); the
Triton path runs a tree of depth d over all positions as d dense levels sharing the tree's gates
through ``coeff_index`` (``kernels/trees.py``). Its reference is ``reference.logic_tree_conv_reference``.

Example::

    from diffgates import kernels
    y = kernels.logic_layer(x, weights, connections, training=True)                # fused, automatic
    y = kernels.logic_layer(x, weights[:16], connections, True, coeff_index=idx)  # 16 shared gates
"""
from __future__ import annotations

import importlib
import warnings

import torch

from .._triton import interpreting
from . import parametrizations
from .arguments import check_logic_layer_args, check_ranges
from .reference import gate_coefficients, logic_layer_reference, logic_tree_conv_reference
from .trees import output_size, tree_levels

__all__ = ["IMPLEMENTATIONS", "canonical_implementation", "gate_coefficients", "logic_layer", "logic_tree_conv",
           "resolve", "unavailable_reason"]

IMPLEMENTATIONS = ("reference", "cpu", "gpu")
_ALIASES = {"python": "reference", "cuda": "gpu", "triton": "gpu"}
_FUSED_MODULES = {"cpu": "diffgates.kernels.cpu", "gpu": "diffgates.kernels.gpu"}
_warned: set[str] = set()


def canonical_implementation(name: str | None) -> str | None:
    """Validate a user-facing implementation name; returns its canonical form (None = automatic)."""
    if name is None:
        return None
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in IMPLEMENTATIONS:
        raise ValueError(f"implementation={name!r} is not known; expected None (automatic) or one of "
                         f"{IMPLEMENTATIONS + tuple(_ALIASES)}")
    return key


def _fused_module(name: str):
    return importlib.import_module(_FUSED_MODULES[name])


def unavailable_reason(name: str) -> str | None:
    """Why a fused implementation cannot run here, or None when it can."""
    if name == "reference":
        return None
    try:
        return _fused_module(name).unavailable_reason()
    except ImportError as exc:  # the kernel module itself needs something missing (e.g. triton)
        return f"{type(exc).__name__}: {exc}"


def _fall_back(key: str, message: str) -> str:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"diffgates: {message}; using the slower reference implementation", RuntimeWarning,
                      stacklevel=4)
    return "reference"


def resolve(implementation: str | None, device: torch.device, dtype: torch.dtype | None = None) -> str:
    """The implementation that will run for a tensor on ``device`` (of ``dtype``, when given).

    An explicit choice runs or raises; ``None`` falls back to the reference (one warning per cause).
    ``'gpu'`` on CPU tensors is Triton's interpreter and needs ``TRITON_INTERPRET=1``.
    """
    requested = canonical_implementation(implementation)
    wanted = requested or ("gpu" if device.type == "cuda" else "cpu" if device.type == "cpu" else "reference")
    if wanted == "reference":
        return "reference"
    expected_device = "cuda" if wanted == "gpu" else "cpu"
    interpreted = wanted == "gpu" and device.type == "cpu" and interpreting()  # only ever asked for explicitly
    if device.type != expected_device and not interpreted:
        if requested is not None:
            hint = (" (or set TRITON_INTERPRET=1 to run the Triton kernels on CPU tensors under Triton's "
                    "interpreter, for testing)" if wanted == "gpu" and device.type == "cpu" else "")
            raise ValueError(f"implementation={implementation!r} runs on {expected_device} tensors, "
                             f"but the input is on {device}{hint}")
        return "reference"
    reason = unavailable_reason(wanted)
    if reason is not None:
        if requested is not None:
            raise RuntimeError(f"implementation={implementation!r} is not available here: {reason}")
        return _fall_back(wanted, f"the fused {wanted} kernel is not available ({reason})")
    if requested is None and dtype is not None and dtype not in _fused_module(wanted).FLOAT_DTYPES:
        # An explicit choice lets the kernel reject the dtype itself, with its own message.
        supported = " or ".join(str(t).removeprefix("torch.") for t in _fused_module(wanted).FLOAT_DTYPES)
        return _fall_back(f"{wanted}:{dtype}", f"the fused {wanted} kernel computes in {supported} only, "
                                               f"not {str(dtype).removeprefix('torch.')}")
    return wanted


def _soft_coefficients(name: str, parametrization: str, logits: torch.Tensor) -> torch.Tensor:
    """(out, 4) soft-relaxation coefficients of (out, P) training logits by the fused implementation ``name``:
    gate logits for softmax16, weights for iwp/walsh (``parametrization='iwp'`` for entry logits)."""
    if parametrization == "softmax16" and name == "gpu":
        return _fused_module("gpu").gate_coefficients(logits, True)
    from . import ops  # the CPU implementations are C (plain torch without a compiler), one-op backward
    if parametrization == "softmax16":
        return ops.gate_coefficients(logits)
    if name == "gpu":  # no Triton kernel of its own: a few elementwise torch ops on the GPU
        return parametrizations.coefficients(parametrization, logits, True)
    return ops.entry_coefficients(logits, parametrization)


def _coefficients(name: str, weights: torch.Tensor, training: bool, parametrization: str, sampling: str,
                  gumbel_tau: float) -> torch.Tensor:
    """(out, 4) coefficients for the fused implementation ``name``, through its fused parameter map."""
    if not training:
        return parametrizations.coefficients(parametrization, weights, training, sampling, gumbel_tau)
    if parametrization == "softmax16" or sampling.startswith("gumbel"):
        logits = parametrizations.training_logits(parametrization, weights, sampling, gumbel_tau)
        # Gate logits, or noisy entry logits, whose map is iwp's (noise goes on the entry logits).
        soft = _soft_coefficients(name, "softmax16" if parametrization == "softmax16" else "iwp", logits)
        hard_logits = logits.detach()
    else:  # iwp/walsh without noise: the fused op maps the weights themselves, Walsh transform included
        soft = _soft_coefficients(name, parametrization, weights)
        hard_logits = None
    if parametrizations.is_hard(sampling):
        if hard_logits is None:
            hard_logits = parametrizations.entry_logits(parametrization, weights.detach())
        hard = parametrizations.hard_basis_weights(parametrization, hard_logits)
        return parametrizations.straight_through(hard @ parametrizations.basis(parametrization, hard.dtype,
                                                                               hard.device), soft)
    return soft


def logic_layer(x: torch.Tensor, weights: torch.Tensor, connections: torch.Tensor, training: bool,
                implementation: str | None = None, coeff_index: torch.Tensor | None = None, *,
                parametrization: str = "softmax16", sampling: str = "soft", gumbel_tau: float = 1.0) -> torch.Tensor:
    """LogicLayer forward on (N, in) inputs with (out, P) parameters and (2, out) connections.

    Args:
        x: (N, in) probabilities.
        weights: (out, P) parameters (P = 16 for softmax16, 4 for iwp/walsh); (rows, P) with ``coeff_index``.
        connections: (2, out) int64 input indices.
        training: the relaxation (True) or the discrete gate (False).
        implementation: see the module docstring (None: automatic).
        coeff_index: optional (out,) int64 row of ``weights`` per neuron (shared gates).
        parametrization, sampling, gumbel_tau: see ``kernels/parametrizations.py``.

    Returns:
        (N, out) outputs, differentiable in x and weights.

    Raises:
        ValueError: bad shapes, dtypes or indices (the message names the value), or an implementation
            that does not run on x's device.
    """
    width = parametrizations.width(parametrization)
    parametrizations.check_sampling(sampling, gumbel_tau)
    name = resolve(implementation, x.device, x.dtype)
    if name == "reference":
        if coeff_index is not None:  # the kernels check their own arguments; indexing alone would not say which
            check_logic_layer_args("logic_layer (reference)", x, weights, connections, coeff_index,
                                   float_dtypes=None, index_dtypes=(torch.int64, torch.int32), width=width)
            check_ranges(x, weights, connections, coeff_index)
        return logic_layer_reference(x, weights, connections, training, coeff_index, parametrization, sampling,
                                     gumbel_tau)
    coeffs = _coefficients(name, weights.to(x.dtype), training, parametrization, sampling, gumbel_tau)
    return _fused_module(name).logic_layer(x, coeffs, connections, coeff_index)


def logic_tree_conv(x: torch.Tensor, weights: torch.Tensor, connections: torch.Tensor,
                    kernel_size: tuple[int, int], stride: int, padding: int, training: bool,
                    implementation: str | None = None, *, pool: tuple[int, int, int, int] | None = None,
                    parametrization: str = "softmax16", sampling: str = "soft", gumbel_tau: float = 1.0) -> torch.Tensor:
    """LogicConv2d forward: (N, C, H, W) probabilities -> (N, out, H_out, W_out), optionally max-pooled.

    Args:
        x: (N, C, H, W) inputs in [0, 1] (any strides).
        weights: (out, 2^d - 1, P) gate parameters per tree, level 0 first (``nn.LogicConv2d``).
        connections: (out, 2^d, 3) int64 leaves (channel, dy, dx), validated by the caller.
        kernel_size, stride, padding: as a convolution's (padding with zeros).
        training, implementation, parametrization, sampling, gumbel_tau: as ``logic_layer``.
        pool: None, or (kh, kw, sh, sw) of a max (OR) pool over the trees' outputs, fused where the
            kernel can: ``torch.nn.functional.max_pool2d`` semantics (the first maximum wins ties).

    Returns:
        (N, out, H_out, W_out) (pooled sizes with ``pool``), differentiable in x and weights. The fused
        path returns a view of its feature-major buffer (batch stride 1), the reference a contiguous tensor.
    """
    parametrizations.check_sampling(sampling, gumbel_tau)
    name = resolve(implementation, x.device, x.dtype)
    if name == "reference":
        y = logic_tree_conv_reference(x, weights, connections, kernel_size, stride, padding, training,
                                      parametrization, sampling, gumbel_tau)
        return y if pool is None else torch.nn.functional.max_pool2d(y, pool[:2], pool[2:])
    n, channels, height, width = x.shape
    out = connections.shape[0]
    h_out, w_out = output_size(height, width, kernel_size, stride, padding)
    # One coefficient map (and one noise draw) for every gate of every tree, as the reference.
    coeffs = _coefficients(name, weights.reshape(-1, weights.shape[-1]).to(x.dtype), training, parametrization,
                           sampling, gumbel_tau)
    if name == "cpu":  # the tree kernel: every tree (and its pool window) in one pass, no stored levels
        from . import tree_cpu
        return tree_cpu.logic_tree_conv(x, coeffs, connections, kernel_size, stride, padding, pool)
    # Triton: the tree's levels as dense layers sharing its gates (kernels/trees.py).
    if padding:
        x = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    h = x.reshape(n, -1)
    kernel = _fused_module(name)
    for level_connections, coeff_index in tree_levels(connections, channels, height, width, kernel_size, stride,
                                                      padding):
        h = kernel.logic_layer(h, coeffs, level_connections, coeff_index)
    # (N, out * Q): the root level's features are (out, H_out, W_out) in order.
    y = h.reshape(n, out, h_out, w_out)
    return y if pool is None else torch.nn.functional.max_pool2d(y, pool[:2], pool[2:])

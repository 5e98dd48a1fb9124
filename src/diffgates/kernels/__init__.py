"""Kernel dispatch for LogicLayer: one reference (plain PyTorch) and fused kernels beside it.

Implementations:
  ``'reference'`` (alias ``'python'``): ``reference.logic_layer_reference``, the 16-op mixture (the spec).
  ``'cpu'``: fused C/OpenMP kernel over the 4-coefficient form (``kernels/cpu.py``), CPU tensors.
  ``'gpu'`` (alias ``'cuda'``, ``'triton'``): fused Triton kernel (``kernels/gpu.py``), CUDA tensors.
``None`` picks the fused kernel for the tensor's device, and falls back to the reference with one
warning when that kernel cannot run here (no C compiler, no Triton), so importing never fails.

A fused kernel module exposes ``unavailable_reason() -> str | None`` and
``logic_layer(x, coeffs, connections) -> Tensor`` (differentiable in x and coeffs), and optionally
its own ``gate_coefficients(weights, training)`` (same contract as ``reference.gate_coefficients``).
"""
from __future__ import annotations

import importlib
import warnings

import torch

from .reference import gate_coefficients, logic_layer_reference

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


def resolve(implementation: str | None, device: torch.device) -> str:
    """The implementation that will run for a tensor on ``device``."""
    requested = canonical_implementation(implementation)
    wanted = requested or ("gpu" if device.type == "cuda" else "cpu" if device.type == "cpu" else "reference")
    if wanted == "reference":
        return "reference"
    expected_device = "cuda" if wanted == "gpu" else "cpu"
    if device.type != expected_device:
        if requested is not None:
            raise ValueError(f"implementation={implementation!r} runs on {expected_device} tensors, "
                             f"but the input is on {device}")
        return "reference"
    reason = unavailable_reason(wanted)
    if reason is None:
        return wanted
    if requested is not None:
        raise RuntimeError(f"implementation={implementation!r} is not available here: {reason}")
    if wanted not in _warned:
        _warned.add(wanted)
        warnings.warn(f"diffgates: the fused {wanted} kernel is not available ({reason}); "
                      f"using the slower reference implementation", RuntimeWarning, stacklevel=3)
    return "reference"


def logic_layer(x: torch.Tensor, weights: torch.Tensor, connections: torch.Tensor, training: bool,
                implementation: str | None = None) -> torch.Tensor:
    """LogicLayer forward on (N, in) inputs with (out, 16) logits and (2, out) connections."""
    name = resolve(implementation, x.device)
    if name == "reference":
        return logic_layer_reference(x, weights, connections, training)
    module = _fused_module(name)
    # A kernel module may fuse softmax -> coefficients itself (fewer launches, CUDA-graph friendly).
    coeffs = getattr(module, "gate_coefficients", gate_coefficients)(weights.to(x.dtype), training)
    return module.logic_layer(x, coeffs, connections)

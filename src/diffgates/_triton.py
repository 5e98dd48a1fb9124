"""Whether and how Triton kernels can run here: the one loader for the training kernels and the GPU engine.

Triton decides when a module of ``@triton.jit`` kernels is first imported whether they compile for
the GPU or run under its CPU interpreter (``TRITON_INTERPRET=1``, how the test suite checks them
without a GPU). ``triton_module(module, device, what)`` imports such a module once and checks that
its mode suits the tensors' device, with an error saying what to change otherwise.

Example::

    kernels = triton_module("diffgates.backends.gpu.kernels", device, "the diffgates GPU engine kernels")
"""
from __future__ import annotations

import importlib
import os


def interpreting() -> bool:
    """Whether Triton's interpreter is requested (``TRITON_INTERPRET`` set to a true value)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def unavailable_reason() -> str | None:
    """Why Triton kernels cannot run here, or None when they can.

    Returns:
        None with Triton installed and either a CUDA device or ``TRITON_INTERPRET=1``; else one line.
    """
    try:
        importlib.import_module("triton")
    except ImportError as exc:
        return f"triton is not installed ({exc}); install it with `pip install triton` (or diffgates[gpu])"
    import torch

    if torch.cuda.is_available() or interpreting():
        return None
    return ("no CUDA device is visible to torch (torch.cuda.is_available() is False); set "
            "TRITON_INTERPRET=1 to run the Triton kernels on CPU tensors (slow, for testing)")


_modules: dict[str, object] = {}  # kernel modules once imported: later calls only check the device


def triton_module(name: str, device, what: str):
    """Import the Triton kernel module ``name`` (absolute) and check that it can run on ``device``.

    CUDA devices always suit; CPU tensors only when the kernels were built for Triton's interpreter
    (TRITON_INTERPRET=1 before their first import; the module says so with ``interpreted()``).
    ``what`` names the caller in error messages.
    """
    module = _modules.get(name)
    if module is None:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"{what} cannot run: {reason}")
        module = _modules[name] = importlib.import_module(name)
    if device.type == "cuda":
        return module
    if device.type != "cpu":
        raise ValueError(f"{what} run on CUDA tensors, got tensors on {device}")
    if not module.interpreted():
        raise RuntimeError(f"{what} got CPU tensors, but were compiled for the GPU: set TRITON_INTERPRET=1 "
                           f"before {name} is first imported to run them on the CPU, or move the tensors to CUDA")
    return module

"""Deploying a trained model or a circuit: ``compile`` and ``export_*``, the entry points of ``diffgates``.

Backends (``diffgates.backends``) take a ``Circuit`` only; these functions also take a trained
model, which they extract (``diffgates.frontend.to_circuit``) and simplify (``diffgates.ir.simplify``)
first. A circuit is used as given unless ``simplify=True``. Example::

    engine = diffgates.compile(model, threads=2)               # the C engine (backend="c")
    gpu = diffgates.compile(circuit, backend="gpu")            # bit-packed on CUDA
    diffgates.export_verilog(model, "net.v", pipeline=2)
"""
from __future__ import annotations

from typing import Any

from .backends import compile_circuit, exporter
from .ir import Circuit
from .ir import simplify as simplify_circuit


def as_circuit(model_or_circuit, simplify: bool | None = None) -> Circuit:
    """A Circuit as given, or extracted (and by default simplified) from a model.

    Args:
        model_or_circuit: a ``Circuit`` or a ``torch.nn.Module`` that ``diffgates.to_circuit`` accepts.
        simplify: run ``diffgates.ir.simplify``; default: yes for models, no for circuits.
    """
    if isinstance(model_or_circuit, Circuit):
        return simplify_circuit(model_or_circuit) if simplify else model_or_circuit
    if hasattr(model_or_circuit, "modules") and hasattr(model_or_circuit, "forward"):
        from .frontend import to_circuit

        circuit = to_circuit(model_or_circuit, input_layout=getattr(model_or_circuit, "diffgates_input_layout", None))
        return simplify_circuit(circuit) if simplify is None or simplify else circuit
    raise TypeError(f"expected a diffgates Circuit or a torch model, got {type(model_or_circuit).__name__}")


def compile(model_or_circuit, backend: str = "c", simplify: bool | None = None, **options: Any):
    """Compile a Circuit or a trained model into an engine (see ``diffgates.backends`` for the interface).

    Args:
        model_or_circuit: a ``Circuit``, or a model (extracted with ``diffgates.to_circuit``).
        backend: 'c' (the compiled CPU engine) or 'gpu' (bit-packed Triton kernel).
        simplify: run the simplification passes first; default: yes for models, no for circuits.
        **options: the backend's own (C: ``threads``, ``isa``, ``layout``, ``chunk_size``; GPU:
            ``word_bits``, ``device``, ``config``).

    Returns:
        The engine. The C backend raises ``diffgates._native.CompilationError`` (with the compiler log)
        when the build fails.
    """
    return compile_circuit(as_circuit(model_or_circuit, simplify), backend=backend, **options)


def _export(fmt: str, model_or_circuit, path, simplify: bool | None, options: dict[str, Any]):
    return exporter(fmt)(as_circuit(model_or_circuit, simplify), path, **options)


def export_c(model_or_circuit, outdir, simplify: bool | None = None, **options: Any):
    """Standalone C99 (``NAME.c``/``NAME.h``, example, Makefile): ``diffgates.backends.c.export.export_c``."""
    return _export("c", model_or_circuit, outdir, simplify, options)


def export_verilog(model_or_circuit, path, simplify: bool | None = None, **options: Any):
    """Verilog RTL and its JSON sidecar: ``diffgates.backends.verilog.emit.export_verilog``."""
    return _export("verilog", model_or_circuit, path, simplify, options)


def export_aiger(model_or_circuit, path, simplify: bool | None = None, **options: Any):
    """An AIGER file (``.aag``/``.aig``): ``diffgates.backends.netlist.aiger.export_aiger``."""
    return _export("aiger", model_or_circuit, path, simplify, options)


def export_blif(model_or_circuit, path, simplify: bool | None = None, **options: Any):
    """A BLIF file: ``diffgates.backends.netlist.blif.export_blif``."""
    return _export("blif", model_or_circuit, path, simplify, options)

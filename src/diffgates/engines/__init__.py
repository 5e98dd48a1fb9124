"""Engines that run a Circuit fast, bit-exact with the numpy reference (``diffgates.circuit.evaluate``).

* ``diffgates.engines.c``: the compiled CPU engine, ``compile(circuit_or_model) -> CompiledCircuit``
  (also ``diffgates.compile``); its lowering is ``c_program`` and its C generator ``c_source``
  (shared with ``diffgates.export.c``).
* ``diffgates.engines.naive``: the one-C-statement-per-gate baseline (the original package's design),
  kept for benchmarks and tested as strictly.

Modules load on first use, so importing this package never needs a C compiler.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "compile": ("diffgates.engines.c", "compile"),
    "CompiledCircuit": ("diffgates.engines.c", "CompiledCircuit"),
    "compile_naive": ("diffgates.engines.naive", "compile_naive"),
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'diffgates.engines' has no attribute {name!r}")

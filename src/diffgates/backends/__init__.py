"""Backends: everything that runs or writes a Circuit, one package per target, all fed by ``diffgates.ir``.

* ``c``: the compiled CPU engine and the standalone C99 export (one lowering, ``c.program``);
* ``gpu``: bit-packed inference in one persistent Triton kernel (CUDA, or Triton's CPU interpreter);
* ``verilog``: RTL with a documented port contract, pipelining, and its simulation check;
* ``netlist``: AND-inverter graphs, AIGER and BLIF files, and ABC's synthesis report.

Backends take a ``Circuit`` only; ``diffgates.compile`` / ``diffgates.export_*`` (``diffgates.deploy``)
also take a trained model and extract it first. Every engine has one interface:

* ``engine(x)``: what the circuit's head computes for (N, n_inputs) 0/1 data: class counts
  ('group_sum', int32), classes ('argmax', int64) or the output bits ('bits', bool);
* ``engine.counts(x)`` / ``engine.predict(x)``: class counts and classes (grouped heads);
* ``engine.pack(x)`` / ``engine.run_packed(packed, n)``: the same on input already packed into the
  engine's word layout (benchmarks, repeated calls);
* ``engine.stats()``: sizes of the compiled form; attributes ``circuit``, ``backend``, ``n_inputs``,
  ``num_classes``.

The interface is ``backends.engine.CircuitEngine``: an engine subclasses it.

Every result equals ``diffgates.ir.head_outputs`` (the numpy reference) bit for bit.
``compile_circuit(circuit, backend=...)`` picks an engine by name (``ENGINES``); modules load on
first use, so importing this package needs neither a compiler nor torch.
"""
from __future__ import annotations

import importlib
from typing import Any

# backend name -> (module, compile function): every function takes (circuit, **options) -> engine.
ENGINES = {
    "c": ("diffgates.backends.c.engine", "compile_circuit"),
    "gpu": ("diffgates.backends.gpu.engine", "compile_gpu"),
}
# export format -> (module, function): every function takes (circuit, path, **options).
EXPORTERS = {
    "c": ("diffgates.backends.c.export", "export_c"),
    "verilog": ("diffgates.backends.verilog.emit", "export_verilog"),
    "aiger": ("diffgates.backends.netlist.aiger", "export_aiger"),
    "blif": ("diffgates.backends.netlist.blif", "export_blif"),
}


def _lookup(table: dict[str, tuple[str, str]], name: str, what: str):
    if name not in table:
        raise ValueError(f"{what} {name!r} is not known; expected one of {sorted(table)}")
    module, attr = table[name]
    return getattr(importlib.import_module(module), attr)


def compile_circuit(circuit, backend: str = "c", **options: Any):
    """The engine of ``backend`` for ``circuit`` (options go to that backend's compile function)."""
    return _lookup(ENGINES, backend, "backend")(circuit, **options)


def exporter(fmt: str):
    """The export function of format ``fmt`` (a key of ``EXPORTERS``)."""
    return _lookup(EXPORTERS, fmt, "export format")

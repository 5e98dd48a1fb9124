"""The Verilog backend: RTL with a documented port contract, optional pipelining, and its simulation check.

* ``emit``: ``generate_verilog(circuit, ...) -> (text, ExportInfo)`` and ``export_verilog(circuit, path,
  ...)`` (the ``.v`` file and its JSON sidecar, written atomically); the port contract per head
  (``group_sum``: counts on ``y``; ``argmax``: ``class_idx``; ``bits``: raw bits on ``y``) is in its
  docstring. Threshold cells are native RTL (an adder tree and a compare each);
* ``design``: the design as arrays, one row per signal, and its pipeline schedule (no per-gate loop);
* ``simulate``: ``verify_verilog(circuit, vectors, ...)``: a self-checking testbench run by Icarus
  Verilog or Verilator against the numpy reference ``diffgates.ir``.

Backends take a ``Circuit`` only (``diffgates.export_verilog`` also takes a trained model). Names load
on first use, so importing this package is cheap. Example::

    from diffgates.backends.verilog import export_verilog, verify_verilog
    info = export_verilog(circuit, "net.v", pipeline=2)
    assert verify_verilog(circuit, 200, pipeline=2).passed
"""
from __future__ import annotations

from ..._lazy import lazy_attributes

_EMIT, _SIMULATE = "diffgates.backends.verilog.emit", "diffgates.backends.verilog.simulate"
_LAZY = {"export_verilog": _EMIT, "generate_verilog": _EMIT, "ExportInfo": _EMIT, "verify_verilog": _SIMULATE}

__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

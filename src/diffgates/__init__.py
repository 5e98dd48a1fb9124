"""diffgates: differentiable logic gate networks that ship as bit-exact circuits.

Train with the API of the original ``difflogic`` package::

    import torch
    from diffgates import LogicLayer, GroupSum
    model = torch.nn.Sequential(torch.nn.Flatten(), LogicLayer(784, 8000), LogicLayer(8000, 8000),
                                GroupSum(k=10, tau=10))

then turn the trained model into a circuit and run or export it::

    circuit = diffgates.to_circuit(model)          # one IR for every backend
    engine = diffgates.compile(circuit, threads=2) # compiled C, bit-exact
    diffgates.export_verilog(circuit, "net.v")     # RTL with a documented port contract
"""
from __future__ import annotations

import importlib

from . import gates
from .circuit import Circuit
from .nn import GroupSum, LogicLayer

__version__ = "0.1.0"

# Heavier entry points load on first use, so `import diffgates` stays light and never needs a compiler.
_LAZY = {
    "to_circuit": ("diffgates.circuit.extract", "to_circuit"),
    "compile": ("diffgates.engines.c", "compile"),
    "export_verilog": ("diffgates.export.verilog", "export_verilog"),
}

__all__ = ["LogicLayer", "GroupSum", "Circuit", "gates", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'diffgates' has no attribute {name!r}")

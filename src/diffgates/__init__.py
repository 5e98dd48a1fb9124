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

Every name here loads on first use: ``import diffgates`` (and ``import diffgates.ir``, the
numpy-only circuit core) never imports torch or needs a compiler.
"""
from __future__ import annotations

from ._lazy import lazy_attributes

__version__ = "0.2.0"

# name -> module (the attribute of the same name) or (module, attribute); resolved on first access.
_LAZY = {
    "gates": ("diffgates.gates", None),
    "Circuit": "diffgates.ir", "Head": "diffgates.ir", "simplify": "diffgates.ir",
    "LogicLayer": "diffgates.nn", "GroupSum": "diffgates.nn", "LogicConv2d": "diffgates.nn", "OrPool2d": "diffgates.nn",
    "to_circuit": "diffgates.frontend", "models": ("diffgates.models", None),
    "as_circuit": "diffgates.deploy", "compile": "diffgates.deploy", "export_c": "diffgates.deploy",
    "export_verilog": "diffgates.deploy", "export_aiger": "diffgates.deploy", "export_blif": "diffgates.deploy",
    "load_model": "diffgates.modelfiles", "load_circuit": "diffgates.modelfiles",
}

__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

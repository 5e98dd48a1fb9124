"""The netlist backend: a Circuit as an AND-inverter graph, AIGER and BLIF files, and ABC's report.

* ``aig``: ``lower_to_aig(circuit, counts=False, argmax=False) -> Aig`` (structurally hashed, in
  AIGER numbering; ``Aig.evaluate`` checks it against ``diffgates.ir``), the shared signal names;
* ``aiger``: ``export_aiger(circuit, "net.aig" | "net.aag")`` and ``read_aiger(path)``;
* ``blif``: ``export_blif(circuit, "net.blif", style="gates" | "aig")``;
* ``abc``: ``synth_report(circuit)``: LUT and gate counts and depths after ABC's optimisation.

Outputs are the raw output bits ``out[k]``, optionally each class's count and the argmax class
(grouped heads). Every writer is vectorised (no loop per gate) and writes through
``_atomic.atomic_write``. Modules load on first use, so importing this package runs no lowering.
Example::

    from diffgates.backends.netlist import export_aiger, read_aiger
    export_aiger(circuit, "net.aig", counts=True)
    assert (read_aiger("net.aig").evaluate(bits)[:, :circuit.n_outputs] == evaluate_outputs(circuit, bits)).all()
"""
from __future__ import annotations

from ..._lazy import lazy_attributes

_AIG, _AIGER = "diffgates.backends.netlist.aig", "diffgates.backends.netlist.aiger"
_BLIF, _ABC = "diffgates.backends.netlist.blif", "diffgates.backends.netlist.abc"
_LAZY = {
    **{name: _AIG for name in ("Aig", "Names", "NetlistInfo", "lower_to_aig", "count_aig")},
    **{name: _AIGER for name in ("export_aiger", "read_aiger", "aiger_bytes", "AigerFormatError")},
    **{name: _BLIF for name in ("export_blif", "blif_text")},
    **{name: _ABC for name in ("synth_report", "SynthesisToolNotFound", "SynthesisError")},
}

__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

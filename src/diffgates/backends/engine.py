"""The one interface every circuit engine implements (the C engine, the GPU engine, and new ones).

An engine wraps one ``diffgates.ir.Circuit`` compiled for a target. Subclasses implement
``__call__``, ``counts``, ``pack``, ``run_packed`` and ``stats``; this base gives them the shared
attributes and the methods defined from those (``predict``), so the interface cannot drift between
backends. numpy and ``diffgates.ir`` only: importing it needs neither torch nor a compiler.
"""
from __future__ import annotations

from typing import Any

from ..ir import Circuit


class CircuitEngine:
    """A compiled circuit: ``engine(x)`` returns what the circuit's head computes.

    Attributes:
        circuit: the Circuit it computes. backend: the backend's name (a key of ``backends.ENGINES``).
    """

    backend = ""
    circuit: Circuit

    @property
    def n_inputs(self) -> int:
        return self.circuit.n_inputs

    @property
    def num_classes(self) -> int:
        return self.circuit.num_classes

    def _require_grouped(self, what: str) -> None:
        """ValueError unless the head groups its outputs into classes (so ``what`` exists)."""
        if not self.circuit.head.grouped:
            raise ValueError(f"this circuit's head is 'bits': its outputs form no class groups, so it has no "
                             f"{what}; call the engine for its output bits")

    def __call__(self, x) -> Any:
        """(N, n_inputs) 0/1 data (bool, integer or float; numpy or torch) -> what the head computes:
        (N, num_classes) int32 counts, (N,) int64 classes ('argmax') or (N, n_outputs) bool ('bits')."""
        raise NotImplementedError

    def counts(self, x) -> Any:
        """(N, n_inputs) 0/1 data -> (N, num_classes) int32 true outputs per class group (grouped heads)."""
        raise NotImplementedError

    def predict(self, x) -> Any:
        """(N,) int64 class with the highest count (ties -> the lowest class index, like argmax)."""
        self._require_grouped("classes")
        return self.counts(x).argmax(-1)

    def pack(self, x) -> Any:
        """The input in the engine's word layout, for ``run_packed`` (benchmarks, repeated calls)."""
        raise NotImplementedError

    def run_packed(self, packed, n: int) -> Any:
        """What ``engine(x)`` returns, for the first ``n`` samples of ``packed = engine.pack(x)``."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Sizes of the compiled form (for reports)."""
        raise NotImplementedError

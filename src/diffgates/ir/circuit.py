"""The Circuit IR: the one representation every backend (numpy, C, GPU, Verilog, netlists) consumes.

A ``Circuit`` is a netlist over ``n_inputs`` input bits:

* nodes are numbered ``0 .. n_inputs-1`` (the input bits, in the documented input encoding) followed
  by one node per *cell*: cell ``i`` is node ``n_inputs + i``. Cells are in topological order (a
  cell reads only earlier nodes), so one pass in index order evaluates them;
* a cell is a two-input gate or a threshold cell, told apart by ``ops[i]``:

  - ``ops[i]`` in 0..15: gate ``gates.GATES[ops[i]]`` of nodes ``a[i]`` and ``b[i]``. Inputs a gate
    ignores (both for FALSE/TRUE, b for A / NOT_A, ...) are kept but carry no meaning;
  - ``ops[i] == THRESHOLD``: the bit ``popcount row a[i] >= b[i]``. Here ``a[i]`` is not a node but a
    row of the popcount table and ``b[i]`` an integer threshold. Several threshold cells may share a
    row (the thresholds of a multi-bit activation);

* the popcount table is CSR: row ``r`` counts the true literals
  ``popcount_lits[popcount_ptr[r]:popcount_ptr[r+1]]``, each literal ``2 * node + negated`` (as in
  AIGER). A literal may repeat (it then counts twice: small integer weights). This is exactly a
  binary neuron: XNOR with the weights is a literal's polarity, BatchNorm + sign a threshold;
* ``outputs`` lists the nodes the circuit computes (any node, repeats allowed), and ``head`` says
  what they mean (``Head``): ``group_sum`` (``num_classes`` contiguous equal groups; class ``c``'s
  score is the number of true outputs in group ``c``, divided by ``tau`` in the model), ``argmax``
  (the same groups, only the winning class index is the result; ties to the lowest class), or
  ``bits`` (the output bits themselves).

Circuits are immutable: the arrays are read-only and the structural fields cannot be reassigned
(``replace`` makes a changed copy), so the analyses (``analysis``: levels, liveness, fan-out, ...)
are computed once per circuit and shared by every pass and backend. ``meta`` and ``input_layout``
stay writable: they describe, they do not define. Serialisation lives in ``serialize`` (JSON for
small circuits, a safetensors container for large ones; ``save`` / ``load`` pick by suffix).

Example::

    circuit = Circuit(n_inputs=2, ops=[gates.AND], a=[0], b=[1], outputs=[2], num_classes=1)
    circuit.save("and.circuit.json")
    same = Circuit.load("and.circuit.json")
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import gates

if TYPE_CHECKING:
    from .analysis import Analysis

THRESHOLD = gates.NUM_GATES  # ops value of a threshold cell: popcount row a >= threshold b
NUM_OPS = gates.NUM_GATES + 1
HEAD_KINDS = ("group_sum", "argmax", "bits")


class CircuitFormatError(ValueError):
    """A circuit file or object is malformed, foreign or inconsistent."""


def _op_table(fn, threshold_value) -> np.ndarray:
    return np.array([fn(g) for g in gates.GATES] + [threshold_value])


# USES_A[op] / USES_B[op]: whether op's output depends on node a / b. A threshold cell reads its row,
# not nodes a and b, so both are False for it: code that follows node operands skips it.
USES_A = _op_table(lambda g: g.uses_a, False).astype(bool)
USES_B = _op_table(lambda g: g.uses_b, False).astype(bool)
IS_GATE = np.arange(NUM_OPS) < THRESHOLD


@dataclass(frozen=True)
class Head:
    """What a circuit's outputs mean (see the module docstring).

    Attributes:
        kind: 'group_sum' (class scores = counts of equal contiguous groups, / tau), 'argmax' (only the
            winning class of those counts) or 'bits' (the output bits).
        num_classes: groups of a 'group_sum' or 'argmax' head (1 for 'bits').
        tau: temperature of a 'group_sum' head (score = count / tau; 1.0 otherwise).
    """

    kind: str = "group_sum"
    num_classes: int = 1
    tau: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise CircuitFormatError(f"head kind {self.kind!r} is not known; expected one of {HEAD_KINDS}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, (int, np.integer)) \
                or self.num_classes < 1:
            raise CircuitFormatError(f"num_classes must be an integer >= 1, got {self.num_classes!r}")
        object.__setattr__(self, "num_classes", int(self.num_classes))
        try:
            tau = float(self.tau)
        except (TypeError, ValueError):
            raise CircuitFormatError(f"tau must be a number, got {self.tau!r}") from None
        if not (np.isfinite(tau) and tau > 0):
            raise CircuitFormatError(f"tau must be a finite number > 0, got {self.tau!r}")
        object.__setattr__(self, "tau", tau)
        if self.kind == "bits" and self.num_classes != 1:
            raise CircuitFormatError(f"a 'bits' head has no classes; got num_classes={self.num_classes}")

    @classmethod
    def group_sum(cls, num_classes: int, tau: float = 1.0) -> "Head":
        return cls("group_sum", num_classes, tau)

    @classmethod
    def argmax(cls, num_classes: int) -> "Head":
        return cls("argmax", num_classes, 1.0)

    @classmethod
    def bits(cls) -> "Head":
        return cls("bits", 1, 1.0)

    @property
    def grouped(self) -> bool:
        """Whether the outputs form class groups that are counted ('group_sum' and 'argmax')."""
        return self.kind != "bits"

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "group_sum":
            return {"kind": self.kind, "num_classes": self.num_classes, "tau": self.tau}
        if self.kind == "argmax":
            return {"kind": self.kind, "num_classes": self.num_classes}
        return {"kind": self.kind}

    @classmethod
    def from_dict(cls, d: Any) -> "Head":
        if not isinstance(d, dict) or d.get("kind") not in HEAD_KINDS:
            raise CircuitFormatError(f"head must be an object with kind in {HEAD_KINDS}, got {d!r}")
        return cls(d["kind"], d.get("num_classes", 1), d.get("tau", 1.0))


_STRUCTURE = ("n_inputs", "ops", "a", "b", "outputs", "head", "popcount_ptr", "popcount_lits")
_EMPTY_PTR = np.zeros(1, dtype=np.int64)


def _frozen(array: np.ndarray, dtype) -> np.ndarray:
    """A read-only C-contiguous array of ``dtype``: shared when it already is one, else a private copy."""
    if isinstance(array, np.ndarray) and array.dtype == dtype and array.flags.c_contiguous and \
            not array.flags.writeable and (array.base is None or not array.base.flags.writeable):
        return array  # why: passes hand unchanged arrays on; sharing them costs no memory
    out = np.array(array, dtype=dtype, order="C")  # a copy: later edits of the caller's array cannot reach it
    out.setflags(write=False)
    return out


def _integer_array(name: str, value: Any, dtype) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0:
        arr = arr.reshape(-1).astype(dtype)
    if arr.dtype.kind not in "iub":
        raise CircuitFormatError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise CircuitFormatError(f"{name} holds values beyond int64")
    return arr


@dataclass(eq=False)
class Circuit:
    """A netlist of gates and threshold cells with a typed head (see the module docstring).

    Args:
        n_inputs: input bits.
        ops: (C,) cell ops: gate ids 0..15 or ``THRESHOLD``.
        a, b: (C,) operand nodes of gates; popcount row and threshold of threshold cells.
        outputs: (n_outputs,) node ids.
        num_classes, tau: shorthand for ``head=Head.group_sum(num_classes, tau)`` (the default head).
        input_layout: bit layout of the input encoding (from ``diffgates.data``), for exporters.
        meta: free-form description (source, layer widths, simplification record, ...).
        head: the head; give either it or ``num_classes``/``tau``.
        popcount_ptr, popcount_lits: the popcount table (CSR, literals ``2 * node + negated``).

    Raises:
        CircuitFormatError: an invariant does not hold (the message names the first violation).
    """

    n_inputs: int
    ops: np.ndarray
    a: np.ndarray
    b: np.ndarray
    outputs: np.ndarray
    num_classes: int | None = None
    tau: float | None = None
    input_layout: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    head: Head | None = None
    popcount_ptr: np.ndarray | None = None
    popcount_lits: np.ndarray | None = None

    def __post_init__(self) -> None:
        head = self.head
        if head is None:
            head = Head.group_sum(1 if self.num_classes is None else self.num_classes,
                                  1.0 if self.tau is None else self.tau)
        elif not isinstance(head, Head):
            raise CircuitFormatError(f"head must be a diffgates.ir.Head, got {type(head).__name__}")
        elif (self.num_classes is not None and self.num_classes != head.num_classes) or \
                (self.tau is not None and float(self.tau) != head.tau):
            raise CircuitFormatError(f"num_classes={self.num_classes!r}/tau={self.tau!r} contradict head={head}")
        if isinstance(self.n_inputs, bool) or not isinstance(self.n_inputs, (int, np.integer)):
            raise CircuitFormatError(f"n_inputs must be an integer, got {self.n_inputs!r}")
        ops = _integer_array("ops", self.ops, np.uint8)
        if ops.size and (ops.min() < 0 or ops.max() >= NUM_OPS):
            bad = ops[(ops < 0) | (ops >= NUM_OPS)][0]
            raise CircuitFormatError(f"gate op {bad} is not a gate id (expected 0..{gates.NUM_GATES - 1}, or "
                                     f"{THRESHOLD} for a threshold cell)")
        ptr = _EMPTY_PTR if self.popcount_ptr is None else _integer_array("popcount_ptr", self.popcount_ptr, np.int64)
        lits = np.zeros(0, np.int64) if self.popcount_lits is None else \
            _integer_array("popcount_lits", self.popcount_lits, np.int64)
        values = {"n_inputs": int(self.n_inputs), "head": head, "num_classes": head.num_classes, "tau": head.tau,
                  "ops": _frozen(ops, np.uint8), "a": _frozen(_integer_array("a", self.a, np.int64), np.int64),
                  "b": _frozen(_integer_array("b", self.b, np.int64), np.int64),
                  "outputs": _frozen(_integer_array("outputs", self.outputs, np.int64), np.int64),
                  "popcount_ptr": _frozen(ptr, np.int64), "popcount_lits": _frozen(lits, np.int64)}
        if self.meta is None:
            values["meta"] = {}
        for name, value in values.items():
            object.__setattr__(self, name, value)
        self.validate()

    def __setattr__(self, name: str, value: Any) -> None:
        # The analyses are cached per circuit: a structural field changed in place would leave them stale.
        if name in _STRUCTURE and name in self.__dict__:
            raise AttributeError(f"Circuit.{name} cannot be changed after construction (the circuit is "
                                 f"immutable); use circuit.replace({name}=...) for a changed copy")
        if name in ("num_classes", "tau") and "head" in self.__dict__:
            raise AttributeError(f"Circuit.{name} comes from the head; use circuit.replace(head=...)")
        object.__setattr__(self, name, value)

    # ---- structure -------------------------------------------------------------------------
    @property
    def n_gates(self) -> int:
        """Cells of the circuit (gates and threshold cells: one node each)."""
        return int(self.ops.shape[0])

    @property
    def n_thresholds(self) -> int:
        return int(np.count_nonzero(self.ops == THRESHOLD))

    @property
    def n_popcounts(self) -> int:
        return int(self.popcount_ptr.shape[0]) - 1

    @property
    def n_nodes(self) -> int:
        return self.n_inputs + self.n_gates

    @property
    def n_outputs(self) -> int:
        return int(self.outputs.shape[0])

    @property
    def group_size(self) -> int:
        """Outputs per class group (grouped heads); every output for a 'bits' head."""
        return self.n_outputs // self.head.num_classes

    @property
    def has_cells(self) -> bool:
        """Whether any threshold cell is present (backends without native cells lower them)."""
        return self.n_thresholds > 0

    def validate(self) -> None:
        """Raise CircuitFormatError unless every invariant of the IR holds."""
        if self.n_inputs < 0:
            raise CircuitFormatError(f"n_inputs must be >= 0, got {self.n_inputs}")
        g = self.n_gates
        if not (self.ops.ndim == self.a.ndim == self.b.ndim == 1 and self.a.shape[0] == g == self.b.shape[0]):
            raise CircuitFormatError(f"ops, a, b must be 1-D of equal length, got shapes {self.ops.shape}, "
                                     f"{self.a.shape}, {self.b.shape}")
        gate = IS_GATE[self.ops]
        has_cells = not gate.all()
        index = np.arange(g, dtype=np.int64)
        for name, src, uses in (("a", self.a, USES_A), ("b", self.b, USES_B)):
            checked = np.where(gate, src, 0) if has_cells else src
            if g and checked.min() >= 0 and (checked - index).max() < self.n_inputs:
                continue  # every operand names an earlier node (the fast path, two reductions)
            own = self.n_inputs + index
            # An operand the gate ignores must still be a node id; 0 is allowed even for node 0 itself.
            limit = np.where(uses[self.ops], own, np.maximum(own, 1))
            bad = np.flatnonzero(gate & ((src < 0) | (src >= limit)))
            if bad.size:
                i = int(bad[0])
                raise CircuitFormatError(f"gate {i} (node {int(own[i])}) reads {name}={int(src[i])}: inputs must be "
                                         f"existing earlier nodes (0 <= id < {int(own[i])}); the gates are not in "
                                         f"topological order or the file is corrupt")
        self._validate_popcounts(gate)
        if self.outputs.ndim != 1 or self.n_outputs == 0:
            raise CircuitFormatError(f"a circuit needs at least one output, got outputs of shape {self.outputs.shape}")
        if self.head.grouped and self.n_outputs % self.head.num_classes:
            raise CircuitFormatError(f"{self.n_outputs} outputs cannot form {self.head.num_classes} equal groups")
        if self.outputs.min() < 0 or self.outputs.max() >= self.n_nodes:
            raise CircuitFormatError(f"outputs reference nodes outside [0, {self.n_nodes - 1}]")

    def _validate_popcounts(self, gate: np.ndarray) -> None:
        ptr, lits = self.popcount_ptr, self.popcount_lits
        if ptr.ndim != 1 or ptr.size < 1 or ptr[0] != 0 or ptr[-1] != lits.size or lits.ndim != 1 or \
                (ptr.size > 1 and np.any(np.diff(ptr) < 0)):
            raise CircuitFormatError(f"popcount_ptr must be a non-decreasing CSR offset array from 0 to "
                                     f"len(popcount_lits)={lits.size}, got {ptr[:8].tolist()}...")
        if lits.size and (lits.min() < 0 or (lits.max() >> 1) >= self.n_nodes):
            raise CircuitFormatError(f"popcount literals reference nodes outside [0, {self.n_nodes - 1}]")
        cells = np.flatnonzero(~gate)
        if not cells.size:
            return
        rows = self.a[cells]
        bad = np.flatnonzero((rows < 0) | (rows >= self.n_popcounts))
        if bad.size:
            i = int(cells[bad[0]])
            raise CircuitFormatError(f"threshold cell {i} reads popcount row {int(self.a[i])}, but the table has "
                                     f"{self.n_popcounts} rows")
        own = self.n_inputs + cells
        last = row_max_node(ptr, lits)[rows]
        bad = np.flatnonzero(last >= own)
        if bad.size:
            i = int(cells[bad[0]])
            raise CircuitFormatError(f"threshold cell {i} (node {self.n_inputs + i}) counts node {int(last[bad[0]])}: "
                                     f"cells must read earlier nodes only (topological order)")

    # ---- derived ------------------------------------------------------------------------------
    @cached_property
    def analysis(self) -> "Analysis":
        """The shared analyses of this circuit (levels, liveness, fan-out, ...), computed on first use."""
        from .analysis import Analysis

        return Analysis(self)

    def forget_analyses(self) -> None:
        """Free the cached analyses (hundreds of MB for a 10M-gate circuit); they are recomputed on demand."""
        self.__dict__.pop("analysis", None)

    def levels(self) -> np.ndarray:
        """(n_nodes,) int64 logic depth: inputs 0, a cell 1 + the deepest node it actually reads."""
        return self.analysis.levels

    def level_groups(self) -> list[np.ndarray]:
        """Cell indices grouped by logic depth, shallowest first (each group is independent)."""
        return self.analysis.level_groups

    def gate_levels(self) -> np.ndarray:
        return self.analysis.levels[self.n_inputs:]

    def depth(self) -> int:
        """Logic depth of the outputs (0 when every output is an input bit)."""
        return self.analysis.depth

    def is_levelized(self) -> bool:
        lv = self.gate_levels()
        return bool(np.all(lv[1:] >= lv[:-1]))

    def popcount_row(self, row: int) -> np.ndarray:
        """Literals of popcount row ``row``."""
        return self.popcount_lits[self.popcount_ptr[row]:self.popcount_ptr[row + 1]]

    def output_groups(self) -> np.ndarray:
        """(num_classes, group_size) node ids: row c is the group counted for class c."""
        if not self.head.grouped:
            raise CircuitFormatError("this circuit's head is 'bits': its outputs form no class groups")
        return self.outputs.reshape(self.num_classes, self.group_size)

    def count_bits(self) -> int:
        """Bits needed for one class count (0..group_size): what every fixed-width backend uses."""
        return max(1, int(self.group_size).bit_length())

    def gate_histogram(self) -> dict[str, int]:
        counts = np.bincount(self.ops, minlength=NUM_OPS)
        names = (*gates.GATE_NAMES, "THRESHOLD")
        return {names[i]: int(c) for i, c in enumerate(counts) if c}

    def stats(self) -> dict[str, Any]:
        """Gate counts by type, depth and sizes (used by reports and the CLI)."""
        return {"inputs": self.n_inputs, "gates": self.n_gates, "thresholds": self.n_thresholds,
                "outputs": self.n_outputs, "head": self.head.kind, "classes": self.num_classes,
                "group_size": self.group_size, "depth": self.depth(), "gates_by_type": self.gate_histogram()}

    def replace(self, **changes: Any) -> "Circuit":
        """A new Circuit with some fields changed (validated; ``meta`` is copied unless given)."""
        fields = {"n_inputs": self.n_inputs, "ops": self.ops, "a": self.a, "b": self.b, "outputs": self.outputs,
                  "head": self.head, "popcount_ptr": self.popcount_ptr, "popcount_lits": self.popcount_lits,
                  "input_layout": self.input_layout, "meta": dict(self.meta)}
        if "num_classes" in changes or "tau" in changes:
            head = changes.get("head", self.head)
            changes["head"] = Head(head.kind, changes.pop("num_classes", head.num_classes), changes.pop("tau", head.tau))
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"Circuit.replace got unknown fields {sorted(unknown)}")
        fields.update(changes)
        return Circuit(**fields)

    # ---- equality and serialisation --------------------------------------------------------
    def structurally_equal(self, other: "Circuit") -> bool:
        return (self.n_inputs == other.n_inputs and self.head == other.head
                and np.array_equal(self.ops, other.ops) and np.array_equal(self.a, other.a)
                and np.array_equal(self.b, other.b) and np.array_equal(self.outputs, other.outputs)
                and np.array_equal(self.popcount_ptr, other.popcount_ptr)
                and np.array_equal(self.popcount_lits, other.popcount_lits))

    def to_dict(self) -> dict[str, Any]:
        from .serialize import to_dict

        return to_dict(self)

    @classmethod
    def from_dict(cls, d: Any, source: str = "circuit") -> "Circuit":
        from .serialize import from_dict

        return from_dict(d, source)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically: JSON, or the binary container for a ``.safetensors`` path (see ``serialize``)."""
        from .serialize import save

        save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Circuit":
        """Read a circuit file of any supported format and version (see ``serialize``)."""
        from .serialize import load

        return load(path)

    def __repr__(self) -> str:
        cells = f", thresholds={self.n_thresholds}" if self.has_cells else ""
        return (f"Circuit(inputs={self.n_inputs}, gates={self.n_gates}{cells}, outputs={self.n_outputs}, "
                f"head={self.head.kind}, classes={self.num_classes})")


_DTYPES = {"ops": np.uint8, "a": np.int64, "b": np.int64, "outputs": np.int64, "popcount_ptr": np.int64,
           "popcount_lits": np.int64}


def derive(circuit: Circuit, *, levels: np.ndarray | None = None, facts: frozenset[str] = frozenset(),
           **changes: Any) -> Circuit:
    """A circuit like ``circuit`` with some arrays replaced, for trusted code (the passes) only.

    Unlike ``Circuit.replace`` the given arrays are frozen in place, not copied (the caller must own
    them and never write them again), and the invariants are not re-checked: ``simplify`` validates
    its result once. ``levels`` are the new circuit's node levels when the caller knows them
    unchanged (a renumbering, a merge of equal cells): they seed its analyses; ``facts`` are what
    the caller established about it (``Analysis.facts``).
    """
    new = object.__new__(Circuit)
    d = new.__dict__
    for name in (*_STRUCTURE, "num_classes", "tau", "input_layout"):
        d[name] = circuit.__dict__[name]
    d["meta"] = dict(circuit.meta)
    for name, value in changes.items():
        if name not in _DTYPES:
            raise TypeError(f"derive: {name!r} is not a circuit array")
        arr = np.ascontiguousarray(value, dtype=_DTYPES[name])
        arr.setflags(write=False)
        d[name] = arr
    if levels is not None or facts:
        from .analysis import Analysis

        analysis = Analysis(new)
        if levels is not None:
            levels = np.asarray(levels, dtype=np.int64)
            levels.setflags(write=False)
            analysis.__dict__["levels"] = levels
        analysis.facts.update(facts)
        d["analysis"] = analysis
    return new


def row_max_node(ptr: np.ndarray, lits: np.ndarray) -> np.ndarray:
    """(rows,) the largest node each popcount row reads (-1 for an empty row)."""
    rows = ptr.size - 1
    out = np.full(rows, -1, dtype=np.int64)
    if lits.size:
        nonempty = np.flatnonzero(np.diff(ptr) > 0)
        out[nonempty] = np.maximum.reduceat(lits >> 1, ptr[nonempty])
    return out

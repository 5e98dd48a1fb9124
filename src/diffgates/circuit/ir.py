"""The Circuit IR: the one representation every backend (numpy, C, GPU, Verilog, netlists) consumes.

A ``Circuit`` is a netlist of two-input gates over ``n_inputs`` input bits, plus a group-sum head:

* nodes are numbered ``0 .. n_inputs-1`` (the input bits, in the documented input encoding) followed
  by one node per gate: gate ``i`` is node ``n_inputs + i``;
* gate ``i`` computes ``gates.GATES[ops[i]]`` of nodes ``a[i]`` and ``b[i]``; gates are in
  topological order (``a[i], b[i] < n_inputs + i``), so one pass in index order evaluates them.
  Inputs a gate ignores (both for FALSE/TRUE, b for A / NOT_A, ...) are kept but carry no meaning;
* ``outputs`` lists node ids; they form ``num_classes`` contiguous equal groups, and class ``c``'s
  score is the number of true outputs in group ``c`` (divided by ``tau`` in the model's output).
  An output may be any node (an input bit, a constant gate) and may repeat after simplification.

``levels()`` gives every node's logic depth (inputs 0, a gate 1 + the deepest input it uses).
``passes.levelize`` / ``passes.simplify`` make a circuit *levelized*: gate levels never decrease in
index order (a layered model's circuit need not be: a constant gate in layer 3 has level 1).

Serialisation is plain JSON (``save`` / ``load``), never pickle. Example::

    circuit = diffgates.to_circuit(model)
    circuit.save("net.circuit.json")
    same = Circuit.load("net.circuit.json")
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import gates
from .._atomic import atomic_write

FORMAT_NAME = "diffgates-circuit"
FORMAT_VERSION = 1


class CircuitFormatError(ValueError):
    """A circuit file or object is malformed, foreign or inconsistent."""


# USES_A[g] / USES_B[g]: whether gate g's output depends on input a / b.
USES_A = np.array([g.uses_a for g in gates.GATES], dtype=bool)
USES_B = np.array([g.uses_b for g in gates.GATES], dtype=bool)


def node_levels(n_inputs: int, ops: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 8192,
                max_sweeps: int = 8) -> np.ndarray:
    """(n_nodes,) int64 logic depth, as ``Circuit.levels()`` (inputs a gate ignores do not count).

    Vectorised over chunks of ``chunk`` gates in index (topological) order: inputs from earlier chunks
    are final, so one gather gives every gate whose inputs lie outside its chunk (all of them in a
    layered circuit); the few reading inside the chunk are re-swept until stable, and a chunk still
    changing after ``max_sweeps`` sweeps (a deep chain) finishes in a plain loop.
    """
    n_nodes = n_inputs + ops.shape[0]
    # An ignored input reads the sentinel slot n_nodes, which stays at level 0.
    ia = np.where(USES_A[ops], a, n_nodes)
    ib = np.where(USES_B[ops], b, n_nodes)
    level = np.zeros(n_nodes + 1, dtype=np.int64)
    for start in range(n_inputs, n_nodes, chunk):
        stop = min(start + chunk, n_nodes)
        ca, cb = ia[start - n_inputs:stop - n_inputs], ib[start - n_inputs:stop - n_inputs]
        level[start:stop] = np.maximum(level[ca], level[cb]) + 1
        inside = np.flatnonzero(((ca >= start) & (ca < n_nodes)) | ((cb >= start) & (cb < n_nodes)))
        if not inside.size:
            continue
        ca, cb, nodes = ca[inside], cb[inside], start + inside
        for _ in range(max_sweeps):
            new = np.maximum(level[ca], level[cb]) + 1
            if np.array_equal(new, level[nodes]):
                break
            level[nodes] = new
        else:  # a deep chain inside the chunk: one exact pass in index order
            lv = level.tolist()
            for node, x, y in zip(nodes.tolist(), ca.tolist(), cb.tolist()):
                lx, ly = lv[x], lv[y]
                lv[node] = 1 + (lx if lx > ly else ly)
            level[nodes] = np.asarray(lv, dtype=np.int64)[nodes]
    return level[:n_nodes]


def level_groups(n_inputs: int, ops: np.ndarray, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """Gate indices grouped by logic depth, shallowest first, ascending index within a group.

    A gate's used inputs all lie in earlier groups, so processing groups in order is a topological sweep.
    """
    lv = node_levels(n_inputs, ops, a, b)[n_inputs:]
    order = np.argsort(lv, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(lv[order])) + 1) if order.size else []



@dataclass
class Circuit:
    n_inputs: int
    ops: np.ndarray  # (G,) uint8 gate ids in canonical order
    a: np.ndarray  # (G,) int64 node ids
    b: np.ndarray  # (G,) int64 node ids
    outputs: np.ndarray  # (n_outputs,) int64 node ids
    num_classes: int
    tau: float = 1.0
    input_layout: dict[str, Any] | None = None  # bit layout of the encoding (from diffgates.data)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ops = np.asarray(self.ops)
        if ops.size and (ops.min() < 0 or ops.max() >= gates.NUM_GATES):
            bad = ops[(ops < 0) | (ops >= gates.NUM_GATES)][0]
            raise CircuitFormatError(f"gate op {bad} is not a gate id (expected 0..{gates.NUM_GATES - 1})")
        self.ops = np.ascontiguousarray(ops, dtype=np.uint8)
        self.a = np.ascontiguousarray(self.a, dtype=np.int64)
        self.b = np.ascontiguousarray(self.b, dtype=np.int64)
        self.outputs = np.ascontiguousarray(self.outputs, dtype=np.int64)
        self.n_inputs = int(self.n_inputs)
        self.num_classes = int(self.num_classes)
        self.tau = float(self.tau)
        self.validate()

    # ---- structure -------------------------------------------------------------------------
    @property
    def n_gates(self) -> int:
        return int(self.ops.shape[0])

    @property
    def n_nodes(self) -> int:
        return self.n_inputs + self.n_gates

    @property
    def n_outputs(self) -> int:
        return int(self.outputs.shape[0])

    @property
    def group_size(self) -> int:
        return self.n_outputs // self.num_classes

    def validate(self) -> None:
        """Raise CircuitFormatError unless every invariant of the IR holds."""
        if self.n_inputs < 0:
            raise CircuitFormatError(f"n_inputs must be >= 0, got {self.n_inputs}")
        g = self.n_gates
        if not (self.ops.ndim == self.a.ndim == self.b.ndim == 1 and self.a.shape[0] == g == self.b.shape[0]):
            raise CircuitFormatError(f"ops, a, b must be 1-D of equal length, got shapes {self.ops.shape}, "
                                     f"{self.a.shape}, {self.b.shape}")
        own = self.n_inputs + np.arange(g)
        for name, src in (("a", self.a), ("b", self.b)):
            bad = np.flatnonzero((src < 0) | (src >= own))
            if bad.size:
                i = int(bad[0])
                raise CircuitFormatError(f"gate {i} (node {int(own[i])}) reads {name}={int(src[i])}: inputs must be "
                                         f"existing earlier nodes (0 <= id < {int(own[i])}); the gates are not in "
                                         f"topological order or the file is corrupt")
        if self.num_classes < 1:
            raise CircuitFormatError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.outputs.ndim != 1 or self.n_outputs == 0 or self.n_outputs % self.num_classes:
            raise CircuitFormatError(f"{self.n_outputs} outputs cannot form {self.num_classes} equal groups")
        if self.outputs.min() < 0 or self.outputs.max() >= self.n_nodes:
            raise CircuitFormatError(f"outputs reference nodes outside [0, {self.n_nodes - 1}]")
        if not self.tau > 0:
            raise CircuitFormatError(f"tau must be > 0, got {self.tau}")

    def levels(self) -> np.ndarray:
        """(n_nodes,) int64 logic depth: inputs 0, a gate 1 + max level of the inputs it uses."""
        return node_levels(self.n_inputs, self.ops, self.a, self.b)

    def level_groups(self) -> list[np.ndarray]:
        """Gate indices grouped by logic depth, shallowest first (each group is independent)."""
        return level_groups(self.n_inputs, self.ops, self.a, self.b)

    def gate_levels(self) -> np.ndarray:
        return self.levels()[self.n_inputs:]

    def depth(self) -> int:
        """Logic depth of the outputs (0 when every output is an input bit)."""
        return int(self.levels()[self.outputs].max())

    def is_levelized(self) -> bool:
        lv = self.gate_levels()
        return bool(np.all(np.diff(lv) >= 0)) if lv.size else True

    def output_groups(self) -> np.ndarray:
        """(num_classes, group_size) node ids: row c is the group summed for class c."""
        return self.outputs.reshape(self.num_classes, self.group_size)

    def count_bits(self) -> int:
        """Bits needed for one class count (0..group_size): what every fixed-width backend uses."""
        return max(1, int(self.group_size).bit_length())

    def gate_histogram(self) -> dict[str, int]:
        counts = np.bincount(self.ops, minlength=gates.NUM_GATES)
        return {gates.GATE_NAMES[i]: int(c) for i, c in enumerate(counts) if c}

    def stats(self) -> dict[str, Any]:
        """Gate counts by type, depth and sizes (used by reports and the CLI)."""
        return {"inputs": self.n_inputs, "gates": self.n_gates, "outputs": self.n_outputs,
                "classes": self.num_classes, "group_size": self.group_size, "depth": self.depth(),
                "gates_by_type": self.gate_histogram()}

    # ---- equality and serialisation --------------------------------------------------------
    def structurally_equal(self, other: "Circuit") -> bool:
        return (self.n_inputs == other.n_inputs and self.num_classes == other.num_classes
                and self.tau == other.tau and np.array_equal(self.ops, other.ops)
                and np.array_equal(self.a, other.a) and np.array_equal(self.b, other.b)
                and np.array_equal(self.outputs, other.outputs))

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "n_inputs": self.n_inputs,
                "num_classes": self.num_classes, "tau": self.tau,
                "gates": {"op": self.ops.tolist(), "a": self.a.tolist(), "b": self.b.tolist()},
                "outputs": self.outputs.tolist(), "input_layout": self.input_layout, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: Any, source: str = "circuit") -> "Circuit":
        if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
            fmt = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise CircuitFormatError(f"{source} is not a diffgates circuit (format={fmt!r}, "
                                     f"expected {FORMAT_NAME!r})")
        if d.get("version") != FORMAT_VERSION:
            raise CircuitFormatError(f"{source} has circuit format version {d.get('version')!r}; this "
                                     f"diffgates reads version {FORMAT_VERSION}")
        def integers(name: str, value: Any) -> np.ndarray:
            # np.asarray(..., dtype=int64) would silently truncate 1.7 -> 1 in a corrupt file.
            arr = np.asarray(value)
            if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
                raise CircuitFormatError(f"{source}: field {name!r} must be a list of integers, got "
                                         f"{str(value)[:80]}")
            return arr.astype(np.int64)

        def integer(name: str, value: Any) -> int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise CircuitFormatError(f"{source}: field {name!r} must be an integer, got {value!r}")
            return value

        try:
            g = d["gates"]
            return cls(n_inputs=integer("n_inputs", d["n_inputs"]), ops=integers("gates.op", g["op"]),
                       a=integers("gates.a", g["a"]), b=integers("gates.b", g["b"]),
                       outputs=integers("outputs", d["outputs"]),
                       num_classes=integer("num_classes", d["num_classes"]),
                       tau=d.get("tau", 1.0), input_layout=d.get("input_layout"), meta=d.get("meta") or {})
        except CircuitFormatError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise CircuitFormatError(f"{source} is missing or has malformed field: {exc!r}") from exc

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (temp file + rename)."""
        with atomic_write(path, "w") as f:
            f.write(json.dumps(self.to_dict(), separators=(",", ":")))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Circuit":
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise CircuitFormatError(f"{path} is not valid JSON ({exc}); expected a diffgates circuit") from exc
        except UnicodeDecodeError as exc:
            raise CircuitFormatError(f"{path} is not a text file; expected a diffgates circuit JSON") from exc
        return cls.from_dict(d, source=str(path))

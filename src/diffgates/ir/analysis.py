"""Analyses of a Circuit, computed once per circuit and shared by every pass and backend.

``circuit.analysis`` (an ``Analysis``, cached on the immutable circuit) holds:

* ``levels``: (n_nodes,) int64 logic depth: inputs 0; a gate 1 + the deepest operand it uses; a
  threshold cell 1 + the deepest node its popcount row counts (a cell counts as one level here;
  backends that build it from adders add their own depth);
* ``level_groups``: cell indices grouped by level, shallowest first; a group's cells are
  independent, so processing groups in order is a topological sweep;
* ``depth``: the deepest output's level;
* ``live`` / ``live_rows``: the nodes (and popcount rows) some output depends on, through the
  operands cells actually use;
* ``alap``: (n_cells,) the latest level each cell could move to without delaying any reader
  (outputs stay at ``depth``), the order the engines schedule by so values live briefly;
* ``facts``: properties the simplification passes established (canonical form, no duplicates, no
  dead cells), so a pass with nothing to change knows it without looking.

All of them are vectorised over whole levels (no per-cell Python loop); a deep chain inside one
index chunk is the only case handled by a plain loop, as the exact fallback of ``node_levels``.

Helpers on the popcount table: ``row_of_literal`` (row of each literal) and ``segment_gather``
(the literal positions of a set of rows). Example::

    lv = circuit.analysis.levels
    for cells in circuit.analysis.level_groups: ...
"""
from __future__ import annotations

import weakref
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from .circuit import IS_GATE, THRESHOLD, USES_A, USES_B

if TYPE_CHECKING:
    from .circuit import Circuit


def row_of_literal(ptr: np.ndarray) -> np.ndarray:
    """(E,) the popcount row of every literal of a CSR table with offsets ``ptr``."""
    return np.repeat(np.arange(ptr.size - 1, dtype=np.int64), np.diff(ptr))


def segment_gather(ptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Literal positions of ``rows`` (concatenated, in row order) and the new CSR offsets over them."""
    rows = np.asarray(rows, dtype=np.int64)
    starts, lengths = ptr[rows], ptr[rows + 1] - ptr[rows]
    new_ptr = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_ptr[1:])
    positions = np.arange(new_ptr[-1], dtype=np.int64) + np.repeat(starts - new_ptr[:-1], lengths)
    return positions, new_ptr


def segment_max(values: np.ndarray, ptr: np.ndarray, empty: int) -> np.ndarray:
    """Per CSR segment the max of ``values`` (``empty`` for empty segments)."""
    out = np.full(ptr.size - 1, empty, dtype=np.int64)
    nonempty = np.flatnonzero(ptr[1:] > ptr[:-1])
    if nonempty.size:
        out[nonempty] = np.maximum.reduceat(values, ptr[nonempty])
    return out


def _cell_levels(level: np.ndarray, a: np.ndarray, cells: np.ndarray, ptr: np.ndarray,
                 lits: np.ndarray) -> np.ndarray:
    """1 + the deepest counted node of each threshold cell in ``cells`` (cell indices)."""
    positions, sub_ptr = segment_gather(ptr, a[cells])
    return segment_max(level[lits[positions] >> 1], sub_ptr, 0) + 1


def node_levels(n_inputs: int, ops: np.ndarray, a: np.ndarray, b: np.ndarray,
                popcount_ptr: np.ndarray | None = None, popcount_lits: np.ndarray | None = None,
                chunk: int = 1 << 16, max_sweeps: int = 8) -> np.ndarray:
    """(n_nodes,) int64 logic depth, as ``Analysis.levels``.

    Vectorised over chunks of ``chunk`` cells in index (topological) order: operands in earlier
    chunks are final, so one gather gives every cell whose operands lie outside its chunk (all of
    them in a layered circuit); the few reading inside the chunk are re-swept until stable, and a
    chunk still changing after ``max_sweeps`` sweeps (a deep chain) finishes in a plain loop.
    """
    n_nodes = n_inputs + ops.shape[0]
    ptr = np.zeros(1, np.int64) if popcount_ptr is None else popcount_ptr
    lits = np.zeros(0, np.int64) if popcount_lits is None else popcount_lits
    # An ignored operand reads the sentinel slot n_nodes, which stays at level 0.
    ia = np.where(USES_A[ops], a, n_nodes)
    ib = np.where(USES_B[ops], b, n_nodes)
    is_cell = ops == THRESHOLD
    row_last = None
    if is_cell.any():
        from .circuit import row_max_node

        row_last = row_max_node(ptr, lits)
    level = np.zeros(n_nodes + 1, dtype=np.int32)  # why: half the bytes of int64 for the random gathers
    for start in range(n_inputs, n_nodes, chunk):
        stop = min(start + chunk, n_nodes)
        lo, hi = start - n_inputs, stop - n_inputs
        ca, cb = ia[lo:hi], ib[lo:hi]
        level[start:stop] = np.maximum(level[ca], level[cb]) + 1
        inside = ((ca >= start) & (ca < n_nodes)) | ((cb >= start) & (cb < n_nodes))
        cells = lo + np.flatnonzero(is_cell[lo:hi]) if row_last is not None else np.zeros(0, np.int64)
        if cells.size:
            level[n_inputs + cells] = _cell_levels(level, a, cells, ptr, lits)
            inside[cells - lo] |= row_last[a[cells]] >= start
        inside = lo + np.flatnonzero(inside)
        if not inside.size:
            continue
        for _ in range(max_sweeps):
            new = np.maximum(level[ia[inside]], level[ib[inside]]) + 1
            cell_mask = is_cell[inside]
            if cell_mask.any():
                new[cell_mask] = _cell_levels(level, a, inside[cell_mask], ptr, lits)
            if np.array_equal(new, level[n_inputs + inside]):
                break
            level[n_inputs + inside] = new
        else:  # a deep chain inside the chunk: one exact pass in index order
            for i in inside.tolist():
                if is_cell[i]:
                    row = lits[ptr[a[i]]:ptr[a[i] + 1]] >> 1
                    level[n_inputs + i] = 1 + (int(level[row].max()) if row.size else 0)
                else:
                    level[n_inputs + i] = 1 + max(int(level[ia[i]]), int(level[ib[i]]))
    return level[:n_nodes].astype(np.int64)


def group_by_level(gate_levels: np.ndarray) -> list[np.ndarray]:
    """Cell indices grouped by level (ascending index within a group), shallowest first."""
    if not gate_levels.size:
        return []
    if np.all(gate_levels[1:] >= gate_levels[:-1]):  # levelized: groups are contiguous ranges
        bounds = np.flatnonzero(gate_levels[1:] != gate_levels[:-1]) + 1
        edges = np.concatenate([[0], bounds, [gate_levels.size]])
        return [np.arange(s, e, dtype=np.int64) for s, e in zip(edges[:-1].tolist(), edges[1:].tolist())]
    order = np.argsort(gate_levels, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(gate_levels[order])) + 1)


def level_groups(n_inputs: int, ops: np.ndarray, a: np.ndarray, b: np.ndarray,
                 popcount_ptr: np.ndarray | None = None, popcount_lits: np.ndarray | None = None) -> list[np.ndarray]:
    """Cell indices grouped by logic depth, shallowest first (see ``Analysis.level_groups``)."""
    return group_by_level(node_levels(n_inputs, ops, a, b, popcount_ptr, popcount_lits)[n_inputs:])


def mark_reads(mark: np.ndarray, cells: np.ndarray, ops: np.ndarray, a: np.ndarray, b: np.ndarray,
               ptr: np.ndarray, lits: np.ndarray, rows_mark: np.ndarray | None = None) -> None:
    """Set ``mark`` on every node the given cells read (used gate operands, counted literals)."""
    op = ops[cells]
    mark[a[cells][USES_A[op]]] = True
    mark[b[cells][USES_B[op]]] = True
    threshold = cells[op == THRESHOLD]
    if threshold.size:
        rows = a[threshold]
        if rows_mark is not None:
            rows_mark[rows] = True
        positions, _ = segment_gather(ptr, np.unique(rows))
        mark[lits[positions] >> 1] = True


class Analysis:
    """The analyses of one circuit (see the module docstring); every property is computed on first use."""

    def __init__(self, circuit: "Circuit"):
        # A weak reference: the circuit caches this object, and a cycle would keep every intermediate
        # circuit of a pass pipeline alive until the cyclic collector ran (3 GB instead of 1 at 10M gates).
        self._circuit = weakref.ref(circuit)
        # Properties the passes established ('canonical', 'unique', 'no_dead'), so a pass that would find
        # nothing to change returns at once (see diffgates.ir.passes).
        self.facts: set[str] = set()

    @property
    def circuit(self) -> "Circuit":
        circuit = self._circuit()
        if circuit is None:
            raise ReferenceError("the circuit of this analysis no longer exists")
        return circuit

    @cached_property
    def levels(self) -> np.ndarray:
        c = self.circuit
        lv = node_levels(c.n_inputs, c.ops, c.a, c.b, c.popcount_ptr, c.popcount_lits)
        lv.setflags(write=False)
        return lv

    @cached_property
    def level_groups(self) -> list[np.ndarray]:
        return group_by_level(self.levels[self.circuit.n_inputs:])

    @cached_property
    def depth(self) -> int:
        return int(self.levels[self.circuit.outputs].max())

    @cached_property
    def _liveness(self) -> tuple[np.ndarray, np.ndarray]:
        c = self.circuit
        n_in = c.n_inputs
        live = np.zeros(c.n_nodes, dtype=bool)
        live_rows = np.zeros(c.n_popcounts, dtype=bool)
        live[c.outputs] = True
        for cells in reversed(self.level_groups):
            sel = cells[live[n_in + cells]]
            if sel.size:
                mark_reads(live, sel, c.ops, c.a, c.b, c.popcount_ptr, c.popcount_lits, live_rows)
        live.setflags(write=False)
        live_rows.setflags(write=False)
        return live, live_rows

    @property
    def live(self) -> np.ndarray:
        """(n_nodes,) bool: nodes some output depends on (input bits included only when read)."""
        return self._liveness[0]

    @property
    def live_rows(self) -> np.ndarray:
        """(n_popcounts,) bool: popcount rows a live threshold cell reads."""
        return self._liveness[1]

    @cached_property
    def inputs_used(self) -> int:
        """Input bits some output depends on."""
        return int(np.count_nonzero(self.live[:self.circuit.n_inputs]))

    @cached_property
    def alap(self) -> np.ndarray:
        """(n_cells,) latest level of every live cell (see the module docstring); dead cells get the depth."""
        c = self.circuit
        n_in = c.n_inputs
        depth = max(int(self.levels.max(initial=0)), 1)
        alap = np.full(c.n_nodes, depth, dtype=np.int64)
        ptr, lits = c.popcount_ptr, c.popcount_lits
        live = self.live
        for cells in reversed(self.level_groups):  # readers are final before their operands
            cells = cells[live[n_in + cells]]  # why: a dead reader must not pull its operands earlier
            value = alap[n_in + cells] - 1
            op = c.ops[cells]
            for src, uses in ((c.a, USES_A), (c.b, USES_B)):
                m = uses[op]
                np.minimum.at(alap, src[cells][m], value[m])
            threshold = op == THRESHOLD
            if threshold.any():
                positions, sub_ptr = segment_gather(ptr, c.a[cells[threshold]])
                np.minimum.at(alap, lits[positions] >> 1, np.repeat(value[threshold], np.diff(sub_ptr)))
        out = alap[n_in:]
        out.setflags(write=False)
        return out


__all__ = ["Analysis", "node_levels", "level_groups", "group_by_level", "mark_reads", "row_of_literal",
           "segment_gather", "segment_max", "IS_GATE"]

"""The one bit-level lowering of threshold cells to two-input gates, for backends without native cells.

``lower_cells(circuit)`` returns a circuit of gates only that computes the same outputs: every
threshold cell ``popcount(row) >= T`` becomes

* a NOT gate per negated literal;
* a balanced tree of ripple-carry adders over the row's bits (level ``t`` adds neighbouring
  ``t+1``-bit numbers into ``t+2``-bit sums), so the count has ``ceil(log2 n) + 1`` bits and the
  tree ``ceil(log2 n)`` adder levels, as the group-sum adder trees of the hardware exports;
* a comparator with the constant ``T``, from the most significant bit down: ``gt |= eq & c_k``
  where T's bit k is 0, ``eq &= c_k`` where it is 1 (``eq &= ~c_k`` where it is 0), result
  ``gt | eq`` (a threshold at or below 0 is TRUE, one above the row length FALSE).

The cells of one logic level are lowered together, vectorised over all of them and over all adders
of a tree level (no per-cell Python loop). Padding bits read one FALSE gate and leave through
``passes.CLEANUP_PASSES`` (constant folding, wire forwarding, dead cells), which the result has been
through. Example::

    gates_only = lower_cells(circuit)
    assert not gates_only.has_cells
"""
from __future__ import annotations

import numpy as np

from .. import gates
from .analysis import segment_gather
from .circuit import THRESHOLD, USES_A, USES_B, Circuit


class _Builder:
    """Gates appended in topological order; ``emit`` returns the new nodes."""

    def __init__(self, n_inputs: int):
        self.n_inputs = n_inputs
        self.ops: list[np.ndarray] = []
        self.a: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        self.count = 0

    def emit(self, op, a, b) -> np.ndarray:
        a = np.asarray(a, dtype=np.int64)
        op = np.broadcast_to(np.asarray(op, dtype=np.uint8), a.shape).reshape(-1)
        b = np.broadcast_to(np.asarray(b, dtype=np.int64), a.shape).reshape(-1)
        first = self.n_inputs + self.count
        self.ops.append(op)
        self.a.append(a.reshape(-1))
        self.b.append(b)
        self.count += op.size
        return np.arange(first, first + op.size, dtype=np.int64).reshape(a.shape)


def _add(builder: _Builder, x: np.ndarray, y: np.ndarray, zero: int) -> np.ndarray:
    """Ripple-carry sums of the rows of x and y ((k, w) bit nodes, LSB first) -> (k, w + 1)."""
    k, w = x.shape
    out = np.empty((k, w + 1), dtype=np.int64)
    carry = np.full(k, zero, dtype=np.int64)
    for bit in range(w):
        half = builder.emit(gates.XOR, x[:, bit], y[:, bit])
        out[:, bit] = builder.emit(gates.XOR, half, carry)
        both = builder.emit(gates.AND, x[:, bit], y[:, bit])
        carried = builder.emit(gates.AND, carry, half)
        carry = builder.emit(gates.OR, both, carried)
    out[:, w] = carry
    return out


def _popcounts(builder: _Builder, bits: np.ndarray, cell_of: np.ndarray, n_cells: int,
               zero: int) -> np.ndarray:
    """(n_cells, w) count bits (LSB first) of the bit nodes ``bits`` grouped by ``cell_of`` (ascending)."""
    numbers = bits[:, None]
    owner = cell_of
    while True:
        # rank of each item within its cell: items 2j and 2j+1 of one cell are added
        first_of_cell = np.searchsorted(owner, owner, side="left")
        rank = np.arange(owner.size) - first_of_cell
        has_partner = np.zeros(owner.size, dtype=bool)
        has_partner[:-1] = (owner[1:] == owner[:-1]) & (rank[:-1] % 2 == 0)
        if not has_partner.any():
            break
        left = np.flatnonzero(has_partner)
        paired = np.zeros(owner.size, dtype=bool)
        paired[left] = paired[left + 1] = True
        sums = _add(builder, numbers[left], numbers[left + 1], zero)
        alone = np.flatnonzero(~paired)
        carried = np.concatenate([numbers[alone], np.full((alone.size, 1), zero, dtype=np.int64)], axis=1)
        order = np.argsort(np.concatenate([left, alone]), kind="stable")
        numbers = np.concatenate([sums, carried])[order]
        owner = np.concatenate([owner[left], owner[alone]])[order]
    width = numbers.shape[1]
    out = np.full((n_cells, width), zero, dtype=np.int64)
    out[owner] = numbers
    return out


def _compare(builder: _Builder, count: np.ndarray, threshold: np.ndarray, zero: int, one: int) -> np.ndarray:
    """Nodes of ``count >= threshold`` per row of ``count`` ((k, w) bits, LSB first)."""
    k, w = count.shape
    gt = np.full(k, zero, dtype=np.int64)
    eq = np.full(k, one, dtype=np.int64)
    t = np.clip(threshold, 0, (1 << w) - 1 if w < 62 else np.iinfo(np.int64).max)
    for bit in range(w - 1, -1, -1):
        set_ = ((t >> bit) & 1).astype(bool)
        c = count[:, bit]
        hit = builder.emit(gates.AND, eq, c)
        gt = builder.emit(np.where(set_, gates.A, gates.OR), gt, hit)
        eq = builder.emit(np.where(set_, gates.AND, gates.A_AND_NOT_B), eq, c)
    result = builder.emit(gates.OR, gt, eq)
    decided_true = threshold <= 0
    decided_false = threshold > (1 << min(w, 62)) - 1
    return np.where(decided_true, one, np.where(decided_false, zero, result))


def lower_cells(circuit: Circuit) -> Circuit:
    """A circuit of two-input gates only with the same outputs (see the module docstring)."""
    if not circuit.has_cells:
        return circuit
    from .passes import CLEANUP_PASSES, simplify

    n_in = circuit.n_inputs
    builder = _Builder(n_in)
    zero, one = (int(v) for v in builder.emit([gates.FALSE, gates.TRUE], [0, 0], [0, 0]))
    node_map = np.arange(circuit.n_nodes, dtype=np.int64)
    ptr, lits, ops = circuit.popcount_ptr, circuit.popcount_lits, circuit.ops
    for idx in circuit.level_groups():
        is_cell = ops[idx] == THRESHOLD
        cells = idx[is_cell]
        if cells.size:
            positions, sub_ptr = segment_gather(ptr, circuit.a[cells])
            lv = lits[positions]
            bits = node_map[lv >> 1]
            negated = (lv & 1).astype(bool)
            if negated.any():
                bits = bits.copy()
                bits[negated] = builder.emit(gates.NOT_A, bits[negated], bits[negated])
            cell_of = np.repeat(np.arange(cells.size), np.diff(sub_ptr))
            counts = _popcounts(builder, bits, cell_of, cells.size, zero)
            node_map[n_in + cells] = _compare(builder, counts, circuit.b[cells], zero, one)
        g = idx[~is_cell]
        if g.size:
            op = ops[g]
            # An ignored operand may name a deeper node not emitted yet: it reads the FALSE gate instead.
            a = np.where(USES_A[op], node_map[circuit.a[g]], zero)
            b = np.where(USES_B[op], node_map[circuit.b[g]], zero)
            node_map[n_in + g] = builder.emit(op, a, b)
    lowered = Circuit(n_inputs=n_in, ops=np.concatenate(builder.ops), a=np.concatenate(builder.a),
                      b=np.concatenate(builder.b), outputs=node_map[circuit.outputs], head=circuit.head,
                      input_layout=circuit.input_layout, meta=dict(circuit.meta))
    cleaned = simplify(lowered, CLEANUP_PASSES)
    cleaned.meta.pop("simplified", None)
    cleaned.meta["lowered_cells"] = circuit.n_thresholds
    return cleaned

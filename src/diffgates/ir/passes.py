"""Logic simplification of a Circuit: semantics-preserving passes and ``simplify`` (their fixed point).

Every pass is a pure function ``Circuit -> Circuit`` that leaves every output's value unchanged for
every input ``x`` (the tests check this exhaustively on small circuits). A pass that finds nothing to
change returns its argument itself, so its cached analyses stay valid and ``simplify`` stops early.

* ``fold_constants``: gates fed by constant gates become single-input or constant gates; a threshold
  cell drops its constant literals (a true one lowers its threshold) and becomes a constant gate
  when its threshold is reached, or out of reach, whatever the rest counts;
* ``absorb_passthroughs``: pass-through gates (``A``/``B``) become wires and ``NOT_A``/``NOT_B`` gates
  are absorbed into their consumers (``gates.with_inputs_negated``; a popcount literal flips its
  polarity); an output cannot absorb a NOT, so an output that is NOT of a gate becomes that gate
  negated (``gates.negate``: NOT AND -> NAND) and only an output that is NOT of an input bit or of a
  threshold cell keeps a NOT gate;
* ``canonicalize_inputs``: two-input gates read ``a < b`` (``gates.swap_inputs``), gates reading one
  node twice become single-input or constant gates, single-input gates read it as ``a == b``,
  constant gates read node 0, and popcount rows are sorted, so equal cells look equal;
* ``merge_duplicates``: structural hashing, one cell per distinct gate (op, a, b) or threshold cell
  (counted literals, threshold); popcount rows with equal literals are shared;
* ``eliminate_dead``: drops cells and popcount rows no output depends on (input bits always stay:
  they are the encoding);
* ``levelize``: stable sort of the cells by logic depth and renumbering (``is_levelized()`` holds after).

``simplify`` runs the passes in that order until a whole round changes nothing. All passes work on
arrays, one vectorised step per logic level (no per-gate Python loop), and read the levels from the
circuit's shared analyses. ``simplify_report(before, after)`` / ``format_report`` summarise the
effect. Example::

    from diffgates.ir.passes import simplify, simplify_report, format_report
    small = simplify(circuit)
    print(format_report(simplify_report(circuit, small)))
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np

from .. import gates
from .analysis import row_of_literal, segment_gather
from .circuit import IS_GATE, NUM_OPS, THRESHOLD, USES_A, USES_B, Circuit, derive

Pass = Callable[[Circuit], Circuit]
# Facts a pass records in its result's analyses (Analysis.facts); a pass whose fact holds returns at once.
CANONICAL, UNIQUE, NO_DEAD = "canonical", "unique", "no_dead"

# ---- op tables derived from diffgates.gates (the only definition of the 16 gates) --------------------
# Every table maps THRESHOLD to itself: gate rewrites never touch a threshold cell's fields.
_IDS = range(gates.NUM_GATES)


def _with_threshold(values: list, dtype=np.uint8) -> np.ndarray:
    return np.array(values + [THRESHOLD], dtype=dtype)


IS_CONST = np.array([i in gates.CONSTANT_GATES for i in _IDS] + [False], dtype=bool)
SWAPPED = _with_threshold([gates.swap_inputs(i) for i in _IDS])
NEGATE = _with_threshold([gates.negate(i) for i in _IDS])
# NEGATED[op, na, nb]: the gate g' with g'(a, b) == g(a ^ na, b ^ nb).
NEGATED = np.array([[[gates.with_inputs_negated(i, na, nb) for nb in (0, 1)] for na in (0, 1)] for i in _IDS]
                   + [[[THRESHOLD] * 2] * 2], dtype=np.uint8)


def _gate_from_function(fn: Callable[[int, int], int]) -> int:
    """Id of the gate whose truth table is fn(a, b) (canonical bit order of ``diffgates.gates``)."""
    return sum(fn(a, b) << (3 - (2 * a + b)) for a in (0, 1) for b in (0, 1))


# FIX_A[op, v]: the gate of (a, b) equal to g(v, b) (ignores a); FIX_B[op, v]: equal to g(a, v).
FIX_A = np.array([[_gate_from_function(lambda a, b, g=g, v=v: g(v, b)) for v in (0, 1)] for g in gates.GATES]
                 + [[THRESHOLD] * 2], dtype=np.uint8)
FIX_B = np.array([[_gate_from_function(lambda a, b, g=g, v=v: g(a, v)) for v in (0, 1)] for g in gates.GATES]
                 + [[THRESHOLD] * 2], dtype=np.uint8)
# SAME_INPUT[op]: the gate of (a, b) equal to g(a, a), i.e. one of FALSE, A, NOT_A, TRUE.
SAME_INPUT = _with_threshold([_gate_from_function(lambda a, b, g=g: g(a, a)) for g in gates.GATES])
assert len(IS_CONST) == len(SWAPPED) == NUM_OPS


# ---- shared helpers ------------------------------------------------------------------------------
# Gate classes by the operands they use (threshold cells belong to none of them).
ONLY_B = IS_GATE & ~USES_A & USES_B
TWO_INPUT = USES_A & USES_B
ONLY_A = USES_A & ~USES_B
IGNORES_A = IS_GATE & ~USES_A
IGNORES_B = IS_GATE & ~USES_B
IS_WIRE = np.isin(np.arange(NUM_OPS), [gates.A, gates.B, gates.NOT_A, gates.NOT_B])


def _with_ignored_inputs_fixed(ops: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Point inputs a gate ignores at the input it uses (or node 0), so renumbering never dangles.

    Threshold cells keep their row and threshold. Arrays without anything to fix come back as they are.
    """
    i = np.flatnonzero(IGNORES_A[ops])
    j = np.flatnonzero(IGNORES_B[ops])
    if i.size:
        a = a.copy()
        a[i] = np.where(USES_B[ops[i]], b[i], 0)
    if j.size:
        b = b.copy()
        b[j] = a[j]
    return a, b


def _canonical(ops: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical form of gates, elementwise (see ``canonicalize_inputs``); threshold cells pass unchanged.

    Returns new arrays; only the cells that need a rewrite are touched (most gates already are canonical).
    """
    ops, a, b = ops.astype(np.uint8, copy=True), a.astype(np.int64, copy=True), b.astype(np.int64, copy=True)
    i = np.flatnonzero(IS_GATE[ops] & (a == b))
    ops[i] = SAME_INPUT[ops[i]]  # g(x, x) is a function of x alone
    i = np.flatnonzero(ONLY_B[ops])
    ops[i], a[i] = SWAPPED[ops[i]], b[i]  # B / NOT_B -> A / NOT_A reading b as a
    i = np.flatnonzero(TWO_INPUT[ops] & (a > b))
    ops[i], a[i], b[i] = SWAPPED[ops[i]], b[i], a[i]
    i = np.flatnonzero(ONLY_A[ops] & (b != a))
    b[i] = a[i]
    i = np.flatnonzero(IS_CONST[ops] & ((a != 0) | (b != 0)))
    a[i], b[i] = 0, 0
    return ops, a, b


def _table(ptr: np.ndarray, keep: np.ndarray, row_of: np.ndarray, n_rows: int) -> np.ndarray:
    """CSR offsets of a table after keeping the literals ``keep`` (bool) of rows ``row_of``."""
    new_ptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of[keep], minlength=n_rows), out=new_ptr[1:])
    return new_ptr


def _sorted_rows(ptr: np.ndarray, lits: np.ndarray) -> np.ndarray:
    """The literals with every row sorted ascending (rows stay in place)."""
    if not lits.size:
        return lits
    return lits[np.lexsort((lits, row_of_literal(ptr)))]


def _row_keys(ptr: np.ndarray, lits: np.ndarray) -> np.ndarray:
    """(rows, 3) uint64 keys of sorted rows: two 64-bit hashes of the content and the length.

    Equal rows get equal keys; unequal rows almost surely differ (2^-128): ``_confirm_equal`` checks.
    """
    rows = ptr.size - 1
    out = np.zeros((rows, 3), dtype=np.uint64)
    out[:, 2] = np.diff(ptr).astype(np.uint64)
    if not lits.size:
        return out
    pos = (np.arange(lits.size, dtype=np.int64) - np.repeat(ptr[:-1], np.diff(ptr))).astype(np.uint64)
    x = lits.astype(np.uint64)
    with np.errstate(over="ignore"):
        for col, salt in ((0, np.uint64(0x9E3779B97F4A7C15)), (1, np.uint64(0xD1B54A32D192ED03))):
            z = x * salt + pos * np.uint64(0xBF58476D1CE4E5B9) + salt
            z = (z ^ (z >> np.uint64(31))) * np.uint64(0x94D049BB133111EB)
            z ^= z >> np.uint64(29)
            nonempty = np.flatnonzero(ptr[1:] > ptr[:-1])
            out[nonempty, col] = np.add.reduceat(z, ptr[nonempty])
    return out


def _confirm_equal(ptr: np.ndarray, lits: np.ndarray, rows: np.ndarray, reps: np.ndarray) -> np.ndarray:
    """(k,) bool: row ``rows[i]`` has exactly the literals of row ``reps[i]`` (equal lengths assumed)."""
    pa, sub = segment_gather(ptr, rows)
    pb, _ = segment_gather(ptr, reps)
    same = lits[pa] == lits[pb]
    bad = np.zeros(rows.size, dtype=bool)
    bad[np.repeat(np.arange(rows.size), np.diff(sub))[~same]] = True
    return ~bad


def _remap_literals(lits: np.ndarray, node_map: np.ndarray, flip: np.ndarray | None = None) -> np.ndarray:
    """Literals with their nodes renamed through ``node_map`` (and polarity xor ``flip[node]``)."""
    node, neg = lits >> 1, lits & 1
    if flip is not None:
        neg = neg ^ flip[node]
    return 2 * node_map[node] + neg


# ---- the passes -------------------------------------------------------------------------------------
def fold_constants(circuit: Circuit) -> Circuit:
    """Replace every gate input that is a constant gate by its value (``g(1, b)`` -> a gate of b).

    Propagates in topological order, so whole constant cones collapse in one call. Gates whose truth
    table becomes constant are FALSE/TRUE gates afterwards; their inputs are left for later passes. A
    threshold cell's constant literals leave its popcount row (a true one lowers the threshold by one).

    Args:
        circuit: any Circuit.

    Returns:
        A Circuit with the same nodes and outputs, computing the same values.
    """
    n_in, ptr, lits = circuit.n_inputs, circuit.popcount_ptr, circuit.popcount_lits
    ops, a, b = circuit.ops.copy(), circuit.a.copy(), circuit.b.copy()
    value = np.full(circuit.n_nodes, -1, dtype=np.int8)  # -1: not constant, else the constant bit
    value[n_in + np.flatnonzero(ops == gates.FALSE)] = 0
    value[n_in + np.flatnonzero(ops == gates.TRUE)] = 1
    if not _anything_to_fold(circuit, value >= 0):
        return circuit
    for idx in circuit.level_groups():
        gate = IS_GATE[ops[idx]]
        g = idx[gate]  # a threshold cell's a and b are a row and a threshold, not nodes
        op = ops[g]
        va, vb = value[a[g]], value[b[g]]
        fix_a = (va >= 0) & USES_A[op]
        op = np.where(fix_a, FIX_A[op, np.maximum(va, 0)], op)
        fix_b = (vb >= 0) & USES_B[op]
        op = np.where(fix_b, FIX_B[op, np.maximum(vb, 0)], op)
        ops[g] = op
        cells = idx[~gate]
        if cells.size:
            positions, sub_ptr = segment_gather(ptr, a[cells])
            lv = lits[positions]
            val = value[lv >> 1].astype(np.int64)
            ones = _segment_sum((val >= 0) & ((val ^ (lv & 1)) == 1), sub_ptr)
            unknown = _segment_sum(val < 0, sub_ptr)
            need = b[cells] - ones
            decided = (need <= 0) | (need > unknown)
            done = cells[decided]
            ops[done] = np.where(need[decided] <= 0, gates.TRUE, gates.FALSE)
            a[done], b[done] = 0, 0
        const = IS_CONST[ops[idx]]
        value[n_in + idx[const]] = ops[idx[const]] == gates.TRUE
    ptr, lits = _fold_rows(ops, a, b, ptr, lits, value)
    return derive(circuit, ops=ops, a=a, b=b, popcount_ptr=ptr, popcount_lits=lits)


def _segment_sum(flags: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """Per CSR segment the number of set ``flags``."""
    cum = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
    return cum[ptr[1:]] - cum[ptr[:-1]]


def _anything_to_fold(circuit: Circuit, const_node: np.ndarray) -> bool:
    """Whether some cell reads a constant gate, or some threshold cell is decided by its row length."""
    ops = circuit.ops
    if any(const_node[src[uses[ops]]].any() for src, uses in ((circuit.a, USES_A), (circuit.b, USES_B))):
        return True
    cells = np.flatnonzero(ops == THRESHOLD)
    if not cells.size:
        return False
    lits, ptr = circuit.popcount_lits, circuit.popcount_ptr
    rows = circuit.a[cells]
    length = ptr[rows + 1] - ptr[rows]
    return bool(const_node[lits >> 1].any() or np.any((circuit.b[cells] <= 0) | (circuit.b[cells] > length)))


def _fold_rows(ops, a, b, ptr, lits, value):
    """Drop constant literals from every popcount row; lower thresholds by each row's true ones (in place)."""
    if not lits.size:
        return ptr, lits
    val = value[lits >> 1].astype(np.int64)
    const = val >= 0
    if not const.any():
        return ptr, lits
    row_of = row_of_literal(ptr)
    rows = ptr.size - 1
    ones = np.bincount(row_of[const & ((val ^ (lits & 1)) == 1)], minlength=rows)
    cells = np.flatnonzero(ops == THRESHOLD)
    b[cells] -= ones[a[cells]]
    return _table(ptr, ~const, row_of, rows), lits[~const]


def absorb_passthroughs(circuit: Circuit) -> Circuit:
    """Turn A/B gates into wires and absorb NOT_A/NOT_B gates into the cells that read them.

    Every node maps to a literal (source node, negated?); consumers read the source and fold the
    negation into their own gate with ``gates.with_inputs_negated`` (popcount literals flip their
    polarity). Outputs move to the source of a plain wire; an output whose literal is negated keeps
    its own gate, rewritten as the source gate negated (``gates.negate``), or as NOT of the source
    when that is an input bit or a threshold cell.

    Args:
        circuit: any Circuit.

    Returns:
        A Circuit with the same nodes (wires become dead, see ``eliminate_dead``), same semantics.
    """
    n_in = circuit.n_inputs
    if not IS_WIRE[circuit.ops].any():  # also every circuit without gates
        return circuit
    ops, a, b = circuit.ops.copy(), circuit.a.copy(), circuit.b.copy()
    src = np.arange(circuit.n_nodes, dtype=np.int64)
    neg = np.zeros(circuit.n_nodes, dtype=bool)
    for idx in circuit.level_groups():
        idx = idx[IS_GATE[ops[idx]]]
        ai, bi = a[idx], b[idx]
        op = NEGATED[ops[idx], neg[ai].astype(np.intp), neg[bi].astype(np.intp)]
        ai, bi = src[ai], src[bi]
        ops[idx], a[idx], b[idx] = op, ai, bi
        node = n_in + idx
        for wire, source, negated in ((gates.A, ai, False), (gates.B, bi, False),
                                      (gates.NOT_A, ai, True), (gates.NOT_B, bi, True)):
            sel = op == wire
            src[node[sel]] = source[sel]
            neg[node[sel]] = negated
    lits = _remap_literals(circuit.popcount_lits, src, neg)
    out = circuit.outputs
    outputs = np.where(neg[out], out, src[out])
    # An output NOT of a gate becomes that gate negated (NOT AND -> NAND): one level less, and the
    # source gate may die. Only a NOT of an input bit or of a threshold cell must stay a NOT gate.
    source_cell = np.maximum(src[out] - n_in, 0)
    push = neg[out] & (src[out] >= n_in) & IS_GATE[ops[source_cell]]
    gate, source = out[push] - n_in, source_cell[push]
    ops[gate], a[gate], b[gate] = NEGATE[ops[source]], a[source], b[source]
    if (np.array_equal(ops, circuit.ops) and np.array_equal(a, circuit.a) and np.array_equal(b, circuit.b)
            and np.array_equal(outputs, circuit.outputs) and np.array_equal(lits, circuit.popcount_lits)):
        return circuit  # only NOTs no one can absorb (of inputs or threshold cells, as outputs)
    return derive(circuit, ops=ops, a=a, b=b, outputs=outputs, popcount_lits=lits)


def canonicalize_inputs(circuit: Circuit) -> Circuit:
    """Give equal cells equal encodings, cell by cell (no propagation needed).

    Two-input gates get ``a < b`` (swapping with ``gates.swap_inputs``); gates reading one node twice
    become the single-input or constant gate they compute; B / NOT_B become A / NOT_A; single-input
    gates read their input as both a and b; constant gates read node 0; popcount rows are sorted.

    Args:
        circuit: any Circuit.

    Returns:
        A Circuit with the same nodes and outputs, same semantics.
    """
    if CANONICAL in circuit.analysis.facts:
        return circuit
    ops, a, b = _canonical(circuit.ops, circuit.a, circuit.b)
    lits = _sorted_rows(circuit.popcount_ptr, circuit.popcount_lits)
    if (np.array_equal(ops, circuit.ops) and np.array_equal(a, circuit.a) and np.array_equal(b, circuit.b)
            and np.array_equal(lits, circuit.popcount_lits)):
        circuit.analysis.facts.add(CANONICAL)
        return circuit
    return derive(circuit, ops=ops, a=a, b=b, popcount_lits=lits, levels=_levels_if_no_new_constants(circuit, ops),
                  facts=frozenset({CANONICAL}))


def _levels_if_no_new_constants(circuit: Circuit, ops: np.ndarray) -> np.ndarray | None:
    """The circuit's levels, valid for ``ops`` too unless a gate became a constant (a constant has level 1).

    Canonical rewrites and merges of equal cells keep every level otherwise: a gate reading one node
    twice keeps its level as the wire or NOT it becomes, and merged copies have equal levels.
    """
    new_const = IS_CONST[ops] & ~IS_CONST[circuit.ops]
    return None if new_const.any() else circuit.levels()


def merge_duplicates(circuit: Circuit) -> Circuit:
    """Structural hashing: equal cells become one (the lowest-numbered); equal popcount rows are shared.

    Gates are canonicalised first and re-canonicalised as merges propagate level by level, so
    duplicates of duplicates merge in the same call; threshold cells merge when they count the same
    literals (after renaming) against the same threshold. Consumers and outputs move to the kept cell.

    Args:
        circuit: any Circuit.

    Returns:
        A Circuit with the same nodes (merged copies become dead), same semantics.
    """
    if {CANONICAL, UNIQUE} <= circuit.analysis.facts:
        return circuit
    n_in, n_nodes = circuit.n_inputs, circuit.n_nodes
    ptr, lits = circuit.popcount_ptr, circuit.popcount_lits
    ops, a, b = circuit.ops.copy(), circuit.a.copy(), circuit.b.copy()
    rep = np.arange(n_nodes, dtype=np.int64)
    merged = False
    use_int_key = n_nodes < 700_000_000  # (op * n + a) * n + b must fit in int64
    for idx in circuit.level_groups():
        cell_mask = ops[idx] == THRESHOLD
        cells, idx = idx[cell_mask], idx[~cell_mask]
        if idx.size:
            op, ai, bi = _canonical(ops[idx], rep[a[idx]], rep[b[idx]])
            ops[idx], a[idx], b[idx] = op, ai, bi
            if use_int_key:
                first = _first_copies((op.astype(np.int64) * n_nodes + ai) * n_nodes + bi)
            else:
                _, first, inverse = np.unique(np.stack([op.astype(np.int64), ai, bi], 1), axis=0,
                                              return_index=True, return_inverse=True)
                first = first[inverse.reshape(-1)]
            if first is not None:
                node = n_in + idx
                rep[node] = node[first]  # idx ascends, so the first copy is the lowest-numbered one
                merged = True
        if cells.size > 1:
            merged |= _merge_cells(cells, n_in, a, b, ptr, lits, rep)
    # Popcount rows: literals renamed through the merges, sorted, equal rows shared.
    new_lits = _sorted_rows(ptr, _remap_literals(lits, rep))
    thresholds = np.flatnonzero(ops == THRESHOLD)
    if thresholds.size > 1:
        keys = _row_keys(ptr, new_lits)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        row_rep = first[inverse.reshape(-1)]
        rows = np.flatnonzero(row_rep != np.arange(row_rep.size))
        ok = _confirm_equal(ptr, new_lits, rows, row_rep[rows])
        row_rep[rows[~ok]] = rows[~ok]  # a hash collision: keep the rows apart
        if np.any(row_rep[a[thresholds]] != a[thresholds]):
            a[thresholds] = row_rep[a[thresholds]]
            merged = True
    outputs = rep[circuit.outputs]
    if not merged and np.array_equal(ops, circuit.ops) and np.array_equal(a, circuit.a) and \
            np.array_equal(b, circuit.b) and np.array_equal(new_lits, lits):
        circuit.analysis.facts.update((CANONICAL, UNIQUE))
        return circuit
    return derive(circuit, ops=ops, a=a, b=b, outputs=outputs, popcount_lits=new_lits,
                  levels=_levels_if_no_new_constants(circuit, ops), facts=frozenset({CANONICAL, UNIQUE}))


def _first_copies(key: np.ndarray) -> np.ndarray | None:
    """Per element the position of the first element with the same key; None when all keys differ."""
    order = np.argsort(key)  # why: quicksort is about twice as fast as a stable sort; min below restores order
    sorted_key = key[order]
    starts = np.ones(key.size, dtype=bool)
    starts[1:] = sorted_key[1:] != sorted_key[:-1]
    if starts.all():
        return None
    first = np.empty(key.size, dtype=np.int64)
    first[order] = np.minimum.reduceat(order, np.flatnonzero(starts))[np.cumsum(starts) - 1]
    return first


def _merge_cells(cells: np.ndarray, n_in: int, a: np.ndarray, b: np.ndarray, ptr: np.ndarray,
                 lits: np.ndarray, rep: np.ndarray) -> bool:
    """Merge the threshold cells of one level that count equal literals against equal thresholds."""
    positions, sub_ptr = segment_gather(ptr, a[cells])
    seg = _sorted_rows(sub_ptr, _remap_literals(lits[positions], rep))
    keys = np.concatenate([_row_keys(sub_ptr, seg), b[cells].astype(np.uint64)[:, None]], axis=1)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    if first.size == cells.size:
        return False
    local_rep = first[inverse.reshape(-1)]
    dup = np.flatnonzero(local_rep != np.arange(cells.size))
    ok = _confirm_equal(sub_ptr, seg, dup, local_rep[dup])
    dup = dup[ok]
    rep[n_in + cells[dup]] = n_in + cells[local_rep[dup]]
    return bool(dup.size)


def _renumber(circuit: Circuit, order: np.ndarray, rows_kept: np.ndarray | None = None,
              facts: frozenset[str] = frozenset()) -> Circuit:
    """The cells ``order`` (in that order) renumbered; popcount rows ``rows_kept`` (bool) kept.

    A renumbering keeps every cell's function, so it keeps the input's facts (canonical form: operands
    swapped back where the order reversed them; no duplicates: distinct cells stay distinct), plus ``facts``.
    """
    n_in = circuit.n_inputs
    ops = circuit.ops[order]
    a, b = _with_ignored_inputs_fixed(ops, circuit.a[order], circuit.b[order])  # fresh arrays: written below
    new_id = np.full(circuit.n_nodes, -1, dtype=np.int64)
    new_id[:n_in] = np.arange(n_in)
    new_id[n_in + order] = n_in + np.arange(order.size)
    gate = IS_GATE[ops]
    was_ordered = a < b
    if gate.all():
        a, b = new_id[a], new_id[b]
    else:
        g = np.flatnonzero(gate)
        a[g], b[g] = new_id[a[g]], new_id[b[g]]
    # A reordering may reverse a two-input gate's operands: swap them back, so canonical stays canonical.
    flip = np.flatnonzero(TWO_INPUT[ops] & was_ordered & (a > b))
    ops[flip], a[flip], b[flip] = SWAPPED[ops[flip]], b[flip], a[flip]
    ptr, lits = circuit.popcount_ptr, circuit.popcount_lits
    if rows_kept is not None and not rows_kept.all():
        row_of = row_of_literal(ptr)
        keep = rows_kept[row_of]
        ptr = np.concatenate([[0], np.cumsum(np.bincount(row_of[keep], minlength=ptr.size - 1)[rows_kept])])
        lits = lits[keep]
        a[~gate] = (np.cumsum(rows_kept) - 1)[a[~gate]]
    lits = _remap_literals(lits, new_id)
    if order.size > 1 and np.any(order[1:] < order[:-1]):
        lits = _sorted_rows(ptr, lits)  # a reordering (levelize) may unsort the rows' literals
    levels = np.concatenate([np.zeros(n_in, np.int64), circuit.gate_levels()[order]])  # renumbering keeps levels
    kept = frozenset(circuit.analysis.facts & {CANONICAL, UNIQUE, NO_DEAD})
    return derive(circuit, ops=ops, a=a, b=b, outputs=new_id[circuit.outputs], popcount_ptr=ptr, popcount_lits=lits,
                  levels=levels, facts=kept | facts)


def eliminate_dead(circuit: Circuit) -> Circuit:
    """Drop every cell and popcount row that no output depends on (through operands cells use).

    The input bits are never removed (they define the input encoding). Surviving cells keep their
    relative order; inputs gates ignore are pointed at the input they use (or node 0).

    Args:
        circuit: any Circuit.

    Returns:
        A smaller Circuit (renumbered), same semantics.
    """
    if NO_DEAD in circuit.analysis.facts:
        return circuit
    live = circuit.analysis.live[circuit.n_inputs:]
    rows = circuit.analysis.live_rows
    if live.all() and rows.all():
        circuit.analysis.facts.add(NO_DEAD)
        return circuit
    return _renumber(circuit, np.flatnonzero(live), rows, facts=frozenset({NO_DEAD}))


def levelize(circuit: Circuit) -> Circuit:
    """Sort the cells by logic depth (stable) and renumber, so ``is_levelized()`` holds.

    Inputs a gate ignores are pointed at the input it uses (or node 0) first, so the new order stays
    topological; a two-input gate whose operands the renumbering reverses reads them swapped
    (``gates.swap_inputs``), so a canonical circuit stays canonical.

    Args:
        circuit: any Circuit.

    Returns:
        The same cells in depth order, same semantics.
    """
    a, b = _with_ignored_inputs_fixed(circuit.ops, circuit.a, circuit.b)
    if circuit.is_levelized() and np.array_equal(a, circuit.a) and np.array_equal(b, circuit.b):
        return circuit
    # Fixing ignored inputs leaves every used operand, hence every level, as it is.
    return _renumber(circuit, np.argsort(circuit.gate_levels(), kind="stable"))


def forward_wires(circuit: Circuit) -> Circuit:
    """Forward copies: A/B gates become wires to their operand, and a NOT of a NOT a wire to the original.

    What a C compiler does to straight-line code anyway (the engines' cleanup, with
    ``fold_constants``, ``canonicalize_inputs`` and ``eliminate_dead``): unlike ``absorb_passthroughs``
    it keeps every other NOT gate as a gate.

    Args:
        circuit: any Circuit.

    Returns:
        A Circuit with the same nodes (wires become dead), same semantics.
    """
    n_in, ops = circuit.n_inputs, circuit.ops
    is_not = (ops == gates.NOT_A) | (ops == gates.NOT_B)
    not_operand = np.where(ops == gates.NOT_A, circuit.a, circuit.b)
    double_not = is_not & (not_operand >= n_in) & is_not[np.maximum(not_operand - n_in, 0)] if ops.size else is_not
    if not (np.isin(ops, [gates.A, gates.B]).any() or double_not.any()):
        return circuit
    a, b = circuit.a.copy(), circuit.b.copy()
    src = np.arange(circuit.n_nodes, dtype=np.int64)
    for idx in circuit.level_groups():
        g = idx[IS_GATE[ops[idx]]]
        a[g], b[g] = src[a[g]], src[b[g]]
        op, node = ops[g], n_in + g
        for wire, operand in ((gates.A, a), (gates.B, b)):
            sel = op == wire
            src[node[sel]] = operand[g[sel]]
        for negation, operand in ((gates.NOT_A, a), (gates.NOT_B, b)):
            sel = np.flatnonzero(op == negation)
            inner = operand[g[sel]] - n_in
            sel, inner = sel[inner >= 0], inner[inner >= 0]
            inner_op = ops[inner]
            twice = (inner_op == gates.NOT_A) | (inner_op == gates.NOT_B)
            sel, inner, inner_op = sel[twice], inner[twice], inner_op[twice]
            src[node[sel]] = np.where(inner_op == gates.NOT_A, a[inner], b[inner])
    return derive(circuit, a=a, b=b, outputs=src[circuit.outputs],
                           popcount_lits=_remap_literals(circuit.popcount_lits, src))


PASSES: dict[str, Pass] = {
    "fold_constants": fold_constants,
    "absorb_passthroughs": absorb_passthroughs,
    "canonicalize_inputs": canonicalize_inputs,
    "merge_duplicates": merge_duplicates,
    "eliminate_dead": eliminate_dead,
    "levelize": levelize,
}
DEFAULT_PASSES: tuple[Pass, ...] = tuple(PASSES.values())
# What any C compiler does to straight-line code (the engines' cleanup of an unsimplified circuit:
# constants, copies, doubled operands, double NOTs, common subexpressions and dead cells; NOT gates
# stay gates: no logic simplification).
CLEANUP_PASSES: tuple[Pass, ...] = (fold_constants, canonicalize_inputs, forward_wires, merge_duplicates,
                                    eliminate_dead)


def _resolve(passes: Sequence[Pass | str]) -> list[Pass]:
    if isinstance(passes, str):
        passes = [passes]
    resolved = []
    for p in passes:
        if isinstance(p, str):
            if p not in PASSES:
                raise ValueError(f"unknown circuit pass {p!r}; expected one of {list(PASSES)}")
            p = PASSES[p]
        if not callable(p):
            raise ValueError(f"a circuit pass must be a name or a function Circuit -> Circuit, got {p!r}")
        resolved.append(p)
    return resolved


def simplify(circuit: Circuit, passes: Sequence[Pass | str] = DEFAULT_PASSES, max_rounds: int = 64) -> Circuit:
    """Run ``passes`` in order, round after round, until a round leaves the circuit unchanged.

    Args:
        circuit: the Circuit to simplify (not modified).
        passes: pass functions or their names (keys of ``PASSES``); default all, in the documented order.
        max_rounds: safety limit on rounds (a warning is issued if the fixed point is not reached).

    Returns:
        A new Circuit with the same outputs on every input. ``meta["simplified"]`` records the
        passes, the number of rounds and the gate count before. ``simplify`` of its result returns a
        structurally equal circuit (with the default passes).
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"simplify expects a Circuit, got {type(circuit).__name__}")
    chosen = _resolve(passes)
    current, rounds = circuit, 0
    while rounds < max_rounds:
        rounds += 1
        start = current
        for p in chosen:
            current = p(current)
            if not isinstance(current, Circuit):
                raise TypeError(f"circuit pass {getattr(p, '__name__', p)!r} returned "
                                f"{type(current).__name__}, expected a Circuit")
        if current is start or current.structurally_equal(start):
            break
    else:
        warnings.warn(f"simplify: no fixed point after {max_rounds} rounds; the result is correct but may "
                      f"not be fully simplified", RuntimeWarning, stacklevel=2)
    previous = circuit.meta.get("simplified", {})
    # A new object (the record below must not land on the caller's circuit), checked once: passes skip it.
    result = derive(current, levels=current.levels())
    result.validate()
    result.meta["simplified"] = {"passes": [getattr(p, "__name__", repr(p)) for p in chosen], "rounds": rounds,
                                 "gates_before": previous.get("gates_before", circuit.n_gates)}
    return result


# ---- reporting ---------------------------------------------------------------------------------
def summarize(circuit: Circuit) -> dict[str, Any]:
    """One circuit's summary as used in reports.

    Args:
        circuit: any Circuit.

    Returns:
        ``{"gates", "thresholds", "depth", "gates_by_type": {name: count for all 16 gates},
        "gates_by_level": [cells at depth 1, 2, ...], "inputs_used"}``.
    """
    lv = circuit.levels()
    per_level = np.bincount(lv[circuit.n_inputs:], minlength=1)[1:] if circuit.n_gates else np.zeros(0, np.int64)
    counts = np.bincount(circuit.ops, minlength=NUM_OPS)
    return {"gates": circuit.n_gates, "thresholds": int(counts[THRESHOLD]), "depth": circuit.depth(),
            "gates_by_type": {name: int(n) for name, n in zip(gates.GATE_NAMES, counts)},
            "gates_by_level": per_level.tolist(), "inputs_used": circuit.analysis.inputs_used}


def simplify_report(before: Circuit, after: Circuit | None) -> dict[str, Any]:
    """Compare a circuit with its simplified form.

    Args:
        before: the original circuit.
        after: the simplified circuit (same inputs and outputs), or None to summarise ``before`` alone.

    Returns:
        ``{"inputs", "outputs", "classes", "before": S, "after": S or None, "removed_gates",
        "kept_fraction"}`` with S as returned by ``summarize``.
    """
    if after is not None and ((before.n_inputs, before.n_outputs, before.num_classes)
                              != (after.n_inputs, after.n_outputs, after.num_classes)):
        raise ValueError(f"simplify_report compares a circuit with its simplified form, but they differ in "
                         f"(inputs, outputs, classes): {(before.n_inputs, before.n_outputs, before.num_classes)} "
                         f"vs {(after.n_inputs, after.n_outputs, after.num_classes)}")
    b = summarize(before)
    a = summarize(after) if after is not None else None
    kept = (a["gates"] / b["gates"] if b["gates"] else 1.0) if a is not None else 1.0
    return {"inputs": before.n_inputs, "outputs": before.n_outputs, "classes": before.num_classes,
            "head": before.head.kind, "before": b, "after": a,
            "removed_gates": b["gates"] - a["gates"] if a is not None else 0, "kept_fraction": kept}


def format_report(report: dict[str, Any]) -> str:
    """Plain-text table of a ``simplify_report`` (what ``diffgates circuit`` prints).

    Args:
        report: the dict returned by ``simplify_report``.

    Returns:
        A multi-line string: gates, depth, inputs used and gates by type, before and after.
    """
    b, a = report["before"], report["after"]
    columns = [("before", b), ("after", a)] if a is not None else [("gates", b)]
    rows = [("gates", "gates"), ("depth", "depth"), ("inputs used", "inputs_used")]
    if any(col["thresholds"] for _, col in columns):
        rows.insert(1, ("thresholds", "thresholds"))
    head = report.get("head", "group_sum")
    classes = f"in {report['classes']} classes" if head != "bits" else "(raw bits)"
    lines = [f"circuit: {report['inputs']} inputs, {report['outputs']} outputs {classes}",
             f"{'':<14}" + "".join(f"  {title:>10}" for title, _ in columns)]
    lines += [f"{label:<14}" + "".join(f"  {col[key]:>10}" for _, col in columns) for label, key in rows]
    lines.append("gates by type:")
    for name in gates.GATE_NAMES:
        counts = [col["gates_by_type"][name] for _, col in columns]
        if any(counts):
            lines.append(f"  {name:<12}" + "".join(f"  {n:>10}" for n in counts))
    if a is not None:
        lines.append(f"removed {report['removed_gates']} gates ({100 * (1 - report['kept_fraction']):.1f}%)")
    return "\n".join(lines)

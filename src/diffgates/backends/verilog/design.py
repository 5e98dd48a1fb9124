"""The Verilog design of a Circuit as arrays: one row per signal, built and pipelined without a per-gate loop.

``build_design(circuit, class_index)`` turns a circuit into a ``Design``: a table with one row per
*signal* of the RTL (an input bit, a gate, an adder of a threshold cell's or a class's count, a
threshold comparison, a node of the argmax tournament, or a literal constant), holding

* ``kind``: ``INPUT`` (``x[i]``), ``CONST`` (a literal such as ``2'd1``: never a wire, never
  registered), ``CONSTWIRE`` (a constant gate's wire: read directly by every stage, never registered)
  or ``LOGIC`` (a wire computed from other signals);
* ``level`` (logic depth in the RTL), ``width`` (bits), ``expr`` (an expression template of
  ``TEMPLATES``) and up to four operand signals ``op[k]`` (``-1``: none), each possibly negated
  (``neg[k]``: a threshold cell's negated literal, written ``!n<v>``);
* a name: ``name_kind`` and up to three numbers (``n<v>``, ``s<c>_<t>_<j>``, ``t<v>_<t>_<j>``,
  ``am<t>_<j>_v`` / ``_i``, ``<w>'d<value>``).

Rows are numbered in the order the wires are declared, which is topological: the input bits, then
the nodes in index order with each threshold cell's adder tree right before the cell, then the class
adder trees (class by class, tree level by tree level), the constants, and the argmax duels. Every
balanced tree (neighbours paired level by level, an odd item carried) is built for all its trees
at once, one tree level per step (``pair_level``). The last row is a sentinel: operand ``-1``
indexes it, it is empty and never emitted.

``schedule(design, pipeline)`` then computes, vectorised: the signals some output needs (``live``,
one sweep per level from the deepest down), the register stage computing each (``(level - 1) // n``),
the last stage reading each (``need``) and so which travel through registers. The only Python
loops run over tree levels, logic levels and (with threshold cells) the circuit's level groups,
never over gates. Example::

    design = build_design(circuit, class_index=True)
    sched = design.schedule(pipeline=2)
    sched.latency, sched.registered.size
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ... import gates
from ...ir import THRESHOLD, Circuit
from ...ir.analysis import segment_gather

# Signal kinds.
INPUT, CONST, CONSTWIRE, LOGIC = 0, 1, 2, 3
# Name kinds: n<a>, s<a>_<b>_<c>, am<b>_<c>_v, am<b>_<c>_i, t<a>_<b>_<c>, <a>'d<b>, (nothing: the sentinel).
NAME_N, NAME_S, NAME_AMV, NAME_AMI, NAME_T, NAME_CONST, NAME_NONE = range(7)
NAME_PREFIX = (b"n", b"s", b"am", b"am", b"t", b"", b"")
NAME_SEP1 = (b"", b"_", b"", b"", b"_", b"'d", b"")
NAME_SEP2 = (b"", b"_", b"_", b"_", b"_", b"", b"")
NAME_SUFFIX = (b"", b"", b"_v", b"_i", b"", b"", b"")
NAME_SHOW = np.array([[1, 0, 0], [1, 1, 1], [0, 1, 1], [0, 1, 1], [1, 1, 1], [1, 1, 0], [0, 0, 0]], dtype=bool)


def _gate_template(g: gates.Gate) -> tuple[str, tuple[str, ...]]:
    """(expression with positional operands ``{0}``/``{1}``, the operands it reads) from ``g.formula``."""
    used = tuple(v for v in ("a", "b") if "{" + v + "}" in g.formula)
    slots = {v: "{%d}" % k for k, v in enumerate(used)}
    return g.formula.format(a=slots.get("a", ""), b=slots.get("b", ""), zero="1'b0", ones="1'b1"), used


_GATE_TEMPLATES = tuple(_gate_template(g) for g in gates.GATES)  # from the one gate table, no per-gate branches
# Expression templates: ids 0..15 are the gates; then the non-gate signals.
ADD, GE, DUEL_V, DUEL_I = range(gates.NUM_GATES, gates.NUM_GATES + 4)
TEMPLATES: tuple[str, ...] = tuple(t for t, _ in _GATE_TEMPLATES) + (
    "{0} + {1}",  # an adder of a balanced tree (the wire's width holds the sum)
    "{0} >= {1}",  # a threshold cell: its count against the constant threshold
    "({1} > {0}) ? {1} : {0}",  # argmax duel, value: the right wins only if strictly greater
    "({1} > {0}) ? {3} : {2}",  # argmax duel, index (ties keep the left, lower class)
)
# Per gate id: which of (a, b) the template reads, in operand order.
TEMPLATE_USES_A = np.array(["a" in used for _, used in _GATE_TEMPLATES])
TEMPLATE_USES_B = np.array(["b" in used for _, used in _GATE_TEMPLATES])


def split_template(template: str) -> tuple[list[bytes], list[int]]:
    """(5 text pieces, 4 operand indices or -1): ``piece0 {op} piece1 {op} ... piece4``."""
    parts = re.split(r"\{(\d)\}", template)
    pieces = [p.encode() for p in parts[0::2]]
    slots = [int(k) for k in parts[1::2]]
    return pieces + [b""] * (5 - len(pieces)), slots + [-1] * (4 - len(slots))


def bit_length(x: np.ndarray) -> np.ndarray:
    """Vectorised ``int.bit_length`` of non-negative integers below 2**53."""
    return np.frexp(np.asarray(x, dtype=np.float64))[1].astype(np.int64)


def pair_level(owner: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One level of balanced trees over items grouped by ``owner`` (sorted): items 2j and 2j+1 of a tree pair up.

    Returns:
        (keep, paired, j): ``keep`` the positions of the next level's items (the left of a pair, or an
        odd last item carried unchanged), in order; ``paired[k]`` whether ``keep[k]`` starts a pair (its
        partner is ``keep[k] + 1``); ``j[k]`` the pair's index within its tree level.
    """
    n = owner.size
    starts = np.flatnonzero(np.concatenate([[True], owner[1:] != owner[:-1]]))
    rank = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
    left = np.zeros(n, dtype=bool)
    left[:-1] = (owner[1:] == owner[:-1]) & (rank[:-1] % 2 == 0)
    right = np.zeros(n, dtype=bool)
    right[1:] = left[:-1]
    keep = np.flatnonzero(~right)
    return keep, left[keep], rank[keep] // 2


class Design:
    """The signal table (see the module docstring); ``size`` rows plus the sentinel."""

    def __init__(self, size: int):
        self.size = size
        rows = size + 1  # the sentinel is row -1
        self.kind = np.full(rows, CONST, dtype=np.int8)
        self.level = np.zeros(rows, dtype=np.int64)
        self.width = np.ones(rows, dtype=np.int64)
        self.expr = np.zeros(rows, dtype=np.int8)
        self.op = [np.full(rows, -1, dtype=np.int64) for _ in range(4)]
        self.neg = [np.zeros(rows, dtype=bool) for _ in range(2)]  # only adder and compare operands are negated
        self.name_kind = np.full(rows, NAME_NONE, dtype=np.int8)
        self.name_num = [np.zeros(rows, dtype=np.int64) for _ in range(3)]
        # Filled by build_design:
        self.node_signal: np.ndarray = np.zeros(0, np.int64)  # (n_nodes,) the signal of each node
        self.node_level: np.ndarray = np.zeros(0, np.int64)  # (n_nodes,) RTL level of each node
        self.y_signals = np.zeros(0, np.int64)  # what y carries: class counts, or output bits
        self.class_signal: int | None = None  # the argmax index (class_idx)
        self.tree_depth = 0  # adder levels of one class's count
        self.argmax_depth = 0

    def set_rows(self, ids, *, kind, level, width=1, expr=0, ops=(), negs=(), name_kind, names=()) -> None:
        """Fill rows ``ids`` (every value broadcasts)."""
        self.kind[ids] = kind
        self.level[ids] = level
        self.width[ids] = width
        self.expr[ids] = expr
        for k, o in enumerate(ops):
            self.op[k][ids] = o
        for k, ng in enumerate(negs):
            self.neg[k][ids] = ng
        self.name_kind[ids] = name_kind
        for k, v in enumerate(names):
            self.name_num[k][ids] = v

    @property
    def finals(self) -> np.ndarray:
        """Signals the outputs read (y, then class_idx)."""
        extra = [] if self.class_signal is None else [self.class_signal]
        return np.concatenate([self.y_signals, np.asarray(extra, dtype=np.int64)])

    def adder_trees(self, owner: np.ndarray, sig: np.ndarray, neg: np.ndarray, level: np.ndarray,
                    base: np.ndarray, name_kind: int, name_a: np.ndarray) -> tuple[np.ndarray, ...]:
        """Balanced adder trees over leaf signals grouped by ``owner`` (sorted; every owner 0..m-1 present).

        The adders of tree ``o`` get rows ``base[o]``, ``base[o] + 1``, ... in (tree level, index) order
        and names ``<name_kind>{name_a[o]}_{tree level}_{index}``; tree level ``t`` (1-based) holds
        sums of up to ``2**t`` leaves, ``bit_length`` of their largest value wide.

        Returns:
            (root signal, root negated, root level, root width, tree depth), one entry per owner.
        """
        m = int(owner[-1]) + 1 if owner.size else 0
        maxv = np.ones(owner.size, dtype=np.int64)
        done = np.zeros(m, dtype=np.int64)
        depth = 0
        while True:
            keep, paired, j = pair_level(owner)
            if not paired.any():
                break
            left = keep[paired]
            right = left + 1
            o = owner[left]
            ids = base[o] + done[o] + j[paired]
            lv = 1 + np.maximum(level[left], level[right])
            mv = maxv[left] + maxv[right]
            self.set_rows(ids, kind=LOGIC, level=lv, width=bit_length(mv), expr=ADD, ops=(sig[left], sig[right]),
                          negs=(neg[left], neg[right]), name_kind=name_kind, names=(name_a[o], depth + 1, j[paired]))
            done += np.bincount(o, minlength=m)
            sig, neg, level, maxv, owner = sig[keep], neg[keep], level[keep], maxv[keep], owner[keep]
            sig[paired], neg[paired], level[paired], maxv[paired] = ids, False, lv, mv
            depth += 1
        assert owner.size == m, "every tree reduces to one root"
        return sig, neg, level, bit_length(maxv), depth


def _row_counts(circuit: Circuit, cells: np.ndarray) -> np.ndarray:
    ptr = circuit.popcount_ptr
    rows = circuit.a[cells]
    return ptr[rows + 1] - ptr[rows]


def build_design(circuit: Circuit, class_index: bool, y_port: bool = True) -> Design:
    """The signal table of ``circuit`` (see the module docstring).

    Args:
        circuit: the circuit.
        class_index: add the argmax tournament (the ``class_idx`` output); grouped heads only.
        y_port: the ``y`` output (class counts for grouped heads, the output bits for 'bits').

    Returns:
        The ``Design``; ``y_signals`` / ``class_signal`` are the signals the outputs read.
    """
    n_in, n_nodes = circuit.n_inputs, circuit.n_nodes
    ops, a, b = circuit.ops, circuit.a, circuit.b
    is_cell = ops == THRESHOLD
    cells = np.flatnonzero(is_cell)
    lengths = _row_counts(circuit, cells)
    thresholds = b[cells]
    decided = (thresholds <= 0) | (thresholds > lengths)  # constant cells: no tree, no compare
    open_cells = cells[~decided]
    open_lengths = lengths[~decided]
    # Row layout: each open cell's n-1 adders come right before its own node.
    extra = np.zeros(n_nodes, dtype=np.int64)
    extra[n_in + open_cells] = open_lengths - 1
    node_signal = np.arange(n_nodes, dtype=np.int64)
    if open_cells.size:
        node_signal += np.cumsum(extra)
    n_region = n_nodes + int(extra.sum())
    thr_const = n_region + np.arange(open_cells.size, dtype=np.int64)  # each open cell's threshold literal
    grouped = circuit.head.grouped
    k = circuit.num_classes if grouped else 0
    g = circuit.group_size if grouped else 0
    sums_base = n_region + open_cells.size
    class_const = sums_base + (k * (g - 1) if grouped else 0)
    duel_base = class_const + (k if class_index else 0)
    design = Design(duel_base + (2 * (k - 1) if class_index else 0))
    design.node_signal = node_signal

    # Input bits and gates.
    design.set_rows(node_signal[:n_in], kind=INPUT, level=0, name_kind=NAME_N, names=(np.arange(n_in),))
    gate_idx = np.flatnonzero(~is_cell)
    op = ops[gate_idx]
    ua, ub = TEMPLATE_USES_A[op], TEMPLATE_USES_B[op]
    first = np.where(ua, a[gate_idx], np.where(ub, b[gate_idx], 0))
    second = np.where(ua & ub, b[gate_idx], 0)
    constant = ~(ua | ub)
    gate_rows = node_signal[n_in + gate_idx]
    design.set_rows(gate_rows, kind=np.where(constant, CONSTWIRE, LOGIC), level=0, expr=op,
                    ops=(np.where(ua | ub, node_signal[first], -1), np.where(ua & ub, node_signal[second], -1)),
                    name_kind=NAME_N, names=(n_in + gate_idx,))
    # Decided threshold cells are constant wires, like constant gates.
    dec = cells[decided]
    design.set_rows(node_signal[n_in + dec], kind=CONSTWIRE, level=0,
                    expr=np.where(thresholds[decided] <= 0, gates.TRUE, gates.FALSE), name_kind=NAME_N,
                    names=(n_in + dec,))

    if not open_cells.size:
        node_level = np.asarray(circuit.levels(), dtype=np.int64)
    else:
        node_level = _cell_levels(circuit, design, open_cells, thr_const, constant, gate_idx)
    design.node_level = node_level
    # Signal level: a constant (gate or decided cell) is ready at level 0, whatever the IR says.
    gate_level = np.where(constant, 0, node_level[n_in + gate_idx])
    design.level[gate_rows] = gate_level

    if grouped:
        leaves = circuit.output_groups().reshape(-1)
        owner = np.repeat(np.arange(k, dtype=np.int64), g)
        leaf_sig = node_signal[leaves]
        roots, _, root_level, root_width, design.tree_depth = design.adder_trees(
            owner, leaf_sig, np.zeros(leaves.size, dtype=bool), design.level[leaf_sig],
            sums_base + np.arange(k, dtype=np.int64) * (g - 1), NAME_S, np.arange(k, dtype=np.int64))
        if y_port:
            design.y_signals = roots
        if class_index:
            _argmax(design, roots, class_const, duel_base, k)
    elif y_port:
        design.y_signals = node_signal[circuit.outputs]
    return design


def _cell_levels(circuit: Circuit, design: Design, open_cells: np.ndarray, thr_const: np.ndarray,
                 constant: np.ndarray, gate_idx: np.ndarray) -> np.ndarray:
    """RTL node levels of a circuit with threshold cells; builds each open cell's tree and compare.

    A gate is 1 + its deepest operand (as ``circuit.levels()``); an open threshold cell is 1 (the
    compare) + its count's level, the count a balanced adder tree over its literals. One IR level
    group at a time (all cells of a group at once): a group reads earlier groups only.
    """
    n_in = circuit.n_inputs
    ops, a, b = circuit.ops, circuit.a, circuit.b
    node_signal = design.node_signal
    node_level = np.zeros(circuit.n_nodes, dtype=np.int64)
    sig_level = np.zeros(circuit.n_nodes, dtype=np.int64)  # 0 for inputs and constants
    is_open = np.zeros(circuit.n_gates, dtype=bool)
    is_open[open_cells] = True
    const_of = np.zeros(circuit.n_gates, dtype=np.int64)
    const_of[open_cells] = thr_const
    is_constant = np.zeros(circuit.n_gates, dtype=bool)
    is_constant[gate_idx[constant]] = True
    ptr, lits = circuit.popcount_ptr, circuit.popcount_lits
    for idx in circuit.level_groups():
        op = ops[idx]
        cell = op == THRESHOLD
        gi = idx[~cell]
        if gi.size:
            gop = op[~cell]
            la = np.where(TEMPLATE_USES_A[gop], node_level[a[gi]], 0)
            lb = np.where(TEMPLATE_USES_B[gop], node_level[b[gi]], 0)
            node_level[n_in + gi] = 1 + np.maximum(la, lb)
            sig_level[n_in + gi] = np.where(is_constant[gi], 0, node_level[n_in + gi])
        ci = idx[cell]
        node_level[n_in + ci] = 1  # decided cells: constants (overwritten below for open ones)
        ci = ci[is_open[ci]]
        if not ci.size:
            continue
        positions, sub_ptr = segment_gather(ptr, a[ci])
        lit = lits[positions]
        owner = np.repeat(np.arange(ci.size, dtype=np.int64), np.diff(sub_ptr))
        leaf = lit >> 1
        v = n_in + ci
        base = node_signal[v] - (np.diff(sub_ptr) - 1)
        root, root_neg, root_level, root_width, _ = design.adder_trees(
            owner, node_signal[leaf], (lit & 1).astype(bool), sig_level[leaf], base, NAME_T, v)
        design.set_rows(const_of[ci], kind=CONST, level=0, width=root_width, name_kind=NAME_CONST,
                        names=(root_width, b[ci]))
        design.set_rows(node_signal[v], kind=LOGIC, level=1 + root_level, expr=GE, ops=(root, const_of[ci]),
                        negs=(root_neg, False), name_kind=NAME_N, names=(v,))
        node_level[v] = sig_level[v] = 1 + root_level
    return node_level


def _argmax(design: Design, roots: np.ndarray, class_const: int, duel_base: int, k: int) -> None:
    """The argmax tournament over the class counts: a balanced tree of duels, ties to the lower class."""
    cb = max(1, (k - 1).bit_length())
    consts = class_const + np.arange(k, dtype=np.int64)
    design.set_rows(consts, kind=CONST, level=0, width=cb, name_kind=NAME_CONST, names=(cb, np.arange(k)))
    value, index = roots, consts
    owner = np.zeros(k, dtype=np.int64)
    done, depth = 0, 0
    while True:
        keep, paired, j = pair_level(owner)
        if not paired.any():
            break
        left = keep[paired]
        right = left + 1
        jj = j[paired]
        v_ids = duel_base + 2 * (done + jj)
        lv = 1 + np.maximum(np.maximum(design.level[value[left]], design.level[value[right]]),
                            np.maximum(design.level[index[left]], design.level[index[right]]))
        names = (0, depth + 1, jj)
        design.set_rows(v_ids, kind=LOGIC, level=lv, width=design.width[value[left]], expr=DUEL_V,
                        ops=(value[left], value[right]), name_kind=NAME_AMV, names=names)
        design.set_rows(v_ids + 1, kind=LOGIC, level=lv, width=cb, expr=DUEL_I,
                        ops=(value[left], value[right], index[left], index[right]), name_kind=NAME_AMI, names=names)
        done += left.size
        value, index, owner = value[keep], index[keep], owner[keep]
        value[paired], index[paired] = v_ids, v_ids + 1
        depth += 1
    design.class_signal = int(index[0])
    design.argmax_depth = depth


@dataclass
class Schedule:
    """Where every signal lives in a (pipelined) design.

    Attributes:
        pipeline: levels per register stage (0: combinational).
        latency: register stages an input crosses to the outputs (0 when combinational).
        total_levels: deepest level of any output signal.
        live: (rows,) the signals some output needs.
        stage: (rows,) the stage computing each signal (0 for inputs and constants).
        need: (rows,) the last stage reading each signal (the outputs are read at ``latency``).
        emitted: signal ids written as wires (live logic and constant wires), ascending.
        registered: signal ids that travel through registers (``need > stage``), ascending.
    """

    pipeline: int
    latency: int
    total_levels: int
    live: np.ndarray
    stage: np.ndarray
    need: np.ndarray
    emitted: np.ndarray
    registered: np.ndarray


def _liveness(design: Design, finals: np.ndarray) -> np.ndarray:
    """Signals the finals depend on: one sweep from the deepest level down (operands are shallower)."""
    live = np.zeros(design.size + 1, dtype=bool)
    live[finals] = True
    level = design.level
    top = int(level.max(initial=0))
    small = level.astype(np.int16 if top < (1 << 15) else np.int32)  # why: numpy radix-sorts 16-bit keys
    order = np.argsort(small, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(small, minlength=top + 1))])
    wide = design.op[2][:-1].max(initial=-1) >= 0  # duels read four operands
    for lv in range(top, 0, -1):
        rows = order[bounds[lv]:bounds[lv + 1]]
        rows = rows[live[rows]]
        for k in range(4 if wide else 2):
            live[design.op[k][rows]] = True
    live[-1] = False
    return live


def schedule(design: Design, pipeline: int) -> Schedule:
    """Liveness, register stages and register copies of ``design`` for ``pipeline`` levels per stage.

    Stage of a logic signal = (level - 1) // pipeline (0 when combinational); inputs and constants
    are at stage 0; the outputs are read at stage ``latency`` (registered). A signal needed at a later
    stage than its own travels through ``need - stage`` registers.
    """
    finals = design.finals
    total = int(design.level[finals].max(initial=0))
    n = pipeline
    latency = max(1, -(-total // n)) if n else 0
    live = _liveness(design, finals)
    logic = design.kind == LOGIC
    if n:
        stage = np.where(logic, (design.level - 1) // n, 0)
        need = stage.copy()
        readers = np.flatnonzero(live & logic)
        reader_stage = stage[readers]
        for k in range(4):
            o = design.op[k][readers]
            m = o >= 0
            np.maximum.at(need, o[m], reader_stage[m])
        need[finals] = np.maximum(need[finals], latency)
        regkind = logic | (design.kind == INPUT)
        registered = np.flatnonzero(live & regkind & (need > stage))
    else:
        stage = np.zeros(design.size + 1, dtype=np.int64)
        need = stage
        registered = np.zeros(0, dtype=np.int64)
    emitted = np.flatnonzero(live & (logic | (design.kind == CONSTWIRE)))
    return Schedule(pipeline=n, latency=latency, total_levels=total, live=live, stage=stage, need=need,
                    emitted=emitted, registered=registered)

"""Logic simplification of a Circuit: semantics-preserving passes and ``simplify`` (their fixed point).

Every pass is a pure function ``Circuit -> Circuit`` that leaves ``group_counts(circuit, x)`` unchanged
for every input ``x`` (the tests check this exhaustively on small circuits):

* ``fold_constants``: gates fed by constant gates become single-input or constant gates;
* ``absorb_passthroughs``: pass-through gates (``A``/``B``) become wires and ``NOT_A``/``NOT_B`` gates
  are absorbed into their consumers (``gates.with_inputs_negated``); an output cannot absorb a NOT,
  so an output that is NOT of a gate becomes that gate negated (``gates.negate``: NOT AND -> NAND) and
  only an output that is NOT of an input bit keeps a NOT gate;
* ``canonicalize_inputs``: two-input gates read ``a < b`` (``gates.swap_inputs``), gates reading one
  node twice become single-input or constant gates, single-input gates read it as ``a == b`` and
  constant gates read node 0, so equal gates look equal;
* ``merge_duplicates``: structural hashing, one gate per distinct (op, a, b) after canonicalisation;
* ``eliminate_dead``: drops gates no output depends on (input bits always stay: they are the encoding);
* ``levelize``: stable sort of the gates by logic depth and renumbering (``is_levelized()`` holds after).

``simplify`` runs the passes in that order until a whole round changes nothing. All passes work on
arrays, one vectorised step per logic level (no per-gate Python objects), so a 384K-gate circuit takes
about a second. ``simplify_report(before, after)`` / ``format_report`` summarise the effect. Example::

    from diffgates.circuit.passes import simplify, simplify_report, format_report
    small = simplify(circuit)
    print(format_report(simplify_report(circuit, small)))
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from .. import gates
from .ir import USES_A, USES_B, Circuit, level_groups, node_levels

Pass = Callable[[Circuit], Circuit]

# ---- gate tables derived from diffgates.gates (the only definition of the 16 gates) ------------------
_IDS = range(gates.NUM_GATES)
IS_CONST = np.array([i in gates.CONSTANT_GATES for i in _IDS], dtype=bool)
SWAPPED = np.array([gates.swap_inputs(i) for i in _IDS], dtype=np.uint8)
NEGATE = np.array([gates.negate(i) for i in _IDS], dtype=np.uint8)
# NEGATED[g, na, nb]: the gate g' with g'(a, b) == g(a ^ na, b ^ nb).
NEGATED = np.array([[[gates.with_inputs_negated(i, na, nb) for nb in (0, 1)] for na in (0, 1)] for i in _IDS],
                   dtype=np.uint8)


def _gate_from_function(fn: Callable[[int, int], int]) -> int:
    """Id of the gate whose truth table is fn(a, b) (canonical bit order of ``diffgates.gates``)."""
    return sum(fn(a, b) << (3 - (2 * a + b)) for a in (0, 1) for b in (0, 1))


# FIX_A[g, v]: the gate of (a, b) equal to g(v, b) (ignores a); FIX_B[g, v]: equal to g(a, v).
FIX_A = np.array([[_gate_from_function(lambda a, b, g=g, v=v: g(v, b)) for v in (0, 1)] for g in gates.GATES],
                 dtype=np.uint8)
FIX_B = np.array([[_gate_from_function(lambda a, b, g=g, v=v: g(a, v)) for v in (0, 1)] for g in gates.GATES],
                 dtype=np.uint8)
# SAME_INPUT[g]: the gate of (a, b) equal to g(a, a), i.e. one of FALSE, A, NOT_A, TRUE.
SAME_INPUT = np.array([_gate_from_function(lambda a, b, g=g: g(a, a)) for g in gates.GATES], dtype=np.uint8)


# ---- shared helpers ------------------------------------------------------------------------------
def _with_ignored_inputs_fixed(ops: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Point inputs a gate ignores at the input it uses (or node 0), so renumbering never dangles."""
    ua, ub = USES_A[ops], USES_B[ops]
    a = np.where(ua, a, np.where(ub, b, 0))
    b = np.where(ub, b, a)
    return a, b


def _canonical(ops: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical form of gates, elementwise (see ``canonicalize_inputs``)."""
    ops = np.where(a == b, SAME_INPUT[ops], ops)  # g(x, x) is a function of x alone
    only_b = ~USES_A[ops] & USES_B[ops]
    ops = np.where(only_b, SWAPPED[ops], ops)  # B / NOT_B -> A / NOT_A reading b as a
    a = np.where(only_b, b, a)
    two = USES_A[ops] & USES_B[ops]
    swap = two & (a > b)
    ops = np.where(swap, SWAPPED[ops], ops)
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    single = USES_A[ops] & ~USES_B[ops]
    b = np.where(single, a, b)
    const = IS_CONST[ops]
    a = np.where(const, 0, a)
    b = np.where(const, 0, b)
    return ops.astype(np.uint8), a.astype(np.int64), b.astype(np.int64)


def _rebuild(circuit: Circuit, ops, a, b, outputs) -> Circuit:
    return Circuit(n_inputs=circuit.n_inputs, ops=ops, a=a, b=b, outputs=outputs, num_classes=circuit.num_classes,
                   tau=circuit.tau, input_layout=copy.deepcopy(circuit.input_layout),
                   meta=copy.deepcopy(circuit.meta))


# ---- the passes -------------------------------------------------------------------------------------
def fold_constants(circuit: Circuit) -> Circuit:
    """Replace every gate input that is a constant gate by its value (``g(1, b)`` -> a gate of b).

    Propagates in topological order, so whole constant cones collapse in one call. Gates whose truth
    table becomes constant are FALSE/TRUE gates afterwards; their inputs are left for later passes.

    Args:
        circuit: any Circuit.

    Returns:
        A Circuit with the same nodes and outputs, computing the same values.
    """
    n_in = circuit.n_inputs
    ops, a, b = circuit.ops.copy(), circuit.a, circuit.b
    value = np.full(circuit.n_nodes, -1, dtype=np.int8)  # -1: not constant, else the constant bit
    for idx in level_groups(n_in, ops, a, b):
        op = ops[idx]
        va, vb = value[a[idx]], value[b[idx]]
        fix_a = (va >= 0) & USES_A[op]
        op = np.where(fix_a, FIX_A[op, np.maximum(va, 0)], op)
        fix_b = (vb >= 0) & USES_B[op]
        op = np.where(fix_b, FIX_B[op, np.maximum(vb, 0)], op)
        ops[idx] = op
        const = IS_CONST[op]
        value[n_in + idx[const]] = op[const] == gates.TRUE
    return _rebuild(circuit, ops, circuit.a, circuit.b, circuit.outputs)


def absorb_passthroughs(circuit: Circuit) -> Circuit:
    """Turn A/B gates into wires and absorb NOT_A/NOT_B gates into the gates that read them.

    Every node maps to a literal (source node, negated?); consumers read the source and fold the
    negation into their own gate with ``gates.with_inputs_negated``. Outputs move to the source of a
    plain wire; an output whose literal is negated keeps its own gate, rewritten as the source gate
    negated (``gates.negate``), or as NOT of the source when that is an input bit.

    Args:
        circuit: any Circuit.

    Returns:
        A Circuit with the same nodes (wires become dead, see ``eliminate_dead``), same semantics.
    """
    n_in = circuit.n_inputs
    ops, a, b = circuit.ops.copy(), circuit.a.copy(), circuit.b.copy()
    src = np.arange(circuit.n_nodes, dtype=np.int64)
    neg = np.zeros(circuit.n_nodes, dtype=bool)
    for idx in level_groups(n_in, ops, a, b):
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
    out = circuit.outputs
    outputs = np.where(neg[out], out, src[out])
    # An output NOT of a gate becomes that gate negated (NOT AND -> NAND): one level less, and the
    # source gate may die. Only a NOT of an input bit must stay a NOT gate.
    push = neg[out] & (src[out] >= n_in)
    gate, source = out[push] - n_in, src[out[push]] - n_in
    ops[gate], a[gate], b[gate] = NEGATE[ops[source]], a[source], b[source]
    return _rebuild(circuit, ops, a, b, outputs)


def canonicalize_inputs(circuit: Circuit) -> Circuit:
    """Give equal gates equal encodings, gate by gate (no propagation needed).

    Two-input gates get ``a < b`` (swapping with ``gates.swap_inputs``); gates reading one node twice
    become the single-input or constant gate they compute; B / NOT_B become A / NOT_A; single-input
    gates read their input as both a and b; constant gates read node 0.

    Args:
        circuit: any Circuit.

    Returns:
        A Circuit with the same nodes and outputs, same semantics.
    """
    ops, a, b = _canonical(circuit.ops, circuit.a, circuit.b)
    return _rebuild(circuit, ops, a, b, circuit.outputs)


def merge_duplicates(circuit: Circuit) -> Circuit:
    """Structural hashing: gates with the same canonical (op, a, b) become one (the lowest-numbered).

    Inputs are canonicalised first and re-canonicalised as merges propagate level by level, so
    duplicates of duplicates merge in the same call. Consumers and outputs move to the kept gate.

    Args:
        circuit: any Circuit.

    Returns:
        A Circuit with the same nodes (merged copies become dead), same semantics.
    """
    n_in, n_nodes = circuit.n_inputs, circuit.n_nodes
    ops, a, b = _canonical(circuit.ops, circuit.a, circuit.b)
    rep = np.arange(n_nodes, dtype=np.int64)
    use_int_key = n_nodes < 700_000_000  # (op * n + a) * n + b must fit in int64
    for idx in level_groups(n_in, ops, a, b):
        op, ai, bi = _canonical(ops[idx], rep[a[idx]], rep[b[idx]])
        ops[idx], a[idx], b[idx] = op, ai, bi
        if use_int_key:
            key = (op.astype(np.int64) * n_nodes + ai) * n_nodes + bi
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        else:
            _, first, inverse = np.unique(np.stack([op.astype(np.int64), ai, bi], 1), axis=0,
                                          return_index=True, return_inverse=True)
        node = n_in + idx
        rep[node] = node[first[inverse.reshape(-1)]]  # idx ascends, so first = lowest-numbered copy
    return _rebuild(circuit, ops, a, b, rep[circuit.outputs])


def eliminate_dead(circuit: Circuit) -> Circuit:
    """Drop every gate that no output depends on (through inputs that gates actually use).

    The input bits are never removed (they define the input encoding). Surviving gates keep their
    relative order; inputs they ignore are pointed at the input they use (or node 0).

    Args:
        circuit: any Circuit.

    Returns:
        A smaller Circuit (renumbered), same semantics.
    """
    n_in = circuit.n_inputs
    ops, a, b = circuit.ops, circuit.a, circuit.b
    live = np.zeros(circuit.n_nodes, dtype=bool)
    live[circuit.outputs] = True
    for idx in reversed(level_groups(n_in, ops, a, b)):
        sel = idx[live[n_in + idx]]
        if sel.size:
            live[a[sel][USES_A[ops[sel]]]] = True
            live[b[sel][USES_B[ops[sel]]]] = True
    live[:n_in] = True
    keep = np.flatnonzero(live[n_in:])
    new_id = np.cumsum(live) - 1  # old node id -> new node id (valid where live)
    ka, kb = _with_ignored_inputs_fixed(ops[keep], a[keep], b[keep])
    return _rebuild(circuit, ops[keep], new_id[ka], new_id[kb], new_id[circuit.outputs])


def levelize(circuit: Circuit) -> Circuit:
    """Sort the gates by logic depth (stable) and renumber, so ``is_levelized()`` holds.

    Inputs a gate ignores are pointed at the input it uses (or node 0) first, so the new order stays
    topological.

    Args:
        circuit: any Circuit.

    Returns:
        The same gates in depth order, same semantics.
    """
    n_in = circuit.n_inputs
    a, b = _with_ignored_inputs_fixed(circuit.ops, circuit.a, circuit.b)
    lv = node_levels(n_in, circuit.ops, a, b)[n_in:]
    order = np.argsort(lv, kind="stable")
    new_id = np.arange(circuit.n_nodes, dtype=np.int64)
    new_id[n_in + order] = n_in + np.arange(order.size)
    return _rebuild(circuit, circuit.ops[order], new_id[a[order]], new_id[b[order]], new_id[circuit.outputs])


PASSES: dict[str, Pass] = {
    "fold_constants": fold_constants,
    "absorb_passthroughs": absorb_passthroughs,
    "canonicalize_inputs": canonicalize_inputs,
    "merge_duplicates": merge_duplicates,
    "eliminate_dead": eliminate_dead,
    "levelize": levelize,
}
DEFAULT_PASSES: tuple[Pass, ...] = tuple(PASSES.values())


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
        A Circuit with the same ``group_counts`` on every input. ``meta["simplified"]`` records the
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
        if current.structurally_equal(start):
            break
    else:
        warnings.warn(f"simplify: no fixed point after {max_rounds} rounds; the result is correct but may "
                      f"not be fully simplified", RuntimeWarning, stacklevel=2)
    if current is circuit:  # passes=[] must still return a new object
        current = _rebuild(circuit, circuit.ops, circuit.a, circuit.b, circuit.outputs)
    previous = circuit.meta.get("simplified", {})
    current.meta["simplified"] = {"passes": [getattr(p, "__name__", repr(p)) for p in chosen], "rounds": rounds,
                                  "gates_before": previous.get("gates_before", circuit.n_gates)}
    return current


# ---- reporting ---------------------------------------------------------------------------------
def _inputs_used(circuit: Circuit) -> int:
    live = eliminate_dead(circuit)  # inputs reached from outputs through used gate inputs
    used = np.zeros(circuit.n_inputs, dtype=bool)
    ops = live.ops
    used[live.a[USES_A[ops] & (live.a < live.n_inputs)]] = True
    used[live.b[USES_B[ops] & (live.b < live.n_inputs)]] = True
    used[live.outputs[live.outputs < live.n_inputs]] = True
    return int(used.sum())


def summarize(circuit: Circuit) -> dict[str, Any]:
    """One circuit's summary as used in reports.

    Args:
        circuit: any Circuit.

    Returns:
        ``{"gates", "depth", "gates_by_type": {name: count for all 16 gates},
        "gates_by_level": [gates at depth 1, 2, ...], "inputs_used"}``.
    """
    lv = node_levels(circuit.n_inputs, circuit.ops, circuit.a, circuit.b)
    per_level = np.bincount(lv[circuit.n_inputs:], minlength=1)[1:] if circuit.n_gates else np.zeros(0, np.int64)
    return {"gates": circuit.n_gates, "depth": int(lv[circuit.outputs].max()),
            "gates_by_type": {name: int(n) for name, n in
                              zip(gates.GATE_NAMES, np.bincount(circuit.ops, minlength=gates.NUM_GATES))},
            "gates_by_level": per_level.tolist(), "inputs_used": _inputs_used(circuit)}


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
            "before": b, "after": a, "removed_gates": b["gates"] - a["gates"] if a is not None else 0,
            "kept_fraction": kept}


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
    lines = [f"circuit: {report['inputs']} inputs, {report['outputs']} outputs in {report['classes']} classes",
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

"""Tests of the circuit simplification passes: every pass keeps every output's value for every input.

Small circuits are checked on all 2**10 input vectors, larger ones on random inputs, and models
against their eval output. Run: ``PYTHONPATH=src python -m pytest tests/test_ir_passes.py -q``.
"""
from __future__ import annotations

import numpy as np
import pytest

from circuit_cases import (all_bits, model_counts, random_bits, random_cell_circuit, random_circuit, random_model,
                           simplifiable_weights)
from diffgates import gates
from diffgates.ir import Circuit, evaluate_outputs, group_counts
from diffgates.ir import passes as P
from diffgates.ir.analysis import node_levels
from diffgates.ir.lowering import lower_cells
from diffgates.frontend import to_circuit

PASS_ITEMS = list(P.PASSES.items()) + [("simplify", P.simplify)]


def _check_same(before: Circuit, after: Circuit, x) -> None:
    assert (after.n_inputs, after.n_outputs, after.num_classes, after.tau) == \
        (before.n_inputs, before.n_outputs, before.num_classes, before.tau)
    assert np.array_equal(evaluate_outputs(after, x), evaluate_outputs(before, x))
    assert np.array_equal(group_counts(after, x), group_counts(before, x))


def _check_simplified_form(c: Circuit) -> None:
    """The invariants a fixed point of the default passes must satisfy."""
    ops = c.ops
    assert c.is_levelized()
    assert not np.isin(ops, [gates.A, gates.B, gates.NOT_B]).any()  # wires are gone
    assert (ops == gates.FALSE).sum() <= 1 and (ops == gates.TRUE).sum() <= 1
    nodes_used_by_gates = np.concatenate([c.a[P.USES_A[ops]], c.b[P.USES_B[ops]]])
    special = c.n_inputs + np.flatnonzero(np.isin(ops, [gates.FALSE, gates.TRUE, gates.NOT_A]))
    assert not np.isin(special, nodes_used_by_gates).any()  # consumers absorbed constants and NOTs
    assert np.all(c.a[ops == gates.NOT_A] < c.n_inputs)  # a NOT survives only on an input bit
    two = P.USES_A[ops] & P.USES_B[ops]
    assert np.all(c.a[two] < c.b[two])
    keys = np.stack([ops.astype(np.int64), c.a, c.b], 1)
    assert np.unique(keys, axis=0).shape[0] == c.n_gates  # no duplicates
    assert P.eliminate_dead(c).n_gates == c.n_gates  # no dead gates


@pytest.mark.parametrize("name,fn", PASS_ITEMS)
@pytest.mark.parametrize("n_gates", [1, 16, 63, 157, 1000])
def test_pass_preserves_semantics_exhaustively(name, fn, n_gates):
    x = all_bits(10)
    for seed in range(3):
        c = random_circuit(10, n_gates, 12, k=3, seed=seed + 10 * n_gates, tau=2.0)
        _check_same(c, fn(c), x)


@pytest.mark.parametrize("name,fn", PASS_ITEMS)
def test_pass_preserves_semantics_wide_inputs(name, fn):
    for n, seed in ((1, 0), (63, 1), (65, 2)):
        c = random_circuit(100, 2000, 20, k=4, seed=seed)
        _check_same(c, fn(c), random_bits(n, 100, seed))


@pytest.mark.parametrize("name,fn", PASS_ITEMS)
def test_pass_preserves_model_output(name, fn):
    for seed, connections in ((0, "random"), (1, "unique")):
        model = random_model(10, [40, 65, 40], 4, tau=3.0, seed=seed, connections=connections,
                             gate_weights=simplifiable_weights(0.6))
        x = all_bits(10)
        assert np.array_equal(group_counts(fn(to_circuit(model)), x), model_counts(model, x))


@pytest.mark.parametrize("seed", range(6))
def test_simplify_reaches_a_fixed_point(seed):
    c = random_circuit(12, 400, 16, k=2, seed=seed)
    s = P.simplify(c)
    _check_simplified_form(s)
    again = P.simplify(s)
    assert again.structurally_equal(s)
    assert again.meta["simplified"]["rounds"] == 1 and again.meta["simplified"]["gates_before"] == c.n_gates
    for _, fn in P.PASSES.items():  # each pass alone is a no-op on the fixed point
        assert fn(s).structurally_equal(s)


def test_simplify_removes_constant_and_passthrough_gates():
    model = random_model(20, [300, 300, 300, 60], 3, tau=5.0, seed=2, gate_weights=simplifiable_weights(0.75))
    before = to_circuit(model)
    after = P.simplify(before)
    assert after.n_gates < 0.5 * before.n_gates
    _check_simplified_form(after)
    x = random_bits(1000, 20, seed=3)
    assert np.array_equal(group_counts(after, x), model_counts(model, x))
    report = P.simplify_report(before, after)
    assert report["before"]["gates"] == before.n_gates and report["after"]["gates"] == after.n_gates
    assert report["removed_gates"] == before.n_gates - after.n_gates
    assert sum(report["after"]["gates_by_type"].values()) == after.n_gates
    assert sum(report["after"]["gates_by_level"]) == after.n_gates
    assert len(report["after"]["gates_by_level"]) == after.depth() and report["before"]["depth"] == before.depth()
    text = P.format_report(report)
    assert f"{before.n_gates}" in text and f"{after.n_gates}" in text and "removed" in text


def test_hand_built_rewrites():
    T, F, A, NA, AND, XOR, NAND = gates.TRUE, gates.FALSE, gates.A, gates.NOT_A, gates.AND, gates.XOR, 14
    # nodes: 0,1,2 inputs | 3 = TRUE | 4 = AND(0, TRUE) = x0 | 5 = NOT x1 | 6 = NOT NOT x1 = x1
    #        7 = XOR(x0 via 4, x1 via 6) | 8 = AND(1, 0) | 9 = AND(0, 1) duplicate of 8 after swap
    #        10 = NOT 9 (an output: becomes NAND) | 11 = NOT x2 (an output on an input bit: stays)
    #        12 = XOR(2, 2) = FALSE (output) | 13 = A(3) = TRUE (output)
    c = Circuit(n_inputs=3,
                ops=[T, AND, NA, NA, XOR, AND, AND, NA, NA, XOR, A],
                a=[0, 0, 1, 5, 4, 1, 0, 9, 2, 2, 3],
                b=[0, 3, 1, 5, 6, 0, 1, 9, 2, 2, 3],
                outputs=[7, 8, 9, 10, 11, 12, 13, 4], num_classes=2)
    s = P.simplify(c)
    _check_same(c, s, all_bits(3))
    assert sorted(s.ops.tolist()) == sorted([XOR, AND, NAND, NA, F, T])
    assert s.n_gates == 6
    out = s.outputs
    assert out[7] == 0  # AND(x0, TRUE) is the input bit itself
    assert out[1] == out[2]  # AND(x1, x0) and AND(x0, x1) merged
    assert s.ops[out[3] - 3] == NAND and s.ops[out[4] - 3] == NA and s.a[out[4] - 3] == 2


def test_not_of_input_output_keeps_not_gate_and_empty_circuits_work():
    c = Circuit(n_inputs=1, ops=[gates.NOT_A], a=[0], b=[0], outputs=[1, 0], num_classes=1)
    s = P.simplify(c)
    assert s.structurally_equal(c)
    bare = Circuit(n_inputs=2, ops=np.zeros(0), a=[], b=[], outputs=[1, 0], num_classes=2)
    assert P.simplify(bare).structurally_equal(bare)


def test_deep_chain_levels_fallback_and_levelize():
    c = random_circuit(3, 300, 4, seed=4, gate_weights=np.ones(16))
    chain = Circuit(n_inputs=1, ops=[gates.NOT_A] * 100 + [gates.XOR], a=list(range(100)) + [0],
                    b=list(range(100)) + [100], outputs=[101], num_classes=1)
    for circuit in (c, chain):
        expected = circuit.levels()
        assert np.array_equal(node_levels(circuit.n_inputs, circuit.ops, circuit.a, circuit.b), expected)
        assert np.array_equal(node_levels(circuit.n_inputs, circuit.ops, circuit.a, circuit.b, chunk=64, max_sweeps=2),
                              expected)
        lev = P.levelize(circuit)
        assert lev.is_levelized() and lev.depth() == circuit.depth()
        _check_same(circuit, lev, all_bits(circuit.n_inputs))
    assert P.simplify(chain).n_gates == 1  # NOT^100 x0 = x0, so XOR(x0, x0) = FALSE


def test_gate_tables_match_the_gate_definitions():
    for g in gates.GATES:
        for x in (0, 1):
            for y in (0, 1):
                for v in (0, 1):
                    assert gates.GATES[P.FIX_A[g.id, v]](x, y) == g(v, y)
                    assert gates.GATES[P.FIX_B[g.id, v]](x, y) == g(x, v)
                assert gates.GATES[P.SAME_INPUT[g.id]](x, y) == g(x, x)
                assert gates.GATES[P.NEGATE[g.id]](x, y) == 1 - g(x, y)
                assert gates.GATES[P.SWAPPED[g.id]](x, y) == g(y, x)
                for na in (0, 1):
                    for nb in (0, 1):
                        assert gates.GATES[P.NEGATED[g.id, na, nb]](x, y) == g(x ^ na, y ^ nb)


def test_pass_selection_and_errors():
    c = random_circuit(5, 50, 5, seed=1)
    by_name = P.simplify(c, passes=["fold_constants", "eliminate_dead"])
    by_fn = P.simplify(c, passes=[P.fold_constants, P.eliminate_dead])
    assert by_name.structurally_equal(by_fn)
    assert by_name.meta["simplified"]["passes"] == ["fold_constants", "eliminate_dead"]
    assert P.simplify(c, passes=[]).structurally_equal(c)
    with pytest.raises(ValueError, match="unknown circuit pass 'fold'"):
        P.simplify(c, passes=["fold"])
    with pytest.raises(TypeError, match="expects a Circuit"):
        P.simplify("circuit.json")
    with pytest.raises(ValueError, match="differ in"):
        P.simplify_report(c, random_circuit(6, 50, 5, seed=1))
    assert c.meta == {"source": "random_circuit", "seed": 1}  # the input circuit is never modified


# ---- threshold cells, the cleanup passes and the lowering ------------------------------------------

EXTRA_ITEMS = PASS_ITEMS + [("forward_wires", P.forward_wires), ("cleanup", lambda c: P.simplify(c, P.CLEANUP_PASSES)),
                            ("lower_cells", lower_cells)]


@pytest.mark.parametrize("name,fn", EXTRA_ITEMS)
@pytest.mark.parametrize("n_gates", [1, 16, 63, 157])
def test_passes_keep_threshold_cells_exact(name, fn, n_gates):
    x = all_bits(9)
    for seed in range(4):
        c = random_cell_circuit(9, n_gates, 12, k=3, seed=seed + 10 * n_gates, cells=0.3)
        _check_same(c, fn(c), x)


@pytest.mark.parametrize("seed", range(6))
def test_simplify_reaches_a_fixed_point_with_cells(seed):
    c = random_cell_circuit(10, 300, 12, k=2, seed=seed, cells=0.3)
    s = P.simplify(c)
    _check_same(c, s, all_bits(10))
    assert P.simplify(s).structurally_equal(s)
    for _, fn in P.PASSES.items():
        assert fn(s) is s  # a pass with nothing to change returns its argument (analyses stay valid)
    lowered = lower_cells(c)
    assert not lowered.has_cells
    _check_same(c, lowered, all_bits(10))


def test_fold_decides_threshold_cells_and_merge_shares_rows():
    # x0..x2; t0 = [x0 + TRUE + ~x1 >= 3]; t1, t2: the same count of x0, x2 against 1 (duplicates); t3 >= 9
    ops = [gates.TRUE, P.THRESHOLD, P.THRESHOLD, P.THRESHOLD, P.THRESHOLD]
    c = Circuit(n_inputs=3, ops=ops, a=[0, 0, 1, 2, 2], b=[0, 3, 1, 1, 9], outputs=[4, 5, 6, 7], num_classes=1,
                popcount_ptr=[0, 3, 5, 7], popcount_lits=[0, 6, 3, 0, 4, 4, 0])
    x = all_bits(3)
    s = P.simplify(c)
    _check_same(c, s, x)
    assert s.n_thresholds == 2  # t0 keeps x0 + ~x1 >= 2; t1 == t2 merged; t3 folded to FALSE
    folded = P.fold_constants(c)
    assert folded.ops[4] == gates.FALSE and folded.b[1] == 2
    merged = P.merge_duplicates(c)
    assert merged.outputs[2] == merged.outputs[1]


def test_cleanup_keeps_not_gates_and_merges_copies():
    # NOT x0 twice (merged), a copy of a copy, NOT NOT x1 (a wire): no NOT is absorbed into the AND
    c = Circuit(n_inputs=2, ops=[gates.NOT_A, gates.NOT_A, gates.A, gates.A, gates.NOT_A, gates.NOT_A, gates.AND],
                a=[0, 0, 0, 4, 1, 6, 2], b=[0, 0, 0, 0, 1, 6, 7], outputs=[8, 3, 5], num_classes=1)
    k = P.simplify(c, P.CLEANUP_PASSES)
    _check_same(c, k, all_bits(2))
    assert sorted(k.ops.tolist()) == [gates.AND, gates.NOT_A]


FACT_PASS = {P.CANONICAL: P.canonicalize_inputs, P.UNIQUE: P.merge_duplicates, P.NO_DEAD: P.eliminate_dead}


@pytest.mark.parametrize("seed", range(8))
def test_facts_the_passes_record_are_true(seed):
    """A pass may skip its work on a circuit whose analyses hold its fact: every recorded fact must hold,
    checked by running the pass on a fresh copy that knows no facts."""
    c = random_cell_circuit(10, 200, 12, k=2, seed=seed, cells=0.2 if seed % 2 else 0.0)
    current = c
    for _ in range(3):
        for _, fn in P.PASSES.items():
            current = fn(current)
            for fact in current.analysis.facts:
                fresh = current.replace()
                assert not fresh.analysis.facts
                assert FACT_PASS[fact](fresh).structurally_equal(fresh), (fn.__name__, fact)

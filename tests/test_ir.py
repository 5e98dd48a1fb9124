"""The Circuit IR: invariants, the numpy reference evaluator (checked against a per-cell Python loop),
threshold cells, heads, immutability, analyses and the JSON / safetensors files (versions 1 and 2).

Run: python -m pytest tests/test_ir.py -q
"""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from diffgates import gates
from diffgates.ir import (THRESHOLD, Circuit, CircuitFormatError, Head, as_input_bits, evaluate_outputs, group_counts,
                          head_outputs, predict)
from diffgates.ir.analysis import node_levels


def loop_circuit(seed, n_inputs=7, n_gates=40, k=3, group=4, cells=0.0):
    """A random circuit (any topology); with ``cells`` > 0 that share of the cells are threshold cells,
    some sharing a popcount row, with thresholds below 1 and above the row length too."""
    rng = np.random.default_rng(seed)
    ops = rng.integers(0, 16, n_gates).astype(np.uint8)
    a = np.array([rng.integers(0, n_inputs + i) for i in range(n_gates)], dtype=np.int64)
    b = np.array([rng.integers(0, n_inputs + i) for i in range(n_gates)], dtype=np.int64)
    ptr, lits = [0], []
    for i in range(n_gates):
        if rng.random() >= cells:
            continue
        ops[i] = THRESHOLD
        if len(ptr) > 1 and rng.random() < 0.3:  # share the previous row (always topological: it is earlier)
            a[i] = len(ptr) - 2
            b[i] = rng.integers(0, 4)
            continue
        row = [2 * int(rng.integers(0, n_inputs + i)) + int(rng.integers(0, 2)) for _ in range(rng.integers(0, 7))]
        lits += row
        ptr.append(len(lits))
        a[i], b[i] = len(ptr) - 2, rng.integers(-1, len(row) + 2)
    outputs = rng.integers(0, n_inputs + n_gates, k * group)  # any node, repeats allowed
    return Circuit(n_inputs, ops, a, b, outputs, num_classes=k, tau=2.0, popcount_ptr=ptr, popcount_lits=lits)


def loop_eval(c, bits):
    """One cell at a time, straight from the definitions: the slowest, most obvious evaluation."""
    out = []
    for row in bits:
        nodes = list(row.astype(int))
        for op, a, b in zip(c.ops.tolist(), c.a.tolist(), c.b.tolist()):
            if op == THRESHOLD:
                count = sum(nodes[lit >> 1] ^ (lit & 1) for lit in c.popcount_row(a).tolist())
                nodes.append(int(count >= b))
            else:
                nodes.append(gates.GATES[op](nodes[a], nodes[b]))
        out.append([nodes[o] for o in c.outputs])
    return np.array(out, dtype=bool)


def exhaustive(n):
    return np.array([[(v >> i) & 1 for i in range(n)] for v in range(2 ** n)], dtype=bool)


@pytest.mark.parametrize("cells", [0.0, 0.25])
@pytest.mark.parametrize("seed", range(4))
def test_evaluator_matches_per_cell_loop_exhaustively(seed, cells):
    c = loop_circuit(seed, cells=cells)
    bits = exhaustive(c.n_inputs)
    want = loop_eval(c, bits)
    for chunk in (37, 64, None):
        assert np.array_equal(evaluate_outputs(c, bits, chunk=chunk), want)
    counts = group_counts(c, bits)
    assert counts.dtype == np.int32 and counts.shape == (len(bits), 3)
    assert np.array_equal(counts, want.reshape(len(bits), 3, 4).sum(-1))
    assert np.array_equal(predict(c, bits), counts.argmax(-1))


@pytest.mark.parametrize("n", [1, 63, 65, 157])
def test_awkward_batch_sizes(n):
    c = loop_circuit(9, n_inputs=10, n_gates=157, cells=0.2)
    x = np.random.default_rng(n).integers(0, 2, (n, 10))
    assert np.array_equal(evaluate_outputs(c, x), loop_eval(c, x))


def test_levels_and_depth():
    # x0, x1 -> g0 = AND(x0,x1) (level 1); g1 = NOT_A(g0, x0) (level 2, ignores b); g2 = TRUE (level 1)
    c = Circuit(2, [gates.AND, gates.NOT_A, gates.TRUE], [0, 2, 0], [1, 0, 0], [3, 4], num_classes=1)
    assert c.levels().tolist() == [0, 0, 1, 2, 1]
    assert c.depth() == 2 and not c.is_levelized()
    assert c.count_bits() == 2 and c.group_size == 2
    assert c.stats()["gates_by_type"] == {"AND": 1, "NOT_A": 1, "TRUE": 1}
    # a threshold cell counts as one level above the deepest node it counts
    t = Circuit(2, [gates.AND, THRESHOLD], [0, 0], [1, 1], [3], num_classes=1, popcount_ptr=[0, 3],
                popcount_lits=[0, 5, 2 * 2])
    assert t.levels().tolist() == [0, 0, 1, 2] and t.n_thresholds == 1


def test_levels_of_a_deep_chain_take_the_exact_fallback():
    n = 300  # a chain inside one chunk: more sweeps than allowed, so the exact loop finishes it
    ops = np.full(n, gates.NOT_A)
    a = np.arange(n)  # gate i (node i + 1) reads node i: gate i - 1, or the input for gate 0
    lv = node_levels(1, ops, a, a.copy(), chunk=1 << 16, max_sweeps=2)
    assert lv.tolist() == list(range(n + 1))


def test_alap_levels_and_liveness():
    # x0 -> g0 = NOT x0 (read by g2 only, at level 2), g1 = AND(x0, x1), g2 = AND(g0, g1); g3 dead
    c = Circuit(2, [gates.NOT_A, gates.AND, gates.AND, gates.OR], [0, 0, 2, 0], [0, 1, 3, 1], [4], num_classes=1)
    assert c.analysis.live.tolist() == [True, True, True, True, True, False]
    assert c.analysis.alap[:3].tolist() == [1, 1, 2]
    assert c.analysis.inputs_used == 2


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.float32, np.int64])
def test_input_bits_accepts_binary_dtypes(dtype):
    x = np.random.default_rng(0).integers(0, 2, (5, 2, 3)).astype(dtype)
    bits = as_input_bits(x, 6)
    assert bits.dtype == np.bool_ and bits.shape == (5, 6)
    assert np.array_equal(as_input_bits(torch.as_tensor(x.astype(np.float32)), 6), bits)
    assert np.array_equal(as_input_bits(torch.as_tensor(x.astype(np.float32)).bfloat16(), 6), bits)
    assert np.array_equal(as_input_bits(torch.as_tensor(x.astype(np.float32)).half(), 6), bits)


@pytest.mark.parametrize("x, match", [
    (np.full((2, 6), 0.5), r"must be binary.*0\.5 at sample 0, input 0"),
    (np.zeros((2, 5)), r"shape \(N >= 1, 6\).*\(2, 5\)"),
    (np.zeros(6), r"single row"),
    (np.zeros((0, 6)), r"N >= 1"),
    (np.array([["a"] * 6]), "dtype"),
])
def test_input_bits_errors(x, match):
    with pytest.raises(ValueError, match=match):
        as_input_bits(x, 6)


def test_input_bits_of_a_large_uint8_batch_stay_bounded():
    x = np.zeros((200_000, 100), dtype=np.uint8)
    x[123_456, 7] = 3
    with pytest.raises(ValueError, match=r"3 at sample 123456, input 7 \(1 non-binary"):
        as_input_bits(x, 100)


def test_heads():
    c = loop_circuit(3, cells=0.2)
    x = exhaustive(7)
    bits = evaluate_outputs(c, x)
    assert np.array_equal(head_outputs(c, x), group_counts(c, x))
    am = c.replace(head=Head.argmax(3))
    assert np.array_equal(head_outputs(am, x), predict(c, x))
    raw = c.replace(head=Head.bits())
    assert raw.num_classes == 1 and raw.group_size == c.n_outputs
    assert np.array_equal(head_outputs(raw, x), bits)
    with pytest.raises(CircuitFormatError, match="'bits'"):
        group_counts(raw, x)
    for bad, match in (({"kind": "votes"}, "kind in"), ({"kind": "bits", "num_classes": 3}, "no classes"),
                       ({"kind": "group_sum", "num_classes": 3, "tau": -1}, "tau"),
                       ({"kind": "argmax", "num_classes": 0}, "num_classes")):
        with pytest.raises(CircuitFormatError, match=match):
            Head.from_dict(bad)


def test_circuits_are_immutable_and_replace_makes_copies():
    c = loop_circuit(1)
    with pytest.raises(ValueError, match="read-only"):
        c.a[0] = -5
    with pytest.raises(AttributeError, match="immutable"):
        c.ops = c.ops.copy()
    with pytest.raises(AttributeError, match="head"):
        c.tau = 3.0
    mine = c.outputs.copy()
    d = Circuit(c.n_inputs, c.ops, c.a, c.b, mine, num_classes=3)
    mine[0] = 10 ** 6  # the caller's array is copied: editing it cannot reach the circuit
    assert d.outputs[0] == c.outputs[0]
    e = c.replace(tau=5.0)
    assert e.tau == 5.0 and c.tau == 2.0 and e.structurally_equal(c.replace(head=Head.group_sum(3, 5.0)))
    c.meta["note"] = "ok"  # descriptions stay writable
    assert c.input_layout is None


@pytest.mark.parametrize("change, match", [
    (dict(a=[-1]), r"gate 0 .* reads a=-1"),
    (dict(b=[9]), r"gate 0 \(node 2\) reads b=9"),
    (dict(ops=[17]), "gate op 17"),
    (dict(outputs=[]), "at least one output"),
    (dict(outputs=[5]), "outside"),
    (dict(ops=[THRESHOLD], a=[0], popcount_ptr=[0, 1], popcount_lits=[2 * 2]), "earlier nodes only"),
    (dict(ops=[THRESHOLD], a=[1], popcount_ptr=[0, 1], popcount_lits=[2]), "row 1"),
    (dict(popcount_ptr=[0, 2], popcount_lits=[2]), "CSR"),
    (dict(popcount_ptr=[0, 1], popcount_lits=[40]), "literals reference nodes outside"),
])
def test_invalid_circuits_are_named(change, match):
    fields = dict(n_inputs=2, ops=[gates.AND], a=[0], b=[1], outputs=[2], num_classes=1)
    fields.update(change)
    with pytest.raises(CircuitFormatError, match=match):
        Circuit(**fields)


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_round_trip(tmp_path, suffix):
    c = loop_circuit(5, cells=0.2).replace(input_layout={"kind": "test"}, meta={"m": [1, 2]})
    c.save(tmp_path / f"c{suffix}")
    d = Circuit.load(tmp_path / f"c{suffix}")
    assert d.structurally_equal(c) and d.input_layout == {"kind": "test"} and d.meta == {"m": [1, 2]}
    assert d.head == c.head
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"c{suffix}"]  # written atomically, no temp left


def test_version_1_files_still_load(tmp_path):
    c = loop_circuit(2)
    v1 = {"format": "diffgates-circuit", "version": 1, "n_inputs": c.n_inputs, "num_classes": 3, "tau": 2.0,
          "gates": {"op": c.ops.tolist(), "a": c.a.tolist(), "b": c.b.tolist()}, "outputs": c.outputs.tolist(),
          "input_layout": None, "meta": {}}
    (tmp_path / "v1.json").write_text(json.dumps(v1))
    d = Circuit.load(tmp_path / "v1.json")
    assert d.structurally_equal(c) and d.head == Head.group_sum(3, 2.0)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(format="something-else"), "not a diffgates circuit"),
    (lambda d: d.update(version=99), "version 99"),
    (lambda d: d["gates"]["a"].__setitem__(0, 10 ** 6), "topological order"),
    (lambda d: d["gates"]["op"].__setitem__(0, 17), "gate op 17"),
    (lambda d: d["gates"]["op"].__setitem__(0, 1.5), "list of integers"),
    (lambda d: d.pop("outputs"), "outputs"),
    (lambda d: d["head"].update(num_classes=5), "equal groups"),
    (lambda d: d.update(head={"kind": "votes"}), "kind in"),
])
def test_corrupt_or_foreign_json(tmp_path, edit, match):
    d = loop_circuit(0).to_dict()
    edit(d)
    (tmp_path / "c.json").write_text(json.dumps(d))
    with pytest.raises(CircuitFormatError, match=match):
        Circuit.load(tmp_path / "c.json")


def test_not_a_circuit_file(tmp_path):
    (tmp_path / "c.json").write_bytes(b"\x00\x01garbage")
    with pytest.raises(CircuitFormatError, match="neither"):
        Circuit.load(tmp_path / "c.json")
    good = tmp_path / "good.safetensors"
    loop_circuit(0).save(good)
    (tmp_path / "cut.safetensors").write_bytes(good.read_bytes()[:-7])
    with pytest.raises(CircuitFormatError, match="not a readable safetensors"):
        Circuit.load(tmp_path / "cut.safetensors")
    from safetensors.numpy import save_file
    save_file({"x": np.zeros(3)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CircuitFormatError, match="without diffgates circuit metadata"):
        Circuit.load(tmp_path / "foreign.safetensors")


def test_importing_the_ir_does_not_load_torch():
    code = "import diffgates.ir, sys; assert 'torch' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)

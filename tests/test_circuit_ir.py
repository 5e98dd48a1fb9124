"""Circuit IR invariants and the numpy reference evaluator, checked against a per-gate Python loop.

Run: python -m pytest tests/test_circuit_ir.py -q
"""
import json

import numpy as np
import pytest
import torch

from diffgates import gates
from diffgates.circuit import Circuit, CircuitFormatError, as_input_bits, evaluate_outputs, group_counts, predict


def loop_circuit(seed, n_inputs=7, n_gates=40, k=3, group=4):
    rng = np.random.default_rng(seed)
    ops = rng.integers(0, 16, n_gates)
    a = np.array([rng.integers(0, n_inputs + i) for i in range(n_gates)])
    b = np.array([rng.integers(0, n_inputs + i) for i in range(n_gates)])
    outputs = rng.integers(0, n_inputs + n_gates, k * group)  # any node, repeats allowed
    return Circuit(n_inputs, ops, a, b, outputs, num_classes=k, tau=2.0)


def loop_eval(c, bits):
    """One gate at a time, straight from the Gate objects: the slowest, most obvious evaluation."""
    out = []
    for row in bits:
        nodes = list(row.astype(int))
        for op, a, b in zip(c.ops, c.a, c.b):
            nodes.append(gates.GATES[op](nodes[a], nodes[b]))
        out.append([nodes[o] for o in c.outputs])
    return np.array(out, dtype=bool)


@pytest.mark.parametrize("seed", range(4))
def test_evaluator_matches_per_gate_loop_exhaustively(seed):
    c = loop_circuit(seed)
    bits = np.array([[(v >> i) & 1 for i in range(c.n_inputs)] for v in range(2 ** c.n_inputs)], dtype=bool)
    assert np.array_equal(evaluate_outputs(c, bits, chunk=37), loop_eval(c, bits))
    counts = group_counts(c, bits)
    assert counts.dtype == np.int32 and counts.shape == (len(bits), 3)
    assert np.array_equal(counts, loop_eval(c, bits).reshape(len(bits), 3, 4).sum(-1))
    assert np.array_equal(predict(c, bits), counts.argmax(-1))


def test_levels_and_depth():
    # x0, x1 -> g0 = AND(x0,x1) (level 1); g1 = NOT_A(g0, x0) (level 2, ignores b); g2 = TRUE (level 1)
    c = Circuit(2, [gates.AND, gates.NOT_A, gates.TRUE], [0, 2, 0], [1, 0, 0], [3, 4], num_classes=1)
    assert c.levels().tolist() == [0, 0, 1, 2, 1]
    assert c.depth() == 2 and not c.is_levelized()
    assert c.count_bits() == 2 and c.group_size == 2
    assert c.stats()["gates_by_type"] == {"AND": 1, "NOT_A": 1, "TRUE": 1}


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.float32, np.int64])
def test_input_bits_accepts_binary_dtypes(dtype):
    x = np.random.default_rng(0).integers(0, 2, (5, 2, 3)).astype(dtype)
    bits = as_input_bits(x, 6)
    assert bits.dtype == np.bool_ and bits.shape == (5, 6)
    assert np.array_equal(as_input_bits(torch.as_tensor(x.astype(np.float32)), 6), bits)


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


def test_json_round_trip(tmp_path):
    c = loop_circuit(5)
    c.input_layout = {"kind": "test"}
    c.save(tmp_path / "c.json")
    d = Circuit.load(tmp_path / "c.json")
    assert d.structurally_equal(c) and d.input_layout == {"kind": "test"}


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(format="something-else"), "not a diffgates circuit"),
    (lambda d: d.update(version=99), "version 99"),
    (lambda d: d["gates"]["a"].__setitem__(0, 10 ** 6), "topological order"),
    (lambda d: d["gates"]["op"].__setitem__(0, 16), "gate op 16"),
    (lambda d: d.pop("outputs"), "outputs"),
    (lambda d: d.update(num_classes=5), "equal groups"),
])
def test_corrupt_or_foreign_json(tmp_path, edit, match):
    d = loop_circuit(0).to_dict()
    edit(d)
    (tmp_path / "c.json").write_text(json.dumps(d))
    with pytest.raises(CircuitFormatError, match=match):
        Circuit.load(tmp_path / "c.json")


def test_not_json(tmp_path):
    (tmp_path / "c.json").write_bytes(b"\x00\x01garbage")
    with pytest.raises(CircuitFormatError):
        Circuit.load(tmp_path / "c.json")

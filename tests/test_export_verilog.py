"""Tests of the Verilog exporter, its testbench/simulation and ``diffgates verify-verilog``.

The numpy evaluator is the spec: every simulation compares the RTL's class counts (and argmax) with
``group_counts`` bit for bit. Simulation tests need Icarus Verilog (``apt-get install -y iverilog``)
and skip without it; the Verilator test skips without ``verilator``.

Golden files: ``tests/golden/tiny_comb.v`` and ``tests/golden/tiny_pipe1.v`` are the exact output for
``tiny_circuit()``. After an intended change of the generated text, regenerate them with::

    DIFFGATES_UPDATE_GOLDEN=1 PYTHONPATH=src python -m pytest tests/test_export_verilog.py -k golden

and review the diff. Run everything: ``PYTHONPATH=src python -m pytest tests/test_export_verilog.py``.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from circuit_cases import all_bits, check_golden, model_counts, random_bits, random_circuit, random_model
from diffgates import gates
from diffgates.circuit import Circuit, group_counts
from diffgates.export.simulate import (SimulatorNotFound, run_testbench, make_testbench,
                                       verify_verilog)
from diffgates.export.verilog import export_verilog, generate_verilog

GOLDEN = Path(__file__).parent / "golden"
needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("vvp") is None,
                                    reason="Icarus Verilog (iverilog, vvp) is not installed")
needs_verilator = pytest.mark.skipif(shutil.which("verilator") is None or shutil.which("make") is None,
                                     reason="verilator is not installed")


def tiny_circuit() -> Circuit:
    """A fixed 4-input, 9-gate, 2-class circuit: XOR/NAND/OR chains, a constant, a NOT, a pass-through,
    an output that is an input bit and a repeated output."""
    return Circuit(n_inputs=4,
                   ops=[gates.XOR, gates.GATE_BY_NAME["NAND"].id, gates.OR, gates.NOT_A, gates.AND, gates.TRUE,
                        gates.GATE_BY_NAME["XNOR"].id, gates.B, gates.GATE_BY_NAME["A_AND_NOT_B"].id],
                   a=[0, 2, 4, 5, 6, 0, 7, 1, 10],
                   b=[1, 3, 5, 0, 3, 0, 8, 6, 4],
                   outputs=[10, 11, 3, 12, 12, 9], num_classes=2,
                   input_layout={"kind": "test", "bits": ["a0", "a1", "b0", "b1"]})


def test_gate_templates_come_from_the_gate_table():
    c = Circuit(n_inputs=2, ops=np.arange(16), a=np.zeros(16), b=np.ones(16), outputs=2 + np.arange(16),
                num_classes=16)
    text, _ = generate_verilog(c)
    for op, g in enumerate(gates.GATES):
        expected = g.formula.format(a="n0", b="n1", zero="1'b0", ones="1'b1")
        assert f"wire n{2 + op} = {expected};" in text


@needs_iverilog
@pytest.mark.parametrize("pipeline", [0, 1])
def test_every_gate_simulates_exactly(pipeline):
    # One gate of each kind on (x0, x1), each its own class: y bit c is gate c's output.
    c = Circuit(n_inputs=2, ops=np.arange(16), a=np.zeros(16), b=np.ones(16), outputs=2 + np.arange(16),
                num_classes=16)
    result = verify_verilog(c, all_bits(2), pipeline=pipeline)
    assert result.passed and result.total == 4, result.log


@needs_iverilog
@pytest.mark.parametrize("pipeline,simplified", [(0, True), (1, True), (3, True), (0, False), (1, False)])
def test_done_when_random_64_240x4_groupsum4(tmp_path, pipeline, simplified):
    """Issue 5: a random 64 -> 240x4 -> GroupSum(4) network simulates bit-exactly on 400 vectors,
    combinational and pipelined, as exported from the model (extracted + simplified) and unsimplified."""
    from diffgates.circuit.extract import to_circuit
    from diffgates.circuit.passes import simplify

    model = random_model(64, [240] * 4, 4, tau=10, seed=5)
    circuit = simplify(to_circuit(model)) if simplified else to_circuit(model)
    assert circuit.n_gates == 960 or simplified
    if simplified:  # export_verilog(model) = extract + simplify + export
        export_verilog(model, tmp_path / "net.v", pipeline=pipeline, argmax=True)
        assert (tmp_path / "net.v").read_text() == generate_verilog(circuit, pipeline=pipeline, argmax=True)[0]
    bits = random_bits(400, 64, seed=pipeline)
    assert np.array_equal(group_counts(circuit, bits), model_counts(model, bits))  # RTL spec = the model
    result = verify_verilog(circuit, bits, pipeline=pipeline, argmax=True)
    assert result.passed, (result.failures, result.log)
    assert (result.total, result.matched, result.mismatches) == (400, 400, 0)
    info = result.info
    assert result.latency == info.latency == (0 if pipeline == 0 else math.ceil(info.total_levels / pipeline))
    assert info.adder_tree_depth == math.ceil(math.log2(circuit.group_size)) == 6


@needs_iverilog
@pytest.mark.parametrize("pipeline,reset,argmax", [(0, True, False), (1, True, True), (2, False, True),
                                                   (5, True, False), (100, True, True)])
def test_arbitrary_topology(pipeline, reset, argmax):
    # Long and short edges, outputs on input bits, repeated outputs, gates feeding nothing.
    c = random_circuit(10, 160, 15, k=5, seed=pipeline)
    result = verify_verilog(c, random_bits(150, 10, seed=1), pipeline=pipeline, reset=reset, argmax=argmax)
    assert result.passed, (result.failures, result.log)


@needs_iverilog
def test_one_class_and_group_of_one():
    c = Circuit(n_inputs=3, ops=[gates.AND, gates.XOR], a=[0, 3], b=[1, 2], outputs=[4], num_classes=1)
    for p in (0, 1):
        assert verify_verilog(c, all_bits(3), pipeline=p, argmax=True).passed


@needs_iverilog
def test_testbench_catches_wrong_rtl_and_wrong_latency():
    c = random_circuit(8, 60, 8, k=2, seed=3)
    bits = random_bits(64, 8, seed=2)
    expected = group_counts(c, bits)
    # A design with one gate changed must be reported, with the failing vectors named.
    ops = c.ops.copy()
    changed = int(np.flatnonzero(np.isin(np.arange(c.n_nodes)[c.n_inputs:], c.outputs))[0])
    ops[changed] = gates.negate(int(ops[changed]))
    wrong = Circuit(c.n_inputs, ops, c.a, c.b, c.outputs, c.num_classes)
    assert not np.array_equal(group_counts(wrong, bits), expected)
    for p in (0, 2):
        text, info = generate_verilog(wrong, pipeline=p, argmax=True)
        result = run_testbench(text, info, bits, expected)
        assert not result.passed and result.mismatches > 0 and result.failures
        assert all("vector" in f and "expected_y" in f for f in result.failures)
    # A correct design whose documented latency is off by one must fail too.
    text, info = generate_verilog(c, pipeline=1)
    info.latency += 1
    result = run_testbench(text, info, bits, expected)
    assert not result.passed and result.failures[0]["expected_latency"] == info.latency


@needs_verilator
def test_verilator_matches():
    c = random_circuit(16, 200, 12, k=4, seed=9)
    result = verify_verilog(c, 300, pipeline=2, simulator="verilator", seed=4)
    assert result.passed and result.total == 300, result.log


def test_port_contract_sidecar_and_header(tmp_path):
    c = random_circuit(12, 90, 30, k=3, seed=2)
    c.input_layout = {"kind": "test", "n_bits": 12}
    info = export_verilog(c, tmp_path / "n.v", module="net_top", pipeline=2, argmax=True)
    text = (tmp_path / "n.v").read_text()
    w = c.count_bits()
    assert w == 4 and info.count_bits == 4 and info.class_index_bits == 2
    ports = {name: hi for hi, name in re.findall(r"^\s+(?:input|output)\s+wire (?:\[(\d+):0\] )?(\w+)", text, re.M)}
    assert ports == {"clk": "", "rst": "", "in_valid": "", "x": "11", "y": str(3 * w - 1), "class_idx": "1",
                     "out_valid": ""}
    for c_ in range(3):
        assert f"assign y[{c_ * w + w - 1}:{c_ * w}]" in text
    side = json.loads((tmp_path / "n.v.json").read_text())
    assert side["module"] == "net_top" and side["latency"] == info.latency >= 1
    assert side["input_layout"] == {"kind": "test", "n_bits": 12}
    assert {p["name"]: p["width"] for p in side["ports"]}["y"] == 3 * w
    assert (side["gates"], side["classes"], side["group_size"]) == (90, 3, 10)
    assert f"Latency: {info.latency} cycles" in text and '"n_bits": 12' in text
    # Every register stage holds at most `pipeline` levels; wires of stage s only read stage-s values.
    assert info.latency == math.ceil(info.total_levels / 2)
    assert info.registers == len(re.findall(r"^\s+reg ", text, re.M)) + sum(
        int(m) for m in re.findall(r"^\s+reg \[(\d+):0\]", text, re.M))


def test_adder_tree_is_balanced():
    c = random_circuit(8, 300, 200, k=2, seed=1)  # groups of 100: ceil(log2 100) = 7 adder levels
    text, info = generate_verilog(c)
    assert info.adder_tree_depth == 7
    adders = re.findall(r"wire \[(\d+):0\] s(\d+)_(\d+)_(\d+) =", text)
    assert len(adders) == 2 * 99  # n - 1 adders per group
    for hi, _, level, _ in adders:
        assert int(hi) + 1 <= int(level) + 1  # width grows by at most one bit per level
    assert max(int(level) for _, _, level, _ in adders) == 7


def test_deterministic_and_exposed_at_top_level():
    c = random_circuit(6, 40, 4, k=2, seed=0)
    assert generate_verilog(c, pipeline=1)[0] == generate_verilog(c, pipeline=1)[0]
    import diffgates

    assert diffgates.export_verilog is export_verilog


@pytest.mark.parametrize("kwargs,match", [({"module": "module"}, "'module'"), ({"module": "9net"}, "'9net'"),
                                          ({"pipeline": -1}, "pipeline=-1"), ({"pipeline": True}, "pipeline=True"),
                                          ({"argmax": 1}, "argmax=1")])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        generate_verilog(tiny_circuit(), **kwargs)


def test_not_a_circuit(tmp_path):
    with pytest.raises(TypeError, match="got dict"):
        export_verilog({"n_inputs": 3}, tmp_path / "x.v")


def test_missing_simulator_is_a_clear_error(monkeypatch):
    import diffgates.export.simulate as sim

    monkeypatch.setattr(sim.shutil, "which", lambda name: None)
    with pytest.raises(SimulatorNotFound, match="apt-get install -y iverilog"):
        verify_verilog(tiny_circuit(), 4)


@pytest.mark.parametrize("name,pipeline", [("tiny_comb.v", 0), ("tiny_pipe1.v", 1)])
def test_golden(name, pipeline):
    text, _ = generate_verilog(tiny_circuit(), pipeline=pipeline, argmax=True)
    check_golden(text, GOLDEN / name)


@needs_iverilog
def test_golden_designs_simulate():
    for pipeline in (0, 1):
        assert verify_verilog(tiny_circuit(), all_bits(4), pipeline=pipeline, argmax=True).passed


def test_testbench_mentions_summary():
    _, info = generate_verilog(tiny_circuit(), pipeline=1, argmax=True)
    tb = make_testbench(info, 7)
    assert "DIFFGATES_TB PASS" in tb and "localparam integer N = 7;" in tb and f"LAT = {info.latency};" in tb


# ---- CLI ------------------------------------------------------------------------------------------
def _circuit_file(tmp_path) -> Path:
    path = tmp_path / "tiny.circuit.json"
    tiny_circuit().save(path)
    return path


def test_cli_export_verilog(tmp_path, capsys):
    import argparse

    from diffgates.export import verilog

    parser = argparse.ArgumentParser()
    verilog.configure_cli(parser)
    args = parser.parse_args([str(_circuit_file(tmp_path)), str(tmp_path / "t.v"), "--pipeline", "1",
                              "--argmax", "--module", "tiny", "--no-simplify"])
    assert verilog.run_cli(args) == 0
    out = capsys.readouterr().out
    assert "latency: " in out and "registers:" in out and "adder tree" in out
    assert (tmp_path / "t.v").read_text() == generate_verilog(tiny_circuit(), module="tiny", pipeline=1,
                                                              argmax=True)[0]


@needs_iverilog
def test_cli_verify_verilog(tmp_path, capsys):
    from diffgates.cli import main

    path = _circuit_file(tmp_path)
    assert main(["verify-verilog", str(path), "--vectors", "40", "--pipeline", "1"]) == 0
    assert "bit-exact: 40/40" in capsys.readouterr().out
    np.save(tmp_path / "bits.npy", all_bits(4))
    (tmp_path / "bits.txt").write_text("0101\n1 1 1 0\n\n0011\n")
    assert main(["verify-verilog", str(path), "--dataset-bits", str(tmp_path / "bits.npy")]) == 0
    assert "16/16" in capsys.readouterr().out
    assert main(["verify-verilog", str(path), "--dataset-bits", str(tmp_path / "bits.txt"), "--vectors", "2"]) == 0
    assert "2/2" in capsys.readouterr().out


def test_cli_verify_verilog_bad_bits(tmp_path, capsys):
    from diffgates.cli import main

    path = _circuit_file(tmp_path)
    (tmp_path / "bad.txt").write_text("0101\n01x1\n")
    assert main(["verify-verilog", str(path), "--dataset-bits", str(tmp_path / "bad.txt")]) == 2
    assert "line 2: 'x' is not a bit" in capsys.readouterr().err
    np.save(tmp_path / "wide.npy", np.zeros((3, 5), dtype=np.uint8))
    assert main(["verify-verilog", str(path), "--dataset-bits", str(tmp_path / "wide.npy")]) == 2
    assert "(N >= 1, 4)" in capsys.readouterr().err


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@needs_iverilog
@pytest.mark.skipif(not (SHARED_DATA / "uci" / "monk").is_dir(), reason=f"no dataset files in {SHARED_DATA}")
def test_cli_verify_verilog_on_dataset_test_images(tmp_path, capsys):
    from diffgates.circuit.extract import to_circuit
    from diffgates.cli import main

    path = tmp_path / "monk.json"
    to_circuit(random_model(17, [40, 24], 2, 3.0, seed=5)).save(path)  # MONK-1 has 17 input bits
    assert main(["verify-verilog", str(path), "--dataset", "monk1", "--data-dir", str(SHARED_DATA),
                 "--vectors", "100"]) == 0
    assert "bit-exact: 100/100" in capsys.readouterr().out
    both = ["--dataset", "monk1", "--dataset-bits", str(tmp_path / "x.npy")]
    assert main(["verify-verilog", str(path), *both]) == 2
    assert "not both" in capsys.readouterr().err

"""Tests of the Verilog backend (``diffgates.backends.verilog``): the emitter, its testbench and simulation.

The numpy evaluator of ``diffgates.ir`` is the spec: every simulation compares the RTL's outputs
(class counts, argmax, or raw bits, by the circuit's head) with ``group_counts`` /
``evaluate_outputs`` bit for bit, including circuits with threshold cells (native RTL: an adder
tree and a compare per cell). Simulation tests are marked ``hw`` and need Icarus Verilog
(``apt-get install -y iverilog``), skipping without it; the Verilator tests (``hw``, ``slow``, ~10 s
per build) skip without ``verilator``. The command line is tested with the commands.

Golden files: ``tests/golden/tiny_comb.v`` and ``tests/golden/tiny_pipe1.v`` are the exact output for
``tiny_circuit()`` (written by the per-gate exporter this vectorised one replaced). After an intended
change of the generated text, regenerate them with::

    DIFFGATES_UPDATE_GOLDEN=1 python -m pytest tests/test_backend_verilog.py -k golden

and review the diff. Run everything: ``python -m pytest -q tests/test_backend_verilog.py``.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from circuit_cases import (all_bits, check_golden, model_counts, random_bits, random_cell_circuit, random_circuit,
                           random_model)
from diffgates import gates
from diffgates._atomic import is_temp_file
from diffgates.backends.verilog import emit
from diffgates.backends.verilog.emit import export_verilog, generate_verilog
from diffgates.backends.verilog.simulate import SimulatorNotFound, make_testbench, run_testbench, verify_verilog
from diffgates.ir import THRESHOLD, Circuit, Head, evaluate_outputs, group_counts

GOLDEN = Path(__file__).parent / "golden"
_no_iverilog = shutil.which("iverilog") is None or shutil.which("vvp") is None
_no_verilator = shutil.which("verilator") is None or shutil.which("make") is None


def needs_iverilog(test):
    """A simulation test: marked ``hw``, skipped without Icarus Verilog."""
    skip = pytest.mark.skipif(_no_iverilog, reason="Icarus Verilog (iverilog, vvp) is not installed")
    return pytest.mark.hw(skip(test))


def needs_verilator(test):
    """A Verilator test: marked ``hw`` and ``slow`` (a C++ build), skipped without verilator."""
    skip = pytest.mark.skipif(_no_verilator, reason="verilator is not installed")
    return pytest.mark.slow(pytest.mark.hw(skip(test)))


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
    c = Circuit(n_inputs=2, ops=np.arange(16), a=np.zeros(16, dtype=int), b=np.ones(16, dtype=int),
                outputs=2 + np.arange(16), num_classes=16)
    text, _ = generate_verilog(c)
    for op, g in enumerate(gates.GATES):
        expected = g.formula.format(a="n0", b="n1", zero="1'b0", ones="1'b1")
        assert f"wire n{2 + op} = {expected};" in text


@needs_iverilog
@pytest.mark.parametrize("pipeline", [0, 1])
def test_every_gate_simulates_exactly(pipeline):
    # One gate of each kind on (x0, x1), each its own class: y bit c is gate c's output.
    c = Circuit(n_inputs=2, ops=np.arange(16), a=np.zeros(16, dtype=int), b=np.ones(16, dtype=int),
                outputs=2 + np.arange(16), num_classes=16)
    result = verify_verilog(c, all_bits(2), pipeline=pipeline)
    assert result.passed and result.total == 4, result.log


@needs_iverilog
@pytest.mark.parametrize("pipeline,simplified", [(0, True), (1, True), (3, True), (0, False), (1, False)])
def test_done_when_random_64_240x4_groupsum4(tmp_path, pipeline, simplified):
    """A random 64 -> 240x4 -> GroupSum(4) network simulates bit-exactly on 400 vectors,
    combinational and pipelined, as exported from the model (extracted + simplified) and unsimplified."""
    import diffgates
    from diffgates.frontend import to_circuit
    from diffgates.ir import simplify

    model = random_model(64, [240] * 4, 4, tau=10, seed=5)
    circuit = simplify(to_circuit(model)) if simplified else to_circuit(model)
    assert circuit.n_gates == 960 or simplified
    if simplified:  # diffgates.export_verilog(model) = extract + simplify + the backend's export
        diffgates.export_verilog(model, tmp_path / "net.v", pipeline=pipeline, argmax=True)
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


def test_deterministic_and_exposed(tmp_path):
    c = random_circuit(6, 40, 4, k=2, seed=0)
    assert generate_verilog(c, pipeline=1)[0] == generate_verilog(c, pipeline=1)[0]
    import diffgates
    import diffgates.backends.verilog as verilog
    from diffgates.backends import exporter

    assert exporter("verilog") is export_verilog is verilog.export_verilog
    assert verilog.verify_verilog is verify_verilog and verilog.generate_verilog is generate_verilog
    diffgates.export_verilog(c, tmp_path / "top.v", pipeline=1)  # the top level converts models, then this
    assert (tmp_path / "top.v").read_text() == generate_verilog(c, pipeline=1)[0]


@pytest.mark.parametrize("kwargs,match", [({"module": "module"}, "'module'"), ({"module": "9net"}, "'9net'"),
                                          ({"pipeline": -1}, "pipeline=-1"), ({"pipeline": True}, "pipeline=True"),
                                          ({"argmax": 1}, "argmax=1")])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        generate_verilog(tiny_circuit(), **kwargs)


def test_not_a_circuit(tmp_path):
    with pytest.raises(TypeError, match="got dict"):
        export_verilog({"n_inputs": 3}, tmp_path / "x.v")
    model = random_model(8, [16], 2, seed=0)
    with pytest.raises(TypeError, match="got Sequential"):  # the backend takes circuits; diffgates.deploy converts
        generate_verilog(model)
    assert not (tmp_path / "x.v").exists()


def test_missing_simulator_is_a_clear_error(monkeypatch):
    import diffgates.backends.verilog.simulate as sim

    monkeypatch.setattr(sim.shutil, "which", lambda name: None)
    with pytest.raises(SimulatorNotFound, match="apt-get install -y iverilog"):
        verify_verilog(tiny_circuit(), 4)


@pytest.mark.parametrize("name,pipeline", [("tiny_comb.v", 0), ("tiny_pipe1.v", 1)])
def test_golden(name, pipeline, tmp_path, monkeypatch):
    """The vectorised emitter writes exactly the text of the per-gate one (the goldens), also when every
    few rows are a separate chunk of text, and export_verilog streams the same bytes to the file."""
    text, _ = generate_verilog(tiny_circuit(), pipeline=pipeline, argmax=True)
    check_golden(text, GOLDEN / name)
    export_verilog(tiny_circuit(), tmp_path / name, pipeline=pipeline, argmax=True)
    assert (tmp_path / name).read_text() == text
    monkeypatch.setattr(emit, "_CHUNK", 2)
    assert generate_verilog(tiny_circuit(), pipeline=pipeline, argmax=True)[0] == text


@needs_iverilog
def test_golden_designs_simulate():
    for pipeline in (0, 1):
        assert verify_verilog(tiny_circuit(), all_bits(4), pipeline=pipeline, argmax=True).passed


def test_testbench_mentions_summary():
    _, info = generate_verilog(tiny_circuit(), pipeline=1, argmax=True)
    tb = make_testbench(info, 7)
    assert "DIFFGATES_TB PASS" in tb and "localparam integer N = 7;" in tb and f"LAT = {info.latency};" in tb


# ---- threshold cells, heads, the testbench's files ----------------------------------------------------
def cell_circuit(head: Head | None = None) -> Circuit:
    """5 inputs; threshold cells (negated and repeated literals, a cell counting a cell, decided
    thresholds T=0 and T > row length, a one-literal row) feeding later gates; 2 classes of 4."""
    ptr = [0, 5, 8, 8, 9]
    lits = [0, 3, 4, 6, 9,  0, 0, 11,  5]  # row 0: x0 ~x1 x2 x3 ~x4; row 1: x0 x0 ~n5; row 2: empty; row 3: ~x2
    ops = [THRESHOLD, gates.XOR, THRESHOLD, gates.AND, THRESHOLD, THRESHOLD, THRESHOLD, gates.OR]
    a = [0, 5, 1, 7, 2, 0, 3, 11]  # gates: node operands; cells: their popcount row
    b = [3, 1, 2, 6, 0, 9, 1, 10]  # gates: node operands; cells: the threshold
    return Circuit(n_inputs=5, ops=ops, a=a, b=b, outputs=[5, 6, 7, 8, 9, 10, 11, 12],
                   head=head or Head.group_sum(2), popcount_ptr=ptr, popcount_lits=lits)


def test_threshold_cells_are_native_rtl():
    c = cell_circuit()
    text, info = generate_verilog(c, pipeline=0, argmax=True)
    # Cell n5: a balanced tree over its 5 literals (negated ones as !n<v>), then the compare.
    assert "wire [1:0] t5_1_0 = n0 + !n1;" in text and "wire [1:0] t5_1_1 = n2 + n3;" in text
    assert "wire [2:0] t5_2_0 = t5_1_0 + t5_1_1;" in text and "wire [2:0] t5_3_0 = t5_2_0 + !n4;" in text
    assert "wire n5 = t5_3_0 >= 3'd3;" in text
    assert "wire [1:0] t7_1_0 = n0 + n0;" in text and "wire n7 = t7_2_0 >= 2'd2;" in text  # repeat; cell of a cell
    assert "wire n9 = 1'b1;" in text and "wire n10 = 1'b0;" in text  # decided thresholds are constants
    assert "wire n11 = !n2 >= 1'd1;" in text  # one literal: no adder
    # Declared before use (topological order), and levels: tree depth + 1 for the compare.
    assert text.index("wire n5 =") < text.index("wire n6 =") < text.index("t7_1_0 =") < text.index("wire n7 =")
    assert info.thresholds == 5 and info.levels == 7 and "Threshold cells: 5" in text
    _, piped = generate_verilog(c, pipeline=1)
    assert piped.latency == piped.total_levels == info.levels + 2  # + a 4-output class tree


@needs_iverilog
@pytest.mark.parametrize("pipeline", [0, 1, 2])
def test_threshold_cells_feeding_gates_simulate(pipeline):
    c = cell_circuit()
    result = verify_verilog(c, all_bits(5), pipeline=pipeline, argmax=True)
    assert result.passed and result.total == 32, (result.failures, result.log)
    expected = group_counts(c, all_bits(5))
    assert expected.max() >= 3 and len({tuple(r) for r in expected}) > 4  # the cells do decide something


@needs_iverilog
@pytest.mark.parametrize("seed,pipeline", [(1, 0), (2, 1), (3, 3)])
def test_random_threshold_circuits_simulate(seed, pipeline):
    c = random_cell_circuit(12, 150, 24, k=3, seed=seed, cells=0.4)
    assert c.n_thresholds > 20
    result = verify_verilog(c, random_bits(200, 12, seed=seed), pipeline=pipeline)
    assert result.passed, (result.failures, result.log)


@needs_verilator
def test_verilator_threshold_cells():
    c = random_cell_circuit(10, 120, 12, k=2, seed=4, cells=0.4)
    result = verify_verilog(c, 200, pipeline=1, simulator="verilator", seed=2)
    assert result.passed and result.total == 200, result.log


def _port_names(text: str) -> list[str]:
    return re.findall(r"^\s+(?:input|output)\s+wire (?:\[\d+:0\] )?(\w+)", text, re.M)


def test_bits_head_ports_and_argmax_error():
    c = cell_circuit(Head.bits())
    text, info = generate_verilog(c, pipeline=1)
    assert _port_names(text) == ["clk", "rst", "in_valid", "x", "y", "out_valid"]
    assert "output wire [7:0] y" in text and info.y_width == 8 and info.head == "bits"
    assert "assign y[0] = n5_p" in text and "assign y[7] = n12_p" in text and not re.search(r"\bs\d+_", text)
    assert info.adder_tree_depth == 0 and info.total_levels == info.levels
    with pytest.raises(ValueError, match="head is 'bits'"):
        generate_verilog(c, argmax=True)


def test_argmax_head_has_class_idx_only():
    c = random_circuit(8, 60, 12, k=3, seed=6).replace(head=Head.argmax(3))
    text, info = generate_verilog(c)  # argmax need not be asked for
    assert _port_names(text) == ["x", "class_idx"] and info.argmax and info.y_width == 0
    assert generate_verilog(c, argmax=True)[0] == text
    assert "assign class_idx = am2_0_i;" in text and "assign y" not in text
    # The same wires as a group_sum head with argmax=True (only the y port and its assigns differ).
    group = generate_verilog(c.replace(head=Head.group_sum(3)), argmax=True)[0]
    wires = lambda t: [ln for ln in t.splitlines() if ln.startswith("    wire ")]  # noqa: E731
    assert wires(group) == wires(text)


@needs_iverilog
@pytest.mark.parametrize("pipeline", [0, 2])
def test_bits_and_argmax_heads_simulate(pipeline):
    cells = cell_circuit(Head.bits())
    result = verify_verilog(cells, all_bits(5), pipeline=pipeline)
    assert result.passed and result.total == 32, (result.failures, result.log)
    c = random_circuit(10, 120, 20, k=4, seed=pipeline)
    for head in (Head.bits(), Head.argmax(4)):
        result = verify_verilog(c.replace(head=head), random_bits(100, 10, seed=3), pipeline=pipeline)
        assert result.passed, (head, result.failures, result.log)


@needs_iverilog
def test_testbench_catches_wrong_bits_and_class():
    c = random_circuit(8, 60, 8, k=2, seed=3)
    bits = random_bits(40, 8, seed=1)
    out = evaluate_outputs(c, bits)
    flipped = out.copy()
    flipped[5, 3] ^= True
    text, info = generate_verilog(c.replace(head=Head.bits()), pipeline=1)
    assert run_testbench(text, info, bits, out).passed
    result = run_testbench(text, info, bits, flipped)
    assert not result.passed and result.mismatches == 1 and result.failures[0]["vector"] == 5
    text, info = generate_verilog(c.replace(head=Head.argmax(2)))
    classes = group_counts(c, bits).argmax(1)
    assert run_testbench(text, info, bits, classes).passed
    result = run_testbench(text, info, bits, 1 - classes)
    assert not result.passed and "expected_class_idx" in result.failures[0] and "y" not in result.failures[0]


def test_timeout_must_be_positive():
    for bad in (0, -1, 0.0, True, "10"):
        with pytest.raises(ValueError, match="timeout="):
            verify_verilog(tiny_circuit(), 4, timeout=bad)
    _, info = generate_verilog(tiny_circuit())
    with pytest.raises(ValueError, match="timeout="):
        run_testbench("", info, all_bits(4), np.zeros((16, 2)), timeout=-5)


def test_hex_files_are_the_python_formatting():
    from diffgates.backends.verilog.simulate import _hex_lines, _value_bits

    rng = np.random.default_rng(0)
    for width in (1, 3, 4, 5, 17, 64, 70, 100):
        bits = rng.integers(0, 2, size=(9, width), dtype=np.uint8)
        ints = [sum(int(v) << i for i, v in enumerate(row)) for row in bits]
        digits = max(1, -(-width // 4))
        assert _hex_lines(bits).decode() == "".join(f"{v:0{digits}x}\n" for v in ints)
    counts = rng.integers(0, 1000, size=(6, 10))  # K*W = 100 bits: beyond any machine integer
    ints = [sum(int(v) << (10 * c) for c, v in enumerate(row)) for row in counts]
    assert _hex_lines(_value_bits(counts, 10)).decode() == "".join(f"{v:025x}\n" for v in ints)


def test_sidecar_names_the_head(tmp_path):
    info = export_verilog(cell_circuit(Head.bits()), tmp_path / "b.v", pipeline=2)
    side = json.loads((tmp_path / "b.v.json").read_text())
    assert side["head"] == "bits" and side["thresholds"] == 5 and side["outputs"] == 8
    assert {p["name"]: p["width"] for p in side["ports"]}["y"] == 8 == info.y_width
    assert side["latency"] == info.latency and "y[k] = output bit k" in side["output_encoding"]
    assert not [p for p in tmp_path.iterdir() if is_temp_file(p)]  # written atomically: no temp files left


def test_dead_logic_is_left_out():
    # A threshold cell nobody reads and a gate nobody reads: neither they nor the tree are emitted.
    c = Circuit(n_inputs=3, ops=[THRESHOLD, gates.AND, gates.XOR], a=[0, 0, 0], b=[2, 1, 2], outputs=[0, 1, 5],
                num_classes=1, popcount_ptr=[0, 3], popcount_lits=[0, 2, 4])
    text, info = generate_verilog(c, pipeline=1)
    assert "wire n3" not in text and "t3_" not in text and "wire n4" not in text and "wire n5 = n0 ^ n2;" in text
    assert info.gates == 3 and info.gates_emitted == 1 and "Gates: 3 (2 feed no output" in text

"""Tests of the netlist exports (AIGER .aag/.aig, BLIF), the AIG lowering and the Yosys report.

Every file is read back (AIGER by ``read_aiger``, BLIF by the small evaluator below) and compared
exhaustively with the numpy reference evaluator on small circuits. When ABC (``berkeley-abc`` or
``yosys-abc``) is installed, it reads the files and proves the AIGER and BLIF lowerings equivalent
(``cec``) and the synthesis report runs. Those tests skip when the tool is missing.

Golden files ``tests/golden/tiny_raw.aag`` and ``tests/golden/tiny_counts.blif`` hold the exact output
for ``tiny_circuit()``; regenerate after an intended change with::

    DIFFGATES_UPDATE_GOLDEN=1 PYTHONPATH=src python -m pytest tests/test_export_netlist.py -k golden
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from circuit_cases import all_bits, check_golden, random_bits, random_circuit, random_model
from diffgates import gates
from diffgates.circuit import evaluate_outputs, group_counts
from diffgates.export.aiger import AigerFormatError, aiger_bytes, export_aiger, read_aiger
from diffgates.export.blif import blif_text, export_blif
from diffgates.export.netlist import GATE_RECIPES, Aig, balanced_reduce, lower_to_aig, tree_depth
from test_export_verilog import tiny_circuit

GOLDEN = Path(__file__).parent / "golden"
ABC = shutil.which("berkeley-abc") or shutil.which("yosys-abc")
needs_abc = pytest.mark.skipif(ABC is None, reason="ABC (berkeley-abc or yosys-abc) is not installed")
needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys is not installed")


def _expected(circuit, bits) -> np.ndarray:
    """Reference values of a netlist with counts: raw outputs, then each class's count bits LSB first."""
    counts = group_counts(circuit, bits)
    w = circuit.count_bits()
    count_bits = ((counts[:, :, None] >> np.arange(w)) & 1).astype(bool).reshape(len(bits), -1)
    return np.concatenate([evaluate_outputs(circuit, bits), count_bits], axis=1)


def read_blif(path) -> tuple[list[str], list[str], list[tuple[list[str], str, list[str]]]]:
    """(inputs, outputs, tables) of a BLIF file: a test-side parser independent of the writer."""
    text = re.sub(r"\\\n", " ", Path(path).read_text())
    inputs, outputs, tables, cur = [], [], [], None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("."):
            cur = None
            words = line.split()
            if words[0] == ".inputs":
                inputs += words[1:]
            elif words[0] == ".outputs":
                outputs += words[1:]
            elif words[0] == ".names":
                cur = (words[1:-1], words[-1], [])
                tables.append(cur)
            else:
                assert words[0] in (".model", ".end"), f"unexpected BLIF keyword {words[0]}"
        else:
            assert cur is not None, f"cover row {line!r} outside .names"
            cur[2].append(line)
    return inputs, outputs, tables


def eval_blif(path, bits) -> np.ndarray:
    inputs, outputs, tables = read_blif(path)
    val = {name: bits[:, i].astype(bool) for i, name in enumerate(inputs)}
    for ins, out, rows in tables:  # our writer emits tables in topological order
        assert out not in val, f"net {out} driven twice"
        res = np.zeros(len(bits), dtype=bool)
        for row in rows:
            *cube, bit = row.split() if ins else ["", row]
            assert bit == "1", "the writer only emits on-set rows"
            term = np.ones(len(bits), dtype=bool)
            for name, ch in zip(ins, cube[0] if cube else ""):
                if ch != "-":
                    term &= val[name] == (ch == "1")
            res |= term
        val[out] = res
    return np.stack([val[o] for o in outputs], axis=1)


def test_gate_recipes_reproduce_truth_tables():
    for op in range(gates.NUM_GATES):
        aig = Aig(2)
        aig.add_output(aig.gate(op, aig.input(0), aig.input(1)), "f")
        got = aig.evaluate(all_bits(2))[:, 0]
        assert got.tolist() == [bool(gates.GATES[op](a, b)) for a in (0, 1) for b in (0, 1)], op
    assert GATE_RECIPES[gates.XOR][0] == "xor" and GATE_RECIPES[gates.AND] == ("and", 0, 0, 0)


def test_balanced_reduce_depth_and_order():
    for n in (1, 2, 3, 7, 8, 9, 100, 240):
        root, depth = balanced_reduce(list(range(n)), lambda l, r, t, j: l + r)
        assert root == n * (n - 1) // 2 and depth == tree_depth(n) == int(np.ceil(np.log2(n)))
    with pytest.raises(ValueError, match="at least one"):
        balanced_reduce([], lambda *a: None)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aig_lowering_exhaustive(seed):
    c = random_circuit(9, 150, 12, k=3, seed=seed)
    aig = lower_to_aig(c, counts=True)
    bits = all_bits(9)
    assert np.array_equal(aig.evaluate(bits), _expected(c, bits))
    assert aig.output_names[:2] == ["out[0]", "out[1]"] and aig.output_names[-1] == "count_c2[2]"


@pytest.mark.parametrize("k, group, seed", [(1, 4, 0), (3, 4, 1), (5, 2, 2), (4, 3, 3), (10, 1, 4)])
def test_aig_argmax_matches_numpy_with_ties_to_the_lowest_class(k, group, seed):
    c = random_circuit(8, 90, k * group, k=k, seed=seed)
    aig = lower_to_aig(c, argmax=True)
    bits = all_bits(8)
    got = aig.evaluate(bits)[:, c.n_outputs:]
    assert got.shape[1] == max(1, (k - 1).bit_length())
    index = (got.astype(np.int64) << np.arange(got.shape[1])).sum(axis=1)
    counts = group_counts(c, bits)
    assert np.array_equal(index, counts.argmax(axis=1))  # numpy's argmax: first maximum
    if k > 1:  # the exhaustive inputs do produce ties, so the tie rule was exercised
        assert (np.sort(counts, axis=1)[:, -1] == np.sort(counts, axis=1)[:, -2]).any()
    assert aig.output_names[-1] == f"class_idx[{got.shape[1] - 1}]"


@pytest.mark.parametrize("suffix", [".aag", ".aig"])
def test_aiger_roundtrip(tmp_path, suffix):
    c = random_circuit(10, 200, 16, k=4, seed=7)
    info = export_aiger(c, tmp_path / f"n{suffix}", counts=True)
    assert info.format == suffix[1:] and info.outputs == 16 + 4 * c.count_bits()
    aig = read_aiger(tmp_path / f"n{suffix}")
    bits = all_bits(10)
    assert np.array_equal(aig.evaluate(bits), _expected(c, bits))
    assert aig.input_names[3] == "x[3]" and aig.output_names[16] == "count_c0[0]"
    assert any("raw output bits" in line for line in aig.comments)


def test_aiger_binary_and_ascii_agree(tmp_path):
    c = random_circuit(6, 80, 6, k=2, seed=3)
    export_aiger(c, tmp_path / "a.aag")
    export_aiger(c, tmp_path / "b.aig")
    a, b = read_aiger(tmp_path / "a.aag"), read_aiger(tmp_path / "b.aig")
    assert a.ands == b.ands and a.outputs == b.outputs and a.output_names == b.output_names
    header = (tmp_path / "b.aig").read_bytes().split(b"\n", 1)[0].decode()
    assert header == f"aig {a.max_var} 6 0 6 {len(a.ands)}"


def test_model_netlist_matches_model(tmp_path):
    model = random_model(20, [60, 30], 3, seed=2)
    from circuit_cases import model_counts
    from diffgates.circuit.extract import to_circuit

    c = to_circuit(model)
    export_aiger(c, tmp_path / "m.aig", counts=True)
    bits = random_bits(300, 20, seed=1)
    values = read_aiger(tmp_path / "m.aig").evaluate(bits)[:, c.n_outputs:]
    counts = (values.reshape(300, 3, c.count_bits()) * (1 << np.arange(c.count_bits()))).sum(-1)
    assert np.array_equal(counts, model_counts(model, bits))


def test_aiger_errors(tmp_path):
    bad = tmp_path / "bad.aag"
    bad.write_text("aag 3 1 1 1 1\n2\n4 2\n6\n6 2 4\n")
    with pytest.raises(AigerFormatError, match="1 latches"):
        read_aiger(bad)
    bad.write_text("aag 2 1 0 1 1\n2\n9\n4 2 2\n")
    with pytest.raises(AigerFormatError, match="output 0 literal '9'"):
        read_aiger(bad)
    bad.write_text("xyz 1 2 3\n")
    with pytest.raises(AigerFormatError, match="'xyz 1 2 3'"):
        read_aiger(bad)
    with pytest.raises(ValueError, match="'net.txt'"):
        export_aiger(tiny_circuit(), tmp_path / "net.txt")


@pytest.mark.parametrize("style", ["gates", "aig"])
@pytest.mark.parametrize("counts", [False, True])
def test_blif_exhaustive(tmp_path, style, counts):
    c = random_circuit(8, 120, 10, k=2, seed=11)
    info = export_blif(c, tmp_path / "n.blif", style=style, counts=counts)
    bits = all_bits(8)
    want = _expected(c, bits)
    got = eval_blif(tmp_path / "n.blif", bits)
    assert np.array_equal(got, want if counts else want[:, :c.n_outputs])
    assert info.outputs == got.shape[1]
    inputs, outputs, _ = read_blif(tmp_path / "n.blif")
    assert inputs == [f"x[{i}]" for i in range(8)] and outputs[0] == "out[0]"


def test_blif_bad_arguments():
    with pytest.raises(ValueError, match="'luts'"):
        blif_text(tiny_circuit(), style="luts")
    with pytest.raises(ValueError, match="'my net'"):
        blif_text(tiny_circuit(), model="my net")


def _abc(cmd: str, cwd) -> str:
    proc = subprocess.run([ABC, "-c", cmd], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@needs_abc
def test_abc_reads_and_proves_equivalent(tmp_path):
    # Two independent lowerings: BLIF .names from truth tables vs AIGER from AIG recipes.
    c = random_circuit(24, 400, 20, k=4, seed=5, gate_weights=np.ones(16))
    export_blif(c, tmp_path / "n.blif", counts=True)
    export_aiger(c, tmp_path / "n.aig", counts=True)
    log = _abc("read_aiger n.aig; print_stats", tmp_path)  # ABC reads binary AIGER only
    assert re.search(r"i/o\s*=\s*24/\s*%d" % (20 + 4 * c.count_bits()), log), log
    log = _abc("cec n.blif n.aig", tmp_path)
    assert "Networks are equivalent" in log, log
    # ... and a wrong netlist is not.
    wrong = random_circuit(24, 400, 20, k=4, seed=6, gate_weights=np.ones(16))
    export_aiger(wrong, tmp_path / "w.aig", counts=True)
    assert "Networks are equivalent" not in _abc("cec n.blif w.aig", tmp_path)


@needs_yosys
def test_yosys_reads_ascii_aiger_and_blif(tmp_path):
    c = random_circuit(10, 100, 8, k=2, seed=8, gate_weights=np.ones(16))
    export_aiger(c, tmp_path / "n.aag", counts=True)
    export_blif(c, tmp_path / "n.blif")
    for cmd in ("read_aiger n.aag; stat", "read_blif n.blif; stat"):
        proc = subprocess.run(["yosys", "-p", cmd], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "Number of cells" in proc.stdout, proc.stdout[-3000:] + proc.stderr


@pytest.mark.parametrize("name,kind", [("tiny_raw.aag", "aag"), ("tiny_counts.blif", "blif")])
def test_golden(name, kind):
    c = tiny_circuit()
    text = aiger_bytes(lower_to_aig(c), binary=False).decode() if kind == "aag" else blif_text(c, counts=True)[0]
    check_golden(text, GOLDEN / name)


def _cli(module, argv):
    parser = argparse.ArgumentParser()
    module.configure_cli(parser)
    return module.run_cli(parser.parse_args(argv))


def test_cli_aiger_and_blif(tmp_path, capsys):
    from diffgates.export import aiger, blif

    path = tmp_path / "tiny.circuit.json"
    tiny_circuit().save(path)
    assert _cli(aiger, [str(path), str(tmp_path / "t.aig"), "--counts", "--no-simplify"]) == 0
    assert "(aig)" in capsys.readouterr().out
    assert _cli(blif, [str(path), str(tmp_path / "t.blif"), "--style", "aig", "--no-simplify"]) == 0
    assert "(blif)" in capsys.readouterr().out
    bits = all_bits(4)
    c = tiny_circuit()
    assert np.array_equal(read_aiger(tmp_path / "t.aig").evaluate(bits), _expected(c, bits))
    assert np.array_equal(eval_blif(tmp_path / "t.blif", bits), evaluate_outputs(c, bits))
    # --argmax appends the winning class index (1 bit for 2 classes) after the counts
    assert _cli(aiger, [str(path), str(tmp_path / "a.aag"), "--counts", "--argmax", "--no-simplify"]) == 0
    assert "(incl. class counts and argmax)" in capsys.readouterr().out
    values = read_aiger(tmp_path / "a.aag").evaluate(bits)
    assert np.array_equal(values[:, :-1], _expected(c, bits))
    assert np.array_equal(values[:, -1], group_counts(c, bits).argmax(axis=1) == 1)


# ---- synthesis report ------------------------------------------------------------------------------
@needs_abc
def test_synth_report():
    from diffgates.export.synth import synth_report

    c = random_circuit(12, 120, 12, k=3, seed=4)
    rep = synth_report(c, argmax=True)
    assert rep["tool"].startswith("UC Berkeley, ABC") and "argmax" in rep["includes"]
    assert rep["luts"] > 0 and rep["lut_depth"] >= 1 and rep["lut_size"] == 6 and rep["aig_ands"] > 0
    assert rep["gate_depth"] >= rep["lut_depth"] and rep["aig_depth"] >= rep["lut_depth"]
    by_type = rep["gates_by_type"]
    assert rep["gates_after_opt"] == sum(n for g, n in by_type.items() if g not in ("BUF", "ZERO", "ONE")) > 0
    assert set(by_type) <= {"AND", "NAND", "OR", "NOR", "XOR", "XNOR", "ANDNOT", "ORNOT", "NOT", "BUF", "ZERO", "ONE"}
    # Smaller LUTs need more of them (and at least as many levels); the argmax adds logic.
    rep4 = synth_report(c, lut_size=4, argmax=True)
    assert rep4["luts"] > rep["luts"] and rep4["lut_depth"] >= rep["lut_depth"]
    assert synth_report(c)["aig_ands"] < rep["aig_ands"]


@needs_abc
def test_synth_report_of_a_tiny_circuit_with_constants_and_wires():
    from diffgates.export.synth import synth_report

    c = tiny_circuit()
    rep = synth_report(c)
    assert rep["gates_in"] == c.n_gates and rep["luts"] >= 1 and rep["gates_after_opt"] >= 1


def test_synth_report_without_abc(monkeypatch):
    import diffgates.export.synth as synth

    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(synth.SynthesisToolNotFound, match="apt-get install -y berkeley-abc"):
        synth.synth_report(tiny_circuit())
    with pytest.raises(ValueError, match="lut_size=1"):
        synth.synth_report(tiny_circuit(), lut_size=1)

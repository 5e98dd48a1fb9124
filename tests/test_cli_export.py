"""``diffgates export FORMAT`` and ``diffgates verify-verilog`` from the command line: every format from a
circuit file and from a run folder, the written files checked against the numpy reference, and bad
input reported as one ``error:`` line. Run: python -m pytest tests/test_cli_export.py -q
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from circuit_cases import all_bits, model_counts, random_cell_circuit, random_model
from conftest import SHARED_DATA
from diffgates.backends.netlist.aiger import read_aiger
from diffgates.backends.verilog.emit import generate_verilog
from diffgates.cli import main
from diffgates.families import model_spec
from diffgates.frontend import to_circuit
from diffgates.ir import evaluate_outputs, group_counts, simplify
from diffgates.modelfiles import save_model

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog is not installed")


@pytest.fixture
def circuit_file(tmp_path):
    model = random_model(6, [40, 20], 2, tau=2.0, seed=3)
    path = tmp_path / "tiny.circuit.json"
    to_circuit(model).save(path)
    return path, model


@pytest.fixture
def run_dir(tmp_path):
    model = random_model(6, [40, 20], 2, tau=2.0, seed=4)
    folder = tmp_path / "run"
    folder.mkdir()
    save_model(model, folder / "model", spec=model_spec(model), config={}, step=1, input_layout={"kind": "t"})
    return folder, model


def _eval_blif(path, bits):
    """Evaluate a BLIF file of .names tables in order (what the exporters write)."""
    values, outputs, table = {}, [], None
    x = np.asarray(bits, dtype=bool)
    lines = path.read_text().replace("\\\n", " ").splitlines()
    tables = []
    for line in lines:
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0] == ".inputs":
            for i, name in enumerate(parts[1:]):
                values[name] = x[:, i]
        elif parts[0] == ".outputs":
            outputs = parts[1:]
        elif parts[0] == ".names":
            table = (parts[1:-1], parts[-1], [])
            tables.append(table)
        elif parts[0].startswith("."):
            table = None
        elif table is not None:
            table[2].append(parts)
    for ins, out, rows in tables:
        on = np.zeros(len(x), dtype=bool)
        for row in rows:
            cube = row[0] if ins else ""
            hit = np.ones(len(x), dtype=bool)
            for name, ch in zip(ins, cube):
                if ch != "-":
                    hit &= values[name] == (ch == "1")
            on |= hit
        values[out] = on
    return np.stack([values[o] for o in outputs], 1)


def test_every_format_from_a_circuit_file(circuit_file, tmp_path, capsys):
    path, model = circuit_file
    x = all_bits(6)
    circuit = to_circuit(model)
    assert main(["export", "verilog", str(path), str(tmp_path / "t.v"), "--pipeline", "1", "--argmax",
                 "--module", "tiny", "--no-simplify"]) == 0
    out = capsys.readouterr().out
    assert "latency: " in out and "registers:" in out and "sidecar:" in out
    assert (tmp_path / "t.v").read_text() == generate_verilog(circuit, module="tiny", pipeline=1, argmax=True)[0]
    assert main(["export", "aiger", str(path), str(tmp_path / "t.aig"), "--counts", "--argmax"]) == 0
    assert "(incl. class counts and argmax)" in capsys.readouterr().out
    values = read_aiger(tmp_path / "t.aig").evaluate(x)
    k = circuit.n_outputs
    assert np.array_equal(values[:, :k], evaluate_outputs(circuit, x))
    assert np.array_equal(values[:, -1], group_counts(circuit, x).argmax(1) == 1)
    assert main(["export", "blif", str(path), str(tmp_path / "t.blif"), "--style", "aig", "--no-simplify"]) == 0
    assert "(blif)" in capsys.readouterr().out
    assert np.array_equal(_eval_blif(tmp_path / "t.blif", x), evaluate_outputs(circuit, x))
    assert main(["export", "c", str(path), str(tmp_path / "c"), "--name", "clinet"]) == 0
    assert "clinet.c" in capsys.readouterr().out and (tmp_path / "c" / "clinet.h").exists()


def test_exports_of_a_run_folder_are_its_model(run_dir, tmp_path, capsys):
    folder, model = run_dir
    assert main(["export", "aiger", str(folder), str(tmp_path / "m.aag"), "--counts"]) == 0
    x = all_bits(6)
    values = read_aiger(tmp_path / "m.aag").evaluate(x)
    counts_bits = values[:, 20:].reshape(len(x), 2, -1)
    counts = (counts_bits * (1 << np.arange(counts_bits.shape[-1]))).sum(-1)
    assert np.array_equal(counts, model_counts(model, x))


def test_cells_export_and_the_bits_head(tmp_path, capsys):
    c = simplify(random_cell_circuit(7, 60, 8, k=2, seed=5, cells=0.3))
    path = tmp_path / "cells.circuit.safetensors"  # the binary container is a circuit file too
    c.save(path)
    x = all_bits(7)
    assert main(["export", "aiger", str(path), str(tmp_path / "c.aag")]) == 0
    assert np.array_equal(read_aiger(tmp_path / "c.aag").evaluate(x), evaluate_outputs(c, x))
    assert main(["export", "blif", str(path), str(tmp_path / "c.blif")]) == 0
    assert np.array_equal(_eval_blif(tmp_path / "c.blif", x), evaluate_outputs(c, x))


@pytest.mark.parametrize("argv, message, code", [
    (["export", "aiger", "{missing}", "{out}.aig"], "does not exist", 3),
    (["export", "aiger", "{circuit}", "{out}.xyz"], "cannot tell the AIGER format", 2),
    (["export", "verilog", "{circuit}", "{out}.v", "--pipeline", "-1"], "pipeline=-1", 2),
    (["export", "verilog", "{circuit}", "{circuit}"], "is the MODEL file", 2),
    (["export", "c", "{circuit}", "{out}", "--name", "int"], "C keyword", 2),
])
def test_bad_export_arguments_are_one_line(circuit_file, tmp_path, capsys, argv, message, code):
    path, _ = circuit_file
    argv = [a.format(missing=tmp_path / "missing.json", circuit=path, out=tmp_path / "out") for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith(f"diffgates export {argv[1]}: error: ") and message in err and len(err.splitlines()) == 1


@needs_iverilog
def test_verify_verilog(circuit_file, tmp_path, capsys):
    path, _ = circuit_file
    assert main(["verify-verilog", str(path), "--vectors", "40", "--pipeline", "1"]) == 0
    assert "bit-exact: 40/40" in capsys.readouterr().out
    np.save(tmp_path / "bits.npy", all_bits(6))
    (tmp_path / "bits.txt").write_text("010101\n1 1 1 0 0 0\n\n001100\n")
    assert main(["verify-verilog", str(path), "--dataset-bits", str(tmp_path / "bits.npy")]) == 0
    assert "64/64" in capsys.readouterr().out
    assert main(["verify-verilog", str(path), "--dataset-bits", str(tmp_path / "bits.txt"), "--vectors", "2"]) == 0
    assert "2/2" in capsys.readouterr().out


@needs_iverilog
def test_verify_verilog_of_a_bits_head(tmp_path, capsys):
    c = random_cell_circuit(5, 40, 6, k=1, seed=2, cells=0.2).replace(head=__import__("diffgates").Head.bits())
    path = tmp_path / "bits.json"
    c.save(path)
    assert main(["verify-verilog", str(path), "--vectors", "32"]) == 0
    assert "bit-exact: 32/32" in capsys.readouterr().out


def test_verify_verilog_bad_input(circuit_file, tmp_path, capsys):
    path, _ = circuit_file
    (tmp_path / "bad.txt").write_text("010101\n01x101\n")
    assert main(["verify-verilog", str(path), "--dataset-bits", str(tmp_path / "bad.txt")]) == 2
    assert "line 2: 'x' is not a bit" in capsys.readouterr().err
    np.save(tmp_path / "wide.npy", np.zeros((3, 5), dtype=np.uint8))
    assert main(["verify-verilog", str(path), "--dataset-bits", str(tmp_path / "wide.npy")]) == 2
    assert "(N >= 1, 6)" in capsys.readouterr().err
    assert main(["verify-verilog", str(path), "--timeout", "0"]) == 2
    assert "timeout" in capsys.readouterr().err


@needs_iverilog
@pytest.mark.skipif(not (SHARED_DATA / "uci" / "monk").is_dir(), reason=f"no dataset files in {SHARED_DATA}")
def test_verify_verilog_on_dataset_test_images(tmp_path, capsys):
    path = tmp_path / "monk.json"
    to_circuit(random_model(17, [40, 24], 2, 3.0, seed=5)).save(path)  # MONK-1 has 17 input bits
    assert main(["verify-verilog", str(path), "--dataset", "monk1", "--data-dir", str(SHARED_DATA),
                 "--vectors", "100"]) == 0
    assert "bit-exact: 100/100" in capsys.readouterr().out
    both = ["--dataset", "monk1", "--dataset-bits", str(tmp_path / "x.npy")]
    assert main(["verify-verilog", str(path), *both]) == 2
    assert "not both" in capsys.readouterr().err

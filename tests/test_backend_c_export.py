"""Tests of the standalone C export (``diffgates.backends.c.export`` and ``diffgates export c``).

The exported files are compiled with the system C compiler (``cc -std=c99 -Wall -Wextra -Werror``) and
run: the example program's predictions and a small test program's counts (direct and through the
packed API) must equal the numpy evaluator's bit for bit.

Golden files: ``tests/golden/c_tiny/`` holds the exact export of a fixed 6-input circuit that uses all
16 gates (portable words, straight-line layout), so a refactor of the generator shows as a diff.
After an intended change, regenerate and review the diff:

    DIFFGATES_UPDATE_GOLDEN=1 PYTHONPATH=src python -m pytest tests/test_backend_c_export.py -k golden

Run: ``PYTHONPATH=src python -m pytest tests/test_backend_c_export.py -q``
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from circuit_cases import all_bits, check_golden, random_bits, random_model
from diffgates import cli, gates
from diffgates._native import compiler, compiler_unavailable_reason
from diffgates.ir import Circuit, group_counts, predict
from diffgates.frontend import to_circuit
from diffgates.backends.c.engine import cpu_flags
from diffgates.backends.c.export import export_c

pytestmark = pytest.mark.skipif(compiler_unavailable_reason() is not None,
                                reason=f"no C compiler: {compiler_unavailable_reason()}")

GOLDEN = Path(__file__).parent / "golden" / "c_tiny"
STRICT = ["-std=c99", "-O1", "-Wall", "-Wextra", "-Werror"]
EXPORT_ISAS = ["portable"] + (["avx2"] if "avx2" in cpu_flags() else [])


def tiny_circuit() -> Circuit:
    """6 inputs, one gate of each of the 16 kinds (ids 0..15 in order), 2 classes of 4 outputs."""
    a = [0, 0, 1, 2, 3, 4, 5, 7, 9, 11, 13, 13, 16, 17, 18, 0]
    b = [0, 1, 2, 3, 4, 5, 0, 8, 10, 12, 14, 15, 0, 12, 19, 0]
    outputs = [20, 19, 6, 0, 21, 17, 15, 14]  # a constant and an input bit among them
    return Circuit(n_inputs=6, ops=list(range(gates.NUM_GATES)), a=a, b=b, outputs=outputs, num_classes=2,
                   tau=2.0, input_layout={"kind": "bits", "names": [f"x{i}" for i in range(6)]})


def _build(folder: Path, name: str, isa: str, main: str = "example_main.c", exe: str = "example") -> Path:
    flags = STRICT + (["-mavx2"] if isa == "avx2" else [])
    cmd = [compiler(), *flags, "-o", str(folder / exe), str(folder / main), str(folder / f"{name}.c")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}"
    return folder / exe


def _run_example(exe: Path, x: np.ndarray) -> np.ndarray:
    text = "\n".join(" ".join(str(int(v)) for v in row) for row in x) + "\n"
    proc = subprocess.run([str(exe)], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return np.array([int(v) for v in proc.stdout.split()], dtype=np.int64)


# A test program for the counts and packed APIs: reads n and n rows of bits, prints counts twice.
_COUNTS_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "NAME.h"
int main(void) {
    size_t n, i, j;
    unsigned char *x;
    int32_t *counts;
    uint64_t *packed;
    int v;
    if (scanf("%lu", (unsigned long *)&n) != 1) return 2;
    x = malloc(n * NAME_UP_NUM_INPUTS + 1);
    counts = malloc(n * NAME_UP_NUM_CLASSES * sizeof *counts + 1);
    packed = malloc(((n + NAME_UP_BLOCK - 1) / NAME_UP_BLOCK) * NAME_UP_NUM_INPUTS * NAME_UP_LANES * 8 + 8);
    for (i = 0; i < n * NAME_UP_NUM_INPUTS; ++i) {
        if (scanf("%d", &v) != 1) return 2;
        x[i] = (unsigned char)v;
    }
    if (NAME_counts(x, n, counts) != 0) return 3;
    for (i = 0; i < n * NAME_UP_NUM_CLASSES; ++i) printf("%ld ", (long)counts[i]);
    printf("\n");
    if (NAME_pack(x, n, packed) != 0 || NAME_counts_packed(packed, n, counts) != 0) return 3;
    for (j = 0; j < n * NAME_UP_NUM_CLASSES; ++j) printf("%ld ", (long)counts[j]);
    printf("\n");
    return NAME_cpu_supported() ? 0 : 4;
}
"""


def _run_counts(folder: Path, name: str, isa: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    (folder / "counts_main.c").write_text(_COUNTS_MAIN.replace("NAME_UP", name.upper()).replace("NAME", name))
    exe = _build(folder, name, isa, main="counts_main.c", exe="counts")
    text = f"{x.shape[0]}\n" + "\n".join(" ".join(map(str, row)) for row in x.tolist()) + "\n"
    proc = subprocess.run([str(exe)], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    direct, packed = (np.array(line.split(), dtype=np.int64) for line in proc.stdout.strip().split("\n"))
    return direct.reshape(x.shape[0], -1), packed.reshape(x.shape[0], -1)


def test_golden(tmp_path):
    paths = export_c(tiny_circuit(), tmp_path, name="tiny", isa="portable", layout="code")
    assert [p.name for p in paths] == ["tiny.h", "tiny.c", "example_main.c", "Makefile"]
    for path in paths:
        check_golden(path.read_text(), GOLDEN / path.name)


def test_golden_export_runs_exhaustively(tmp_path):
    circuit = tiny_circuit()
    for path in GOLDEN.iterdir():
        (tmp_path / path.name).write_text(path.read_text())
    x = all_bits(6)
    assert np.array_equal(_run_example(_build(tmp_path, "tiny", "portable"), x), predict(circuit, x))
    direct, packed = _run_counts(tmp_path, "tiny", "portable", x)
    assert np.array_equal(direct, group_counts(circuit, x)) and np.array_equal(packed, direct)
    header = (tmp_path / "tiny.h").read_text()
    assert '"names": ["x0", "x1"' in header and "int tiny_counts(" in header


@pytest.mark.parametrize("layout", ["code", "table"])
@pytest.mark.parametrize("isa", EXPORT_ISAS)
def test_export_compiles_and_matches_reference(tmp_path, isa, layout):
    model = random_model(40, [200, 150], k=5, tau=4.0, seed=3)
    circuit = to_circuit(model)
    export_c(circuit, tmp_path, name="net", isa=isa, layout=layout)
    for n in (1, 63, 65, 300):
        x = random_bits(n, 40, seed=n)
        assert np.array_equal(_run_example(_build(tmp_path, "net", isa), x), predict(circuit, x)), f"N={n}"
    x = random_bits(157, 40, seed=5)
    direct, packed = _run_counts(tmp_path, "net", isa, x)
    assert np.array_equal(direct, group_counts(circuit, x)) and np.array_equal(packed, direct)


def test_makefile_builds_the_example(tmp_path):
    if subprocess.run(["make", "--version"], capture_output=True).returncode != 0:
        pytest.skip("make is not installed")
    export_c(tiny_circuit(), tmp_path, name="tiny_make")
    proc = subprocess.run(["make", "-C", str(tmp_path), f"CC={compiler()}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    x = all_bits(6)
    assert np.array_equal(_run_example(tmp_path / "example", x), predict(tiny_circuit(), x))


def _sanitized_build(folder: Path, name: str) -> Path:
    """The example built with AddressSanitizer (leaks included) and UBSan, or the plain build without them."""
    cmd = [compiler(), *STRICT, "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-o",
           str(folder / "example_asan"), str(folder / "example_main.c"), str(folder / f"{name}.c")]
    if subprocess.run(cmd, capture_output=True).returncode == 0:
        return folder / "example_asan"
    return _build(folder, name, "portable")


@pytest.mark.parametrize("text, message", [
    ("0 1 0\n", "line 1: 3 bits, expected 6"),
    ("010101\n01x101\n", "line 2: character 120 is not a bit"),  # never silently skipped
    ("0101010\n", "line 1: more than 6 bits"),
    ("010101\n0101\n" + "010101\n" * 3000, "line 2: 4 bits, expected 6"),  # after the buffer grew: freed too
])
def test_example_rejects_malformed_lines_without_leaking(tmp_path, text, message):
    export_c(tiny_circuit(), tmp_path, name="tiny")
    exe = _sanitized_build(tmp_path, "tiny")
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:exitcode=99", "UBSAN_OPTIONS": "halt_on_error=1"}
    proc = subprocess.run([str(exe)], input=text, capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr  # 99 would be a leak or a sanitizer error
    proc = subprocess.run([str(exe), str(tmp_path / "missing.txt")], capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "missing.txt" in proc.stderr


def test_cli_exports_a_circuit_file(tmp_path, capsys):
    circuit = tiny_circuit()
    circuit.save(tmp_path / "tiny.circuit.json")
    out = tmp_path / "out"
    status = cli.main(["export", "c", str(tmp_path / "tiny.circuit.json"), str(out), "--name", "clinet",
                       "--no-simplify"])
    assert status == 0 and "clinet.c" in capsys.readouterr().out
    x = all_bits(6)
    assert np.array_equal(_run_example(_build(out, "clinet", "portable"), x), predict(circuit, x))


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="2net"), "C identifier"),
    (dict(name="int"), "C keyword"),
    (dict(name="dg_net"), "dg_"),
    (dict(isa="neon"), "isa"),
    (dict(layout="graph"), "layout"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        export_c(tiny_circuit(), tmp_path, **kwargs)

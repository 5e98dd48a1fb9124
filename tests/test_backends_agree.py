"""One circuit with a popcount/threshold cell feeding later gates, run by every backend: the numpy
reference, the C engine (both layouts), the GPU engine (Triton's interpreter on CPU), the AIGER lowering
and the Verilog simulation (Icarus) all give the same class counts, bit for bit.

Run: python -m pytest tests/test_backends_agree.py -q
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("TRITON_INTERPRET", "1")  # before the Triton kernels are first imported

from circuit_cases import all_bits  # noqa: E402
from diffgates import gates  # noqa: E402
from diffgates.backends import ENGINES, compile_circuit  # noqa: E402
from diffgates.backends.engine import CircuitEngine  # noqa: E402
from diffgates.ir import THRESHOLD, Circuit, evaluate_outputs, group_counts, predict  # noqa: E402


def binary_neuron_circuit() -> Circuit:
    """6 inputs; two binary neurons (XNOR-popcount against a threshold) feeding gates and each other.

    n0 = [x0 + ~x1 + x2 + x3 + ~x4 >= 3]       (a neuron: negated literals are -1 weights)
    n1 = [x1 + x2 + ~x5 + x5 + x0 + x0 >= 4]   (a repeated literal counts twice)
    n2 = [n0 + x3 + ~n1 >= 2]                  (a neuron counting the other neurons)
    g  = n0 XOR x5, h = n2 AND NOT g, outputs: 2 classes of 2
    """
    n_in = 6
    rows = [[0, 3, 4, 6, 9], [2, 4, 11, 10, 0, 0], [2 * 6, 6, 2 * 7 + 1]]
    ptr = np.cumsum([0] + [len(r) for r in rows])
    ops = [THRESHOLD, THRESHOLD, THRESHOLD, gates.XOR, gates.A_AND_NOT_B]
    a = [0, 1, 2, 6, 8]
    b = [3, 4, 2, 5, 9]
    return Circuit(n_inputs=n_in, ops=ops, a=a, b=b, outputs=[6, 9, 10, 8], num_classes=2, tau=1.0,
                   popcount_ptr=ptr, popcount_lits=np.concatenate(rows))


def test_reference_follows_the_definition():
    c = binary_neuron_circuit()
    x = all_bits(6)
    bits = evaluate_outputs(c, x)
    n0 = (x[:, 0] + (1 - x[:, 1]) + x[:, 2] + x[:, 3] + (1 - x[:, 4])) >= 3
    n1 = (x[:, 1] + x[:, 2] + 1 + 2 * x[:, 0]) >= 4
    n2 = (n0.astype(int) + x[:, 3] + (1 - n1)) >= 2
    g = n0 ^ x[:, 5].astype(bool)
    assert np.array_equal(bits, np.stack([n0, g, n2 & ~g, n2], 1))


@pytest.mark.parametrize("layout", ["code", "table"])
def test_c_engine(layout):
    c, x = binary_neuron_circuit(), all_bits(6)
    assert np.array_equal(compile_circuit(c, "c", layout=layout)(x), group_counts(c, x))


def test_gpu_engine_under_the_interpreter():
    pytest.importorskip("triton")
    c, x = binary_neuron_circuit(), all_bits(6)
    assert np.array_equal(compile_circuit(c, "gpu", device="cpu")(x).cpu().numpy(), group_counts(c, x))


@pytest.mark.parametrize("backend", sorted(ENGINES))
def test_every_engine_has_the_one_interface(backend):
    if backend == "gpu":
        pytest.importorskip("triton")
    c, x = binary_neuron_circuit(), all_bits(6)
    engine = compile_circuit(c, backend, **({"device": "cpu"} if backend == "gpu" else {}))
    assert isinstance(engine, CircuitEngine) and engine.backend == backend
    for name in ("__call__", "counts", "pack", "run_packed", "stats"):  # each engine's own, not the base's
        assert getattr(type(engine), name) is not getattr(CircuitEngine, name), name

    def as_numpy(t):
        return t.cpu().numpy() if hasattr(t, "cpu") else np.asarray(t)
    assert (engine.n_inputs, engine.num_classes) == (6, 2)
    assert np.array_equal(as_numpy(engine.counts(x)), group_counts(c, x))
    assert np.array_equal(as_numpy(engine.predict(x)), predict(c, x))
    assert np.array_equal(as_numpy(engine.run_packed(engine.pack(x), len(x))), group_counts(c, x))
    assert engine.stats()["backend"] == backend


def test_aiger_lowering():
    from diffgates.backends.netlist.aig import lower_to_aig

    c, x = binary_neuron_circuit(), all_bits(6)
    assert np.array_equal(lower_to_aig(c).evaluate(x), evaluate_outputs(c, x))


@pytest.mark.hw
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog is not installed")
@pytest.mark.parametrize("pipeline", [0, 1])
def test_verilog_simulation(pipeline):
    from diffgates.backends.verilog.simulate import verify_verilog

    result = verify_verilog(binary_neuron_circuit(), all_bits(6), pipeline=pipeline, simulator="iverilog")
    assert result.passed, result.failures

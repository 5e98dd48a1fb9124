"""The gate table is the single source of truth: check it against first principles.

Run: python -m pytest tests/test_gates.py -q
"""
import itertools

import numpy as np
import pytest
import torch

from diffgates import gates
from diffgates.kernels import reference

BITS = list(itertools.product((0, 1), repeat=2))


def test_canonical_order_spells_truth_table():
    # Gate g's outputs for (0,0),(0,1),(1,0),(1,1) read as binary (MSB first) equal g.
    for g in gates.GATES:
        assert int("".join(map(str, g.truth_table)), 2) == g.id
    assert [g.name for g in gates.GATES][:8] == ["FALSE", "AND", "A_AND_NOT_B", "A", "NOT_A_AND_B", "B", "XOR", "OR"]
    assert len({g.name for g in gates.GATES}) == 16


@pytest.mark.parametrize("gate", gates.GATES, ids=lambda g: g.name)
def test_relaxation_equals_truth_table_on_bits(gate):
    c0, c1, c2, c3 = gate.coeffs
    for a, b in BITS:
        assert c0 + c1 * a + c2 * b + c3 * a * b == gate(a, b)


@pytest.mark.parametrize("gate", gates.GATES, ids=lambda g: g.name)
def test_formula_matches_truth_table(gate):
    # The shared bitwise formula, rendered for numpy bool arrays, must equal the truth table.
    a = np.array([0, 0, 1, 1], dtype=bool)
    b = np.array([0, 1, 0, 1], dtype=bool)
    expr = gate.formula.format(a="a", b="b", zero="np.zeros(4, bool)", ones="np.ones(4, bool)")
    out = eval(expr, {"np": np, "a": a, "b": b})
    assert out.tolist() == [bool(v) for v in gate.truth_table]


def test_product_logic_relaxations_from_the_paper():
    # The product-logic relaxations of Petersen et al. (2022), written independently of COEFFS, on random
    # probabilities.
    a, b = np.random.default_rng(0).random((2, 50))
    relaxations = [0 * a, a * b, a - a * b, a, b - a * b, b, a + b - 2 * a * b, a + b - a * b,
                   1 - (a + b - a * b), 1 - (a + b - 2 * a * b), 1 - b, 1 - b + a * b, 1 - a, 1 - a + a * b,
                   1 - a * b, 1 + 0 * a]
    for g, expected in zip(gates.GATES, relaxations):
        c0, c1, c2, c3 = g.coeffs
        np.testing.assert_allclose(c0 + c1 * a + c2 * b + c3 * a * b, expected, atol=1e-12)


def test_transforms():
    for g in gates.GATES:
        for a, b in BITS:
            assert gates.GATES[gates.swap_inputs(g.id)](b, a) == g(a, b)
            assert gates.GATES[gates.negate(g.id)](a, b) == 1 - g(a, b)
            for na, nb in BITS:
                assert gates.GATES[gates.with_inputs_negated(g.id, na, nb)](a, b) == g(a ^ na, b ^ nb)
        assert g.uses_a == any(g(0, b) != g(1, b) for b in (0, 1))
        assert g.uses_b == any(g(a, 0) != g(a, 1) for a in (0, 1))


def test_evaluate_bits_vectorised():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 16, 1000)
    a, b = rng.integers(0, 2, (2, 1000)).astype(bool)
    expected = [gates.GATES[i](x, y) for i, x, y in zip(ids, a, b)]
    assert gates.evaluate_bits(ids, a, b).tolist() == [bool(v) for v in expected]


def test_mixture_collapses_to_four_coefficients():
    # softmax mixture of 16 relaxations == c0 + c1 a + c2 b + c3 ab with mixed coefficients.
    torch.manual_seed(0)
    w = torch.randn(37, 16, dtype=torch.float64)
    x = torch.rand(9, 20, dtype=torch.float64)
    conn = torch.randint(0, 20, (2, 37))
    for training in (True, False):
        full = reference.logic_layer_reference(x, w, conn, training)
        coeffs = reference.gate_coefficients(w, training)
        collapsed = reference.logic_layer_coefficients_reference(x, coeffs, conn)
        torch.testing.assert_close(full, collapsed, atol=1e-12, rtol=0)  # float64 rounding only

"""The XNOR-popcount engine against its numpy reference: awkward sizes, every ISA this machine runs, threads,
constant and tied thresholds, a hand-computed case, and the errors for bad programs and inputs.

Run: python -m pytest tests/test_xnor_engine.py -q
"""
from __future__ import annotations

import numpy as np
import pytest

from diffgates.backends.c.engine import cpu_flags
from diffgates.backends.xnor import (ISAS, OrPool, XnorConv, XnorDense, XnorOutput, XnorProgram, compile_xnor,
                                     reference_predict, reference_scores)

RUNNABLE = [name for name, (_, features) in ISAS.items() if all(f in cpu_flags() for f in features)]


def _bits(rng, *shape):
    return rng.integers(0, 2, shape).astype(np.uint8)


def _thresholds(rng, count, fan_in):
    t = rng.integers(0, fan_in + 2, count)
    t[:2] = [0, fan_in + 1][:count]  # constant outputs: always 1, never 1
    return t


def _dense_program(rng, features, widths, classes=3):
    layers, width = [], features
    for w in widths:
        layers.append(XnorDense(_bits(rng, w, width), _thresholds(rng, w, width)))
        width = w
    return XnorProgram((features,), [*layers, XnorOutput(_bits(rng, classes, width))])


def test_hand_computed_case():
    # Two inputs; hidden neuron 0 agrees with (1, 0), fires at >= 2; neuron 1 agrees with (1, 1), fires at >= 1.
    program = XnorProgram((2,), [XnorDense([[1, 0], [1, 1]], [2, 1]), XnorOutput([[1, 0], [0, 1], [1, 1]])])
    x = np.array([[0, 0], [1, 0], [1, 1]])
    # hidden: [0,0] -> (0, 0); [1,0] -> (1, 1); [1,1] -> (0, 1)
    assert reference_scores(program, x).tolist() == [[1, 1, 0], [1, 1, 2], [0, 2, 1]]
    assert reference_predict(program, x).tolist() == [0, 2, 1]
    assert np.array_equal(compile_xnor(program).scores(x), reference_scores(program, x))


@pytest.mark.parametrize("features", [1, 63, 64, 65, 157])
@pytest.mark.parametrize("widths", [[1], [63, 65], [65]])
def test_dense_programs_equal_the_reference(features, widths):
    rng = np.random.default_rng(features * 7 + len(widths))
    program = _dense_program(rng, features, widths)
    x = _bits(rng, 157, features)
    expected = reference_scores(program, x)
    for isa in RUNNABLE:
        engine = compile_xnor(program, isa=isa)
        for batch in (0, 1, 63, 65, 157):
            assert np.array_equal(engine.scores(x[:batch]), expected[:batch]), (isa, batch)
        assert np.array_equal(engine.predict(x), expected.argmax(1))


@pytest.mark.parametrize("channels", [1, 3, 64, 65])
@pytest.mark.parametrize("kernel,stride,pool", [((3, 3), (1, 1), ((2, 2), (2, 2))), ((1, 1), (2, 2), None),
                                                ((2, 3), (2, 1), ((3, 3), (1, 1)))])
def test_conv_programs_equal_the_reference(channels, kernel, stride, pool):
    rng = np.random.default_rng(channels)
    layers = [XnorConv(_bits(rng, 5, channels, *kernel), _thresholds(rng, 5, channels * kernel[0] * kernel[1]), stride)]
    if pool:
        layers.append(OrPool(*pool))
    layers.append(XnorConv(_bits(rng, 65, 5, 1, 1), _thresholds(rng, 65, 5)))
    shape = (channels, 9, 8)
    flat = _flat_size(shape, layers)
    program = XnorProgram(shape, [*layers, XnorDense(_bits(rng, 63, flat), _thresholds(rng, 63, flat)),
                                  XnorOutput(_bits(rng, 4, 63))])
    x = _bits(rng, 65, *shape)
    expected = reference_scores(program, x)
    for isa in RUNNABLE:
        one, two = compile_xnor(program, threads=1, isa=isa), compile_xnor(program, threads=2, isa=isa)
        assert np.array_equal(one.scores(x), expected) and np.array_equal(two.scores(x.reshape(65, -1)), expected)


def _flat_size(shape, layers):
    for layer in layers:
        shape = layer.output_shape(shape)
    return int(np.prod(shape))


def test_ties_count_as_reaching_the_threshold():
    # Input all ones, weights half ones: exactly n/2 agreements, equal to the threshold -> the bit is 1.
    n = 130
    w = np.zeros((2, n), np.uint8)
    w[:, : n // 2] = 1
    program = XnorProgram((n,), [XnorDense(w, [n // 2, n // 2 + 1]), XnorOutput([[1, 0], [0, 1]])])
    x = np.ones((1, n), np.uint8)
    assert reference_scores(program, x).tolist() == [[2, 0]]  # hidden bits (1, 0): class 0 agrees on both
    assert np.array_equal(compile_xnor(program).scores(x), reference_scores(program, x))


def test_bad_programs_are_named():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="0/1 bits, found 2"):
        XnorDense([[0, 2]], [1])
    with pytest.raises(ValueError, match=r"thresholds must lie in \[0, 3\]"):
        XnorDense([[0, 1]], [4])
    with pytest.raises(ValueError, match="last layer must be an XnorOutput"):
        XnorProgram((2,), [XnorDense([[0, 1]], [1])])
    with pytest.raises(ValueError, match="layer 0: an XnorOutput must be the last"):
        XnorProgram((2,), [XnorOutput([[0, 1]]), XnorOutput([[0, 1]])])
    with pytest.raises(ValueError, match=r"layer 1 \(XnorDense\): expects 3 features"):
        XnorProgram((2,), [XnorDense(_bits(rng, 4, 2), [1] * 4), XnorDense(_bits(rng, 1, 3), [1]),
                           XnorOutput([[1]])])
    with pytest.raises(ValueError, match="needs a \\(C, H, W\\) map"):
        XnorProgram((4,), [XnorDense(_bits(rng, 4, 4), [1] * 4), OrPool(2), XnorOutput(_bits(rng, 2, 4))])
    with pytest.raises(ValueError, match="isa='sse9' is not known"):
        compile_xnor(_dense_program(rng, 4, [2]), isa="sse9")


def test_bad_inputs_are_named():
    rng = np.random.default_rng(1)
    engine = compile_xnor(_dense_program(rng, 5, [3]))
    with pytest.raises(ValueError, match=r"found 0\.5 at index \(1, 2\)"):
        x = np.zeros((2, 5))
        x[1, 2] = 0.5
        engine.scores(x)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 5\)"):
        engine.scores(np.zeros((2, 6)))
    assert engine.scores(np.zeros((0, 5))).shape == (0, 3)
    assert engine.stats()["isa"] == engine.isa

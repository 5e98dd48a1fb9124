"""Conv logic nets as circuits: LogicConv2d + OrPool2d extracted to the IR, simplified, compiled to C,
equal to the eval-mode model bit for bit.

Run: python -m pytest tests/test_conv_circuits.py -q
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diffgates import GroupSum, LogicConv2d, LogicLayer, OrPool2d, gates, simplify, to_circuit
from diffgates.frontend import ExtractionError
from diffgates.ir.evaluate import group_counts
from diffgates.kernels import cpu


def _net(parametrization="softmax16", seed=0):
    torch.manual_seed(seed)
    opts = dict(init="gaussian", parametrization=parametrization)
    return torch.nn.Sequential(
        LogicConv2d(2, 4, 3, padding=1, **opts), OrPool2d(2),           # 2x9x7 -> 4x9x7 -> 4x4x3
        LogicConv2d(4, 6, (2, 3), stride=2, padding=2, depth=2, **opts),  # -> 6x4x3
        OrPool2d(2, stride=1),                                           # overlapping windows -> 6x3x2
        torch.nn.Flatten(), LogicLayer(36, 30, **opts), GroupSum(3, tau=1.0)).eval()


@pytest.mark.parametrize("parametrization", ["softmax16", "iwp", "walsh"])
def test_extracted_circuit_equals_the_eval_model(parametrization):
    model = _net(parametrization)
    bits = torch.rand(157, 2, 9, 7) > 0.5
    with torch.no_grad():
        expected = model(bits.float()).numpy()  # tau 1: class score = the block's popcount
    circuit = to_circuit(model, input_shape=(2, 9, 7))
    flat = bits.reshape(157, -1).numpy()
    assert np.array_equal(group_counts(circuit, flat).astype(np.float64), expected)
    assert np.array_equal(group_counts(simplify(circuit), flat).astype(np.float64), expected)
    # Gate count as the conv paper counts: every position of every tree, 3 ORs per 2x2 window.
    widths = circuit.meta["layer_widths"]
    assert widths == [4 * 7 * 9 * 7, 4 * 4 * 3 * 3, 6 * 3 * 4 * 3, 6 * 3 * 2 * 3, 30]


@pytest.mark.skipif(cpu.unavailable_reason() is not None, reason="no C compiler")
def test_compiled_engine_equals_the_eval_model():
    import diffgates
    model = _net(seed=1)
    model.diffgates_input_shape = (2, 9, 7)
    bits = torch.rand(65, 2, 9, 7) > 0.5
    with torch.no_grad():
        expected = model(bits.float()).numpy()
    engine = diffgates.compile(model)  # extracted with the model's diffgates_input_shape, simplified
    counts = engine.counts(bits.reshape(65, -1).numpy())
    assert np.array_equal(np.asarray(counts, dtype=np.float64), expected)
    assert np.array_equal(engine.predict(bits.reshape(65, -1).numpy()), expected.argmax(1))


def test_conv_first_needs_the_input_shape():
    with pytest.raises(ExtractionError, match=r"pass to_circuit\(\.\.\., input_shape=\(C, H, W\)\)"):
        to_circuit(_net())
    with pytest.raises(ExtractionError, match=r"expects a \(2, H, W\) feature map, but the module before it produces "
                                              r"shape \(3, 9, 7\)"):
        to_circuit(_net(), input_shape=(3, 9, 7))


def test_zero_padding_is_one_constant_gate():
    torch.manual_seed(3)
    layer = LogicConv2d(1, 1, 3, padding=1, depth=1, init="gaussian").eval()
    with torch.no_grad():
        layer.weights.zero_()
        layer.weights[0, 0, gates.A] = 1.0  # the tree is the pass-through of its first leaf
    model = torch.nn.Sequential(layer)
    circuit = to_circuit(model, input_shape=(1, 4, 4))
    assert int((circuit.ops == gates.FALSE).sum()) == 1

"""LogicConv2d and OrPool2d (diffgates.nn.logic_conv): the fused kernels against the plain reference,
the leaf sampling's guarantees, state-dict checks and errors.

Run: python -m pytest tests/test_logic_conv.py -q
"""
from __future__ import annotations

import os

import pytest
import torch

from diffgates import LogicConv2d, OrPool2d, kernels
from diffgates.kernels import cpu
from diffgates.kernels import parametrizations as param
from diffgates.nn import tree_connections

os.environ.setdefault("TRITON_INTERPRET", "1")  # the Triton kernels on CPU tensors, for the 'gpu' test

TOL = {torch.float64: dict(atol=1e-11, rtol=1e-9), torch.float32: dict(atol=3e-5, rtol=2e-4)}
needs_c = pytest.mark.skipif(cpu.unavailable_reason() is not None, reason="no C compiler")

# (N, in_channels, out_channels, kernel_size, stride, padding, H, W, depth): awkward sizes, strides, pads.
SHAPES = [(1, 1, 1, 1, 1, 0, 1, 1, 1), (63, 1, 3, 5, 1, 0, 9, 9, 3), (65, 3, 5, 3, 2, 1, 7, 8, 2),
          (2, 4, 7, (3, 2), 1, 2, 6, 5, 3), (5, 6, 2, 3, 3, 1, 11, 10, 4)]


def _run(layer, x, upstream, implementation):
    layer.implementation = implementation
    layer.zero_grad(set_to_none=True)
    xi = x.clone().requires_grad_()
    torch.manual_seed(3)  # the Gumbel samplings: both paths draw the same noise
    y = layer(xi)
    y.backward(upstream)
    return y.detach().contiguous(), xi.grad, layer.weights.grad


@needs_c
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_fused_matches_reference(shape, dtype):
    n, cin, cout, k, stride, padding, height, width, depth = shape
    torch.manual_seed(sum(map(hash, map(str, shape))) % 1000)
    layer = LogicConv2d(cin, cout, k, depth=depth, stride=stride, padding=padding, init="gaussian").to(dtype)
    x = torch.rand(n, cin, height, width, dtype=dtype)
    _, h_out, w_out = layer.output_shape(height, width)
    upstream = torch.randn(n, cout, h_out, w_out, dtype=dtype)
    fast, ref = _run(layer, x, upstream, "cpu"), _run(layer, x, upstream, "reference")
    assert fast[0].shape == (n, cout, h_out, w_out)
    for f, r in zip(fast, ref):
        torch.testing.assert_close(f, r, **TOL[dtype])


@needs_c
@pytest.mark.parametrize("variant", [(p, s) for p in param.PARAMETRIZATIONS for s in param.SAMPLINGS],
                         ids=lambda v: "-".join(v))
def test_every_parametrization_and_sampling(variant):
    parametrization, sampling = variant
    torch.manual_seed(1)
    layer = LogicConv2d(3, 4, 3, padding=1, parametrization=parametrization, sampling=sampling, init="gaussian",
                        gumbel_tau=0.7).double()
    with torch.no_grad():
        layer.weights.mul_(3)  # far from ties, so the hard samplings agree across paths
    x = torch.rand(7, 3, 5, 6, dtype=torch.float64)
    upstream = torch.randn(7, 4, 5, 6, dtype=torch.float64)
    for f, r in zip(_run(layer, x, upstream, "cpu"), _run(layer, x, upstream, "reference")):
        torch.testing.assert_close(f, r, **TOL[torch.float64])


def test_eval_mode_is_the_discrete_tree_on_bits():
    torch.manual_seed(4)
    layer = LogicConv2d(2, 3, 3, padding=1, init="gaussian").eval()
    bits = (torch.rand(9, 2, 5, 5) > 0.5).float()
    y = layer(bits)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    # By hand: evaluate each tree's gates on the padded bits at one position.
    from diffgates import gates
    ids = layer.gate_ids()
    xp = torch.nn.functional.pad(bits, (1, 1, 1, 1)).bool().numpy()
    for o in range(3):
        for i, j in ((0, 0), (2, 3), (4, 4)):
            values = [xp[:, c, i + dy, j + dx] for c, dy, dx in layer.connections[o].tolist()]
            gate = 0
            while len(values) > 1:
                nxt = []
                for a, b in zip(values[0::2], values[1::2]):
                    nxt.append(gates.evaluate_bits(ids[o, gate].item(), a, b))
                    gate += 1
                values = nxt
            assert (y[:, o, i, j].numpy() == values[0]).all()


def test_leaf_sampling_guarantees():
    gen = torch.Generator().manual_seed(0)
    conn = tree_connections(10, 200, (3, 3), 3, 2, generator=gen)
    assert conn.shape == (200, 8, 3) and conn.dtype == torch.int64
    assert all(len(set(row[:, 0].tolist())) == 2 for row in conn)  # exactly 2 channels per tree
    assert conn[..., 1:].min() >= 0 and conn[..., 1:].max() <= 2
    first, second = conn[:, 0::2], conn[:, 1::2]
    assert not (first == second).all(-1).any()  # no level-0 gate reads one leaf twice
    again = tree_connections(10, 200, (3, 3), 3, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(conn, again)
    one = tree_connections(1, 5, (1, 1), 3, 2)  # one channel, one position: every leaf is the same
    assert (one == 0).all()


def test_state_dict_round_trip_and_checks():
    layer = LogicConv2d(3, 4, 3, padding=1)
    other = LogicConv2d(3, 4, 3, padding=1)
    other.load_state_dict(layer.state_dict())
    assert torch.equal(other.connections, layer.connections) and torch.equal(other.gate_ids(), layer.gate_ids())
    bad = layer.state_dict()
    bad["connections"] = bad["connections"].clone()
    bad["connections"][0, 0, 1] = 3
    with pytest.raises(ValueError, match=r"leaf dy values in \[0, 3\], outside \[0, 2\]"):
        other.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"'weights'\] has shape \(4, 7, 4\), this layer expects \(4, 7, 16\)"):
        other.load_state_dict(LogicConv2d(3, 4, 3, parametrization="iwp").state_dict())
    with pytest.raises(ValueError, match=r"'connections'\] has shape \(4, 4, 3\)"):
        other.load_state_dict(LogicConv2d(3, 4, 3, depth=2).state_dict())


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"kernel_size must be a positive integer or a pair of them, got kernel_size=0"):
        LogicConv2d(1, 2, 0)
    with pytest.raises(ValueError, match=r"depth must be an integer >= 1, got depth=0"):
        LogicConv2d(1, 2, 3, depth=0)
    with pytest.raises(ValueError, match=r"padding must be an integer >= 0, got padding=-1"):
        LogicConv2d(1, 2, 3, padding=-1)
    layer = LogicConv2d(2, 2, 5)
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 2, H, W\), got shape \(3, 1, 8, 8\)"):
        layer(torch.rand(3, 1, 8, 8))
    with pytest.raises(ValueError, match=r"needs an input of at least 5 x 5, got 4 x 9"):
        layer(torch.rand(3, 2, 4, 9))
    with pytest.raises(ValueError, match=r"OrPool2d\(kernel_size=\(2, 2\)\) expects input of shape \(N, C, H, W\)"):
        OrPool2d(2)(torch.rand(3, 1, 1, 4))


def test_or_pool_is_or_on_bits_and_routes_the_gradient_to_one_maximum():
    bits = (torch.rand(4, 3, 6, 7) > 0.6).float()
    pooled = OrPool2d(2)(bits)
    assert pooled.shape == (4, 3, 3, 3)
    expected = bits[:, :, :6, :6].reshape(4, 3, 3, 2, 3, 2).amax((3, 5))
    assert torch.equal(pooled, expected)
    x = torch.tensor([[[[0.5, 0.5], [0.2, 0.5]]]], requires_grad=True)
    OrPool2d(2)(x).sum().backward()
    assert x.grad.sum() == 1 and x.grad[0, 0, 0, 0] == 1  # ties: the first maximum, as max_pool2d


def test_kernels_dispatch_reference_alias():
    layer = LogicConv2d(1, 2, 3, implementation="python")
    assert layer.implementation == "reference"
    assert layer(torch.rand(2, 1, 4, 4)).shape == (2, 2, 2, 2)
    assert kernels.output_size(28, 28, (5, 5), 1, 0) == (24, 24)


@pytest.mark.skipif(kernels.unavailable_reason("gpu") is not None, reason="no triton")
def test_triton_kernels_match_the_reference():
    """The conv trees on the Triton kernels (a GPU, or the interpreter on CPU tensors)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(2)
    layer = LogicConv2d(3, 4, 3, stride=2, padding=1, init="gaussian").double().to(device)
    x = torch.rand(5, 3, 7, 6, dtype=torch.float64, device=device)
    upstream = torch.randn(5, 4, 4, 3, dtype=torch.float64, device=device)
    for f, r in zip(_run(layer, x, upstream, "gpu"), _run(layer, x, upstream, "reference")):
        torch.testing.assert_close(f, r, **TOL[torch.float64])


@pytest.mark.parametrize("implementation", ["reference"] + (["cpu"] if cpu.unavailable_reason() is None else []))
def test_fused_pool_equals_a_following_or_pool(implementation):
    torch.manual_seed(6)
    fused = LogicConv2d(3, 5, 3, padding=1, init="gaussian", pool=2, implementation=implementation).double()
    plain = LogicConv2d(3, 5, 3, padding=1, init="gaussian", implementation=implementation).double()
    plain.load_state_dict(fused.state_dict())
    x = torch.rand(9, 3, 7, 6, dtype=torch.float64)
    upstream = torch.randn(9, 5, 3, 3, dtype=torch.float64)
    y, gx, gw = _run(fused, x, upstream, implementation)
    plain.zero_grad(set_to_none=True)
    xi = x.clone().requires_grad_()
    expected = OrPool2d(2)(plain(xi))
    expected.backward(upstream)
    for f, r in ((y, expected.detach()), (gx, xi.grad), (gw, plain.weights.grad)):
        torch.testing.assert_close(f, r, **TOL[torch.float64])
    assert fused.output_shape(7, 6) == (5, 3, 3)
    with pytest.raises(ValueError, match=r"OR pool needs at least that many positions, the trees give 1 x 1"):
        LogicConv2d(1, 2, 3, pool=2)(torch.rand(2, 1, 3, 3))

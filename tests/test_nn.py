"""LogicLayer / GroupSum API: the drop-in interface, state_dict, wiring properties, grad_factor, errors.

Run: python -m pytest tests/test_nn.py -q
Runs with whatever implementation the machine picks (fused CPU kernel, or the reference fallback).
"""
from __future__ import annotations

import re
from collections import Counter

import pytest
import torch

from diffgates import GroupSum, LogicLayer
from diffgates.nn.connections import make_connections


def small_model(seed: int, implementation=None, connections="random"):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        LogicLayer(784, 160, implementation=implementation, connections=connections),
        LogicLayer(160, 160, implementation=implementation, connections=connections),
        GroupSum(k=10, tau=30))


def test_readme_example_runs_and_trains():
    # The README's example at small widths, with the original signature spelled out in full.
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        LogicLayer(784, 160, device="cpu", grad_factor=1.0, implementation=None, connections="random"),
        LogicLayer(160, 160),
        GroupSum(k=10, tau=30))
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert model(x).shape == (8, 10) and torch.isfinite(loss)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    model.eval()
    bits = (x > 0.5).float()
    scores = model(bits)  # eval mode on bits: each neuron a Boolean gate, each score a count / tau
    assert torch.equal(scores * 30, (scores * 30).round())


def test_parameters_and_buffers():
    layer = LogicLayer(65, 157)
    assert isinstance(layer.weights, torch.nn.Parameter) and layer.weights.shape == (157, 16)
    assert layer.connections.dtype == torch.int64 and layer.connections.shape == (2, 157)
    assert [n for n, _ in layer.named_parameters()] == ["weights"]
    assert set(layer.state_dict()) == {"weights", "connections"}
    a, b = layer.indices
    assert torch.equal(a, layer.connections[0]) and torch.equal(b, layer.connections[1])


@pytest.mark.parametrize("connections", ["random", "unique"])
def test_state_dict_round_trip_into_differently_seeded_model(connections):
    src, dst = small_model(0, connections=connections), small_model(1, connections=connections)
    x = torch.rand(5, 1, 28, 28)
    assert not torch.equal(src(x), dst(x))
    # The original package loses the wiring here; in ours it travels with the state_dict.
    assert not torch.equal(src[1].connections, dst[1].connections)
    dst.load_state_dict(src.state_dict())
    assert torch.equal(src[1].connections, dst[1].connections)
    for mode in (True, False):
        src.train(mode), dst.train(mode)
        assert torch.equal(src(x), dst(x))


def test_gate_ids_are_argmax():
    layer = LogicLayer(63, 65)
    with torch.no_grad():
        layer.weights.zero_()
        layer.weights[torch.arange(65), torch.arange(65) % 16] = 1.0
    assert layer.gate_ids().dtype == torch.int64
    assert torch.equal(layer.gate_ids(), torch.arange(65) % 16)
    fresh = LogicLayer(65, 157)
    assert fresh.gate_ids().shape == (157,) and torch.equal(fresh.gate_ids(), fresh.weights.argmax(-1))


@pytest.mark.parametrize("in_dim,out_dim", [(2, 1), (5, 3), (157, 79), (64, 32), (65, 157), (63, 1953)])
def test_unique_connections_properties(in_dim, out_dim):
    a, b = make_connections("unique", in_dim, out_dim, generator=torch.Generator().manual_seed(in_dim))
    assert (a != b).all(), "self pair"
    pairs = {frozenset(p) for p in zip(a.tolist(), b.tolist())}
    assert len(pairs) == out_dim, "duplicate unordered pair"
    assert 0 <= int(torch.cat([a, b]).min()) and int(torch.cat([a, b]).max()) < in_dim
    if 2 * out_dim >= in_dim:
        assert set(torch.cat([a, b]).tolist()) == set(range(in_dim)), "an input is never used"


def test_unique_connections_keep_input_locality():
    # 20x20 image, 8000 neurons (the MNIST 20x20 first layer): every pair is a row neighbour up to
    # 20 columns apart or a vertical neighbour (offset 20), never two random pixels.
    a, b = make_connections("unique", 400, 8000, generator=torch.Generator().manual_seed(0))
    offsets = (b - a).abs()
    assert int(offsets.min()) == 1 and int(offsets.max()) <= 21
    assert (offsets == 1).sum() == 399 and (offsets == 20).sum() == 380  # every neighbour pair, both ways
    # The neurons are shuffled: the first 100 are not all offset-1 pairs.
    assert (offsets[:100] != 1).any()


@pytest.mark.parametrize("in_dim,out_dim", [(1, 1), (1, 65), (157, 65), (63, 157), (65, 63), (7, 1000)])
def test_random_connections_cover_every_input(in_dim, out_dim):
    conn = make_connections("random", in_dim, out_dim, generator=torch.Generator().manual_seed(out_dim))
    counts = Counter(conn.flatten().tolist())
    assert conn.shape == (2, out_dim) and conn.dtype == torch.int64
    assert min(counts[i] for i in range(in_dim)) >= (2 * out_dim) // in_dim
    assert set(counts) <= set(range(in_dim))


def test_connections_follow_global_seed():
    torch.manual_seed(3)
    first = LogicLayer(65, 63).connections
    torch.manual_seed(3)
    assert torch.equal(first, LogicLayer(65, 63).connections)


@pytest.mark.parametrize("implementation", ["reference", None])
def test_grad_factor_scales_input_gradient_exactly(implementation):
    torch.manual_seed(0)
    one = LogicLayer(65, 157, implementation=implementation)
    two = LogicLayer(65, 157, grad_factor=2.0, implementation=implementation)
    two.load_state_dict(one.state_dict())
    x = torch.rand(63, 65, dtype=torch.float64)
    upstream = torch.randn(63, 157, dtype=torch.float64)
    grads = []
    for layer in (one, two):
        xi = x.clone().requires_grad_()
        out = layer(xi)
        out.backward(upstream)
        grads.append((out.detach(), xi.grad, layer.weights.grad))
    (o1, gx1, gw1), (o2, gx2, gw2) = grads
    assert torch.equal(o1, o2) and torch.equal(gw1, gw2)  # identity forward, logits untouched
    assert torch.equal(gx2, 2 * gx1)  # multiplying by 2 is exact in binary floating point


def test_extra_dims_are_flattened():
    layer = LogicLayer(12, 7)
    x = torch.rand(5, 3, 2, 2)
    assert torch.equal(layer(x), layer(x.reshape(5, 12)))


def test_integer_bits_are_accepted():
    layer = LogicLayer(12, 7).eval()
    bits = torch.randint(0, 2, (5, 12))
    assert torch.equal(layer(bits), layer(bits.float()))


def test_group_sum():
    head = GroupSum(k=3, tau=2.0)
    x = torch.arange(12.0).reshape(2, 6)
    assert torch.equal(head(x), torch.tensor([[0 + 1, 2 + 3, 4 + 5], [6 + 7, 8 + 9, 10 + 11]]) / 2.0)
    assert torch.equal(head(x.t().contiguous().t()), head(x))  # the kernels' feature-major outputs


def _error(exc_type, message, fn):
    with pytest.raises(exc_type, match=re.escape(message)):
        fn()


def test_errors_name_the_bad_value():
    layer = LogicLayer(12, 7)
    _error(ValueError, "expected 12 features per sample, got 13", lambda: layer(torch.rand(4, 13)))
    _error(ValueError, "got shape (12,)", lambda: layer(torch.rand(12)))
    _error(ValueError, "in_dim=5 allows at most 10 neurons, got out_dim=11",
           lambda: LogicLayer(5, 11, connections="unique"))
    _error(ValueError, "connections='sparse' is not known", lambda: LogicLayer(5, 4, connections="sparse"))
    _error(ValueError, "implementation='fpga' is not known", lambda: LogicLayer(5, 4, implementation="fpga"))
    _error(ValueError, "out_dim must be a positive integer, got out_dim=0", lambda: LogicLayer(5, 0))
    _error(ValueError, "in_dim must be a positive integer, got in_dim=-3", lambda: LogicLayer(-3, 4))
    _error(ValueError, "in_dim must be a positive integer, got in_dim=2.5", lambda: LogicLayer(2.5, 4))
    _error(ValueError, "grad_factor must be > 0, got grad_factor=0", lambda: LogicLayer(5, 4, grad_factor=0))
    _error(ValueError, "GroupSum(k=3) needs the last dimension divisible by 3, got input of shape (2, 7)",
           lambda: GroupSum(3)(torch.rand(2, 7)))
    _error(ValueError, "k must be a positive integer", lambda: GroupSum(0))
    _error(ValueError, "tau must be > 0, got tau=-1", lambda: GroupSum(2, tau=-1))


def test_state_dict_errors_name_the_bad_value():
    layer = LogicLayer(12, 7)
    wider = LogicLayer(12, 8).state_dict()
    _error(ValueError, "state_dict['connections'] has shape (2, 8), this layer expects (2, 7)",
           lambda: layer.load_state_dict(wider))
    bad = layer.state_dict()
    bad["connections"] = bad["connections"].clone()
    bad["connections"][1, 3] = 12
    _error(ValueError, "holds input indices in [0, 12], outside [0, 11] for in_dim=12",
           lambda: layer.load_state_dict(bad))
    bad["connections"][1, 3] = -1
    _error(ValueError, "holds input indices in [-1,", lambda: layer.load_state_dict(bad))
    wrong_weights = layer.state_dict()
    wrong_weights["weights"] = torch.zeros(7, 15)
    _error(ValueError, "state_dict['weights'] has shape (7, 15), this layer expects (7, 16) (out_dim=7, "
                       "parametrization='softmax16')", lambda: layer.load_state_dict(wrong_weights))
    iwp = LogicLayer(12, 7, parametrization="iwp")
    _error(ValueError, "has shape (7, 16), this layer expects (7, 4) (out_dim=7, parametrization='iwp')",
           lambda: iwp.load_state_dict(layer.state_dict()))
    # Nested in a model, the key named in the message carries the module prefix.
    model = torch.nn.Sequential(LogicLayer(12, 7))
    _error(ValueError, "state_dict['0.connections']",
           lambda: model.load_state_dict({"0.weights": torch.zeros(8, 16), "0.connections": torch.zeros(2, 8).long()}))

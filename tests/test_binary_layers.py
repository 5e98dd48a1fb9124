"""Binary and low-bit layers (diffgates.nn.binary): estimators, QNN activations, binary/XNOR layers, LQ-Nets."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from diffgates.nn.binary import (BinaryActivation, BinaryConv2d, BinaryLinear, LQActivationQuantizer, LQConv2d,
                                 LQLinear, LQWeightQuantizer, QuantActivation, binarynet_lr_scales,
                                 binarynet_param_groups, clip_latent_weights_, glorot_fans, hard_sigmoid, sign_ste)

D = torch.float64
EDGE = torch.tensor([-2.0, -1.0 - 1e-6, -1.0, -1.0 + 1e-6, -0.5, -1e-9, 0.0, 1e-9, 0.25, 1.0 - 1e-6, 1.0,
                     1.0 + 1e-6, 3.0], dtype=D)


def _grad(fn, x):
    x = x.clone().requires_grad_(True)
    fn(x).backward(torch.ones_like(x))
    return x.grad


def _sign(w):
    return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))


# ---------------------------------------------------------------- sign and estimators

def test_sign_forward_zero_is_plus_one():
    y = sign_ste(EDGE, "ste")
    assert y.tolist() == [-1, -1, -1, -1, -1, -1, 1, 1, 1, 1, 1, 1, 1]
    assert sign_ste(torch.tensor([-0.0]), "identity").item() == 1.0  # -0.0 >= 0 too
    assert torch.equal(BinaryActivation()(EDGE), y)


def test_ste_gradient_clipped_to_unit_interval():
    expected = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    assert _grad(lambda x: sign_ste(x, "ste"), EDGE).tolist() == expected


def test_approx_sign_gradient():
    g = _grad(lambda x: sign_ste(x, "approx_sign"), EDGE)
    a = EDGE.abs()
    expected = torch.where(a < 1, 2 - 2 * a, torch.zeros_like(a))
    assert torch.equal(g, expected)
    # Hand values: 2 at 0, 1.5 at 0.25 and -0.25, 1 at -0.5, 0 at +-1 and beyond.
    g2 = _grad(lambda x: sign_ste(x, "approx_sign"), torch.tensor([0.0, 0.25, -0.25, -0.5, 1.0, -1.0, 1.5], dtype=D))
    assert g2.tolist() == [2.0, 1.5, 1.5, 1.0, 0.0, 0.0, 0.0]
    assert _grad(BinaryActivation("approx_sign"), torch.tensor([0.75], dtype=D)).item() == 0.5


def test_identity_gradient_and_upstream_scaling():
    assert _grad(lambda x: sign_ste(x, "identity"), EDGE).tolist() == [1.0] * len(EDGE)
    x = torch.tensor([0.5, 2.0], requires_grad=True)
    sign_ste(x, "ste").backward(torch.tensor([3.0, 5.0]))
    assert x.grad.tolist() == [3.0, 0.0]


def test_sign_validation():
    with pytest.raises(ValueError, match="estimator='bogus'"):
        sign_ste(torch.zeros(2), "bogus")
    with pytest.raises(ValueError, match="floating-point"):
        sign_ste(torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="estimator"):
        BinaryActivation("tanh")


# ---------------------------------------------------------------- QNN activations

@pytest.mark.parametrize("bits,max_value", [(1, 1.0), (2, 1.0), (3, 2.5), (4, 6.0)])
def test_quant_activation_levels(bits, max_value):
    act = QuantActivation(bits, max_value)
    n = 2 ** bits - 1
    expected = torch.tensor([k * max_value / n for k in range(n + 1)], dtype=torch.float32)
    assert torch.equal(act.levels(), expected)
    x = torch.linspace(-1, max_value + 1, 1001)
    y = act(x)
    assert set(y.tolist()) <= set(expected.tolist())
    assert y.max().item() == max_value and y.min().item() == 0.0
    # Nearest level of the clipped input (brute force), away from the midpoints (ties go up: tested below).
    xc = x.clamp(0, max_value)
    mids = (expected[1:] + expected[:-1]) / 2
    clear = (xc[:, None] - mids[None, :]).abs().min(1).values > 1e-4
    assert clear.sum() > 900
    nearest = expected[(xc[:, None] - expected[None, :]).abs().argmin(1)]
    assert torch.allclose(y[clear], nearest[clear])


def test_quant_activation_hand_values_and_ties():
    act = QuantActivation(2, 1.0)  # levels 0, 1/3, 2/3, 1
    y = act(torch.tensor([-3.0, 0.1, 0.17, 0.5, 0.9, 1.0, 7.0]))
    assert torch.allclose(y, torch.tensor([0.0, 0.0, 1 / 3, 2 / 3, 1.0, 1.0, 1.0]))  # 0.5 is a tie: up
    one = QuantActivation(1, 2.0)  # {0, 2}
    assert one(torch.tensor([0.9, 1.1, 5.0, -1.0])).tolist() == [0.0, 2.0, 2.0, 0.0]


def test_quant_activation_gradient_mask():
    act = QuantActivation(2, 1.5)
    x = torch.tensor([-0.1, 0.0, 0.7, 1.5, 1.5001, 9.0])
    assert _grad(act, x).tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_quant_activation_validation():
    for bad in (0, -1, 1.5, True, 17):
        with pytest.raises(ValueError, match="bits"):
            QuantActivation(bad)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="max_value"):
            QuantActivation(2, bad)


# ---------------------------------------------------------------- binary layers: forward == product, then alpha, then bias

def _finished(y, alpha, bias):
    """The layers' definition: the {-1,+1} product, times alpha, plus bias, as separate steps."""
    shape = (-1,) + (1,) * (y.dim() - 2)
    if alpha is not None:
        y = y * alpha.view(shape)
    return y if bias is None else y + bias.view(shape)


@pytest.mark.parametrize("batch", [1, 63, 65, 157])
@pytest.mark.parametrize("scaling", [None, "xnor"])
@pytest.mark.parametrize("bias", [False, True])
def test_binary_linear_forward_exact(batch, scaling, bias):
    torch.manual_seed(batch)
    layer = BinaryLinear(37, 13, bias=bias, scaling=scaling).eval()
    if bias:
        torch.nn.init.normal_(layer.bias)
    with torch.no_grad():
        layer.weight[0, :3] = 0.0  # sign(0) = +1 inside the layer too
    x = torch.randn(batch, 37)
    wb = _sign(layer.weight.detach())
    alpha = layer.weight.detach().abs().mean(1) if scaling == "xnor" else None
    expected = _finished(F.linear(x, wb), alpha, layer.bias)
    assert torch.equal(layer(x), expected)
    assert torch.equal(layer.train()(x), expected)  # deterministic: training forward identical
    # ... and mathematically the linear map of the effective weight (rounding differs).
    assert torch.allclose(layer(x), F.linear(x, layer.quantized_weight(), layer.bias), atol=1e-5)
    assert torch.equal(layer.binary_weights(), _sign(layer.weight.detach()))
    assert layer.binary_weights()[0, :3].tolist() == [1.0, 1.0, 1.0]


def test_binary_output_is_an_exact_integer_before_scaling():
    # {-1,+1} inputs times {-1,+1} weights: exact integers, whatever the summation order.
    torch.manual_seed(3)
    layer = BinaryLinear(4097, 5, scaling="xnor").eval()
    x = torch.where(torch.rand(7, 4097) < 0.5, -1.0, 1.0)
    y = F.linear(x, layer.sign_weight())
    assert torch.equal(y, torch.round(y))
    exact = (x.double() @ layer.binary_weights().double().T)
    assert torch.equal(y.double(), exact)
    assert torch.equal(layer(x), y * layer.scales())


@pytest.mark.parametrize("batch,cin,cout,k,stride,padding,hw", [
    (1, 3, 5, 3, 1, 0, (9, 9)), (63, 1, 7, 3, 2, 1, (11, 8)), (65, 5, 3, (3, 5), (2, 1), (1, 2), (7, 10)),
    (157, 2, 9, 1, 1, 0, (5, 3))])
@pytest.mark.parametrize("scaling", [None, "xnor"])
def test_binary_conv_forward_exact(batch, cin, cout, k, stride, padding, hw, scaling):
    torch.manual_seed(cin * 100 + cout)
    layer = BinaryConv2d(cin, cout, k, stride=stride, padding=padding, bias=True, scaling=scaling)
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(batch, cin, *hw)
    wb = _sign(layer.weight.detach())
    alpha = layer.weight.detach().abs().flatten(1).mean(1) if scaling == "xnor" else None
    assert torch.equal(layer(x), _finished(F.conv2d(x, wb, None, stride, padding), alpha, layer.bias))
    deployed = _finished(F.conv2d(x, layer.binary_weights(), None, stride, padding), layer.scales(), layer.bias)
    assert torch.equal(layer.eval()(x), deployed)
    assert torch.allclose(layer(x), F.conv2d(x, layer.quantized_weight(), layer.bias, stride, padding), atol=1e-5)


def test_xnor_alpha_values_and_gradient():
    layer = BinaryLinear(2, 2, scaling="xnor")
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.25], [1.0, 0.0]]))
    assert layer.scales().tolist() == [0.375, 0.5]
    assert BinaryLinear(2, 2).scales() is None
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    layer(x).sum().backward()
    # dL/dWeff[o, i] = g_i = sum_n x[n, i]; dL/dW = alpha_o g_i + d|W_oi|/dW_oi / n_in * sum_j g_j sign(W_oj),
    # with torch's d|w|/dw = 0 at w = 0 (the forward sign there is +1).
    g = x.sum(0)
    w = torch.tensor([[0.5, -0.25], [1.0, 0.0]])
    s = _sign(w)
    expected = torch.tensor([0.375, 0.5])[:, None] * g + torch.sign(w) / 2 * (g * s).sum(1, keepdim=True)
    assert expected.tolist() == [[3.0, -1.125], [4.5, 0.5]]  # hand: g = (4, 1)
    assert torch.allclose(layer.weight.grad, expected)
    plain = BinaryLinear(2, 2)
    with torch.no_grad():
        plain.weight.copy_(w)
    plain(x).sum().backward()
    assert torch.equal(plain.weight.grad, g.expand(2, 2))  # identity STE, gradient of Wb applied to W


def test_conv_alpha_per_output_channel():
    layer = BinaryConv2d(2, 3, 2, scaling="xnor")
    assert torch.allclose(layer.scales(), layer.weight.detach().abs().reshape(3, -1).mean(1))


def test_stochastic_binarization_statistics_and_reproducibility():
    layer = BinaryLinear(5, 1, binarize="stochastic")
    w = torch.tensor([[-1.0, -0.5, 0.0, 0.6, 1.0]])
    with torch.no_grad():
        layer.weight.copy_(w)
    torch.manual_seed(1234)
    draws = torch.stack([layer.quantized_weight().detach() for _ in range(4000)])
    assert set(draws.unique().tolist()) == {-1.0, 1.0}
    freq = (draws == 1).double().mean(0)[0]
    p = hard_sigmoid(w)[0].double()
    assert p.tolist() == pytest.approx([0.0, 0.25, 0.5, 0.8, 1.0])
    assert torch.all((freq - p).abs() <= 4 * torch.sqrt(p * (1 - p) / 4000) + 1e-12)
    assert freq[0] == 0 and freq[-1] == 1
    torch.manual_seed(1234)
    again = torch.stack([layer.quantized_weight().detach() for _ in range(4000)])
    assert torch.equal(draws, again)
    # The forward is F.linear of this draw (same RNG state), and the gradient reaches W (identity).
    x = torch.randn(7, 5, dtype=torch.float32)
    torch.manual_seed(99)
    wb = layer.quantized_weight().detach()
    torch.manual_seed(99)
    y = layer(x)
    assert torch.equal(y, F.linear(x, wb))
    y.sum().backward()
    assert torch.allclose(layer.weight.grad, x.sum(0, keepdim=True))


def test_stochastic_eval_is_deterministic_sign():
    torch.manual_seed(0)
    layer = BinaryConv2d(3, 4, 3, binarize="stochastic", scaling="xnor").eval()
    x = torch.randn(2, 3, 6, 6)
    y1, y2 = layer(x), layer(x)
    assert torch.equal(y1, y2)
    assert torch.equal(y1, F.conv2d(x, layer.binary_weights()) * layer.scales().view(-1, 1, 1))
    layer.train()
    assert not torch.equal(layer(x), layer(x))  # training draws afresh (with overwhelming probability)


def test_binary_layer_init_and_validation():
    layer = BinaryLinear(300, 200)
    assert layer.weight.abs().max() <= 1 and layer.weight.min() < -0.9 and layer.weight.max() > 0.9
    assert layer.bias is None and BinaryLinear(3, 2, bias=True).bias.tolist() == [0.0, 0.0]
    for kwargs, name in [({"in_features": 0, "out_features": 2}, "in_features"),
                         ({"in_features": 2, "out_features": 1.5}, "out_features"),
                         ({"in_features": 2, "out_features": 2, "scaling": "abc"}, "scaling"),
                         ({"in_features": 2, "out_features": 2, "binarize": "random"}, "binarize"),
                         ({"in_features": 2, "out_features": 2, "bias": 1}, "bias")]:
        with pytest.raises(ValueError, match=name):
            BinaryLinear(**kwargs)
    for kwargs, name in [({"kernel_size": 0}, "kernel_size"), ({"kernel_size": 3, "stride": 0}, "stride"),
                         ({"kernel_size": 3, "padding": -1}, "padding"), ({"kernel_size": (3, 3, 3)}, "kernel_size")]:
        with pytest.raises(ValueError, match=name):
            BinaryConv2d(2, 2, **kwargs)
    with pytest.raises(ValueError, match="last dimension to be 4"):
        BinaryLinear(4, 2)(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        BinaryConv2d(2, 2, 3)(torch.zeros(1, 3, 5, 5))


# ---------------------------------------------------------------- clipping and learning-rate scales

def test_clip_latent_weights_only_binary_layers():
    model = torch.nn.Sequential(BinaryLinear(4, 3, bias=True), torch.nn.Linear(3, 3), BinaryConv2d(1, 2, 2),
                                LQLinear(3, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(5.0)
        model[0].weight[0, 0] = -7.0
        model[0].weight[0, 1] = 0.3
    assert clip_latent_weights_(model, bound=1.0) is model
    assert model[0].weight[0, :3].tolist() == pytest.approx([-1.0, 0.3, 1.0])
    assert model[2].weight.max() == 1.0
    assert model[0].bias.max() == 5.0 and model[1].weight.max() == 5.0 and model[3].weight.max() == 5.0
    clip_latent_weights_(model, bound=0.5)
    assert model[0].weight.abs().max() == 0.5
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="bound"):
            clip_latent_weights_(model, bad)
    with pytest.raises(ValueError, match="torch.nn.Module"):
        clip_latent_weights_([model])


def test_binarynet_lr_scales_and_groups():
    model = torch.nn.Sequential(BinaryLinear(100, 300), torch.nn.BatchNorm1d(300), BinaryConv2d(3, 5, (3, 2)))
    scales = binarynet_lr_scales(model)
    assert set(scales) == {model[0].weight, model[2].weight}
    assert scales[model[0].weight] == pytest.approx(1 / math.sqrt(1.5 / (100 + 300)))
    assert glorot_fans(model[2].weight) == (3 * 6, 5 * 6)
    assert scales[model[2].weight] == pytest.approx(1 / math.sqrt(1.5 / (18 + 30)))
    groups = binarynet_param_groups(model, lr=0.01)
    assert [g["lr"] for g in groups] == pytest.approx([0.01 * scales[model[0].weight],
                                                       0.01 * scales[model[2].weight], 0.01])
    assert groups[-1]["params"] == [model[1].weight, model[1].bias]
    torch.optim.Adam(groups)  # valid groups
    with pytest.raises(ValueError, match="lr"):
        binarynet_param_groups(model, lr=0)


# ---------------------------------------------------------------- LQ-Nets quantizers

def _brute_levels(basis_row, code_values):
    k = basis_row.numel()
    codes = torch.tensor(list(itertools.product(code_values, repeat=k)), dtype=D)
    return (codes @ basis_row.to(D)).sort().values


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_lq_weight_outputs_are_nearest_levels(bits):
    torch.manual_seed(bits)
    q = LQWeightQuantizer(7, bits, weight_std=0.3)
    with torch.no_grad():
        q.basis.copy_(torch.rand(7, bits) * 0.5 + 0.05)
    w = torch.randn(7, 5, 3, 3) * 0.3
    values, codes = q.quantize(w)
    assert codes.shape == (7, 5, 3, 3, bits) and set(codes.unique().tolist()) <= {-1.0, 1.0}
    assert torch.allclose(values, (codes * q.basis.view(7, 1, 1, 1, bits)).sum(-1), atol=1e-6)
    flat, vflat = w.reshape(7, -1), values.reshape(7, -1)
    for o in range(7):
        levels = _brute_levels(q.basis[o], (-1.0, 1.0)).float()
        assert torch.allclose(q.levels()[o], levels, atol=1e-6)
        assert all(any(abs(v - l) < 1e-6 for l in levels.tolist()) for v in vflat[o].tolist())
        nearest = levels[(flat[o][:, None] - levels[None, :]).abs().argmin(1)]
        assert torch.allclose(vflat[o], nearest, atol=1e-6)


def test_lq_weight_initial_basis_and_ties():
    q = LQWeightQuantizer(2, 2, weight_std=0.5)
    base = 0.6745 * 0.5 / 2
    assert torch.allclose(q.basis, torch.tensor([[base, 2 * base]] * 2))
    levels = q.levels()[0]
    assert torch.allclose(levels, torch.tensor([-3 * base, -base, base, 3 * base]))
    # Exactly at the midpoint 0 between -base and +base: the tie goes up.
    values, _ = q.quantize(torch.tensor([[0.0, 2 * base], [-5.0, 5.0]]))
    assert values[0, 0].item() == pytest.approx(base) and values[0, 1].item() == pytest.approx(3 * base)
    assert values[1].tolist() == pytest.approx([-3 * base, 3 * base])
    one = LQWeightQuantizer(1, 1)
    assert one.levels()[0].tolist() == pytest.approx([-0.6745, 0.6745])


@pytest.mark.parametrize("bits", [1, 2])
def test_lq_weight_update_reduces_error(bits):
    torch.manual_seed(10 + bits)
    w = torch.randn(6, 200) * torch.tensor([0.1, 0.5, 1.0, 2.0, 0.05, 3.0])[:, None]
    q = LQWeightQuantizer(6, bits, weight_std=1.0)
    errors = [q.quantization_error(w)]
    for _ in range(30):
        q.update_basis(w)
        errors.append(q.quantization_error(w))
    assert all(b <= a * (1 + 1e-5) + 1e-9 for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 0.5 * errors[0]
    # Hand check of one step: v = 0.9 v + 0.1 (E^T E + 1e-4 I)^-1 E^T w, E the current codes.
    q2 = LQWeightQuantizer(6, bits)
    _, codes = q2.quantize(w)
    e = codes.to(D)
    gram = torch.einsum("onk,onj->okj", e, e) + 1e-4 * torch.eye(bits, dtype=D)
    star = torch.linalg.solve(gram, torch.einsum("onk,on->ok", e, w.to(D)))
    expected = 0.9 * q2.basis.to(D) + 0.1 * star
    q2.update_basis(w)
    assert torch.allclose(q2.basis.to(D), expected, atol=1e-6)


def test_lq_weight_forward_ste_and_update_in_forward():
    torch.manual_seed(3)
    q = LQWeightQuantizer(4, 2)
    w = torch.randn(4, 9, requires_grad=True)
    before = q.basis.clone()
    values, _ = q.quantize(w)
    out = q(w)
    assert torch.equal(out, values)  # exactly the levels (no w + (q - w) rounding)
    assert not torch.equal(q.basis, before)  # training forward ran one QEM update
    out.backward(torch.arange(36.0).view(4, 9))
    assert torch.equal(w.grad, torch.arange(36.0).view(4, 9))  # identity STE
    q.eval()
    frozen = q.basis.clone()
    q(w)
    assert torch.equal(q.basis, frozen)
    manual = LQWeightQuantizer(4, 2, update_in_forward=False)
    manual(w)
    assert torch.equal(manual.basis, LQWeightQuantizer(4, 2).basis)
    assert "basis" in q.state_dict()


@pytest.mark.parametrize("bits", [1, 2])
def test_lq_activation_levels_nearest_and_update(bits):
    torch.manual_seed(20 + bits)
    a = LQActivationQuantizer(bits)
    top = 2 * 0.6745
    assert torch.allclose(a.levels()[0], torch.tensor([k * top / (2 ** bits - 1) for k in range(2 ** bits)]))
    x = torch.relu(torch.randn(4, 3, 5, 5))
    values, codes = a.quantize(x)
    assert set(codes.unique().tolist()) <= {0.0, 1.0}
    levels = _brute_levels(a.basis[0], (0.0, 1.0)).float()
    nearest = levels[(x.reshape(-1, 1) - levels[None, :]).abs().argmin(1)].view_as(x)
    assert torch.allclose(values, nearest, atol=1e-6)
    errors = [a.quantization_error(x)]
    for _ in range(20):
        a.update_basis(x)
        errors.append(a.quantization_error(x))
    assert all(b <= a_ * (1 + 1e-5) + 1e-9 for a_, b in zip(errors, errors[1:]))
    assert errors[-1] < errors[0]


def test_lq_activation_gradient_mask_and_singular_batch():
    a = LQActivationQuantizer(2, init_top=3.0, update_in_forward=False)  # levels 0, 1, 2, 3
    assert a.levels()[0].tolist() == pytest.approx([0.0, 1.0, 2.0, 3.0])
    x = torch.tensor([-0.5, 0.0, 0.4, 0.5, 2.9, 3.0, 3.2])
    assert a(x).tolist() == pytest.approx([0.0, 0.0, 0.0, 1.0, 3.0, 3.0, 3.0])
    assert _grad(a, x).tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    before = a.basis.clone()
    a.update_basis(torch.zeros(100))  # every code is 0: singular system, basis kept
    assert torch.equal(a.basis, before)


def test_lq_validation():
    for bad in (0, 9, 2.5, True):
        with pytest.raises(ValueError, match="bits"):
            LQWeightQuantizer(3, bad)
        with pytest.raises(ValueError, match="bits"):
            LQActivationQuantizer(bad)
    with pytest.raises(ValueError, match="out_channels"):
        LQWeightQuantizer(0, 2)
    with pytest.raises(ValueError, match="weight_std"):
        LQWeightQuantizer(2, 2, weight_std=0)
    with pytest.raises(ValueError, match="init_top"):
        LQActivationQuantizer(2, init_top=-1)
    with pytest.raises(ValueError, match="momentum"):
        LQActivationQuantizer(2, momentum=1.0)
    with pytest.raises(ValueError, match="expected dim 0 to be 3"):
        LQWeightQuantizer(3, 2)(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="act_bits"):
        LQLinear(3, 2, act_bits=0)


def test_lq_layers_forward_and_two_bit_network_trains():
    torch.manual_seed(5)
    conv = LQConv2d(3, 5, 3, stride=2, padding=1).eval()
    x = torch.relu(torch.randn(2, 3, 9, 7))
    qx, _ = conv.input_quantizer.quantize(x)
    qw, _ = conv.weight_quantizer.quantize(conv.weight)
    assert torch.equal(conv(x), F.conv2d(qx, qw, None, 2, 1))
    lin = LQLinear(6, 4, bias=True, act_bits=None).eval()
    xin = torch.randn(3, 6)
    assert torch.equal(lin(xin), F.linear(xin, lin.weight_quantizer.quantize(lin.weight)[0], lin.bias))
    # A tiny 2-bit LQ-Nets MLP learns a separable problem.
    model = torch.nn.Sequential(LQLinear(8, 32, act_bits=None), torch.nn.BatchNorm1d(32), torch.nn.ReLU(),
                                LQLinear(32, 2, bias=True))
    data = torch.randn(256, 8)
    labels = (data[:, 0] + data[:, 1] > 0).long()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(model(data), labels)
        loss.backward()
        opt.step()
    model.eval()
    accuracy = (model(data).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.9
    w0 = model[0].weight_quantizer.quantize(model[0].weight)[0]
    assert all(len(set(row.tolist())) <= 4 for row in w0)  # 2 bits: at most 4 values per output channel

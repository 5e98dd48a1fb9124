"""AdderNet: the fused adder kernel against the reference (forward, both gradients, awkward sizes, any
thread count), the reference against the paper's formulas written out, the layers, the adaptive
learning rate, the adder family (spec, build, training through the CLI, saved models) and bad input.

Run: python -m pytest tests/test_adder.py -q
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from diffgates.cli import main as cli_main
from diffgates.families import build_model, get_family, model_spec, validate_spec
from diffgates.families.base import spec_header
from diffgates.kernels import adder as adder_kernels
from diffgates.kernels.adder import adder_conv2d, adder_linear, adder_rows
from diffgates.modelfiles import load_model
from diffgates.nn.adder import AdaptiveGradientScale, Adder2d, AdderLinear, attach_adaptive_gradient_scale

needs_kernel = pytest.mark.skipif(adder_kernels.unavailable_reason() is not None,
                                  reason=f"adder kernel unavailable: {adder_kernels.unavailable_reason()}")
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=1e-4)}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _outputs(fn, inputs, seed: int):
    """(y, gradients of every input) for a fixed random output gradient."""
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    y = fn(*inputs)
    g = torch.randn(y.shape, generator=_gen(seed), dtype=y.dtype)
    return (y.detach(), *torch.autograd.grad(y, inputs, g))


def test_reference_is_the_papers_formulas_written_out():
    a = torch.randn(5, 3, generator=_gen(0), dtype=torch.float64) * 2
    w = torch.randn(4, 3, generator=_gen(1), dtype=torch.float64)
    y, ga, gw = _outputs(lambda a, w: adder_rows(a, w, "reference"), [a, w], 2)
    g = torch.randn(y.shape, generator=_gen(2), dtype=torch.float64)
    for i in range(5):
        for o in range(4):
            assert y[i, o] == pytest.approx(-sum(abs(a[i, k] - w[o, k]) for k in range(3)))
    for i in range(5):
        for k in range(3):
            assert ga[i, k] == pytest.approx(sum(g[i, o] * min(1.0, max(-1.0, w[o, k] - a[i, k])) for o in range(4)))
    for o in range(4):
        for k in range(3):
            assert gw[o, k] == pytest.approx(sum(g[i, o] * (a[i, k] - w[o, k]) for i in range(5)))


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m,k,o", [(1, 1, 1), (63, 65, 1), (65, 157, 63), (157, 1, 65), (7, 63, 157)])
def test_fused_rows_equal_the_reference(dtype, m, k, o):
    a = torch.randn(m, k, generator=_gen(m), dtype=dtype)
    w = torch.randn(o, k, generator=_gen(k + 1), dtype=dtype) * 0.5
    ref = _outputs(lambda a, w: adder_rows(a, w, "reference"), [a, w], 3)
    fused = _outputs(lambda a, w: adder_rows(a, w, "cpu"), [a, w], 3)
    for r, f in zip(ref, fused):
        torch.testing.assert_close(f, r, **TOL[dtype])


@needs_kernel
@pytest.mark.parametrize("stride,padding,shape", [(1, 0, (2, 3, 9, 11)), (2, 1, (1, 1, 5, 5)), (1, 2, (3, 2, 7, 6))])
def test_fused_conv_equals_the_reference(stride, padding, shape):
    x = torch.rand(shape, generator=_gen(4), dtype=torch.float64) * 3 - 1
    w = torch.randn(5, shape[1], 3, 3, generator=_gen(5), dtype=torch.float64)
    ref = _outputs(lambda x, w: adder_conv2d(x, w, stride, padding, "reference"), [x, w], 6)
    fused = _outputs(lambda x, w: adder_conv2d(x, w, stride, padding, "cpu"), [x, w], 6)
    for r, f in zip(ref, fused):
        torch.testing.assert_close(f, r, **TOL[torch.float64])
    # one output by hand: zero padding reads 0
    xp = torch.nn.functional.pad(x, (padding,) * 4)
    patch = xp[0, :, 0:3, 0:3]
    assert ref[0][0, 0, 0, 0] == pytest.approx(-(patch - w[0]).abs().sum().item())


@needs_kernel
def test_fused_kernel_is_bitwise_the_same_for_any_thread_count(monkeypatch):
    monkeypatch.setattr(adder_kernels, "PARALLEL_GRAIN", 1)
    a = torch.randn(157, 65, generator=_gen(7))
    w = torch.randn(63, 65, generator=_gen(8))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _outputs(lambda a, w: adder_rows(a, w, "cpu"), [a, w], 9)
        torch.set_num_threads(2)
        two = _outputs(lambda a, w: adder_rows(a, w, "cpu"), [a, w], 9)
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(p, q) for p, q in zip(one[:2], two[:2]))  # forward and input gradient: the C kernel


def test_empty_batches_give_empty_outputs_and_zero_gradients():
    for impl in (None, "reference"):
        a = torch.zeros(0, 4, requires_grad=True)
        w = torch.randn(3, 4, requires_grad=True)
        y = adder_rows(a, w, impl)
        assert y.shape == (0, 3)
        y.sum().backward()
        assert torch.equal(w.grad, torch.zeros(3, 4))


def test_bad_input_is_named():
    w = torch.randn(3, 4)
    with pytest.raises(ValueError, match="a has 5 values per row but the weights have 4"):
        adder_rows(torch.randn(2, 5), w)
    with pytest.raises(ValueError, match=r"\(M, K\)"):
        adder_rows(torch.randn(2, 4, 1), w)
    with pytest.raises(ValueError, match="implementation='gpu'"):
        adder_rows(torch.randn(2, 4), w, "gpu")
    with pytest.raises(ValueError, match="float32/float64 CPU"):
        adder_rows(torch.randn(2, 4).half(), w.half(), "cpu")
    with pytest.raises(ValueError, match="expects 2 input channels, x has 3"):
        adder_conv2d(torch.randn(1, 3, 5, 5), torch.randn(4, 2, 3, 3))
    with pytest.raises(ValueError, match="at least 3x3"):
        adder_conv2d(torch.randn(1, 2, 2, 2), torch.randn(4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"AdderLinear\(4, 3\) expects input \(N, 4\)"):
        AdderLinear(4, 3)(torch.randn(2, 5))
    with pytest.raises(ValueError, match="kernel_size must be an integer >= 1, got 0"):
        Adder2d(1, 2, 0)
    with pytest.raises(ValueError, match="eta must be a finite number > 0, got -1"):
        AdaptiveGradientScale(AdderLinear(2, 2), -1)


def test_layers_compute_the_similarity_and_init_as_the_paper():
    torch.manual_seed(0)
    layer = AdderLinear(157, 65)
    assert layer.weight.std().item() == pytest.approx(1.0, abs=0.02)  # N(0, 1)
    x = torch.rand(3, 157)
    torch.testing.assert_close(layer(x), adder_linear(x, layer.weight, "reference"))
    conv = Adder2d(2, 3, 3, stride=2, padding=1)
    x = torch.rand(2, 2, 7, 7)
    assert conv(x).shape == (2, 3, 4, 4)
    torch.testing.assert_close(conv(x), adder_conv2d(x, conv.weight, 2, 1, "reference"))


def test_adaptive_gradient_scale_sets_each_layers_norm_before_the_step():
    model = torch.nn.Sequential(AdderLinear(6, 5), torch.nn.Linear(5, 4), AdderLinear(4, 3))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    attach_adaptive_gradient_scale(opt, model, eta=0.2)
    model(torch.rand(8, 6)).pow(2).sum().backward()
    linear_grad = model[1].weight.grad.clone()
    before = [m.weight.detach().clone() for m in (model[0], model[2])]
    grads = [m.weight.grad.clone() for m in (model[0], model[2])]
    opt.step()
    for w0, g, m in zip(before, grads, (model[0], model[2])):
        scaled = g * 0.2 * math.sqrt(g.numel()) / g.norm()
        torch.testing.assert_close(m.weight.grad.norm(), torch.tensor(0.2 * math.sqrt(g.numel())))
        torch.testing.assert_close(m.weight.detach(), w0 - scaled)
    assert torch.equal(model[1].weight.grad, linear_grad)  # a multiplying layer keeps its gradient
    zero = AdderLinear(2, 2)
    zero.weight.grad = torch.zeros(2, 2)
    AdaptiveGradientScale(zero)()
    assert torch.equal(zero.weight.grad, torch.zeros(2, 2))


def _lenet_spec(multiply_ends: bool = True):
    return {**spec_header("adder", 784, 10, [1, 28, 28]), "conv": [[20, 5, 2], [50, 5, 2]], "hidden": [500],
            "multiply_ends": multiply_ends}


def test_lenet5_spec_builds_the_papers_model_and_round_trips():
    model = build_model(_lenet_spec())
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Adder2d", "BatchNorm2d", "ReLU", "MaxPool2d",
                     "Flatten", "AdderLinear", "BatchNorm1d", "ReLU", "Linear"]
    assert model[9].in_features == 800  # 50 channels of 4x4
    assert model_spec(model) == _lenet_spec()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    all_adder = build_model(_lenet_spec(False))
    assert [type(m).__name__ for m in all_adder][0] == "Adder2d"
    assert [type(m).__name__ for m in all_adder][-2:] == ["AdderLinear", "BatchNorm1d"]


def test_bad_specs_are_named():
    with pytest.raises(ValueError, match="multiply_ends must be true or false"):
        validate_spec({**_lenet_spec(), "multiply_ends": "yes"})
    with pytest.raises(ValueError, match="shrink the"):
        validate_spec({**_lenet_spec(), "conv": [[20, 5, 2], [50, 5, 2], [50, 5, 1]]})
    with pytest.raises(ValueError, match="lacks"):
        spec = _lenet_spec()
        del spec["multiply_ends"]
        validate_spec(spec)


TINY = ["--dataset", "fake", "-a", "adder", "--topology", "mlp", "-bs", "20", "--threads", "1", "--no-progress",
        "--val-fraction", "0.1"]


@pytest.mark.parametrize("options", [[], ["--ends", "adder", "--optimizer", "adam", "--eta", "0"]])
def test_adder_family_trains_through_the_cli_and_saves_a_loadable_model(tmp_path, fake_dataset, options):
    out = tmp_path / "run"
    assert cli_main(["train", *TINY, "-k", "16", "-l", "1", "-lr", "0.05", "-ni", "40", "-ef", "20", *options,
                     "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["kind"] == "adder"
    model = load_model(out / "model.safetensors")
    assert type(model[1]).__name__ == ("AdderLinear" if options else "Linear")  # after Flatten
    x = fake_dataset.encode(fake_dataset.x_test, False)
    acc = int((model.eval()(x).argmax(-1) == fake_dataset.y_test).sum()) / len(fake_dataset.y_test)
    assert acc == pytest.approx(results["test_acc_eval_mode"], abs=1e-9)


def test_adder_options_are_checked(tmp_path, fake_dataset):
    with pytest.raises(SystemExit):
        cli_main(["train", *TINY, "-k", "8", "-l", "1", "-ni", "2", "--ends", "both", "--out", str(tmp_path / "a")])
    with pytest.raises(ValueError, match="--eta must be >= 0"):
        get_family("adder").spec_from_config(type("C", (), {"model_options": {"eta": -1.0, "topology": "mlp"}, "num_neurons": 4,
                                                            "num_layers": 1})(), fake_dataset)

"""Parametrizations, inits and samplings of logic layers (diffgates.kernels.parametrizations).

Every (parametrization, sampling) pair through the fused C kernel and the Triton kernels (under the
interpreter) against the plain reference - forward, input and parameter gradients over awkward sizes,
float32 and float64 - plus the definitions themselves: the discrete gate of every parametrization
on every truth table, the residual init, reproducible Gumbel noise, circuits of every variant.

Run: python -m pytest tests/test_parametrizations.py -q
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from diffgates import GroupSum, LogicLayer, gates, kernels
from diffgates.kernels import cpu
from diffgates.kernels import parametrizations as param
from kernel_checks import make_coeff_index
from diffgates.nn.connections import make_connections

os.environ.setdefault("TRITON_INTERPRET", "1")  # the Triton kernels on CPU tensors, for the 'gpu' rows

SIZES = [(1, 1, 1), (63, 65, 157), (157, 63, 65), (65, 157, 63)]
VARIANTS = [(p, s) for p in param.PARAMETRIZATIONS for s in param.SAMPLINGS]
# Same argument as the dense kernel's tolerances (tests/test_kernels.py): ~16 rounded terms per output.
TOL = {torch.float64: dict(atol=1e-12, rtol=1e-10), torch.float32: dict(atol=2e-5, rtol=1e-4)}


def _implementations() -> list[str]:
    names = ["cpu"] if cpu.unavailable_reason() is None else []
    if kernels.unavailable_reason("gpu") is None and (torch.cuda.is_available() or
                                                      os.environ.get("TRITON_INTERPRET") == "1"):
        names.append("gpu")
    return names


def _device(implementation: str) -> str:
    return "cuda" if implementation == "gpu" and torch.cuda.is_available() else "cpu"


def _inputs(parametrization, n, in_dim, out_dim, dtype, device, seed=0, rows=None, bits=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, in_dim, generator=gen, dtype=torch.float64)
    if bits:
        x = (x > 0.5).to(torch.float64)
    # std 3: far from ties (argmax, sign) so hard samplings pick the same gate in every dtype.
    w = 3 * torch.randn(rows or out_dim, param.width(parametrization), generator=gen, dtype=torch.float64)
    conn = make_connections("random", in_dim, out_dim, generator=gen)
    return x.to(dtype=dtype, device=device), w.to(dtype=dtype, device=device), conn.to(device)


def _run(implementation, x, w, conn, parametrization, sampling, coeff_index=None, training=True, seed=5):
    torch.manual_seed(seed)  # the Gumbel samplings draw from torch's RNG: both paths get the same draw
    if x.device.type == "cuda":
        torch.cuda.manual_seed_all(seed)
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = kernels.logic_layer(x, w, conn, training, implementation, coeff_index, parametrization=parametrization,
                            sampling=sampling, gumbel_tau=0.7)
    return x, w, y


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(v))
@pytest.mark.parametrize("implementation", _implementations())
def test_fused_matches_reference(implementation, variant, size, dtype):
    if implementation == "gpu" and not torch.cuda.is_available() and size[0] * size[2] > 63 * 157:
        pytest.skip("the interpreter is slow; the smaller sizes cover it")
    parametrization, sampling = variant
    device = _device(implementation)
    x, w, conn = _inputs(parametrization, *size, dtype, device)
    upstream = torch.randn(size[0], size[2], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    results = []
    for impl in (implementation, "reference"):
        xi, wi, y = _run(impl, x, w, conn, parametrization, sampling)
        y.backward(upstream.to(dtype=dtype, device=device))
        results.append((y.detach(), xi.grad, wi.grad))
    for (fast, ref, what) in zip(results[0], results[1], ("forward", "input gradient", "parameter gradient")):
        assert fast.dtype == ref.dtype == dtype
        torch.testing.assert_close(fast, ref, **TOL[dtype], msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(v))
@pytest.mark.parametrize("kind", ["conv", "random"])
def test_shared_rows_match_reference(variant, kind):
    parametrization, sampling = variant
    index, rows = make_coeff_index(157, kind)
    x, w, conn = _inputs(parametrization, 63, 65, 157, torch.float64, "cpu", rows=rows)
    grads = []
    for impl in ("cpu", "reference"):
        xi, wi, y = _run(impl, x, w, conn, parametrization, sampling, coeff_index=index)
        y.sum().backward()
        grads.append((y.detach(), xi.grad, wi.grad))
    for fast, ref in zip(*grads):
        torch.testing.assert_close(fast, ref, atol=1e-11, rtol=1e-10)


@pytest.mark.parametrize("parametrization", param.PARAMETRIZATIONS)
def test_discrete_gate_of_every_truth_table(parametrization):
    """Parameters that spell gate g's truth table (or its logits) give gate_ids == g, and eval mode computes g."""
    table = torch.as_tensor(gates.TRUTH_TABLES, dtype=torch.float64)  # (16 gates, 4 entries)
    if parametrization == "softmax16":
        w = 4 * torch.eye(16, dtype=torch.float64)
    else:
        logits = 2 * table - 1  # +1 where the entry is true
        # walsh: entry logits = w @ WALSH^T with WALSH = 4 x orthogonal / 2, so w = logits @ WALSH / 4.
        walsh = torch.tensor(param._WALSH, dtype=torch.float64)
        w = logits if parametrization == "iwp" else logits @ walsh / 4
    assert param.gate_ids(parametrization, w).tolist() == list(range(16))
    a = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    b = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    x = torch.stack([a, b], 1)  # 4 samples: every (a, b)
    conn = torch.tensor([[0] * 16, [1] * 16])
    for impl in ["reference"] + _implementations():
        device = _device(impl)
        out = kernels.logic_layer(x.to(device), w.to(device), conn.to(device), False, impl,
                                  parametrization=parametrization)
        assert torch.equal(out.cpu().t(), table), impl


@pytest.mark.parametrize("parametrization", ["iwp", "walsh"])
def test_relaxation_is_the_expected_truth_table_value(parametrization):
    """iwp/walsh relaxations by their definition: E over independent input bits of sigmoid(entry logit)."""
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    x = torch.rand(7, 2, generator=gen, dtype=torch.float64)
    conn = torch.zeros(2, 5, dtype=torch.int64)
    conn[1] = 1
    out = kernels.logic_layer(x, w, conn, True, "reference", parametrization=parametrization)
    for j in range(5):
        for i in range(7):
            a, b = float(x[i, 0]), float(x[i, 1])
            expected = 0.0
            for bit_a in (0, 1):
                for bit_b in (0, 1):
                    if parametrization == "iwp":
                        logit = float(w[j, 2 * bit_a + bit_b])
                    else:
                        sa, sb = 2 * bit_a - 1, 2 * bit_b - 1
                        logit = float(w[j, 0] + w[j, 1] * sa + w[j, 2] * sb + w[j, 3] * sa * sb)
                    prob = (a if bit_a else 1 - a) * (b if bit_b else 1 - b)
                    expected += prob / (1 + math.exp(-logit))
            assert abs(float(out[i, j]) - expected) < 1e-12


def test_basis_weights_times_basis_are_the_coefficients():
    assert np.array_equal(gates.TRUTH_TABLES.astype(int) @ gates.ENTRY_COEFFS, gates.COEFFS)
    assert np.array_equal(gates.gate_from_entries(gates.TRUTH_TABLES), np.arange(16))


@pytest.mark.parametrize("parametrization", param.PARAMETRIZATIONS)
def test_residual_init_is_the_pass_through_gate(parametrization):
    layer = LogicLayer(20, 300, parametrization=parametrization, init="residual")
    assert layer.weights.shape == (300, param.width(parametrization))
    assert (layer.gate_ids() == gates.A).all()
    x = torch.rand(50, 20, dtype=torch.float32)
    a = x[:, layer.connections[0]]
    y = layer(x)
    if parametrization == "softmax16":  # P(A) = e^5 / (e^5 + 15); the other 15 gates average 7/15 a + 1/2 - 7/15 a
        p = math.exp(5) / (math.exp(5) + 15)
        others = (torch.as_tensor(gates.COEFFS, dtype=torch.float32).sum(0) - torch.tensor([0.0, 1, 0, 0])) / 15
        b = x[:, layer.connections[1]]
        expected = p * a + (1 - p) * (others[0] + others[1] * a + others[2] * b + others[3] * a * b)
    else:  # sigmoid(-3) + (sigmoid(3) - sigmoid(-3)) a
        s = 1 / (1 + math.exp(-3))
        expected = (1 - s) + (2 * s - 1) * a
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    # A custom logit is honoured, and the default init is the documented one.
    strong = LogicLayer(20, 10, parametrization=parametrization, init="residual", residual_logit=9.0)
    assert float(strong.weights.detach().abs().max()) == 9.0
    assert param.DEFAULT_INIT[parametrization] == ("gaussian" if parametrization == "softmax16" else "residual")


def test_softmax16_default_init_draws_as_the_original():
    """The difflogic-compatible default: standard-normal logits from torch's RNG, drawn before the connections."""
    torch.manual_seed(7)
    layer = LogicLayer(30, 40)
    torch.manual_seed(7)
    assert torch.equal(layer.weights.detach(), torch.randn(40, 16))


@pytest.mark.parametrize("parametrization", param.PARAMETRIZATIONS)
def test_hard_sampling_forward_is_the_discrete_net(parametrization):
    """With 'hard', training mode on bits computes exactly the eval-mode circuit, yet gradients flow."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(LogicLayer(30, 60, parametrization=parametrization, sampling="hard", init="gaussian"),
                              LogicLayer(60, 40, parametrization=parametrization, sampling="hard", init="gaussian"),
                              GroupSum(4, 1.0))
    bits = (torch.rand(33, 30) > 0.5).float()
    train_out = net.train()(bits)
    assert torch.equal(train_out, net.eval()(bits))
    net.train()(bits).sum().backward()
    assert all(layer.weights.grad.abs().sum() > 0 for layer in net[:2])


@pytest.mark.parametrize("parametrization", param.PARAMETRIZATIONS)
def test_gumbel_noise_is_seeded_and_tempered(parametrization):
    layer = LogicLayer(16, 32, parametrization=parametrization, sampling="gumbel_soft", gumbel_tau=0.5)
    x = torch.rand(8, 16)
    torch.manual_seed(1)
    first = layer(x)
    torch.manual_seed(1)
    assert torch.equal(layer(x), first)  # same RNG state, same noise
    assert not torch.equal(layer(x), first)  # the next draw differs
    layer.eval()
    assert torch.equal(layer(x), layer(x))  # eval mode: no noise, the discrete gate
    hard = LogicLayer(16, 32, parametrization=parametrization, sampling="gumbel_hard")
    bits = (torch.rand(8, 16) > 0.5).float()
    out = hard(bits)
    assert set(out.unique().tolist()) <= {0.0, 1.0}  # a sampled discrete gate forward


@pytest.mark.parametrize("parametrization", ["iwp", "walsh"])
def test_every_variant_becomes_an_exact_circuit(parametrization):
    from diffgates.frontend import to_circuit
    from diffgates.ir.evaluate import group_counts

    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Flatten(),
                                LogicLayer(25, 80, parametrization=parametrization, init="gaussian"),
                                LogicLayer(80, 60, parametrization=parametrization, init="gaussian"),
                                GroupSum(3, 1.0)).eval()
    bits = torch.rand(65, 25) > 0.5
    circuit = to_circuit(model)
    counts = group_counts(circuit, bits.numpy())
    with torch.no_grad():
        expected = model(bits.float()).numpy()  # tau 1: class score = the block's popcount
    assert np.array_equal(counts.astype(np.float64), expected)


def test_bad_values_are_named():
    with pytest.raises(ValueError, match=r"parametrization='lut4' is not known; expected one of \('softmax16'"):
        LogicLayer(4, 4, parametrization="lut4")
    with pytest.raises(ValueError, match=r"sampling='argmax' is not known"):
        LogicLayer(4, 4, sampling="argmax")
    with pytest.raises(ValueError, match=r"gumbel_tau must be a finite number > 0, got gumbel_tau=0"):
        LogicLayer(4, 4, sampling="gumbel_soft", gumbel_tau=0)
    with pytest.raises(ValueError, match=r"init='xavier' is not known; expected one of \('gaussian', 'residual'\)"):
        LogicLayer(4, 4, init="xavier")
    with pytest.raises(ValueError, match=r"residual_logit must be a finite number, got residual_logit=nan"):
        LogicLayer(4, 4, init="residual", residual_logit=float("nan"))
    with pytest.raises(ValueError, match=r"iwp weights must have shape \(rows, 4\), got \(3, 16\)"):
        kernels.logic_layer(torch.rand(2, 4), torch.rand(3, 16), torch.zeros(2, 3, dtype=torch.int64), True,
                            parametrization="iwp")


@pytest.mark.skipif(cpu.unavailable_reason() is not None, reason="no C compiler")
@pytest.mark.parametrize("rows", [1, 15, 16, 17, 63, 65, 157])
@pytest.mark.parametrize("parametrization", ["iwp", "walsh"])
def test_entry_coefficient_op_matches_its_definition(parametrization, rows):
    """The fused sigmoid map (C) against the plain formula, forward and gradient, saturated logits included."""
    from diffgates.kernels import ops
    gen = torch.Generator().manual_seed(rows)
    w64 = 4 * torch.randn(rows, 4, generator=gen, dtype=torch.float64)
    w64[0, :] = torch.tensor([0.0, 100.0, -100.0, 1e-3])  # sigmoid's tie, saturation both ways, near 0
    grad = torch.randn(rows, 4, generator=gen, dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        w = w64.to(dtype, copy=True).requires_grad_()
        fast = ops.entry_coefficients(w, parametrization)
        (gw_fast,) = torch.autograd.grad(fast, w, grad.to(dtype))
        ref_w = w.detach().clone().requires_grad_()
        ref = param.coefficients(parametrization, ref_w, training=True)
        (gw_ref,) = torch.autograd.grad(ref, ref_w, grad.to(dtype))
        torch.testing.assert_close(fast, ref, **TOL[dtype])
        torch.testing.assert_close(gw_fast, gw_ref, **TOL[dtype])
        # The plain-torch fallback (no compiler, other dtypes) is the same op.
        torch.testing.assert_close(ops._entry_coefficients_backward_torch(w.detach(), grad.to(dtype), parametrization),
                                   gw_ref, **TOL[dtype])
    nan = torch.full((1, 4), float("nan"))
    assert ops.entry_coefficients(nan, parametrization).isnan().all()  # NaN logits are not hidden
    torch.library.opcheck(ops.entry_coefficients, (w64.clone().requires_grad_(), parametrization))
    torch.library.opcheck(ops.entry_coefficients_backward, (w64, grad, parametrization),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_entry_coefficient_op_names_bad_arguments():
    from diffgates.kernels import ops
    with pytest.raises(ValueError, match=r"takes parametrization 'iwp' or 'walsh', got 'softmax16'"):
        ops.entry_coefficients(torch.rand(3, 4), "softmax16")
    with pytest.raises(ValueError, match=r"walsh weights must have shape \(rows, 4\), got \(3, 5\)"):
        ops.entry_coefficients(torch.rand(3, 5), "walsh")
    with pytest.raises(ValueError, match=r"grad must be \(3, 4\) torch.float32, got \(2, 4\)"):
        ops.entry_coefficients_backward(torch.rand(3, 4), torch.rand(2, 4), "iwp")

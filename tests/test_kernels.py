"""The fused CPU kernel (diffgates.kernels.cpu) against the reference 16-op mixture, and the dispatcher.

Covers the ops of ``diffgates.kernels.ops`` on CPU tensors (the C kernel, the torch softmax ->
coefficients), shared coefficient rows (``coeff_index``), the public ``diffgates.kernels.logic_layer``
and its fallbacks (no compiler, half precision).

Run: python -m pytest tests/test_kernels.py -q
Skips (capability, not platform) when no C compiler can build the kernel here.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffgates import LogicLayer, gates, kernels
from diffgates.kernels import cpu, gate_coefficients, ops, reference
from diffgates.nn.logic_layer import GradFactor
from kernel_checks import (COEFF_INDEX_KINDS, check_against_reference, check_coefficients_against_reference,
                           make_coeff_index, make_inputs, reference_fn)

pytestmark = pytest.mark.skipif(cpu.unavailable_reason() is not None,
                                reason=f"fused CPU kernel unavailable: {cpu.unavailable_reason()}")


@pytest.fixture(autouse=True)
def parallel_even_when_small(monkeypatch):
    # The kernel runs layers this small on one thread; make it use torch's full thread count so every
    # test here also exercises the multi-threaded code (batch split, partial sums, their reduction).
    monkeypatch.setattr(cpu, "PARALLEL_GRAIN", 1)


# float64: the kernel evaluates c0 + c1 a + (c2 + c3 a) b from 4 softmax-mixed coefficients, the
# reference sums 16 weighted relaxations; both round ~16 terms of size <= 1 at 1.1e-16 each, and the
# gradients sum <= 157 such terms, so 1e-12 absolute leaves a margin of ~50x.
F64 = dict(dtype=torch.float64, atol=1e-12, rtol=1e-10)
# float32: same argument at eps 6e-8 -> ~1e-5 for sums over 157 rows.
F32 = dict(dtype=torch.float32, atol=2e-5, rtol=1e-4)


def fused_fn(x, weights, connections, training, coeff_index=None):
    """The kernel as LogicLayer uses it: coefficients from the logits, then the custom op."""
    return cpu.logic_layer(x, gate_coefficients(weights, training), connections, coeff_index)


def dispatch_fn(x, weights, connections, training, coeff_index=None):
    """The public entry point, left to choose (the C kernel and the coefficients op here)."""
    return kernels.logic_layer(x, weights, connections, training, coeff_index=coeff_index)


def backward_op(grad, x, coeffs, connections, coeff_index=None, need_x=True, need_coeffs=True):
    """``diffgates::logic_layer_backward`` as the C kernel runs it (no Triton wiring)."""
    return ops.logic_layer_backward(grad, x, coeffs, connections, coeff_index, None, None, None, None, True, False,
                                    need_x, need_coeffs)


def fused_fn_with_grad_factor(factor):
    def fn(x, weights, connections, training):
        return fused_fn(GradFactor.apply(x, factor), weights, connections, training)
    return fn


# (N, in_dim, out_dim): awkward sizes, incl. N = 1 and in_dim = 1 (every neuron a self pair).
SIZES = [(1, 1, 1), (1, 63, 157), (63, 1, 65), (65, 157, 63), (157, 65, 1), (63, 65, 157), (157, 157, 157),
         (1, 2, 65), (260, 65, 63)]  # 260: large enough for the cache-line-aligned batch split


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference_float64(size, training):
    check_against_reference(fused_fn, reference_fn, *size, training=training, **F64)


@pytest.mark.parametrize("size", [(63, 65, 157), (157, 157, 1), (1, 65, 63)], ids=lambda s: "x".join(map(str, s)))
def test_matches_reference_unique_connections(size):
    check_against_reference(fused_fn, reference_fn, *size, connections="unique", **F64)


@pytest.mark.parametrize("size", [(63, 65, 157), (300, 157, 65)], ids=lambda s: "x".join(map(str, s)))
def test_matches_reference_float32(size):
    check_against_reference(fused_fn, reference_fn, *size, **F32)


def test_self_pairs_and_repeated_inputs():
    # Every kind of sharing the scatter must handle: a == b, one input feeding many neurons as a and b.
    conn = torch.tensor([[0, 1, 1, 2, 0, 4, 4], [0, 1, 2, 1, 3, 4, 0]])
    check_against_reference(fused_fn, reference_fn, 65, 5, 7, connections=conn, **F64)
    check_against_reference(fused_fn, reference_fn, 65, 5, 7, connections=conn, training=False, **F64)


def test_weight_gradient_when_input_needs_none():
    # The first layer's input is data: the backward skips the input-gradient scatter entirely.
    x, w, conn = make_inputs(157, 63, 65)
    grads = []
    for fn in (fused_fn, reference_fn):
        wi = w.clone().requires_grad_()
        fn(x, wi, conn, True).backward(torch.ones(157, 65, dtype=torch.float64))
        grads.append(wi.grad)
    torch.testing.assert_close(grads[0], grads[1], **{k: v for k, v in F64.items() if k != "dtype"})


def test_grad_factor_scales_input_gradient():
    check_against_reference(fused_fn_with_grad_factor(2.0), reference_fn, 63, 65, 157, grad_factor=2.0, **F64)
    check_against_reference(fused_fn_with_grad_factor(0.5), reference_fn, 65, 157, 63, grad_factor=0.5,
                            training=False, **F64)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("size", [(1, 1, 1), (157, 65, 63), (63, 157, 157)], ids=lambda s: "x".join(map(str, s)))
def test_eval_mode_is_exact_on_bits(size, dtype):
    # Integer coefficients on {0, 1} inputs: every product and sum is exact, so equality is required.
    fast, ref, x, w, conn = check_against_reference(fused_fn, reference_fn, *size, inputs="bits", training=False,
                                                    exact=True, dtype=dtype, atol=0, rtol=0)
    ids = w.argmax(-1).numpy()
    xb = x.numpy().astype(bool)
    truth = gates.evaluate_bits(ids[None, :], xb[:, conn[0].numpy()], xb[:, conn[1].numpy()])
    assert np.array_equal(fast.numpy(), truth.astype(fast.numpy().dtype))


def test_input_layouts_and_output_layout():
    # Batch-major, feature-major and arbitrary-stride inputs give the same numbers; output is feature-major.
    x, w, conn = make_inputs(63, 157, 65)
    c = gate_coefficients(w, True)
    for variant in (x, x.t().contiguous().t(), torch.cat([x, x], 1)[:, ::2]):
        y = cpu.logic_layer(variant, c, conn)
        assert y.shape == (63, 65) and y.stride() == (1, 63)
        torch.testing.assert_close(y, reference.logic_layer_coefficients_reference(variant, c, conn),
                                   atol=1e-12, rtol=0)  # float64 reassociation of 4 terms
    # An expanded (stride 0) upstream gradient, as from y.sum(), must be materialised correctly.
    grads = []
    for fn in (cpu.logic_layer, reference.logic_layer_coefficients_reference):
        xi, ci = x.clone().requires_grad_(), c.detach().clone().requires_grad_()
        fn(xi, ci, conn).sum().backward()
        grads.append((xi.grad, ci.grad))
    for fast, ref in zip(*grads):
        torch.testing.assert_close(fast, ref, atol=1e-12, rtol=1e-12)  # sums of <= 157 float64 terms


@pytest.mark.parametrize("rows,cols", [(1, 1), (63, 157), (157, 65), (33, 1)])
def test_feature_major_transpose(rows, cols):
    for dtype in (torch.float32, torch.float64):
        t = torch.randn(rows, cols, dtype=dtype)
        assert torch.equal(cpu._feature_major(t), t.t().contiguous())


def test_thread_count_does_not_change_results():
    x, w, conn = make_inputs(300, 65, 157)
    c = gate_coefficients(w, True).detach()
    g = torch.randn(300, 157, dtype=torch.float64)
    gc = torch.randn(157, 4, dtype=torch.float64)
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(backward_op(g, x, c, conn) + (cpu.logic_layer(x, c, conn), ops.gate_coefficients(w),
                                                          ops.gate_coefficients_backward(w, gc),
                                                          ops.entry_coefficients(w[:, :4], "walsh"),
                                                          ops.entry_coefficients_backward(w[:, :4], gc, "walsh")))
    finally:
        torch.set_num_threads(before)
    (gx1, gc1, y1, c1, gw1, e1, ew1), (gx2, gc2, y2, c2, gw2, e2, ew2) = results
    assert torch.equal(y1, y2) and torch.equal(gx1, gx2)  # each element computed by one thread, same order
    assert torch.equal(c1, c2) and torch.equal(gw1, gw2)  # parameters -> coefficients: one thread per neuron
    assert torch.equal(e1, e2) and torch.equal(ew1, ew2)
    torch.testing.assert_close(gc1, gc2, atol=1e-12, rtol=0)  # partial sums per thread: summation order differs


def test_empty_batch():
    x, w, conn = make_inputs(1, 65, 63)
    x0 = x[:0].clone().requires_grad_()
    c = gate_coefficients(w, True).detach().requires_grad_()
    y = cpu.logic_layer(x0, c, conn)
    assert y.shape == (0, 63)
    y.sum().backward()
    assert x0.grad.shape == (0, 65) and torch.equal(c.grad, torch.zeros_like(c))


def test_custom_ops_pass_opcheck():
    x, w, conn = make_inputs(63, 65, 157)
    c = gate_coefficients(w, True).detach()
    torch.library.opcheck(ops.logic_layer, (x.requires_grad_(), c.requires_grad_(), conn))
    index, rows = make_coeff_index(157, "random")
    shared = gate_coefficients(make_inputs(1, 2, 157, rows=rows)[1], True).detach()
    torch.library.opcheck(ops.logic_layer, (x, shared.requires_grad_(), conn, index))
    g = torch.randn(63, 157, dtype=torch.float64)
    # The backward ops have no autograd of their own (no double backward), so no autograd checks for them.
    no_autograd = ("test_schema", "test_faketensor", "test_aot_dispatch_static")
    for args in ((c, conn, None, True, True), (shared, conn, index, True, True), (shared, conn, index, False, True),
                 (c, conn, None, True, False)):
        coeffs, k, i, need_x, need_coeffs = args
        torch.library.opcheck(ops.logic_layer_backward, (g, x.detach(), coeffs.detach(), k, i, None, None, None, None,
                                                         True, False, need_x, need_coeffs), test_utils=no_autograd)
    torch.library.opcheck(ops.gate_coefficients, (w.clone().requires_grad_(),))
    torch.library.opcheck(ops.gate_coefficients_backward, (w, torch.randn(157, 4, dtype=torch.float64)),
                          test_utils=no_autograd)


@pytest.mark.parametrize("case,message", [
    (lambda x, c, k: (x.half(), c.half(), k), "supports torch.float32, torch.float64; got x.dtype=torch.float16"),
    (lambda x, c, k: (x, c.float(), k), "coeffs.dtype=torch.float32 must equal x.dtype=torch.float64"),
    (lambda x, c, k: (x[0], c, k), "shape (N, in_dim), got shape (65,)"),
    (lambda x, c, k: (x, c[:5], k), "coeffs must have shape (out_dim, 4) = (157, 4)"),
    (lambda x, c, k: (x, c, k.int()), "connections must be int64, got torch.int32"),
    (lambda x, c, k: (x, c, k[:1]), "connections must have shape (2, out_dim), got (1, 157)"),
    (lambda x, c, k: (x, c, torch.cat([k[:, :-1], torch.tensor([[3], [65]])], 1)),
     "connections[1, 156] = 65 is outside [0, 64]"),
    (lambda x, c, k: (x, c, torch.cat([torch.tensor([[-1], [0]]), k[:, 1:]], 1)),
     "connections[0, 0] = -1 is outside [0, 64]"),
], ids=["half", "coeff-dtype", "1d", "coeff-shape", "int32-conn", "conn-shape", "conn-high", "conn-negative"])
def test_bad_input_errors_name_the_value(case, message):
    x, w, conn = make_inputs(63, 65, 157)
    with pytest.raises(ValueError, match=re.escape(message)):
        cpu.logic_layer(*case(x, gate_coefficients(w, True), conn))


COEFF_INDEX_ERRORS = [
    (lambda i: i.int(), "coeff_index must be int64, got torch.int32"),
    (lambda i: i[:-1], "coeff_index must have shape (out_dim,) = (157,) to match connections, got (156,)"),
    (lambda i: i[None], "coeff_index must have shape (out_dim,) = (157,) to match connections, got (1, 157)"),
    (lambda i: torch.cat([i[:100], torch.tensor([21]), i[101:]]), "coeff_index[100] = 21 is outside [0, 20] "
                                                                  "for coeffs with 21 rows"),
    (lambda i: torch.cat([torch.tensor([-3]), i[1:]]), "coeff_index[0] = -3 is outside [0, 20]"),
]
COEFF_INDEX_ERROR_IDS = ["int32", "short", "2d", "high", "negative"]


@pytest.mark.parametrize("bad,message", COEFF_INDEX_ERRORS, ids=COEFF_INDEX_ERROR_IDS)
@pytest.mark.parametrize("path", ["kernel", "dispatch", "reference"])
def test_bad_coeff_index_errors_name_the_value(bad, message, path):
    index, rows = make_coeff_index(157, "random")
    assert rows == 21
    x, w, conn = make_inputs(63, 65, 157, rows=rows)
    if path == "reference" and "int64" in message:  # the reference indexes with int32 as well
        return
    with pytest.raises(ValueError, match=re.escape(message)):
        if path == "kernel":
            cpu.logic_layer(x, gate_coefficients(w, True), conn, bad(index))
        else:
            kernels.logic_layer(x, w, conn, True, None if path == "dispatch" else "reference", coeff_index=bad(index))


def test_coeff_index_needs_matching_coeffs():
    index, rows = make_coeff_index(157, "random")
    x, w, conn = make_inputs(63, 65, 157, rows=rows)
    c = gate_coefficients(w, True)
    with pytest.raises(ValueError, match=re.escape("coeffs must have shape (rows, 4) with coeff_index, got (21,)")):
        cpu.logic_layer(x, c[:, 0], conn, index)
    with pytest.raises(ValueError, match=re.escape("coeffs has no rows (shape (0, 4)) but coeff_index maps 157")):
        cpu.logic_layer(x, c[:0], conn, index)
    with pytest.raises(ValueError, match=re.escape("coeffs must have shape (out_dim, 4) = (157, 4)")):
        cpu.logic_layer(x, c, conn)  # 21 rows without an index


# ---- shared coefficient rows (coeff_index) ---------------------------------------------------------

# (N, in_dim, out_dim): awkward sizes; N = 260 also takes the cache-line-aligned batch split.
INDEX_SIZES = [(1, 1, 1), (1, 63, 157), (63, 1, 65), (65, 157, 63), (157, 65, 157), (260, 65, 63)]


@pytest.mark.parametrize("kind", COEFF_INDEX_KINDS)
@pytest.mark.parametrize("size", INDEX_SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("tol", [F64, F32], ids=["f64", "f32"])
def test_coeff_index_coefficient_form_matches_reference(size, kind, tol):
    # Output, input gradient and the per-row sums of the coefficient gradient, against plain indexing.
    check_coefficients_against_reference(cpu.logic_layer, *size, coeff_index=kind, **tol)


@pytest.mark.parametrize("kind", COEFF_INDEX_KINDS)
@pytest.mark.parametrize("size", [(1, 63, 157), (157, 65, 63), (63, 157, 65)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_coeff_index_matches_reference_mixture(size, kind, training):
    check_against_reference(fused_fn, reference_fn, *size, training=training, coeff_index=kind, **F64)


@pytest.mark.parametrize("kind", ["random", "conv"])
@pytest.mark.parametrize("tol", [F64, F32], ids=["f64", "f32"])
def test_coeff_index_through_the_public_api(kind, tol):
    # diffgates.kernels.logic_layer with coeff_index: the C kernel and the coefficients op, vs the reference.
    check_against_reference(dispatch_fn, reference_fn, 65, 157, 157, coeff_index=kind, **tol)
    x, w, conn = make_inputs(5, 7, 9, rows=3)
    assert dispatch_fn(x, w, conn, True, torch.tensor([0, 2, 2, 0, 0, 2, 2, 2, 0])).stride() == (1, 5)  # the C kernel


def test_coeff_index_identity_equals_no_index():
    x, w, conn = make_inputs(63, 65, 157)
    c = gate_coefficients(w, True).detach()
    g = torch.randn(63, 157, dtype=torch.float64)
    identity = torch.arange(157)
    assert torch.equal(cpu.logic_layer(x, c, conn), cpu.logic_layer(x, c, conn, identity))
    for a, b in zip(backward_op(g, x, c, conn), backward_op(g, x, c, conn, identity)):
        assert torch.equal(a, b)


def test_coeff_index_thread_count_and_only_coefficient_gradient():
    # Per-thread (rows, 4) partial buffers: any thread count gives the same sums up to reassociation;
    # with need_x=False the coefficient gradient is unchanged.
    index, rows = make_coeff_index(157, "conv")
    x, w, conn = make_inputs(300, 65, 157, rows=rows)
    c = gate_coefficients(w, True).detach()
    g = torch.randn(300, 157, dtype=torch.float64)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(backward_op(g, x, c, conn, index))
    finally:
        torch.set_num_threads(before)
    (gx1, gc1), (gx2, gc2) = results
    assert torch.equal(gx1, gx2)
    torch.testing.assert_close(gc1, gc2, atol=1e-10, rtol=0)
    gx0, gc0 = backward_op(g, x, c, conn, index, need_x=False)
    assert gx0.numel() == 0 and gc0.shape == (rows, 4)
    torch.testing.assert_close(gc0, gc2, atol=1e-10, rtol=0)
    assert not gc0[5:].any()  # rows 5, 6: no neuron


def test_coeff_index_empty_batch():
    index, rows = make_coeff_index(63, "conv")
    x, w, conn = make_inputs(1, 65, 63, rows=rows)
    x0 = x[:0].clone().requires_grad_()
    c = gate_coefficients(w, True).detach().requires_grad_()
    y = cpu.logic_layer(x0, c, conn, index)
    assert y.shape == (0, 63)
    y.sum().backward()
    assert x0.grad.shape == (0, 65) and torch.equal(c.grad, torch.zeros_like(c))


# ---- the coefficients op and the fallbacks -----------------------------------------------------------

@pytest.mark.parametrize("out", [1, 15, 17, 157])  # the C kernel works in blocks of 16 neurons
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gate_coefficients_op_matches_reference(dtype, out):
    _, w, _ = make_inputs(1, 2, out, dtype=dtype, seed=4)
    if out > 1:  # extreme logits: a far-away gate (its exp underflows), a dominant gate, a 200-wide spread
        w[0, 3], w[1], w[-1, 5] = -1000, 50, 200
    w1, w2 = w.clone().requires_grad_(), w.clone().requires_grad_()
    c1, c2 = ops.gate_coefficients(w1), reference.gate_coefficients(w2, True)
    # The C kernel's exp is within ~1.5 ulp of libm's, and it reassociates sums of 16 terms.
    tol = dict(atol=1e-14, rtol=1e-13) if dtype == torch.float64 else dict(atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(c1, c2, **tol)
    g = torch.randn(out, 4, dtype=dtype, generator=torch.Generator().manual_seed(1))
    c1.backward(g)
    c2.backward(g)
    torch.testing.assert_close(w1.grad, w2.grad, **tol)


def test_gate_coefficients_op_other_dtypes_use_torch():
    # The C kernel computes in float32/float64; the op's CPU implementation is the reference's torch otherwise.
    _, w, _ = make_inputs(1, 2, 33, dtype=torch.bfloat16, seed=4)
    w1, w2 = w.clone().requires_grad_(), w.clone().requires_grad_()
    c1, c2 = ops.gate_coefficients(w1), reference.gate_coefficients(w2, True)
    assert torch.equal(c1, c2)
    c1.sum().backward()
    c2.sum().backward()
    torch.testing.assert_close(w1.grad, w2.grad, atol=1e-2, rtol=1e-2)  # bfloat16: the softmax backward differs


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_falls_back_with_one_warning(dtype, monkeypatch):
    monkeypatch.setattr(kernels, "_warned", set())  # the warning is once per process and dtype
    x, w, conn = make_inputs(17, 33, 65, dtype=dtype)
    index, rows = make_coeff_index(65, "conv")
    with pytest.warns(RuntimeWarning) as caught:
        y = kernels.logic_layer(x, w, conn, True)
        kernels.logic_layer(x, w, conn, True)
        y_shared = kernels.logic_layer(x, w[:rows], conn, True, coeff_index=index)
        layer = LogicLayer(33, 65).to(dtype)
        layer(x)
    messages = [str(m.message) for m in caught if issubclass(m.category, RuntimeWarning)]
    assert len(messages) == 1, messages
    assert f"not {str(dtype).removeprefix('torch.')}" in messages[0] and "reference" in messages[0]
    assert y.dtype == dtype and torch.equal(y, reference.logic_layer_reference(x, w, conn, True))
    assert torch.equal(y_shared, reference.logic_layer_reference(x, w[:rows], conn, True, index))
    with pytest.raises(ValueError, match="supports torch.float32, torch.float64"):  # an explicit choice raises
        kernels.logic_layer(x, w, conn, True, implementation="cpu")


def test_gpu_on_cpu_tensors_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x, w, conn = make_inputs(3, 5, 4)
    with pytest.raises(ValueError, match="runs on cuda tensors, but the input is on cpu .*TRITON_INTERPRET=1"):
        kernels.logic_layer(x, w, conn, True, implementation="gpu")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert kernels.resolve(None, torch.device("cpu"), torch.float32) == "cpu"  # never the interpreter unasked
    if kernels.unavailable_reason("gpu") is None:  # Triton installed: asked for, the interpreter runs
        assert kernels.resolve("gpu", torch.device("cpu")) == "gpu"


def test_layer_uses_kernel_by_default_and_agrees():
    torch.manual_seed(0)
    fused = LogicLayer(65, 157)
    ref = LogicLayer(65, 157, implementation="reference")
    ref.load_state_dict(fused.state_dict())
    x = torch.rand(63, 65)
    assert fused(x).stride() == (1, 63)  # the fused layout proves the kernel ran, not the reference
    torch.testing.assert_close(fused(x), ref(x), **{k: v for k, v in F32.items() if k != "dtype"})


_FALLBACK_SCRIPT = """
import warnings, torch
from diffgates import LogicLayer
from diffgates.kernels import cpu, resolve
reason = cpu.unavailable_reason()
assert reason and "/nonexistent" in reason, reason
torch.manual_seed(0)
model = torch.nn.Sequential(LogicLayer(20, 30), LogicLayer(30, 10))
ref = torch.nn.Sequential(LogicLayer(20, 30, implementation='reference'),
                          LogicLayer(30, 10, implementation='reference'))
ref.load_state_dict(model.state_dict())
x = torch.rand(5, 20)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = model(x); model(x)
assert torch.equal(out, ref(x))
msgs = [str(w.message) for w in caught]
assert len(msgs) == 1 and "not available" in msgs[0] and "/nonexistent" in msgs[0], msgs
try:
    LogicLayer(20, 30, implementation='cpu')(x)
except RuntimeError as exc:
    assert "not available" in str(exc), exc
else:
    raise AssertionError("implementation='cpu' without a compiler must raise")
print("OK")
"""


def test_without_compiler_falls_back_with_one_warning(tmp_path):
    # A fresh process: the compiler probe and the kernel's availability are cached per process.
    env = dict(os.environ, DIFFGATES_CC="/nonexistent", DIFFGATES_CACHE=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _FALLBACK_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr

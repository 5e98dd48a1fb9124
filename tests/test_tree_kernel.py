"""The fused logic-tree convolution kernel (diffgates.kernels.tree_cpu) against the plain reference:
forward and gradients with and without the fused max pool, ties and NaNs in the pool, thread-count
independence, the custom ops' registrations and the argument errors.

Run: python -m pytest tests/test_tree_kernel.py -q
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from diffgates.kernels import gate_coefficients, reference, tree_cpu
from diffgates.nn import tree_connections

TOL = {torch.float64: dict(atol=1e-11, rtol=1e-9), torch.float32: dict(atol=3e-5, rtol=2e-4)}
pytestmark = pytest.mark.skipif(tree_cpu.unavailable_reason() is not None, reason="no C compiler")

# (N, in_channels, out_channels, kernel_size, stride, padding, H, W, depth, pool): awkward batch sizes
# around the 64-column chunks, odd conv outputs that the pool truncates, overlapping pools.
CASES = [(1, 1, 1, (1, 1), 1, 0, 1, 1, 1, None),
         (63, 1, 3, (5, 5), 1, 0, 9, 9, 3, (2, 2, 2, 2)),
         (65, 3, 5, (3, 3), 2, 1, 7, 8, 2, None),
         (157, 2, 3, (3, 3), 1, 1, 6, 7, 3, (2, 2, 2, 2)),
         (2, 4, 7, (3, 2), 1, 2, 6, 5, 3, (2, 2, 2, 2)),
         (5, 6, 2, (3, 3), 3, 1, 11, 10, 4, None),
         (17, 2, 3, (3, 3), 1, 1, 8, 7, 3, (3, 3, 2, 2)),
         (65, 5, 4, (5, 5), 2, 2, 9, 11, 4, (2, 2, 2, 2)),
         (3, 3, 2, (3, 2), 3, 0, 10, 9, 1, (2, 1, 1, 1))]


def _inputs(case, dtype, bits: float | None = None):
    n, cin, cout, kernel, _, _, height, width, depth, _ = case
    gen = torch.Generator().manual_seed(n * 1000 + cin * 100 + cout * 10 + depth)
    conn = tree_connections(cin, cout, kernel, depth, 2, generator=gen)
    weights = torch.randn(cout, 2 ** depth - 1, 16, generator=gen, dtype=dtype)
    x = torch.rand(n, cin, height, width, generator=gen, dtype=dtype)
    if bits is not None:  # binary inputs, mostly 0: many windows tie exactly
        x = (x < bits).to(dtype)
    return x, weights, conn


def _reference(x, weights, conn, kernel, stride, padding, pool):
    y = reference.logic_tree_conv_reference(x, weights, conn, kernel, stride, padding, True)
    return y if pool is None else F.max_pool2d(y, pool[:2], pool[2:])


def _fused(x, weights, conn, kernel, stride, padding, pool):
    coeffs = gate_coefficients(weights.reshape(-1, 16), True)
    return tree_cpu.logic_tree_conv(x, coeffs, conn, kernel, stride, padding, pool)


def _run(fn, x, weights, conn, case, upstream=None):
    """(y, dL/dx, dL/dweights) of ``fn`` for L = <y, upstream> (a fixed random upstream by default)."""
    kernel, stride, padding, pool = case[3], case[4], case[5], case[9]
    xi, wi = x.clone().requires_grad_(), weights.clone().requires_grad_()
    y = fn(xi, wi, conn, kernel, stride, padding, pool)
    if upstream is None:
        upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=y.dtype)
    gx, gw = torch.autograd.grad(y, (xi, wi), upstream)
    return y.detach(), gx, gw


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_matches_reference(case, dtype):
    x, weights, conn = _inputs(case, dtype)
    fast, ref = _run(_fused, x, weights, conn, case), _run(_reference, x, weights, conn, case)
    assert fast[0].shape == ref[0].shape
    for f, r in zip(fast, ref):
        torch.testing.assert_close(f, r, **TOL[dtype])


def test_output_is_feature_major_and_strided_inputs_agree():
    case = CASES[3]
    x, weights, conn = _inputs(case, torch.float64)
    y = _fused(x, weights, conn, case[3], case[4], case[5], case[9])
    assert y.stride()[0] == 1  # a view of the (out H W, N) buffer
    # The same input as a feature-major view (what a fused layer below hands over) and channels-last.
    feature_major = x.reshape(x.shape[0], -1).t().contiguous().t().reshape(x.shape)
    for other in (feature_major, x.contiguous(memory_format=torch.channels_last)):
        for f, r in zip(_run(_fused, other, weights, conn, case), _run(_fused, x, weights, conn, case)):
            torch.testing.assert_close(f, r, atol=0, rtol=0)


def test_two_stacked_layers_match_reference():
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(65, 2, 8, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    layers = [(tree_connections(2, 6, (3, 3), 3, 2, generator=gen), torch.randn(6, 7, 16, generator=gen)),
              (tree_connections(6, 4, (3, 3), 3, 2, generator=gen), torch.randn(4, 7, 16, generator=gen))]
    weights = [w.double().requires_grad_() for _, w in layers]
    grads = []
    for fn in (_fused, _reference):
        h = x
        for (conn, _), w in zip(layers, weights):
            h = fn(h, w, conn, (3, 3), 1, 1, (2, 2, 2, 2))
        grads.append((h.detach(), *torch.autograd.grad(h.square().sum(), (x, *weights))))
    for f, r in zip(*grads):
        torch.testing.assert_close(f, r, **TOL[torch.float64])


def _winner_windows(y_conv, pool):
    """max_pool2d's winners of y_conv as row-major window indices, (out * Hp * Wp, N) like the op's."""
    ph, pw, sh, sw = pool
    pooled, flat = F.max_pool2d(y_conv, (ph, pw), (sh, sw), return_indices=True)
    rows, cols = flat // y_conv.shape[3], flat % y_conv.shape[3]
    hp, wp = pooled.shape[2:]
    rows = rows - (torch.arange(hp) * sh)[:, None]
    cols = cols - (torch.arange(wp) * sw)[None, :]
    return (rows * pw + cols).reshape(y_conv.shape[0], -1).t()


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[6]], ids=["5x5", "3x3", "overlapping"])
def test_pool_ties_on_bits_pick_the_first_maximum(case):
    x, weights, conn = _inputs(case, torch.float64, bits=0.15)
    kernel, stride, padding, pool = case[3], case[4], case[5], case[9]
    y_conv = reference.logic_tree_conv_reference(x, weights, conn, kernel, stride, padding, True)
    windows = y_conv.unfold(2, pool[0], pool[2]).unfold(3, pool[1], pool[3])  # (N, out, Hp, Wp, ph, pw)
    ties = windows == windows.amax((-2, -1), keepdim=True)
    assert (ties.flatten(-2).sum(-1) > 1).any()  # the case does have ties
    coeffs = gate_coefficients(weights.reshape(-1, 16), True)
    y, winners = tree_cpu.tree_conv_op(x, coeffs, conn, list(kernel), stride, padding, list(pool))
    assert winners.dtype == torch.uint8 and torch.equal(winners.long(), _winner_windows(y_conv, pool))
    for f, r in zip(_run(_fused, x, weights, conn, case), _run(_reference, x, weights, conn, case)):
        torch.testing.assert_close(f, r, **TOL[torch.float64])


def test_nan_wins_the_pool_as_in_max_pool2d():
    case = CASES[3]
    x, weights, conn = _inputs(case, torch.float64)
    x[3, 1, 4, 5] = float("nan")
    x[8, 0, 0, 0] = float("nan")
    kernel, stride, padding, pool = case[3], case[4], case[5], case[9]
    y_conv = reference.logic_tree_conv_reference(x, weights, conn, kernel, stride, padding, True)
    coeffs = gate_coefficients(weights.reshape(-1, 16), True)
    y, winners = tree_cpu.tree_conv_op(x, coeffs, conn, list(kernel), stride, padding, list(pool))
    expected = F.max_pool2d(y_conv, pool[:2], pool[2:])
    assert y.isnan().any() and torch.equal(y.isnan(), expected.isnan())
    torch.testing.assert_close(y, expected, equal_nan=True, **TOL[torch.float64])
    assert torch.equal(winners.long(), _winner_windows(y_conv, pool))


@pytest.mark.parametrize("case", [CASES[3], CASES[2]], ids=["pool", "no-pool"])
def test_thread_count_changes_neither_output_nor_input_gradient(case, monkeypatch):
    if not tree_cpu.has_openmp():
        pytest.skip("the kernel was built without OpenMP")
    monkeypatch.setattr(tree_cpu, "PARALLEL_GRAIN", 1)
    x, weights, conn = _inputs(case, torch.float32)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(_run(_fused, x, weights, conn, case))
    finally:
        torch.set_num_threads(before)
    (y1, gx1, gw1), (y2, gx2, gw2) = results
    assert torch.equal(y1, y2) and torch.equal(gx1, gx2)
    torch.testing.assert_close(gw1, gw2, **TOL[torch.float32])  # the partial sums are added per thread


def test_only_the_gradients_asked_for():
    case = CASES[1]
    x, weights, conn = _inputs(case, torch.float64)
    coeffs = gate_coefficients(weights.reshape(-1, 16), True).detach()
    args = (list(case[3]), case[4], case[5], list(case[9]))
    y, winners = tree_cpu.tree_conv_op(x, coeffs, conn, *args)
    g = torch.randn(y.shape, dtype=torch.float64)
    gx, gc = tree_cpu.tree_conv_backward_op(g, x, coeffs, conn, winners, *args, True, True)
    only_x = tree_cpu.tree_conv_backward_op(g, x, coeffs, conn, winners, *args, True, False)
    only_c = tree_cpu.tree_conv_backward_op(g, x, coeffs, conn, winners, *args, False, True)
    assert only_x[1].numel() == 0 and only_c[0].numel() == 0
    assert torch.equal(only_x[0], gx) and torch.equal(only_c[1], gc)
    coeffs.requires_grad_()
    (grad_c,) = torch.autograd.grad(tree_cpu.logic_tree_conv(x, coeffs, conn, *args), coeffs, g)  # x needs none
    assert torch.equal(grad_c, gc)


def test_empty_batch():
    x, weights, conn = _inputs(CASES[3], torch.float32)
    x0 = x[:0].clone().requires_grad_()
    c = gate_coefficients(weights.reshape(-1, 16), True).detach().requires_grad_()
    y = tree_cpu.logic_tree_conv(x0, c, conn, (3, 3), 1, 1, (2, 2, 2, 2))
    assert y.shape == (0, 3, 3, 3)
    y.sum().backward()
    assert x0.grad.shape == x0.shape and torch.equal(c.grad, torch.zeros_like(c))


def test_custom_ops_pass_opcheck():
    x, weights, conn = _inputs(CASES[6], torch.float64)
    c = gate_coefficients(weights.reshape(-1, 16), True).detach()
    for pool in ([3, 3, 2, 2], None):
        torch.library.opcheck(tree_cpu.tree_conv_op, (x.clone().requires_grad_(), c.clone().requires_grad_(), conn,
                                                      [3, 3], 1, 1, pool))
        y, winners = tree_cpu.tree_conv_op(x, c, conn, [3, 3], 1, 1, pool)
        # The backward op has no autograd of its own (no double backward), so no autograd checks for it.
        torch.library.opcheck(tree_cpu.tree_conv_backward_op,
                              (torch.randn(y.shape, dtype=torch.float64), x, c, conn, winners, [3, 3], 1, 1, pool,
                               True, True), test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def _bad_connections(conn, tree, leaf, field, value):
    conn = conn.clone()
    conn[tree, leaf, field] = value
    return conn


@pytest.mark.parametrize("change,message", [
    (lambda x, c, k, a: ((x.half(), c.half(), k), a), "supports torch.float32, torch.float64; got x.dtype=torch.float16"),
    (lambda x, c, k, a: ((x.long(), c, k), a), "got x.dtype=torch.int64"),
    (lambda x, c, k, a: ((x[0], c, k), a), r"x of shape \(N, C, H, W\), got shape \(3, 8, 8\)"),
    (lambda x, c, k, a: ((x, c.float(), k), a), "coeffs.dtype=torch.float32 must equal x.dtype=torch.float64"),
    (lambda x, c, k, a: ((x, c[:-1], k), a), r"coeffs must have shape \(out \* \(2\^depth - 1\), 4\) = \(28, 4\)"),
    (lambda x, c, k, a: ((x, c, k.int()), a), "connections must be int64, got torch.int32"),
    (lambda x, c, k, a: ((x, c, k[:, :6]), a), "2\\^depth >= 2 leaves per tree, got 6"),
    (lambda x, c, k, a: ((x, c, k[..., :2]), a), r"connections must have shape \(out, 2\^depth, 3\), got \(4, 8, 2\)"),
    (lambda x, c, k, a: ((x, c, _bad_connections(k, 1, 2, 0, 3)), a),
     r"connections\[1, 2, 0\] = 3 is outside \[0, 2\] for x with 3 channels"),
    (lambda x, c, k, a: ((x, c, _bad_connections(k, 3, 7, 1, -1)), a),
     r"connections\[3, 7, 1\] = -1 is outside \[0, 2\] for kernel_size\[0\] = 3 \(dy\)"),
    (lambda x, c, k, a: ((x, c, _bad_connections(k, 0, 5, 2, 3)), a),
     r"connections\[0, 5, 2\] = 3 is outside \[0, 2\] for kernel_size\[1\] = 3 \(dx\)"),
    (lambda x, c, k, a: ((x[..., :1, :1], c, k), dict(a, padding=0)),
     r"kernel_size=\(3, 3\) with padding=0 needs an input of at least 3 x 3, got 1 x 1"),
    (lambda x, c, k, a: ((x, c, k), dict(a, stride=0)), "stride must be an integer >= 1, got stride=0"),
    (lambda x, c, k, a: ((x, c, k), dict(a, padding=-1)), "padding must be an integer >= 0, got padding=-1"),
    (lambda x, c, k, a: ((x, c, k), dict(a, kernel_size=3)), "kernel_size must be a sequence of 2 integers, got "
                                                             "kernel_size=3"),
    (lambda x, c, k, a: ((x, c, k), dict(a, pool=(2, 2))), r"pool must be a sequence of 4 integers, got pool=\(2, 2\)"),
    (lambda x, c, k, a: ((x, c, k), dict(a, pool=(2, 0, 2, 2))), r"must be positive, got pool=\(2, 0, 2, 2\)"),
    (lambda x, c, k, a: ((x, c, k), dict(a, pool=(16, 17, 1, 1))), r"at most 256 elements .*pool=\(16, 17, 1, 1\)"),
    (lambda x, c, k, a: ((x, c, k), dict(a, pool=(9, 2, 1, 1))),
     r"pool=\(9, 2, 1, 1\) needs a convolution output of at least 9 x 2, got 8 x 8"),
])
def test_bad_arguments_are_named(change, message):
    x, weights, conn = _inputs((3, 3, 4, (3, 3), 1, 1, 8, 8, 3, None), torch.float64)
    c = gate_coefficients(weights.reshape(-1, 16), True)
    (x, c, conn), args = change(x, c, conn, dict(kernel_size=(3, 3), stride=1, padding=1, pool=None))
    with pytest.raises(ValueError, match=message):
        tree_cpu.logic_tree_conv(x, c, conn, **args)


def test_backward_op_checks_grad_and_winners():
    x, weights, conn = _inputs(CASES[3], torch.float64)
    c = gate_coefficients(weights.reshape(-1, 16), True).detach()
    args = ([3, 3], 1, 1, [2, 2, 2, 2])
    y, winners = tree_cpu.tree_conv_op(x, c, conn, *args)
    with pytest.raises(ValueError, match=r"grad must be \(157, 3, 3, 3\) torch.float64, got \(157, 3, 3, 2\)"):
        tree_cpu.tree_conv_backward_op(y[..., :2], x, c, conn, winners, *args, True, True)
    with pytest.raises(ValueError, match=r"winners must be \(27, 157\) torch.uint8 \(from the forward op\), got "
                                         r"\(27, 157\) torch.int64"):
        tree_cpu.tree_conv_backward_op(y, x, c, conn, winners.long(), *args, True, True)

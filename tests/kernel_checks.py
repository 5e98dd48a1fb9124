"""Shared test helper: check a fast LogicLayer kernel against the reference (forward, dL/dx, dL/dweights).

Like tinygrad's ``helper_test_op``: one function builds the inputs, runs both implementations on the
same data, backpropagates the same upstream gradient through both and compares output, input gradient
and logit gradient, plus shape and dtype. A kernel test only supplies its own ``fast_fn``::

    from kernel_checks import check_against_reference, reference_fn
    fast = lambda x, w, c, training: my_kernel(x, gate_coefficients(w, training), c)
    check_against_reference(fast, reference_fn, n=63, in_dim=65, out_dim=157, dtype=torch.float64,
                            atol=1e-12, rtol=1e-10)

Both functions take ``(x, weights, connections, training)`` like
``diffgates.kernels.reference.logic_layer_reference`` and return the (N, out_dim) layer output; with
``coeff_index=`` (shared gates) they are also passed ``coeff_index=`` and the weights have
one row per shared gate. ``check_coefficients_against_reference`` checks a kernel over the
4-coefficient form directly (output, input gradient and coefficient gradient), the form in which
shared rows' gradients are summed.
"""
from __future__ import annotations

import torch

from diffgates.kernels.reference import (gate_coefficients, logic_layer_coefficients_reference,
                                         logic_layer_reference)
from diffgates.nn.connections import make_connections

# Kinds of coefficient index ``make_coeff_index`` builds: every one shares rows among many neurons
# and (except 'one') leaves some rows without any neuron, whose gradient must be exactly zero.
COEFF_INDEX_KINDS = ("random", "conv", "one", "sorted")


def reference_fn(x: torch.Tensor, weights: torch.Tensor, connections: torch.Tensor, training: bool,
                 coeff_index: torch.Tensor | None = None) -> torch.Tensor:
    """The executable spec, with the signature ``check_against_reference`` expects."""
    return logic_layer_reference(x, weights, connections, training, coeff_index)


def make_coeff_index(out_dim: int, kind: str = "random", *, seed: int = 0, device: str = "cpu"):
    """An (out_dim,) int64 coefficient index and its row count.

    Kinds: 'random' (rows about out_dim / 8 + 1, any neuron any row, the last two rows unused),
    'conv' (neuron j uses row j % 5 of 7: a convolution's channels over its positions), 'one' (every
    neuron shares row 0 of 1), 'sorted' (runs of neurons per row, unused rows between them).

    Returns:
        (coeff_index, rows) with every index in [0, rows).
    """
    gen = torch.Generator().manual_seed(seed + 11)
    if kind == "random":
        used = max(1, out_dim // 8)
        index, rows = torch.randint(0, used, (out_dim,), generator=gen), used + 2
    elif kind == "conv":
        index, rows = torch.arange(out_dim) % 5, 7
    elif kind == "one":
        index, rows = torch.zeros(out_dim, dtype=torch.int64), 1
    elif kind == "sorted":
        index, rows = 2 * (torch.arange(out_dim) * 4 // max(out_dim, 1)) + 1, 9  # rows 1, 3, 5, 7 in runs
    else:
        raise ValueError(f"kind={kind!r}: expected one of {COEFF_INDEX_KINDS}")
    return index.to(device), rows


def make_inputs(n: int, in_dim: int, out_dim: int, *, dtype: torch.dtype = torch.float64, device: str = "cpu",
                connections: str | torch.Tensor = "random", inputs: str = "uniform", seed: int = 0,
                rows: int | None = None):
    """Reproducible (x, weights, connections) for a layer check.

    Args:
        n, in_dim, out_dim: batch size, input features, neurons.
        dtype, device: of x and weights.
        connections: 'random', 'unique' or an explicit (2, out_dim) int64 tensor.
        inputs: 'uniform' (probabilities in [0, 1)) or 'bits' (exactly 0.0 / 1.0).
        seed: seeds a private generator, so the global RNG is left alone.
        rows: rows of weights (shared gates, with a coefficient index); default out_dim.

    Returns:
        (x, weights, connections): x (n, in_dim), weights (rows, 16) with spread-out logits
        (std 3, so the softmax is far from uniform and argmax ties are improbable), connections (2, out_dim).
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, in_dim, generator=gen, dtype=torch.float64)
    if inputs == "bits":
        x = (x > 0.5).to(torch.float64)
    elif inputs != "uniform":
        raise ValueError(f"inputs={inputs!r}: expected 'uniform' or 'bits'")
    weights = 3 * torch.randn(out_dim if rows is None else rows, 16, generator=gen, dtype=torch.float64)
    if isinstance(connections, str):
        connections = make_connections(connections, in_dim, out_dim, generator=gen)
    return x.to(dtype=dtype, device=device), weights.to(dtype=dtype, device=device), connections.to(device)


def check_against_reference(fast_fn, ref_fn, n: int, in_dim: int, out_dim: int, *, dtype: torch.dtype,
                            atol: float, rtol: float, training: bool = True, connections="random",
                            inputs: str = "uniform", grad_factor: float = 1.0, device: str = "cpu",
                            seed: int = 0, exact: bool = False, coeff_index: str | None = None):
    """Assert ``fast_fn`` matches ``ref_fn`` in output, input gradient and weight (logit) gradient.

    Args:
        fast_fn, ref_fn: ``(x, weights, connections, training) -> (N, out_dim)``.
        n, in_dim, out_dim: problem size (use awkward ones: 1, 63, 65, 157).
        dtype, device: of x and weights.
        atol, rtol: tolerances for the float comparisons (``torch.testing.assert_close``).
        training: train mode (softmax mixture) or eval mode (argmax gate; no logit gradient exists).
        connections: 'random', 'unique' or an explicit (2, out_dim) tensor (e.g. with self pairs).
        inputs: 'uniform' or 'bits' (see ``make_inputs``).
        grad_factor: the factor ``fast_fn`` applies to the gradient of x (``ref_fn`` applies none), so
            the fast input gradient must equal ``grad_factor`` times the reference one.
        seed: for the inputs and the upstream gradient.
        exact: compare the forward output with ``torch.equal`` instead of the tolerances.
        coeff_index: None, or a ``make_coeff_index`` kind: both functions then get
            ``coeff_index=`` and weights with that many rows (shared gates).

    Returns:
        (fast_out, ref_out, x, weights, connections) for further checks by the caller.
    """
    extra, rows = {}, None
    if coeff_index is not None:
        index, rows = make_coeff_index(out_dim, coeff_index, seed=seed, device=device)
        extra = {"coeff_index": index}
    x, w, conn = make_inputs(n, in_dim, out_dim, dtype=dtype, device=device, connections=connections,
                             inputs=inputs, seed=seed, rows=rows)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    ws = [w.clone().requires_grad_(), w.clone().requires_grad_()]
    outs = [fn(xi, wi, conn, training, **extra) for fn, xi, wi in zip((fast_fn, ref_fn), xs, ws)]
    fast, ref = outs
    assert fast.shape == ref.shape == (n, out_dim), f"shape: fast {tuple(fast.shape)}, reference {tuple(ref.shape)}"
    assert fast.dtype == ref.dtype == dtype, f"dtype: fast {fast.dtype}, reference {ref.dtype}"
    assert fast.device == ref.device
    if exact:
        assert torch.equal(fast, ref), f"forward differs at {(fast != ref).nonzero()[:5].tolist()}"
    else:
        torch.testing.assert_close(fast, ref, atol=atol, rtol=rtol, msg=lambda m: f"forward: {m}")

    # Same upstream gradient for both; it need not be a valid loss gradient, any direction will do.
    upstream = torch.randn(n, out_dim, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    upstream = upstream.to(dtype=dtype, device=device)
    for out in outs:
        if out.requires_grad:
            out.backward(upstream)
    torch.testing.assert_close(xs[0].grad, grad_factor * xs[1].grad, atol=atol, rtol=rtol,
                               msg=lambda m: f"input gradient: {m}")
    if training:
        # A shared row's gradient sums out_dim / rows times more terms: its rounding error grows as much.
        share = max(1, out_dim // rows) if rows else 1
        torch.testing.assert_close(ws[0].grad, ws[1].grad, atol=atol * share, rtol=rtol,
                                   msg=lambda m: f"weight gradient: {m}")
    else:  # argmax is piecewise constant: no gradient may reach the logits on either path
        assert ws[0].grad is None or not ws[0].grad.any(), "eval mode produced a logit gradient"
        assert ws[1].grad is None or not ws[1].grad.any()
    return fast.detach(), ref.detach(), x, w, conn


def check_coefficients_against_reference(fast_fn, n: int, in_dim: int, out_dim: int, *, dtype: torch.dtype,
                                         atol: float, rtol: float, coeff_index: str | None = "random",
                                         device: str = "cpu", seed: int = 0, connections="random"):
    """Assert ``fast_fn(x, coeffs, connections, coeff_index)`` matches the 4-coefficient reference.

    Compares the output, dL/dx and dL/dcoeffs (with a coefficient index: the per-row sums over the
    neurons sharing a row; rows no neuron uses must get exactly zero) against
    ``reference.logic_layer_coefficients_reference``, for the same upstream gradient.

    Returns:
        (coeff_index or None, rows, grad_coeffs of the fast function).
    """
    index, rows = (None, out_dim) if coeff_index is None else make_coeff_index(out_dim, coeff_index, seed=seed,
                                                                                device=device)
    x, w, conn = make_inputs(n, in_dim, out_dim, dtype=dtype, device=device, seed=seed, rows=rows,
                             connections=connections)
    coeffs = gate_coefficients(w, True).detach()
    fns = (fast_fn, logic_layer_coefficients_reference)
    xs = [x.clone().requires_grad_() for _ in fns]
    cs = [coeffs.clone().requires_grad_() for _ in fns]
    outs = [fn(xi, ci, conn, index) for fn, xi, ci in zip(fns, xs, cs)]
    assert outs[0].shape == (n, out_dim) and outs[0].dtype == dtype
    torch.testing.assert_close(outs[0], outs[1], atol=atol, rtol=rtol, msg=lambda m: f"forward: {m}")
    upstream = torch.randn(n, out_dim, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    upstream = upstream.to(dtype=dtype, device=device)
    for out in outs:
        out.backward(upstream)
    torch.testing.assert_close(xs[0].grad, xs[1].grad, atol=atol, rtol=rtol, msg=lambda m: f"input gradient: {m}")
    # A shared row's gradient sums out_dim / rows times more terms: its rounding error grows as much.
    torch.testing.assert_close(cs[0].grad, cs[1].grad, atol=atol * max(1, out_dim // rows), rtol=rtol,
                               msg=lambda m: f"coefficient gradient: {m}")
    if index is not None:
        unused = torch.ones(rows, dtype=torch.bool, device=device)
        unused[index] = False
        assert not cs[0].grad[unused].any(), "a row no neuron uses got a gradient"
    return index, rows, cs[0].grad

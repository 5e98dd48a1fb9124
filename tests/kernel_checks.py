"""Shared test helper: check a fast LogicLayer kernel against the reference (forward, dL/dx, dL/dweights).

Like tinygrad's ``helper_test_op``: one function builds the inputs, runs both implementations on the
same data, backpropagates the same upstream gradient through both and compares output, input gradient
and logit gradient, plus shape and dtype. A kernel test only supplies its own ``fast_fn``::

    from kernel_checks import check_against_reference, reference_fn
    fast = lambda x, w, c, training: my_kernel(x, gate_coefficients(w, training), c)
    check_against_reference(fast, reference_fn, n=63, in_dim=65, out_dim=157, dtype=torch.float64,
                            atol=1e-12, rtol=1e-10)

Both functions take ``(x, weights, connections, training)`` like
``diffgates.kernels.reference.logic_layer_reference`` and return the (N, out_dim) layer output.
"""
from __future__ import annotations

import torch

from diffgates.kernels.reference import logic_layer_reference
from diffgates.nn.connections import make_connections


def reference_fn(x: torch.Tensor, weights: torch.Tensor, connections: torch.Tensor, training: bool) -> torch.Tensor:
    """The executable spec, with the signature ``check_against_reference`` expects."""
    return logic_layer_reference(x, weights, connections, training)


def make_inputs(n: int, in_dim: int, out_dim: int, *, dtype: torch.dtype = torch.float64, device: str = "cpu",
                connections: str | torch.Tensor = "random", inputs: str = "uniform", seed: int = 0):
    """Reproducible (x, weights, connections) for a layer check.

    Args:
        n, in_dim, out_dim: batch size, input features, neurons.
        dtype, device: of x and weights.
        connections: 'random', 'unique' or an explicit (2, out_dim) int64 tensor.
        inputs: 'uniform' (probabilities in [0, 1)) or 'bits' (exactly 0.0 / 1.0).
        seed: seeds a private generator, so the global RNG is left alone.

    Returns:
        (x, weights, connections): x (n, in_dim), weights (out_dim, 16) with spread-out logits
        (std 3, so the softmax is far from uniform and argmax ties are improbable), connections (2, out_dim).
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, in_dim, generator=gen, dtype=torch.float64)
    if inputs == "bits":
        x = (x > 0.5).to(torch.float64)
    elif inputs != "uniform":
        raise ValueError(f"inputs={inputs!r}: expected 'uniform' or 'bits'")
    weights = 3 * torch.randn(out_dim, 16, generator=gen, dtype=torch.float64)
    if isinstance(connections, str):
        connections = make_connections(connections, in_dim, out_dim, generator=gen)
    return x.to(dtype=dtype, device=device), weights.to(dtype=dtype, device=device), connections.to(device)


def check_against_reference(fast_fn, ref_fn, n: int, in_dim: int, out_dim: int, *, dtype: torch.dtype,
                            atol: float, rtol: float, training: bool = True, connections="random",
                            inputs: str = "uniform", grad_factor: float = 1.0, device: str = "cpu",
                            seed: int = 0, exact: bool = False):
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

    Returns:
        (fast_out, ref_out, x, weights, connections) for further checks by the caller.
    """
    x, w, conn = make_inputs(n, in_dim, out_dim, dtype=dtype, device=device, connections=connections,
                             inputs=inputs, seed=seed)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    ws = [w.clone().requires_grad_(), w.clone().requires_grad_()]
    outs = [fn(xi, wi, conn, training) for fn, xi, wi in zip((fast_fn, ref_fn), xs, ws)]
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
        torch.testing.assert_close(ws[0].grad, ws[1].grad, atol=atol, rtol=rtol,
                                   msg=lambda m: f"weight gradient: {m}")
    else:  # argmax is piecewise constant: no gradient may reach the logits on either path
        assert ws[0].grad is None or not ws[0].grad.any(), "eval mode produced a logit gradient"
        assert ws[1].grad is None or not ws[1].grad.any()
    return fast.detach(), ref.detach(), x, w, conn

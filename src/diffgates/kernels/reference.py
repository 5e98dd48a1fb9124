"""Plain-PyTorch reference for the LogicLayer computation: the executable spec every kernel must match.

``logic_layer_reference`` is each paper's formulation verbatim. softmax16: each neuron mixes the 16
gate relaxations (written out one by one from ``diffgates.gates.COEFFS``) with softmax weights in
training mode, or takes the one-hot argmax gate in eval mode; deliberately simple and slow (16 ops
over (N, out_dim) tensors), it is also the "plain 16-op mixture" the benchmarks compare against.
iwp/walsh: the sum over the four truth-table entries of the entry's value times its probability,
e.g. (1 - a) b for (0, 1). The mixing weights, and any sampling noise, come from
``parametrizations.basis_weights``, so a reference and a fused call seeded alike draw the same noise.

``gate_coefficients`` is the collapsed form used by the fused kernels: per neuron the 4 numbers
(c0, c1, c2, c3) with output = c0 + c1 a + c2 b + c3 ab.

Both layer functions take an optional (out,) ``coeff_index``: neuron j then uses row
``coeff_index[j]`` of the logits (or coefficients), so many neurons share one gate's parameters;
indexing makes autograd sum the shared rows' gradients, which is the spec the kernels follow.

Not runnable; ``tests/test_gates.py`` checks the two forms against each other.
"""
from __future__ import annotations

import functools

import torch

from .. import gates
from . import parametrizations


def gate_probabilities(weights: torch.Tensor, training: bool) -> torch.Tensor:
    """(out, 16) mixing weights: softmax in training mode, one-hot argmax in eval mode."""
    if training:
        return torch.softmax(weights, dim=-1)
    return torch.nn.functional.one_hot(weights.argmax(-1), gates.NUM_GATES).to(weights.dtype)


@functools.lru_cache(maxsize=None)
def _coefficient_matrix(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(gates.COEFFS, dtype=dtype, device=device)


def coefficient_matrix(dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """(16, 4) tensor of ``gates.COEFFS``: mixing weights @ this = per-neuron coefficients.

    Cached per (dtype, device): a fresh host-to-device copy every step would sync a GPU and break
    CUDA-graph capture.
    """
    return _coefficient_matrix(dtype, torch.device(device))


def gate_coefficients(weights: torch.Tensor, training: bool) -> torch.Tensor:
    """(out, 4) coefficients (c0, c1, c2, c3) of each neuron's (mixed) relaxation; differentiable."""
    probs = gate_probabilities(weights, training)
    return probs @ coefficient_matrix(probs.dtype, probs.device)


def logic_layer_reference(x: torch.Tensor, weights: torch.Tensor, connections: torch.Tensor,
                          training: bool, coeff_index: torch.Tensor | None = None,
                          parametrization: str = "softmax16", sampling: str = "soft",
                          gumbel_tau: float = 1.0) -> torch.Tensor:
    """(N, in) probabilities -> (N, out): the relaxation's mixture, one term per gate or truth-table entry.

    ``weights`` is (out, P), or (rows, P) with an (out,) ``coeff_index`` (neuron j: row coeff_index[j]),
    with P = ``parametrizations.width(parametrization)``.
    """
    a = x[:, connections[0]]
    b = x[:, connections[1]]
    mix = parametrizations.basis_weights(parametrization, weights, training, sampling, gumbel_tau)
    if coeff_index is not None:
        mix = mix[coeff_index]
    return mixture(a, b, mix, parametrization)


def mixture(a: torch.Tensor, b: torch.Tensor, mix: torch.Tensor, parametrization: str) -> torch.Tensor:
    """The relaxation of gates with mixing weights ``mix`` (..., 16 or 4) on inputs a, b (broadcast to
    ``mix.shape[:-1]``): one term per gate, or per truth-table entry for iwp/walsh."""
    out = torch.zeros_like(a)
    if parametrization != "softmax16":
        # P(entry) for the entries (0,0), (0,1), (1,0), (1,1) of independent input bits.
        na, nb = 1 - a, 1 - b
        for e, p_entry in enumerate((na * nb, na * b, a * nb, a * b)):
            out = out + mix[..., e] * p_entry
        return out
    ab = a * b
    # Each gate's relaxation, from its coefficients over {1, a, b, ab} (product logic).
    for g in gates.GATES:
        c0, c1, c2, c3 = g.coeffs
        relaxed = c0 + c1 * a + c2 * b + c3 * ab if any(g.coeffs) else torch.zeros_like(a)
        out = out + mix[..., g.id] * relaxed
    return out


def logic_tree_conv_reference(x: torch.Tensor, weights: torch.Tensor, connections: torch.Tensor,
                              kernel_size: tuple[int, int], stride: int, padding: int, training: bool, parametrization: str = "softmax16",
                              sampling: str = "soft", gumbel_tau: float = 1.0) -> torch.Tensor:
    """LogicConv2d by its definition: (N, C, H, W) -> (N, out, H_out, W_out).

    ``weights`` (out, 2^d - 1, P) are each tree's gates, level 0 first (gate i reads leaves 2i, 2i+1;
    a gate of the next level reads two adjacent gates of the level below); ``connections``
    (out, 2^d, 3) the leaves' (channel, dy, dx). At output (i, j) a leaf reads the zero-padded input at
    (channel, i*stride + dy, j*stride + dx), offsets within ``kernel_size`` (kh, kw). Every position
    shares the tree's gates.
    """
    n, _, height, width = x.shape
    out, leaves = connections.shape[0], connections.shape[1]
    kh, kw = kernel_size
    xp = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    h_out = (height + 2 * padding - kh) // stride + 1
    w_out = (width + 2 * padding - kw) // stride + 1
    rows = torch.arange(h_out, device=x.device) * stride
    cols = torch.arange(w_out, device=x.device) * stride
    ch, dy, dx = connections[..., 0], connections[..., 1], connections[..., 2]
    # (N, out, leaves, H_out, W_out): every leaf at every output position.
    h = xp[:, ch[:, :, None, None], (dy[:, :, None] + rows)[:, :, :, None], (dx[:, :, None] + cols)[:, :, None, :]]
    mix = parametrizations.basis_weights(parametrization, weights.reshape(-1, weights.shape[-1]), training,
                                         sampling, gumbel_tau).reshape(out, leaves - 1, -1)
    first = 0
    while h.shape[2] > 1:
        gates_here = h.shape[2] // 2
        level_mix = mix[:, first:first + gates_here, None, None, :]  # (out, gates, 1, 1, P): shared by positions
        h = mixture(h[:, :, 0::2], h[:, :, 1::2], level_mix, parametrization)
        first += gates_here
    return h[:, :, 0]


def logic_layer_coefficients_reference(x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor,
                                       coeff_index: torch.Tensor | None = None) -> torch.Tensor:
    """(N, in), (out, 4) -> (N, out): the collapsed 4-coefficient form in plain PyTorch.

    With an (out,) ``coeff_index``, coeffs is (rows, 4) and neuron j uses ``coeffs[coeff_index[j]]``.
    """
    if coeff_index is not None:
        coeffs = coeffs[coeff_index]
    a = x[:, connections[0]]
    b = x[:, connections[1]]
    return coeffs[:, 0] + coeffs[:, 1] * a + coeffs[:, 2] * b + coeffs[:, 3] * (a * b)

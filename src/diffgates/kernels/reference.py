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
    out = torch.zeros_like(a)
    if parametrization != "softmax16":
        # P(entry) for the entries (0,0), (0,1), (1,0), (1,1) of independent input bits.
        na, nb = 1 - a, 1 - b
        for e, p_entry in enumerate((na * nb, na * b, a * nb, a * b)):
            out = out + mix[:, e] * p_entry
        return out
    ab = a * b
    # Each gate's relaxation, from its coefficients over {1, a, b, ab} (product logic).
    for g in gates.GATES:
        c0, c1, c2, c3 = g.coeffs
        relaxed = c0 + c1 * a + c2 * b + c3 * ab if any(g.coeffs) else torch.zeros_like(a)
        out = out + mix[:, g.id] * relaxed
    return out


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

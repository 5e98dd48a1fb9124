"""Fixed input wiring of a LogicLayer: which two inputs (a, b) each neuron reads.

``'random'``: draw the 2*out input slots as ``randperm(2*out) % in`` (so every input appears
floor(2*out/in) or more times), relabel inputs through a random permutation, split into a and b.
Self pairs (a == b) are possible. ``'unique'``: distinct unordered pairs with a != b, taken as
neighbour pairs first ((0,1), (2,3), ...; then ..., (3,4), (1,2) from the end), then pairs at
offsets 2, 3, ..., and shuffled over the neurons. The inputs keep their order, as in the original:
on a flattened W-wide image the first layer reads pixels up to a few columns apart and, at offset
W, vertical neighbours, a locality that is the point of this scheme.
Both draw from torch's global RNG (or ``generator``), so ``torch.manual_seed`` fixes the wiring.
"""
from __future__ import annotations

import torch

CONNECTION_KINDS = ("random", "unique")


def random_connections(in_dim: int, out_dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    slots = torch.randperm(2 * out_dim, generator=generator) % in_dim
    relabel = torch.randperm(in_dim, generator=generator)
    return relabel[slots].reshape(2, out_dim)


def _unique_pairs(in_dim: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` distinct pairs (i, i+offset) in neighbour-first order."""
    idx = torch.arange(in_dim)
    # Offset 1 is taken in two interleaved rounds so that the first round touches every input once.
    # The second round runs from the end: for odd in_dim its first pair (in-2, in-1) reaches the one
    # input round 1 leaves out, so every input is used as soon as 2*out_dim >= in_dim.
    rounds = [(idx[0:-1:2], idx[1::2]), (idx[1:-1:2].flip(0), idx[2::2].flip(0))]
    rounds += [(idx[:-offset], idx[offset:]) for offset in range(2, in_dim)]
    a_parts, b_parts, have = [], [], 0
    for a, b in rounds:
        n = min(len(a), len(b), count - have)
        a_parts.append(a[:n])
        b_parts.append(b[:n])
        have += n
        if have == count:
            break
    return torch.cat(a_parts), torch.cat(b_parts)


def unique_connections(in_dim: int, out_dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    max_pairs = in_dim * (in_dim - 1) // 2
    if out_dim > max_pairs:
        raise ValueError(f"connections='unique' needs out_dim <= in_dim*(in_dim-1)/2 distinct pairs: "
                         f"in_dim={in_dim} allows at most {max_pairs} neurons, got out_dim={out_dim}")
    a, b = _unique_pairs(in_dim, out_dim)
    order = torch.randperm(out_dim, generator=generator)  # only the neurons are shuffled, not the inputs
    return torch.stack([a[order], b[order]])


def make_connections(kind: str, in_dim: int, out_dim: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """(2, out_dim) int64 tensor of input indices; row 0 feeds input a, row 1 input b."""
    if kind == "random":
        return random_connections(in_dim, out_dim, generator)
    if kind == "unique":
        return unique_connections(in_dim, out_dim, generator)
    raise ValueError(f"connections={kind!r} is not known; expected one of {CONNECTION_KINDS}")

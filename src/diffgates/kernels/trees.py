"""Index plans of logic-tree convolutions: a tree of depth d over every output position as d dense levels.

A LogicConv2d tree of depth d has 2^d leaves and 2^d - 1 gates shared by every output position. Its
computation over an image is d layers of two-input neurons, which the fused 4-coefficient LogicLayer
kernels already run (``coeff_index`` lets all positions share a gate's parameters):

* level 0 reads the zero-padded input, flattened as (C, H + 2p, W + 2p); its neuron for (tree o,
  gate g, position q) reads leaves 2g and 2g+1 of tree o at q;
* level l > 0 reads level l - 1, whose neuron (o, g, q) is feature ``(o * G + g) * Q + q`` (G gates
  in that level, Q = H_out * W_out positions); its gate g reads gates 2g and 2g+1 below;
* the root level's feature o * Q + q is output channel o at position q: (out, H_out, W_out) order.

Neuron (o, g, q) of level l uses parameter row ``o * (2^d - 1) + first_l + g`` of the
(out * (2^d - 1), P) weights, ``first_l`` being the number of gates in the levels below - the gate
order of ``LogicConv2d.weights``. ``reference.logic_tree_conv_reference`` defines the same numbers
without these plans; the tests compare the two.

Not runnable. Example::

    levels = tree_levels(layer.connections, in_channels, 28, 28, (5, 5), stride=1, padding=0)
    for connections, coeff_index in levels: ...
"""
from __future__ import annotations

import torch


def output_size(height: int, width: int, kernel_size: tuple[int, int], stride: int, padding: int) -> tuple[int, int]:
    """(H_out, W_out) of a convolution; <= 0 when the padded input is smaller than the kernel."""
    kh, kw = kernel_size
    return (height + 2 * padding - kh) // stride + 1, (width + 2 * padding - kw) // stride + 1


def tree_levels(connections: torch.Tensor, channels: int, height: int, width: int, kernel_size: tuple[int, int],
                stride: int, padding: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per level, ``(connections (2, n) int64, coeff_index (n,) int64)`` for the dense kernels (see above).

    ``connections`` is the layer's (out, 2^d, 3) leaf table of (channel, dy, dx).
    """
    out, leaves = int(connections.shape[0]), int(connections.shape[1])
    h_out, w_out = output_size(height, width, kernel_size, stride, padding)
    hp, wp = height + 2 * padding, width + 2 * padding
    positions = h_out * w_out
    device = connections.device
    rows = torch.arange(h_out, device=device) * stride
    cols = torch.arange(w_out, device=device) * stride
    ch, dy, dx = (connections[..., k, None, None] for k in range(3))
    # (out, leaves, Q): the padded-input feature every leaf reads at every position.
    below = (ch * (hp * wp) + (dy + rows[:, None]) * wp + (dx + cols[None, :])).reshape(out, leaves, positions)
    trees = torch.arange(out, device=device)[:, None, None]
    levels, first, gates_below = [], 0, leaves
    while gates_below > 1:
        gates_here = gates_below // 2
        a, b = below[:, 0::2], below[:, 1::2]  # (out, gates_here, Q)
        index = (trees * (leaves - 1) + first + torch.arange(gates_here, device=device)[:, None]).expand(
            out, gates_here, positions)
        levels.append((torch.stack([a.reshape(-1), b.reshape(-1)]), index.reshape(-1).contiguous()))
        # This level's outputs, as features of the next: (o * gates_here + g) * Q + q.
        below = ((trees * gates_here + torch.arange(gates_here, device=device)[:, None]) * positions
                 + torch.arange(positions, device=device)).reshape(out, gates_here, positions)
        first += gates_here
        gates_below = gates_here
    return levels

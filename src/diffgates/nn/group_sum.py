"""GroupSum: the classification head of a logic network (drop-in for ``difflogic.GroupSum``).

The last layer's outputs are split into ``k`` contiguous equal blocks (block c belongs to class c);
the class score is the block's sum divided by ``tau``.
"""
from __future__ import annotations

import torch


class GroupSum(torch.nn.Module):
    def __init__(self, k: int, tau: float = 1.0, device: str | torch.device | None = None):
        super().__init__()
        if int(k) != k or k < 1:
            raise ValueError(f"GroupSum k must be a positive integer (number of classes), got k={k!r}")
        if not tau > 0:
            raise ValueError(f"GroupSum tau must be > 0, got tau={tau!r}")
        self.k = int(k)
        self.tau = float(tau)
        self.device = device  # kept for API compatibility: the module holds no tensors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] % self.k:
            raise ValueError(f"GroupSum(k={self.k}) needs the last dimension divisible by {self.k}, "
                             f"got input of shape {tuple(x.shape)}")
        if x.dim() == 2 and x.shape[0] > 1 and x.t().is_contiguous():
            # Feature-major input (the fused kernels' output layout): sum whole rows of the batch,
            # unit-stride; the batch-major route reduces over a stride-N axis (0.7 vs 0.12 ms at (100, 8000)).
            return x.t().reshape(self.k, x.shape[1] // self.k, x.shape[0]).sum(1).t() / self.tau
        return x.reshape(*x.shape[:-1], self.k, x.shape[-1] // self.k).sum(-1) / self.tau

    def extra_repr(self) -> str:
        return f"k={self.k}, tau={self.tau}"

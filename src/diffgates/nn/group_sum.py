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
        return x.reshape(*x.shape[:-1], self.k, x.shape[-1] // self.k).sum(-1) / self.tau

    def extra_repr(self) -> str:
        return f"k={self.k}, tau={self.tau}"

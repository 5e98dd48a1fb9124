"""Argument checks shared by the fused LogicLayer kernels (``cpu.py``, ``gpu.py``).

The kernels trust shapes and dtypes blindly (they index raw memory), so every call is validated here
first, with messages that name the bad value. Device and index-range checks that differ per backend
stay in the kernel modules.
"""
from __future__ import annotations

import torch


def check_logic_layer_args(op: str, x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor, *,
                           float_dtypes: tuple[torch.dtype, ...],
                           index_dtypes: tuple[torch.dtype, ...] = (torch.int64,)) -> None:
    """Raise ValueError unless x (N, in), coeffs (out, 4) and connections (2, out) fit together."""
    if x.dim() != 2:
        raise ValueError(f"{op} expects x of shape (N, in_dim), got shape {tuple(x.shape)}")
    if x.dtype not in float_dtypes:
        raise ValueError(f"{op} supports {', '.join(str(t) for t in float_dtypes)}; got x.dtype={x.dtype} "
                         f"(use implementation='reference' for other dtypes)")
    if coeffs.dtype != x.dtype:
        raise ValueError(f"coeffs.dtype={coeffs.dtype} must equal x.dtype={x.dtype}")
    if connections.dtype not in index_dtypes:
        raise ValueError(f"connections must be {' or '.join(str(t).removeprefix('torch.') for t in index_dtypes)}, "
                         f"got {connections.dtype}")
    if connections.dim() != 2 or connections.shape[0] != 2:
        raise ValueError(f"connections must have shape (2, out_dim), got {tuple(connections.shape)}")
    out = connections.shape[1]
    if tuple(coeffs.shape) != (out, 4):
        raise ValueError(f"coeffs must have shape (out_dim, 4) = ({out}, 4) to match connections, "
                         f"got {tuple(coeffs.shape)}")
    if out and x.shape[1] == 0:
        raise ValueError(f"x has no features (shape {tuple(x.shape)}) but {out} neurons read from it")

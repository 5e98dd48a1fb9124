"""Argument checks shared by every LogicLayer implementation (``reference``, ``cpu.py``, ``gpu.py``).

The fused kernels trust shapes, dtypes and indices blindly (they index raw memory), so every call is
validated first, with messages that name the bad value. Checks that need the data (index ranges) are
done where they are cheap: the C kernel scans indices in C on every call, the Triton path once per
index tensor (``gpu.wiring``), the reference with torch ops; all report through ``index_error``.

Not a runnable module; ``tests/test_kernels.py`` exercises every message.
"""
from __future__ import annotations

import torch


def _dtype_names(dtypes: tuple[torch.dtype, ...]) -> str:
    return " or ".join(str(t).removeprefix("torch.") for t in dtypes)


def check_logic_layer_args(op: str, x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor,
                           coeff_index: torch.Tensor | None = None, *,
                           float_dtypes: tuple[torch.dtype, ...] | None,
                           index_dtypes: tuple[torch.dtype, ...] = (torch.int64,), width: int = 4) -> None:
    """Raise ValueError unless x (N, in), coeffs and connections (2, out) fit together.

    Args:
        op: the caller's name, for the messages.
        coeffs: (out, width) without ``coeff_index``; (rows, width) with it.
        coeff_index: None, or (out,) indices into coeffs' rows (ranges are checked elsewhere).
        float_dtypes: the dtypes x (and coeffs, equal to it) may have; None: any, unchecked (the
            reference computes in whatever dtype torch does).
        index_dtypes: the dtypes connections and coeff_index may have.
        width: coeffs' last dimension: 4 coefficients, or 16 for the reference's gate logits.
    """
    if x.dim() != 2:
        raise ValueError(f"{op} expects x of shape (N, in_dim), got shape {tuple(x.shape)}")
    if float_dtypes is not None and x.dtype not in float_dtypes:
        raise ValueError(f"{op} supports {', '.join(str(t) for t in float_dtypes)}; got x.dtype={x.dtype} "
                         f"(use implementation='reference' for other dtypes)")
    if float_dtypes is not None and coeffs.dtype != x.dtype:
        raise ValueError(f"coeffs.dtype={coeffs.dtype} must equal x.dtype={x.dtype}")
    if connections.dtype not in index_dtypes:
        raise ValueError(f"connections must be {_dtype_names(index_dtypes)}, got {connections.dtype}")
    if connections.dim() != 2 or connections.shape[0] != 2:
        raise ValueError(f"connections must have shape (2, out_dim), got {tuple(connections.shape)}")
    out = connections.shape[1]
    if coeff_index is None:
        if tuple(coeffs.shape) != (out, width):
            raise ValueError(f"coeffs must have shape (out_dim, {width}) = ({out}, {width}) to match connections, "
                             f"got {tuple(coeffs.shape)}")
    else:
        if coeff_index.dtype not in index_dtypes:
            raise ValueError(f"coeff_index must be {_dtype_names(index_dtypes)}, got {coeff_index.dtype}")
        if tuple(coeff_index.shape) != (out,):
            raise ValueError(f"coeff_index must have shape (out_dim,) = ({out},) to match connections, "
                             f"got {tuple(coeff_index.shape)}")
        if coeffs.dim() != 2 or coeffs.shape[1] != width:
            raise ValueError(f"coeffs must have shape (rows, {width}) with coeff_index, got {tuple(coeffs.shape)}")
        if out and coeffs.shape[0] == 0:
            raise ValueError(f"coeffs has no rows (shape {tuple(coeffs.shape)}) but coeff_index maps {out} "
                             f"neurons into it")
    if out and x.shape[1] == 0:
        raise ValueError(f"x has no features (shape {tuple(x.shape)}) but {out} neurons read from it")


def index_error(name: str, position: tuple[int, ...], value: int, limit: int, what: str) -> ValueError:
    """The error for ``name[position] = value`` outside ``[0, limit - 1]`` (``what``: of what limit counts)."""
    where = ", ".join(str(p) for p in position)
    return ValueError(f"{name}[{where}] = {value} is outside [0, {limit - 1}] for {what}")


def check_index_range(name: str, index: torch.Tensor, limit: int, what: str) -> None:
    """Raise ``index_error`` for the first entry of ``index`` outside [0, limit) (torch ops; syncs a GPU)."""
    if index.numel() == 0:
        return
    bad = (index < 0) | (index >= limit)
    if bool(bad.any()):
        position = tuple(int(v) for v in bad.nonzero()[0])
        raise index_error(name, position, int(index[position]), limit, what)


def check_ranges(x: torch.Tensor, coeffs: torch.Tensor, connections: torch.Tensor,
                 coeff_index: torch.Tensor | None) -> None:
    """Index-range checks with torch ops (the reference's and the Triton wiring's)."""
    check_index_range("connections", connections, x.shape[1], f"x with {x.shape[1]} features")
    if coeff_index is not None:
        check_index_range("coeff_index", coeff_index, coeffs.shape[0], f"coeffs with {coeffs.shape[0]} rows")

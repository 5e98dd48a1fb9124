"""Tensor files through the ``safetensors`` package: written atomically, read with errors that name the file.

``write_tensors(path, tensors, metadata)`` stores CPU copies of the tensors and a str -> str metadata
map in one safetensors file via ``diffgates._atomic`` (a reader, or a process killed mid-write, sees
the old file or the new one). ``read_tensors`` / ``read_metadata`` raise ``TensorFileError`` naming
the file and what is wrong for a truncated, corrupt or foreign file. Nothing is ever unpickled.

Example::

    write_tensors("model.safetensors", {"w": torch.randn(3, 16)}, {"step": "10"})
    tensors, metadata = read_tensors("model.safetensors")
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping

import torch

from .._atomic import atomic_write


class TensorFileError(ValueError):
    """A file is not a readable safetensors file (truncated, corrupt, foreign) or a tensor cannot be stored."""


def _storable(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise TensorFileError(f"tensor name {name!r} cannot be stored (expected a non-empty str, not "
                                  f"'__metadata__')")
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
            raise TensorFileError(f"tensor {name!r} must be a dense torch.Tensor, got "
                                  f"{getattr(tensor, 'layout', type(tensor).__name__)}")
        t = tensor.detach().to("cpu").contiguous()
        if t.numel() and t.untyped_storage().data_ptr() in seen:
            t = t.clone()  # safetensors refuses tensors that share memory (views of one buffer)
        if t.numel():
            seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def write_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                  metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` (and ``metadata``: str -> str) to ``path`` atomically."""
    from safetensors.torch import save

    metadata = dict(metadata or {})
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TensorFileError(f"safetensors metadata must map str to str, got {key!r}: {type(value).__name__}")
    storable = _storable(tensors)
    try:
        data = save(storable, metadata=metadata or None)
    except (ValueError, TypeError, RuntimeError) as exc:  # e.g. a dtype safetensors has no name for
        raise TensorFileError(f"cannot store the tensors in {path}: {exc}") from None
    with atomic_write(path, "wb") as f:
        f.write(data)


def _unreadable(path, exc: Exception) -> TensorFileError:
    return TensorFileError(f"{path}: not a readable safetensors file (truncated, corrupt or foreign: {exc})")


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata map of a safetensors file (its header only is read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except FileNotFoundError:
        raise TensorFileError(f"{path}: no such file") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None


def read_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors on the CPU, metadata) of a safetensors file, every byte of it checked by the reader."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise TensorFileError(f"{path}: no such file") from None
    try:
        tensors = load(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    # The package checked the header; its metadata is the JSON object after the 8-byte length.
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    return tensors, dict(header.get("__metadata__") or {})

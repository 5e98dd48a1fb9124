"""A small, self-contained reader and writer of the safetensors file format (no extra dependency).

Format (https://github.com/huggingface/safetensors): an 8-byte little-endian unsigned header length
``n``, then ``n`` bytes of UTF-8 JSON (padded with spaces), then the raw tensor bytes. The JSON maps
each tensor name to ``{"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}`` (offsets
relative to the start of the byte buffer, little-endian element order) and may hold a
``"__metadata__"`` object of str -> str. Tensors cover the byte buffer exactly, without holes or
overlaps. Files written here load with the ``safetensors`` package and the other way round.

Everything is validated on read: a truncated, corrupt or foreign file raises ``SafetensorsError``
naming the file and what is wrong. Writes are atomic (temp file in the same folder, fsync,
``os.replace``): a reader, or a run killed mid-write, sees the old file or the new one, never half.

Example::

    from diffgates import safetensors_io
    safetensors_io.save_file({"w": torch.randn(3, 16)}, "model.safetensors", metadata={"step": "10"})
    tensors, metadata = safetensors_io.load_file("model.safetensors")

Run ``python -m diffgates.safetensors_io FILE`` to print a file's header.
"""
from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from ._atomic import atomic_write

__all__ = ["SafetensorsError", "save_file", "load_file", "read_header", "DTYPES"]

# safetensors dtype names <-> torch dtypes (the subset torch can hold).
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
for _name, _attr in (("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64")):
    if hasattr(torch, _attr):  # unsigned wide ints exist from torch 2.3 on
        DTYPES[_name] = getattr(torch, _attr)
_NAMES = {dtype: name for name, dtype in DTYPES.items()}

# A header this large is a corrupt length field, not a real file (the reference library uses 100 MB).
MAX_HEADER_BYTES = 100_000_000


class SafetensorsError(ValueError):
    """A file is not a valid safetensors file (truncated, corrupt, foreign) or a tensor cannot be saved."""


def _to_le_bytes(tensor: torch.Tensor) -> bytes:
    """Raw little-endian bytes of a CPU tensor in row-major order."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    raw = flat.view(torch.uint8) if flat.numel() else torch.empty(0, dtype=torch.uint8)
    if sys.byteorder == "big" and flat.element_size() > 1:
        raw = raw.reshape(-1, flat.element_size()).flip(-1).reshape(-1)  # why: the format is little-endian
    return raw.numpy().tobytes()


def save_file(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike,
              metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` (and optional str -> str ``metadata``) to ``path`` atomically.

    Args:
        tensors: name -> tensor (any device; copied to CPU). Names must be non-empty strings other
            than ``"__metadata__"``; tensors must be dense with a dtype listed in ``DTYPES``.
        path: destination file; its folder must exist.
        metadata: optional str -> str pairs stored in the header's ``__metadata__``.

    Raises:
        SafetensorsError: a name, dtype or metadata value cannot be stored.
    """
    header: dict[str, object] = {}
    if metadata is not None:
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise SafetensorsError(f"safetensors metadata must map str to str, got {key!r}: "
                                       f"{type(value).__name__}")
        header["__metadata__"] = dict(metadata)
    # Sorted by name: deterministic files, so equal content gives equal bytes.
    names = sorted(tensors)
    offset = 0
    for name in names:
        tensor = tensors[name]
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise SafetensorsError(f"tensor name {name!r} cannot be stored (expected a non-empty str, "
                                   f"not '__metadata__')")
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
            raise SafetensorsError(f"tensor {name!r} must be a dense torch.Tensor, got {type(tensor).__name__}")
        if tensor.dtype not in _NAMES:
            raise SafetensorsError(f"tensor {name!r} has dtype {tensor.dtype}, which safetensors cannot "
                                   f"hold; expected one of {sorted(str(d) for d in _NAMES)}")
        nbytes = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": _NAMES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    head += b" " * (-len(head) % 8)  # why: the reference writer aligns the data buffer to 8 bytes
    path = Path(path)
    with atomic_write(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for name in names:
            f.write(_to_le_bytes(tensors[name]))


def _parse_header(data: bytes | memoryview, where: str) -> tuple[dict, int]:
    """(header dict, start of the byte buffer) of a whole file's bytes; validates the framing."""
    if len(data) < 8:
        raise SafetensorsError(f"{where}: not a safetensors file: {len(data)} bytes, shorter than the "
                               f"8-byte header length (truncated or empty file)")
    n = int.from_bytes(bytes(data[:8]), "little")
    if n < 2 or n > MAX_HEADER_BYTES:
        raise SafetensorsError(f"{where}: not a safetensors file: header length field is {n} (expected "
                               f"2..{MAX_HEADER_BYTES}); the file is corrupt or in another format")
    if 8 + n > len(data):
        raise SafetensorsError(f"{where}: truncated safetensors file: header says {n} bytes of JSON but "
                               f"only {len(data) - 8} bytes follow the length field")
    raw = bytes(data[8:8 + n])
    if not raw.startswith(b"{"):
        raise SafetensorsError(f"{where}: not a safetensors file: the header does not start with '{{' "
                               f"(starts with {raw[:16]!r})")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafetensorsError(f"{where}: corrupt safetensors header (not valid UTF-8 JSON: {exc})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{where}: corrupt safetensors header: expected a JSON object, "
                               f"got {type(header).__name__}")
    return header, 8 + n


def _validate_entries(header: dict, buffer_len: int, where: str) -> dict[str, tuple[torch.dtype, list[int], int, int]]:
    """name -> (dtype, shape, begin, end) after checking every field and the buffer coverage."""
    meta = header.get("__metadata__")
    if meta is not None and (not isinstance(meta, dict)
                             or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())):
        raise SafetensorsError(f"{where}: corrupt safetensors header: '__metadata__' must map str to str")
    entries = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{where}: corrupt safetensors header: tensor {name!r} must have exactly "
                                   f"the keys dtype, shape, data_offsets, got {info!r}")
        dtype_name, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype_name not in DTYPES:
            raise SafetensorsError(f"{where}: tensor {name!r} has dtype {dtype_name!r}, which this reader "
                                   f"does not support; expected one of {sorted(DTYPES)}")
        if (not isinstance(shape, list)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise SafetensorsError(f"{where}: tensor {name!r} has shape {shape!r}; expected a list of "
                                   f"non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise SafetensorsError(f"{where}: tensor {name!r} has data_offsets {offsets!r}; expected "
                                   f"[begin, end] with 0 <= begin <= end")
        dtype = DTYPES[dtype_name]
        itemsize = torch.empty((), dtype=dtype).element_size()
        expected = math.prod(shape) * itemsize
        if offsets[1] - offsets[0] != expected:
            raise SafetensorsError(f"{where}: tensor {name!r} ({dtype_name}, shape {shape}) needs {expected} "
                                   f"bytes but its data_offsets {offsets} span {offsets[1] - offsets[0]}")
        if offsets[1] > buffer_len:
            raise SafetensorsError(f"{where}: truncated safetensors file: tensor {name!r} ends at byte "
                                   f"{offsets[1]} of the data buffer, which holds only {buffer_len} bytes")
        entries[name] = (dtype, shape, offsets[0], offsets[1])
    # The format requires the tensors to tile the buffer exactly: no holes, no overlaps, no trailing junk.
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin != position:
            problem = "overlaps the previous tensor" if begin < position else f"leaves a hole at byte {position}"
            raise SafetensorsError(f"{where}: corrupt safetensors file: tensor {name!r} at data_offsets "
                                   f"[{begin}, {end}] {problem}")
        position = end
    if position != buffer_len:
        raise SafetensorsError(f"{where}: corrupt safetensors file: tensors cover {position} bytes but the "
                               f"data buffer holds {buffer_len} (extra or missing bytes)")
    return entries


def read_header(path: str | os.PathLike) -> tuple[dict[str, dict], dict[str, str]]:
    """The tensor entries (name -> dtype/shape/data_offsets) and metadata of a file, without its data.

    Raises:
        SafetensorsError: the file is not a valid safetensors file.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        first = f.read(8)
        n = int.from_bytes(first, "little") if len(first) == 8 else 0
        head = first + f.read(min(n, MAX_HEADER_BYTES + 1)) if 2 <= n <= MAX_HEADER_BYTES else first
    header, start = _parse_header(head, str(path))
    _validate_entries(header, size - start, str(path))
    metadata = header.pop("__metadata__", None) or {}
    return header, metadata


def load_file(path: str | os.PathLike, device: str | torch.device = "cpu"
              ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file.

    Args:
        path: the file.
        device: where the returned tensors live.

    Returns:
        (tensors, metadata): name -> tensor (each owning its memory), and the ``__metadata__`` dict
        (empty when absent).

    Raises:
        SafetensorsError: truncated, corrupt or foreign file (the message names the file and the problem).
        FileNotFoundError: no such file.
    """
    path = Path(path)
    data = path.read_bytes()
    where = str(path)
    header, start = _parse_header(data, where)
    entries = _validate_entries(header, len(data) - start, where)
    metadata = dict(header.get("__metadata__") or {})
    buffer = bytearray(data[start:])  # why: torch.frombuffer needs a writable buffer to avoid warnings
    tensors = {}
    for name, (dtype, shape, begin, end) in entries.items():
        raw = torch.frombuffer(buffer, dtype=torch.uint8, count=end - begin, offset=begin) if end > begin \
            else torch.empty(0, dtype=torch.uint8)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if sys.byteorder == "big" and itemsize > 1:
            raw = raw.reshape(-1, itemsize).flip(-1).reshape(-1)
        tensor = raw.clone().view(dtype).reshape(shape)  # clone: tensors must not share one big buffer
        tensors[name] = tensor.to(device) if str(device) != "cpu" else tensor
    return tensors, metadata


def _main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m diffgates.safetensors_io FILE", file=sys.stderr)
        return 2
    entries, metadata = read_header(argv[0])
    for name, info in sorted(entries.items()):
        print(f"{name}: {info['dtype']} {info['shape']}")
    for key, value in sorted(metadata.items()):
        print(f"__metadata__[{key!r}] = {value[:200]!r}{'...' if len(value) > 200 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

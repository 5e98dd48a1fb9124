"""Circuit files: JSON for small circuits, a safetensors container for large ones; never pickle.

Format version 2 (written by ``save``), the same fields in both containers:

* JSON (any suffix but ``.safetensors``): ``{"format": "diffgates-circuit", "version": 2,
  "n_inputs", "head": {"kind", "num_classes", "tau"}, "gates": {"op", "a", "b"}, "outputs",
  "popcounts": {"ptr", "lits"}, "input_layout", "meta"}`` (``popcounts`` only when the circuit has
  threshold cells). Readable and diffable; a 1M-gate circuit is about 16 MB.
* safetensors (``.safetensors``): the arrays ``ops`` (U8), ``a``, ``b``, ``outputs``,
  ``popcount_ptr``, ``popcount_lits`` (I32 where the values fit, else I64) and the metadata entries
  ``format``, ``version`` and ``circuit`` (the JSON of ``n_inputs``, ``head``, ``input_layout`` and
  ``meta``). About 9 bytes per gate, read and written at disk speed.

Version 1 files (JSON with ``num_classes`` and ``tau`` instead of ``head``: a group-sum head) still
load. ``load`` tells the container from the file's first bytes, not its name. Every write is atomic
(``diffgates._atomic``): a reader, or a process killed mid-write, sees the old file or the new one.
Example::

    save(circuit, "net.circuit.safetensors"); same = load("net.circuit.safetensors")
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write
from .circuit import Circuit, CircuitFormatError, Head

FORMAT_NAME = "diffgates-circuit"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
BINARY_SUFFIX = ".safetensors"
_ARRAYS = ("ops", "a", "b", "outputs", "popcount_ptr", "popcount_lits")


def to_dict(c: Circuit) -> dict[str, Any]:
    """The JSON-able version-2 description of ``c``."""
    d: dict[str, Any] = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "n_inputs": c.n_inputs,
                         "head": c.head.to_dict(),
                         "gates": {"op": c.ops.tolist(), "a": c.a.tolist(), "b": c.b.tolist()},
                         "outputs": c.outputs.tolist()}
    if c.n_popcounts:
        d["popcounts"] = {"ptr": c.popcount_ptr.tolist(), "lits": c.popcount_lits.tolist()}
    d["input_layout"] = c.input_layout
    d["meta"] = c.meta
    return d


def _integers(source: str, name: str, value: Any) -> np.ndarray:
    # np.asarray(..., dtype=int64) would silently truncate 1.7 -> 1 in a corrupt file.
    arr = np.asarray(value)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise CircuitFormatError(f"{source}: field {name!r} must be a list of integers, got {str(value)[:80]}")
    return arr.astype(np.int64)


def _integer(source: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CircuitFormatError(f"{source}: field {name!r} must be an integer, got {value!r}")
    return value


def _check_format(d: Any, source: str) -> int:
    if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
        fmt = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise CircuitFormatError(f"{source} is not a diffgates circuit (format={fmt!r}, expected {FORMAT_NAME!r})")
    version = d.get("version")
    if version not in READABLE_VERSIONS:
        raise CircuitFormatError(f"{source} has circuit format version {version!r}; this diffgates reads "
                                 f"versions {', '.join(map(str, READABLE_VERSIONS))}")
    return version


def _head(d: dict[str, Any], version: int, source: str) -> Head:
    if version == 1:  # version 1 always had a group-sum head
        return Head.group_sum(_integer(source, "num_classes", d["num_classes"]), d.get("tau", 1.0))
    return Head.from_dict(d["head"])


def from_dict(d: Any, source: str = "circuit") -> Circuit:
    """A Circuit from its JSON description (version 1 or 2); CircuitFormatError naming what is wrong."""
    version = _check_format(d, source)
    try:
        g = d["gates"]
        pop = d.get("popcounts") or {}
        return Circuit(n_inputs=_integer(source, "n_inputs", d["n_inputs"]), ops=_integers(source, "gates.op", g["op"]),
                       a=_integers(source, "gates.a", g["a"]), b=_integers(source, "gates.b", g["b"]),
                       outputs=_integers(source, "outputs", d["outputs"]), head=_head(d, version, source),
                       popcount_ptr=_integers(source, "popcounts.ptr", pop.get("ptr", [0])),
                       popcount_lits=_integers(source, "popcounts.lits", pop.get("lits", [])),
                       input_layout=d.get("input_layout"), meta=d.get("meta") or {})
    except CircuitFormatError as exc:
        if str(exc).startswith(source):
            raise
        raise CircuitFormatError(f"{source}: {exc}") from None
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise CircuitFormatError(f"{source} is missing or has malformed field: {exc!r}") from exc


def _compact(arr: np.ndarray) -> np.ndarray:
    """int32 where every value fits (half the bytes on disk), else the int64 array itself."""
    if arr.dtype == np.uint8:
        return arr
    if not arr.size or (arr.min() >= np.iinfo(np.int32).min and arr.max() <= np.iinfo(np.int32).max):
        return arr.astype(np.int32)
    return arr


def binary_bytes(c: Circuit) -> bytes:
    """The safetensors container of ``c`` (see the module docstring)."""
    from safetensors.numpy import save as save_tensors

    scalars = {"n_inputs": c.n_inputs, "head": c.head.to_dict(), "input_layout": c.input_layout, "meta": c.meta}
    tensors = {name: np.ascontiguousarray(_compact(getattr(c, name))) for name in _ARRAYS}
    return save_tensors(tensors, metadata={"format": FORMAT_NAME, "version": str(FORMAT_VERSION),
                                           "circuit": json.dumps(scalars)})


def save(c: Circuit, path: str | os.PathLike) -> None:
    """Write ``c`` atomically: the safetensors container for a ``.safetensors`` path, JSON otherwise."""
    path = Path(path)
    with atomic_write(path, "wb") as f:
        if path.suffix == BINARY_SUFFIX:
            f.write(binary_bytes(c))
        else:
            f.write(json.dumps(to_dict(c), separators=(",", ":")).encode())


def _load_binary(path: Path) -> Circuit:
    from safetensors import SafetensorError, safe_open
    from safetensors.numpy import load_file

    source = str(path)
    try:
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CircuitFormatError(f"{source} is not a readable safetensors file ({exc}); expected a diffgates "
                                 f"circuit") from None
    try:
        version = int(metadata.get("version", "0"))
        scalars = json.loads(metadata["circuit"])
    except (KeyError, ValueError) as exc:
        raise CircuitFormatError(f"{source} is a safetensors file without diffgates circuit metadata "
                                 f"({exc!r}): not a diffgates circuit") from None
    _check_format({"format": metadata.get("format"), "version": version}, source)
    missing = [name for name in _ARRAYS if name not in tensors]
    if missing or not isinstance(scalars, dict):
        raise CircuitFormatError(f"{source}: the circuit container lacks {missing or 'its description'}")
    try:
        return Circuit(n_inputs=_integer(source, "n_inputs", scalars.get("n_inputs")),
                       head=Head.from_dict(scalars.get("head")), input_layout=scalars.get("input_layout"),
                       meta=scalars.get("meta") or {}, **{name: tensors[name] for name in _ARRAYS})
    except CircuitFormatError as exc:
        raise CircuitFormatError(f"{source}: {exc}") from None


def sniff(path: str | os.PathLike) -> str | None:
    """'json', 'safetensors' or None from a file's first bytes (no parsing)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: 8-byte header length, then the JSON header
        return "safetensors"
    return None


def load(path: str | os.PathLike) -> Circuit:
    """Read a circuit file written by ``save`` (either container, version 1 or 2)."""
    path = Path(path)
    kind = sniff(path)
    if kind == "safetensors":
        return _load_binary(path)
    if kind != "json":
        raise CircuitFormatError(f"{path} is neither a circuit JSON nor a safetensors container; expected a "
                                 f"diffgates circuit")
    try:
        d = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise CircuitFormatError(f"{path} is not valid JSON ({exc}); expected a diffgates circuit") from exc
    except UnicodeDecodeError as exc:
        raise CircuitFormatError(f"{path} is not a text file; expected a diffgates circuit JSON") from exc
    return from_dict(d, source=str(path))

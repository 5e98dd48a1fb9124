"""CIFAR-10 (python version) with thermometer encoding, read without ever running ``pickle.load``.

Files: ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` in a data root, or the
official ``cifar-10-python.tar.gz`` in a data root (read in place, never extracted). Each batch is
a protocol-2 pickle of a dict: ``b'data'`` (uint8 N x 3072: 1024 red, 1024 green, 1024 blue values,
each 32x32 row-major), ``b'labels'`` (list of int), ``b'batch_label'``, ``b'filenames'``;
``batches.meta`` has ``b'label_names'``.

``safe_load_batch`` decodes those pickles with ``RestrictedUnpickler``: the only globals it
resolves are numpy's array/dtype reconstructors (``numpy.core.multiarray._reconstruct`` or
``numpy._core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``, ``numpy[._]core.numeric
._frombuffer``) and ``_codecs.encode`` (protocol-2 bytes), and even those are replaced by local
stand-ins that only record shape, dtype and raw bytes - no numpy or other code runs on the file's
say. Any other global (``os.system``, ``builtins.eval``, ...) raises ``UnsafePickleError``.

Encoding (``cifar10_3`` / ``cifar10_31``, T = 3 or 31): raw rows are uint8 (3, 32, 32); the input
has shape (3*T, 32, 32): channel ``c*T + t`` holds ``pixel[c] / 255 > (t + 1) / (T + 1)``, so the
flattened bit index is ``((c*T + t)*32 + h)*32 + w`` (c: 0 red, 1 green, 2 blue). Evaluated exactly
as ``pixel >= pixel_min[t]`` with ``pixel_min[t] = floor(255*(t + 1)/(T + 1)) + 1``. Training and
binary inputs are the same bits. Memory: the full 10000-image test set at T=31 is 3.8 GB as
float32 - encode it in batches (or with ``dtype=torch.bool``).
"""
from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .dataset import Dataset, make_dataset
from .download import FILES, data_roots, download_file, first_writable_root, not_found_error
from .encoders import ThermometerEncoder
from .errors import ChecksumMismatchError, DataFormatError, UnsafePickleError

__all__ = ["safe_load_batch", "RestrictedUnpickler", "load_cifar10", "read_cifar10",
           "CIFAR_DIR", "CIFAR_ARCHIVE", "CIFAR_FILES", "CIFAR_CLASSES"]

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_FILES = (*CIFAR_TRAIN, "test_batch", "batches.meta")
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

_ALLOWED_DTYPES = {"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8", "b1"}


# ------------------------------------------------------------------------- restricted unpickler
class _NDArrayClass:
    """Stand-in for ``numpy.ndarray`` passed as ``_reconstruct``'s first argument."""


_NDARRAY = _NDArrayClass()


def _text(v: Any) -> str:
    return v.decode("latin1") if isinstance(v, (bytes, bytearray)) else str(v)


class _DType:
    """Records a dtype as (code, byte order); built by the ``numpy.dtype`` stand-in."""

    code: str | None = None  # stays None if a pickle builds this without calling __init__
    order = "|"

    def __init__(self, code: Any, align: Any = False, copy: Any = True):
        code = _text(code)
        if code not in _ALLOWED_DTYPES:
            raise UnsafePickleError(f"unsupported dtype {code!r} in CIFAR pickle")
        self.code, self.order = code, "|"

    def __setstate__(self, state: Any) -> None:
        # numpy's dtype state: (version, byteorder, subarray, names, fields, elsize, align, flags)
        if not isinstance(state, tuple) or len(state) < 2:
            raise UnsafePickleError(f"unexpected dtype state {state!r:.100}")
        order = _text(state[1])
        if order not in ("<", ">", "|", "="):
            raise UnsafePickleError(f"unexpected dtype byte order {order!r}")
        if any(s is not None for s in state[2:5]):
            raise UnsafePickleError("structured / sub-array dtypes are not allowed in CIFAR pickles")
        self.order = order

    def numpy(self) -> np.dtype:
        if self.code is None:
            raise DataFormatError("dtype without a type code in CIFAR pickle")
        return np.dtype(self.order + self.code)


class _Array:
    """Records an ndarray's (shape, dtype, fortran, raw bytes) from its pickled state."""

    def __init__(self) -> None:
        self.state: tuple | None = None

    def __setstate__(self, state: Any) -> None:
        # ndarray state: (version, shape, dtype, is_fortran, rawdata); older pickles omit version.
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise UnsafePickleError("unexpected ndarray state in CIFAR pickle")
        shape, dtype, fortran, raw = state
        if not (isinstance(shape, tuple) and all(isinstance(s, int) and s >= 0 for s in shape)):
            raise UnsafePickleError(f"bad ndarray shape {shape!r:.100}")
        if not isinstance(dtype, _DType) or not isinstance(raw, (bytes, bytearray)):
            raise UnsafePickleError("ndarray state without a plain dtype and raw bytes")
        self.state = (shape, dtype, bool(fortran), bytes(raw))

    def numpy(self) -> np.ndarray:
        if self.state is None:
            raise UnsafePickleError("ndarray without state in CIFAR pickle")
        shape, dtype, fortran, raw = self.state
        dt = dtype.numpy()
        n = int(np.prod(shape, dtype=np.int64))
        if len(raw) != n * dt.itemsize:
            raise DataFormatError(f"pickled array of shape {shape} needs {n * dt.itemsize} bytes, has {len(raw)}")
        return np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if fortran else "C").copy()


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _Array:
    if cls is not _NDARRAY:
        raise UnsafePickleError("_reconstruct called for something other than numpy.ndarray")
    return _Array()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> _Array:
    if not isinstance(dtype, _DType) or not isinstance(buf, (bytes, bytearray, memoryview)):
        raise UnsafePickleError("unexpected _frombuffer arguments in CIFAR pickle")
    a = _Array()
    a.__setstate__((tuple(shape), dtype, _text(order) == "F", bytes(buf)))
    return a


def _codecs_encode(obj: Any, encoding: Any = "utf-8") -> bytes:
    # Protocol 2 written by Python 3 stores bytes as _codecs.encode(str, 'latin1').
    if not isinstance(obj, str) or encoding != "latin1":
        raise UnsafePickleError("only _codecs.encode(str, 'latin1') is allowed")
    return obj.encode("latin1")


_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DType,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _codecs_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` knows only the numpy array globals of CIFAR batches."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name} from a CIFAR-10 pickle: only numpy "
                "array/dtype reconstruction is allowed (the file is not an official CIFAR-10 batch "
                "or has been tampered with)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("persistent ids are not allowed in CIFAR-10 pickles")


def _plain(obj: Any, depth: int = 0) -> Any:
    """Convert the unpickled tree: stand-in arrays -> numpy, bytes keys -> str keys."""
    if depth > 8:
        raise DataFormatError("CIFAR pickle nests too deeply")
    if isinstance(obj, _Array):
        return obj.numpy()
    if isinstance(obj, dict):
        return {_text(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v, depth + 1) for v in obj]
    if isinstance(obj, (_DType, _NDArrayClass)):
        raise DataFormatError("stray numpy object in CIFAR pickle")
    return obj


def safe_load_batch(data: bytes, source: str = "<bytes>") -> dict[str, Any]:
    """Decode one CIFAR-10 python batch (or ``batches.meta``) without executing pickled code.

    Returns a dict with str keys (``"data"`` as a numpy array, ``"labels"`` a list, ...)."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{source}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OverflowError) as exc:
        raise DataFormatError(f"{source}: not a readable CIFAR-10 batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise DataFormatError(f"{source}: expected a pickled dict, got {type(obj).__name__}")
    try:
        return _plain(obj)
    except DataFormatError as exc:
        raise DataFormatError(f"{source}: {exc}") from None


def _batch_arrays(batch: Mapping[str, Any], source: str) -> tuple[np.ndarray, np.ndarray]:
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataFormatError(f"{source}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    if not isinstance(labels, list) or len(labels) != len(data):
        raise DataFormatError(f"{source}: 'labels' must be a list of {len(data)} ints")
    y = np.asarray(labels, dtype=np.int64)
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataFormatError(f"{source}: labels out of range 0..9")
    return data.reshape(-1, 3, 32, 32), y


# ------------------------------------------------------------------------------- locating files
def _locate(data_dir, download: bool, dataset: str) -> tuple[str, Path]:
    """("dir", folder) or ("tar", archive), searching the data roots; downloads the archive."""
    roots = data_roots(data_dir)
    for root in roots:
        folder = root / CIFAR_DIR
        if all((folder / f).is_file() for f in CIFAR_FILES):
            return "dir", folder
        if (root / CIFAR_ARCHIVE).is_file():
            return "tar", root / CIFAR_ARCHIVE
    missing = [CIFAR_ARCHIVE]
    hint = (f"Instead of the archive, the extracted folder {CIFAR_DIR}/ ({', '.join(CIFAR_FILES)}) "
            "in a data folder works too.")
    if not download:
        raise not_found_error(dataset, missing, data_dir, "download=False", hint)
    target = first_writable_root(data_dir, CIFAR_ARCHIVE)
    if target is None:
        raise not_found_error(dataset, missing, data_dir, "no writable data folder to download into", hint)
    try:
        return "tar", download_file(FILES[CIFAR_ARCHIVE], target)
    except ChecksumMismatchError:
        raise
    except (OSError, ValueError) as exc:
        raise not_found_error(dataset, missing, data_dir, f"download failed: {exc}", hint) from exc


def _read_members(kind: str, path: Path) -> dict[str, bytes]:
    if kind == "dir":
        return {f: (path / f).read_bytes() for f in CIFAR_FILES}
    wanted = {f"{CIFAR_DIR}/{f}": f for f in CIFAR_FILES}
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:  # one sequential pass over the gzip stream
                key = wanted.get(member.name.lstrip("./"))
                if key is not None and member.isfile():
                    fobj = tar.extractfile(member)
                    assert fobj is not None
                    out[key] = fobj.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataFormatError(f"{path}: corrupt or truncated CIFAR-10 archive ({exc}); delete it "
                              "and download it again") from exc
    absent = [f"{CIFAR_DIR}/{f}" for f in CIFAR_FILES if f not in out]
    if absent:
        raise DataFormatError(f"{path}: archive lacks {absent}")
    return out


def read_cifar10(data_dir=None, download: bool = True, dataset: str = "cifar10"):
    """Raw CIFAR-10: ``(x_train, y_train, x_test, y_test, class_names, source)`` with uint8 images
    of shape (N, 3, 32, 32) and int64 labels."""
    kind, path = _locate(data_dir, download, dataset)
    members = _read_members(kind, path)
    src = lambda f: f"{path}/{f}" if kind == "dir" else f"{path}:{CIFAR_DIR}/{f}"  # noqa: E731
    xs, ys = [], []
    for f in CIFAR_TRAIN:
        x, y = _batch_arrays(safe_load_batch(members[f], src(f)), src(f))
        xs.append(x)
        ys.append(y)
    x_test, y_test = _batch_arrays(safe_load_batch(members["test_batch"], src("test_batch")), src("test_batch"))
    meta = safe_load_batch(members["batches.meta"], src("batches.meta"))
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DataFormatError(f"{src('batches.meta')}: 'label_names' must be a list of 10 names")
    class_names = [_text(n) for n in names]
    return np.concatenate(xs), np.concatenate(ys), x_test, y_test, class_names, str(path)


def _cifar_layout(T: int, enc: ThermometerEncoder) -> dict:
    pixel_min = [int(v) for v in np.floor(255 * np.arange(1, T + 1) / (T + 1)) + 1]
    return {
        "kind": "thermometer",
        "shape": [3 * T, 32, 32],
        "raw_shape": [3, 32, 32],
        "n_bits": 3 * T * 32 * 32,
        "num_thresholds": T,
        "channels": ["red", "green", "blue"],
        "order": "bit = ((c*T + t)*H + h)*W + w with H = W = 32: channel-major, the T threshold "
                 "planes of colour c stacked as channels c*T .. c*T + T-1",
        "rule": "bit(c, t, h, w) = pixel[c, h, w]/255 > (t+1)/(T+1), i.e. pixel >= pixel_min[t]",
        "thresholds": [(t + 1) / (T + 1) for t in range(T)],
        "pixel_min": pixel_min,
        "train_input": "the same bits (training and binary inputs are identical)",
        "encoder": enc.layout([3, 32, 32]),
    }


def load_cifar10(name: str, data_dir=None, download: bool = True, val_fraction: float = 0.1,
                 split_seed: int = 0) -> Dataset:
    """Load ``"cifar10_3"`` or ``"cifar10_31"`` (see the module docstring)."""
    T = {"cifar10_3": 3, "cifar10_31": 31}.get(name)
    if T is None:
        raise ValueError(f"load_cifar10: unknown name {name!r}")
    x_train, y_train, x_test, y_test, class_names, source = read_cifar10(data_dir, download, name)
    enc = ThermometerEncoder(T, axis=1).fit_uniform(0, 255)

    def encode(x: torch.Tensor, binary: bool, dtype: torch.dtype) -> torch.Tensor:
        return enc.encode(x, dtype=dtype)

    return make_dataset(
        name, class_names=class_names, input_shape=(3 * T, 32, 32), raw_shape=(3, 32, 32),
        train=(x_train, y_train), test=(x_test, y_test), val_fraction=val_fraction,
        split_seed=split_seed, input_layout=_cifar_layout(T, enc), encoder=encode,
        info={"source": source, "num_thresholds": T})

"""The ``Dataset`` container returned by ``load_dataset``, and the deterministic split helpers.

A ``Dataset`` holds compact raw splits (uint8 images or uint8 bits; int64 labels) and knows how to
turn a batch of raw rows into model input::

    ds = load_dataset("mnist", data_dir="data")
    xb = ds.encode(ds.x_train[:100], binary=False)   # float32 (100, 1, 28, 28) in [0, 1]
    xbits = ds.encode(ds.x_test, binary=True)        # float32 in {0, 1}: the circuit's input
    ds.input_layout                                   # JSON-able meaning of every input bit

Splits are deterministic and independent of numpy/torch versions: ``permutation(n, seed)`` orders
``0..n-1`` by a SplitMix64 hash of ``seed`` and the index. The validation split is the first
``round(val_fraction * n)`` indices of ``permutation(n_train_official, split_seed)``; both the kept
training rows and the validation rows stay in their original file order.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["Dataset", "permutation", "split_indices"]

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al.), vectorised; uint64 arithmetic wraps modulo 2**64."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def permutation(n: int, seed: int) -> np.ndarray:
    """A fixed pseudo-random permutation of ``0..n-1`` (int64): indices sorted by
    ``splitmix64(splitmix64(seed mod 2**64) + i)`` (stable sort); same on every platform."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    s = _splitmix64(np.array([int(seed) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        keys = _splitmix64(np.arange(n, dtype=np.uint64) + s)
    return np.argsort(keys, kind="stable").astype(np.int64)


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, chosen): ``chosen`` = sorted first ``round(fraction * n)`` of ``permutation(n, seed)``,
    ``rest`` = the other indices, sorted."""
    if not (isinstance(fraction, (int, float)) and 0.0 <= float(fraction) < 1.0):
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    k = int(round(float(fraction) * n))
    perm = permutation(n, seed)
    return np.sort(perm[k:]), np.sort(perm[:k])


def _to_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"x_raw must be a torch tensor or numpy array, got {type(x).__name__}")


@dataclass(repr=False, eq=False)
class Dataset:
    """A loaded dataset: raw splits plus the encoding to model input (see module docstring).

    ``encode(x_raw, binary)`` maps raw rows of shape ``(N, *raw_shape)`` (or flattened
    ``(N, prod(raw_shape))``) to float32 ``(N, *input_shape)``; ``n_inputs = prod(input_shape)``.
    """

    name: str
    n_inputs: int
    n_classes: int
    class_names: list[str]
    input_shape: tuple[int, ...]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_layout: dict
    raw_shape: tuple[int, ...] = ()
    info: dict = field(default_factory=dict)
    # (x_raw reshaped to (N, *raw_shape), binary, dtype) -> (N, *input_shape); set by the loader.
    encoder: Callable[[torch.Tensor, bool, torch.dtype], torch.Tensor] | None = None

    def encode(self, x_raw: Any, binary: bool = False, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Model input for raw rows: ``binary=False`` the training input, ``binary=True`` exact
        {0, 1} bits for the discrete network / exported circuit (see ``input_layout``).

        Works on any device (the computation stays on ``x_raw``'s device). ``dtype`` may be
        ``torch.bool`` / ``torch.uint8`` for compact bits (only with ``binary=True`` or datasets
        whose training input is already binary)."""
        if self.encoder is None:
            raise RuntimeError(f"dataset {self.name!r} has no encoder")
        x = _to_tensor(x_raw)
        raw = tuple(self.raw_shape)
        flat = int(np.prod(raw)) if raw else 1
        if x.ndim >= 1 and tuple(x.shape[1:]) == raw:
            pass
        elif x.ndim == 2 and x.shape[1] == flat:
            x = x.reshape(x.shape[0], *raw)
        else:
            raise ValueError(f"{self.name}: x_raw must have shape (N, {', '.join(map(str, raw))}) or "
                             f"(N, {flat}), got {tuple(x.shape)}")
        if x.dtype != self.x_train.dtype:
            raise TypeError(f"{self.name}: x_raw must be the raw {self.x_train.dtype} rows (as in "
                            f"x_train), got {x.dtype}")
        return self.encoder(x, bool(binary), dtype)

    @property
    def splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{"train": (x, y), "val": (x, y), "test": (x, y)}``."""
        return {"train": (self.x_train, self.y_train), "val": (self.x_val, self.y_val),
                "test": (self.x_test, self.y_test)}

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, n_inputs={self.n_inputs}, n_classes={self.n_classes}, "
                f"input_shape={self.input_shape}, train={len(self.y_train)}, val={len(self.y_val)}, "
                f"test={len(self.y_test)})")


def make_dataset(name: str, *, class_names: list[str], input_shape: tuple[int, ...],
                 raw_shape: tuple[int, ...], train: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], val_fraction: float, split_seed: int,
                 input_layout: dict, encoder: Callable, info: dict | None = None) -> Dataset:
    """Build a ``Dataset``: carve the validation split from ``train`` and convert to tensors."""
    x_tr, y_tr = train
    keep, val = split_indices(len(y_tr), val_fraction, split_seed)

    def tx(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    def ty(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

    info = dict(info or {})
    info.update(val_fraction=float(val_fraction), split_seed=int(split_seed),
                split_rule="val = sorted first round(val_fraction*n) of diffgates.data.dataset."
                           "permutation(n_official_train, split_seed); the rest is train")
    return Dataset(
        name=name, n_inputs=int(np.prod(input_shape)), n_classes=len(class_names),
        class_names=list(class_names), input_shape=tuple(input_shape),
        x_train=tx(x_tr[keep]), y_train=ty(y_tr[keep]), x_val=tx(x_tr[val]), y_val=ty(y_tr[val]),
        x_test=tx(test[0]), y_test=ty(test[1]), input_layout=input_layout,
        raw_shape=tuple(raw_shape), info=info, encoder=encoder)

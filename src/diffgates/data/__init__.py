"""Benchmark datasets of the logic-gate-network experiments, their files and input encodings.

Usage::

    from diffgates.data import load_dataset, DATASET_NAMES
    ds = load_dataset("mnist20x20", data_dir="data")     # downloads what is missing
    x = ds.encode(ds.x_train[:100], binary=False)        # float32 (100, 1, 20, 20) training input
    bits = ds.encode(ds.x_test, binary=True)             # exact {0, 1} input of the circuit
    ds.input_layout                                       # what input bit i means (JSON-able)

Datasets (``DATASET_NAMES``, a registry: ``register_dataset``; '-' and '_' are interchangeable, case
is ignored):

=============== ========= ======= ================ ============================================
name            n_inputs  classes input_shape      binary input bit (flattened index)
=============== ========= ======= ================ ============================================
mnist           784       10      (1, 28, 28)      bit (c*28+h)*28+w = pixel/255 > 0.5 (pixel>=128)
mnist20x20      400       10      (1, 20, 20)      same on the per-image 20x20 crop
fashion_mnist   784       10      (1, 28, 28)      same as mnist
cifar10_3       9216      10      (9, 32, 32)      bit ((c*T+t)*32+h)*32+w = pixel[c,h,w]/255 > (t+1)/(T+1)
cifar10_31      95232     10      (93, 32, 32)     same with T = 31
adult           116       2       (116,)           one-hot, names in input_layout["bits"]
breast_cancer   51        2       (51,)            one-hot, names in input_layout["bits"]
monk1/2/3       17        2       (17,)            one-hot ``a1=1`` .. ``a6=2``
=============== ========= ======= ================ ============================================

Training inputs (``binary=False``): MNIST / Fashion-MNIST grey levels ``pixel/255`` in [0, 1]; the
other datasets are already binary, so both encodings give the same bits. Details of each encoding
are in ``images`` (MNIST crop), ``cifar`` (thermometer, safe pickle reader), ``uci`` (tabular
vocabularies and buckets) and ``encoders`` (reusable ``ThermometerEncoder``, ``OneHotEncoder``,
``Buckets``). File search order, download mirrors and checksums are in ``download``.

Splits: test = the official test set (Breast Cancer: a fixed 75/25 split, see ``uci``); the
validation split is ``round(val_fraction * n)`` rows carved from the official training set by a
platform-independent permutation seeded with ``split_seed`` (see ``dataset``).
"""
from __future__ import annotations

import importlib
import os

from .dataset import Dataset, permutation, split_indices
from .encoders import Buckets, OneHotEncoder, ThermometerEncoder
from .errors import ChecksumMismatchError, DataFormatError, DatasetNotFoundError, UnsafePickleError

__all__ = ["load_dataset", "register_dataset", "dataset_names", "DATASET_NAMES", "Dataset", "DatasetNotFoundError",
           "ChecksumMismatchError", "DataFormatError", "UnsafePickleError", "canonical_name",
           "permutation", "split_indices", "ThermometerEncoder", "OneHotEncoder", "Buckets"]

# name -> (module, loader function): the loader is called as fn(name, data_dir, download, val_fraction,
# split_seed) and imported only when its dataset is loaded. Add a dataset: a module with such a loader
# and one register_dataset line below.
_LOADERS: dict[str, tuple[str, str]] = {}


def register_dataset(name: str, module: str, function: str) -> None:
    """Make ``load_dataset(name)`` call ``module.function(name, data_dir, download, val_fraction, split_seed)``."""
    key = str(name).strip().lower().replace("-", "_")
    if key in _LOADERS:
        raise ValueError(f"dataset {key!r} is registered already")
    _LOADERS[key] = (module, function)


for _name in ("mnist", "mnist20x20", "fashion_mnist"):
    register_dataset(_name, "diffgates.data.images", "load_mnist")
for _name in ("cifar10_3", "cifar10_31"):
    register_dataset(_name, "diffgates.data.cifar", "load_cifar10")
for _name in ("adult", "breast_cancer", "monk1", "monk2", "monk3"):
    register_dataset(_name, "diffgates.data.uci", "load_uci")


def dataset_names() -> tuple[str, ...]:
    """Every registered dataset name, in registration order."""
    return tuple(_LOADERS)


DATASET_NAMES: tuple[str, ...] = dataset_names()


def canonical_name(name: str) -> str:
    """``"Fashion-MNIST"`` -> ``"fashion_mnist"``; ValueError listing the valid names otherwise."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(_LOADERS)}")
    return key


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = True,
                 val_fraction: float = 0.1, split_seed: int = 0) -> Dataset:
    """Load a benchmark dataset (see the module docstring).

    Args:
        name: a registered dataset name ('-' for '_' and any case accepted).
        data_dir: first folder searched (then ``$DIFFGATES_DATA``, then the user cache).
        download: fetch missing files from the official URLs (or ``$DIFFGATES_DATA_MIRROR``).
        val_fraction: fraction of the official training set held out for validation, in [0, 1).
        split_seed: seed of the validation split (deterministic on every platform).

    Raises:
        DatasetNotFoundError: files missing and not downloadable (message says what to put where).
        ChecksumMismatchError: a download did not match the published checksum.
        DataFormatError: a local file is corrupt or truncated.
    """
    key = canonical_name(name)
    if not (isinstance(val_fraction, (int, float)) and 0.0 <= float(val_fraction) < 1.0):
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    module, function = _LOADERS[key]
    return getattr(importlib.import_module(module), function)(key, data_dir, download, val_fraction, split_seed)

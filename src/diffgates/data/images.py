"""MNIST, MNIST 20x20 and Fashion-MNIST loaders, and the per-image 20x20 crop.

Raw rows are uint8 grey levels of shape (1, 28, 28) (MNIST 20x20: (1, 20, 20)). Encodings:

* training input (``binary=False``): ``pixel / 255`` as float32 in [0, 1];
* binary input (``binary=True``): ``pixel / 255 > 0.5``, i.e. ``pixel >= 128``; bit index
  ``(c*H + h)*W + w`` = row-major over (channel, row, column), c = 0.

MNIST 20x20 crop (``crop_20x20``), the original's per-image rule: every image loses 8 all-zero rows
and 8 all-zero columns, chosen so that the ink's bounding box ends up as centred as the blank margins
allow. Per image, with ``bt`` / ``bb`` the numbers of blank rows at the top / bottom, each capped at
14: while ``bt + bb >= 10``, both shrink by one (a side already at 0 stays there); if they then total
9, the top (or, when it is 0, the bottom) shrinks by one more. The final ``bt`` rows are removed at
the top and ``bb = 8 - bt`` at the bottom. Columns likewise (left / right). Shrinking both margins
equally keeps their difference, so the removal is ``4 + (bt - bb) / 2`` at the top when the margins
allow: the bounding box is centred, not the 28x28 frame. The crop removes only blank rows/columns
and keeps all ink. An image with fewer than 8 blank rows (or columns) in total - none in MNIST -
falls back to the centre crop (4 per side) and is counted in ``info["crop_fallbacks"]`` with a
warning.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from .dataset import Dataset, make_dataset
from .download import DATASET_FILES, ensure_files
from .errors import DataFormatError
from .idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx

__all__ = ["load_mnist", "crop_20x20", "MNIST_CLASSES", "FASHION_CLASSES"]

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
BINARY_PIXEL_MIN = 128  # pixel/255 > 0.5  <=>  pixel >= 128 for integer pixels


def _blank_margins(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leading and trailing all-False counts along the last axis of a boolean (N, L) array."""
    n, length = ink.shape
    any_ink = ink.any(axis=1)
    lead = np.where(any_ink, ink.argmax(axis=1), length)
    trail = np.where(any_ink, ink[:, ::-1].argmax(axis=1), length)
    return lead, trail


def _crop_starts(ink: np.ndarray, remove: int) -> tuple[np.ndarray, np.ndarray]:
    """Lines to remove at the start (the module docstring's rule, for ``remove`` = 8); bad = fallback."""
    lead, trail = (np.minimum(m, 14) for m in _blank_margins(ink))  # the original counts at most 14
    bad = lead + trail < remove
    # Shrink both margins together while two or more lines too many remain: keeps their difference.
    while True:
        over = lead + trail >= remove + 2
        if not over.any():
            break
        lead = np.where(over & (lead > 0), lead - 1, lead)
        trail = np.where(over & (trail > 0), trail - 1, trail)
    one_over = lead + trail == remove + 1
    lead = np.where(one_over & (lead > 0), lead - 1, lead)
    start = np.where(bad, remove // 2, lead)
    return start.astype(np.int64), bad


def crop_20x20(images: np.ndarray) -> tuple[np.ndarray, dict]:
    """Crop (N, 28, 28) or (N, 1, 28, 28) uint8 images to 20x20 (see the module docstring).

    Returns the cropped images (same leading shape, last two axes 20x20) and a dict with the
    per-image offsets ``top``/``left`` (int64 arrays) and ``fallbacks`` (how many images had to
    be centre-cropped through ink)."""
    a = np.asarray(images)
    if a.shape[-2:] != (28, 28):
        raise ValueError(f"crop_20x20 expects 28x28 images, got shape {a.shape}")
    lead_shape = a.shape[:-2]
    x = a.reshape(-1, 28, 28)
    ink = x != 0
    top, bad_r = _crop_starts(ink.any(axis=2), 8)   # rows with ink
    left, bad_c = _crop_starts(ink.any(axis=1), 8)  # columns with ink
    # All 9x9 possible 20x20 windows as a view; one gather picks each image's window (fast).
    windows = sliding_window_view(x, (20, 20), axis=(1, 2))
    out = windows[np.arange(len(x)), top, left]
    fallbacks = int(np.count_nonzero(bad_r | bad_c))
    if fallbacks:
        warnings.warn(f"crop_20x20: {fallbacks} image(s) have fewer than 8 blank rows or columns; "
                      "centre-cropped (some ink lost)", stacklevel=2)
    return out.reshape(*lead_shape, 20, 20), {"top": top, "left": left, "fallbacks": fallbacks}


def _read_split(files: dict, prefix: str, root: str) -> tuple[np.ndarray, np.ndarray]:
    img_path = files[f"{root}/{prefix}-images-idx3-ubyte.gz"]
    lab_path = files[f"{root}/{prefix}-labels-idx1-ubyte.gz"]
    images = read_idx(img_path, expect_magic=IMAGES_MAGIC)
    labels = read_idx(lab_path, expect_magic=LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataFormatError(f"{img_path}: images are {images.shape[1:]}, expected (28, 28)")
    if len(images) != len(labels):
        raise DataFormatError(f"{img_path} has {len(images)} images but {lab_path} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataFormatError(f"{lab_path}: label {int(labels.max())} out of range 0..9")
    return images[:, None, :, :], labels.astype(np.int64)


def _grey_encoder(x: torch.Tensor, binary: bool, dtype: torch.dtype) -> torch.Tensor:
    if binary:
        return (x >= BINARY_PIXEL_MIN).to(dtype)
    if not dtype.is_floating_point:
        raise ValueError(f"grey-level training input needs a float dtype, got {dtype}")
    return x.to(dtype) / 255.0


def _layout(shape: tuple[int, int, int], crop: bool) -> dict:
    c, h, w = shape
    d = {
        "kind": "image_threshold",
        "shape": [c, h, w],
        "n_bits": c * h * w,
        "order": "row-major (c, h, w): bit = (c*H + h)*W + w",
        "threshold": 0.5,
        "rule": "bit = pixel/255 > 0.5, i.e. pixel >= 128 for uint8 pixels",
        "pixel_min": BINARY_PIXEL_MIN,
        "train_input": "pixel/255 as float in [0, 1] (same order)",
    }
    if crop:
        d["crop"] = ("per image from 28x28: remove 8 all-zero rows and 8 all-zero columns so the ink's "
                     "bounding box is as centred as the blank margins (each counted up to 14) allow, "
                     "as the original's remove_border (diffgates.data.images.crop_20x20)")
    return d


def load_mnist(name: str, data_dir=None, download: bool = True, val_fraction: float = 0.1,
               split_seed: int = 0) -> Dataset:
    """Load ``"mnist"``, ``"mnist20x20"`` or ``"fashion_mnist"`` (see module docstring)."""
    if name not in ("mnist", "mnist20x20", "fashion_mnist"):
        raise ValueError(f"load_mnist: unknown name {name!r}")
    family = "fashion_mnist" if name == "fashion_mnist" else "mnist"
    root = "fashion-mnist" if family == "fashion_mnist" else "mnist"
    files = ensure_files(name, DATASET_FILES[family], data_dir, download)
    x_train, y_train = _read_split(files, "train", root)
    x_test, y_test = _read_split(files, "t10k", root)
    info: dict = {"files": {k: str(v) for k, v in files.items()}}
    shape = (1, 28, 28)
    if name == "mnist20x20":
        x_train, crop_tr = crop_20x20(x_train)
        x_test, crop_te = crop_20x20(x_test)
        info["crop_fallbacks"] = crop_tr["fallbacks"] + crop_te["fallbacks"]
        shape = (1, 20, 20)
    return make_dataset(
        name, class_names=FASHION_CLASSES if family == "fashion_mnist" else MNIST_CLASSES,
        input_shape=shape, raw_shape=shape, train=(x_train, y_train), test=(x_test, y_test),
        val_fraction=val_fraction, split_seed=split_seed,
        input_layout=_layout(shape, crop=name == "mnist20x20"), encoder=_grey_encoder, info=info)

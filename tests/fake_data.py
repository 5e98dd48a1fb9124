"""A small learnable synthetic dataset with the ``diffgates.data.Dataset`` API, for trainer and CLI tests.

``make_fake()`` returns 701 rows of 24 uint8 features in 4 classes (the class is a function of the
top bits of five features), split 500 / 61 / 140 (odd sizes exercise uneven evaluation shards).
``make_fake(image_rows=True)`` stores the rows as 4x6 images (so ``--augment-shift`` applies; the class
depends on 5 of the 24 pixels, so shifts matter). ``install()`` makes ``diffgates.train.trainer`` load
it for any dataset name; subprocess tests run ``python fake_data.py ARGS`` (``diffgates ARGS`` with it
installed; ``DIFFGATES_FAKE_IMAGES=1`` in the environment for the image rows). Used through the ``fake_dataset``
fixture of conftest.py and by test files directly.
"""
from __future__ import annotations

import os
import sys

import torch

from diffgates.data import Dataset

N_FEATURES, CLASSES = 24, ["c0", "c1", "c2", "c3"]


def _encode(x: torch.Tensor, binary: bool, dtype: torch.dtype) -> torch.Tensor:
    # Grey levels for training, exact bits (> 127) for the discrete net.
    return (x > 127).to(dtype) if binary else (x.to(torch.float32) / 255).to(dtype)


def make_fake(n: int = 701, seed: int = 0, image_rows: bool = False) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, N_FEATURES), generator=g, dtype=torch.uint8)
    b = x > 127
    y = ((b[:, 0] & b[:, 1]) | b[:, 2]).long() * 2 + (b[:, 3] ^ b[:, 4]).long()
    a, c = 500, 561  # odd split sizes: exercise uneven evaluation shards
    layout = {"kind": "synthetic", "bits": [f"x{i}>127" for i in range(N_FEATURES)]}
    return Dataset(name="fake", n_inputs=N_FEATURES, n_classes=len(CLASSES), class_names=list(CLASSES),
                   input_shape=(N_FEATURES,), raw_shape=(4, 6) if image_rows else (N_FEATURES,), x_train=x[:a], y_train=y[:a],
                   x_val=x[a:c], y_val=y[a:c], x_test=x[c:], y_test=y[c:], input_layout=layout,
                   encoder=_encode)


def install(image_rows: bool = False) -> None:
    from diffgates.train import trainer
    trainer.load_dataset_fn = lambda name, data_dir, val_fraction, split_seed, download: make_fake(image_rows=image_rows)


if __name__ == "__main__":
    install(image_rows=os.environ.get("DIFFGATES_FAKE_IMAGES") == "1")
    from diffgates.cli import main
    sys.exit(main(sys.argv[1:]))

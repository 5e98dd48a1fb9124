"""A small learnable synthetic dataset with the ``diffgates.data.Dataset`` API, for trainer and CLI tests.

``make_fake()`` returns 701 rows of 24 uint8 features in 4 classes (the class is a function of the
top bits of five features), split 500 / 61 / 140 (odd sizes exercise uneven evaluation shards).
``install()`` makes ``diffgates.train.trainer`` load it for any dataset name; subprocess tests run
``python fake_data.py ARGS`` (``diffgates ARGS`` with it installed). Used through the ``fake_dataset``
fixture of conftest.py and by test files directly.
"""
from __future__ import annotations

import sys

import torch

from diffgates.data import Dataset

N_FEATURES, CLASSES = 24, ["c0", "c1", "c2", "c3"]


def _encode(x: torch.Tensor, binary: bool, dtype: torch.dtype) -> torch.Tensor:
    # Grey levels for training, exact bits (> 127) for the discrete net.
    return (x > 127).to(dtype) if binary else (x.to(torch.float32) / 255).to(dtype)


def make_fake(n: int = 701, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, N_FEATURES), generator=g, dtype=torch.uint8)
    b = x > 127
    y = ((b[:, 0] & b[:, 1]) | b[:, 2]).long() * 2 + (b[:, 3] ^ b[:, 4]).long()
    a, c = 500, 561  # odd split sizes: exercise uneven evaluation shards
    layout = {"kind": "synthetic", "bits": [f"x{i}>127" for i in range(N_FEATURES)]}
    return Dataset(name="fake", n_inputs=N_FEATURES, n_classes=len(CLASSES), class_names=list(CLASSES),
                   input_shape=(N_FEATURES,), raw_shape=(N_FEATURES,), x_train=x[:a], y_train=y[:a],
                   x_val=x[a:c], y_val=y[a:c], x_test=x[c:], y_test=y[c:], input_layout=layout,
                   encoder=_encode)


def install() -> None:
    from diffgates.train import trainer
    trainer.load_dataset_fn = lambda name, data_dir, val_fraction, split_seed, download: make_fake()


if __name__ == "__main__":
    install()
    from diffgates.cli import main
    sys.exit(main(sys.argv[1:]))

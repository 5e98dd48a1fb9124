"""Training-time augmentation of raw image rows: random translations.

``random_shift(images, max_shift, generator)`` moves every image of a (N, ..., H, W) batch by its own
(dy, dx), each uniform in [-max_shift, max_shift], filling the uncovered border with zeros (the
background of MNIST-like data). It works on the raw rows (any dtype), before encoding, so the
binarized or thermometer inputs a model sees are those of a translated image. The trainer seeds the
generator from (seed, step), so a resumed run draws the same shifts::

    g = torch.Generator().manual_seed(0)
    moved = random_shift(ds.x_train[:100].reshape(100, 28, 28), 2, g)
"""
from __future__ import annotations

import torch


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``images`` (N, ..., H, W) translated by its own random (dy, dx) in [-max_shift, max_shift]."""
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be an integer >= 0, got {max_shift!r}")
    if images.ndim < 3:
        raise ValueError(f"random_shift needs images (N, ..., H, W), got shape {tuple(images.shape)}")
    if max_shift == 0 or len(images) == 0:
        return images
    n, (h, w) = len(images), images.shape[-2:]
    flat = images.reshape(n, -1, h, w)
    # why zeros: the border of a translated digit is background
    padded = torch.zeros((n, flat.shape[1], h + 2 * max_shift, w + 2 * max_shift), dtype=images.dtype,
                         device=images.device)
    padded[:, :, max_shift:max_shift + h, max_shift:max_shift + w] = flat
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(flat.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols].reshape(images.shape)

"""Random translations of raw training images (diffgates.data.augment) and the trainer's --augment-shift.

``random_shift`` is compared with a per-image loop that moves pixels one by one; the trainer runs a
tiny net on 4x6 synthetic images and must resume to the same numbers as an uninterrupted run.
"""
from __future__ import annotations

import json

import pytest
import torch

import fake_data
from diffgates.cli import main as cli_main
from diffgates.data.augment import random_shift
from diffgates.train import trainer as trainer_mod


def _shift_reference(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Per image, per pixel: out[y, x] = in[y + dy - s, x + dx - s] where that is inside, else 0."""
    n, (h, w) = len(images), images.shape[-2:]
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    flat = images.reshape(n, -1, h, w)
    out = torch.zeros_like(flat)
    for i in range(n):
        for y in range(h):
            for x in range(w):
                sy, sx = y + int(dy[i]) - max_shift, x + int(dx[i]) - max_shift
                if 0 <= sy < h and 0 <= sx < w:
                    out[i, :, y, x] = flat[i, :, sy, sx]
    return out.reshape(images.shape)


@pytest.mark.parametrize("shape,max_shift", [((1, 5, 7), 1), ((63, 1, 6, 4), 2), ((65, 3, 5, 5), 3),
                                             ((157, 4, 4), 5)])
def test_random_shift_equals_the_pixel_loop(shape, max_shift):
    images = torch.randint(1, 256, shape, generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    got = random_shift(images, max_shift, torch.Generator().manual_seed(7))
    assert got.dtype == images.dtype and got.shape == images.shape
    assert torch.equal(got, _shift_reference(images, max_shift, torch.Generator().manual_seed(7)))
    if max_shift >= max(shape[-2:]):  # some image moved out of view entirely: it is all zeros
        assert (got.flatten(1) == 0).all(1).any()


def test_random_shift_zero_is_the_identity_and_bad_input_is_named():
    images = torch.rand(3, 4, 4)
    assert random_shift(images, 0, torch.Generator()) is images
    with pytest.raises(ValueError, match="max_shift must be an integer >= 0, got -1"):
        random_shift(images, -1, torch.Generator())
    with pytest.raises(ValueError, match=r"needs images \(N, \.\.\., H, W\), got shape \(3, 16\)"):
        random_shift(images.reshape(3, 16), 1, torch.Generator())


TINY = ["--dataset", "fake", "-k", "32", "-l", "2", "-t", "4", "-bs", "20", "--threads", "1", "--no-progress",
        "-ef", "20", "--seed", "2"]


def test_augmented_training_resumes_exactly_and_differs_from_plain(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_mod, "load_dataset_fn", lambda name, *args: fake_data.make_fake(image_rows=True))
    whole, split, plain = tmp_path / "whole", tmp_path / "split", tmp_path / "plain"
    aug = [*TINY, "--augment-shift", "1"]
    assert cli_main(["train", *aug, "-ni", "40", "--out", str(whole)]) == 0
    assert cli_main(["train", *aug, "-ni", "20", "--out", str(split)]) == 0
    assert cli_main(["train", *aug, "-ni", "40", "--out", str(split), "--resume"]) == 0
    assert cli_main(["train", *TINY, "-ni", "40", "--out", str(plain)]) == 0
    runs = [json.loads((d / "results.json").read_text()) for d in (whole, split, plain)]
    losses = [[e["train_loss"] for e in r["evaluations"]] for r in runs]
    assert losses[0] == losses[1] and losses[0] != losses[2]
    assert runs[0]["config"]["augment_shift"] == 1
    # The shift is part of what the run computes: --resume with another value is refused.
    assert cli_main(["train", *TINY, "--augment-shift", "2", "-ni", "60", "--out", str(split), "--resume"]) != 0


def test_augment_shift_on_rows_that_are_not_images_is_refused(tmp_path, fake_dataset, capsys):
    assert cli_main(["train", *TINY, "--augment-shift", "1", "-ni", "5", "--out", str(tmp_path / "r")]) != 0
    assert "--augment-shift 1 translates images; dataset 'fake' has raw rows of shape (24,)" in capsys.readouterr().err
    assert cli_main(["train", *TINY, "--augment-shift", "-1", "-ni", "5", "--out", str(tmp_path / "s")]) != 0
    assert "augment_shift must be an integer >= 0" in capsys.readouterr().err

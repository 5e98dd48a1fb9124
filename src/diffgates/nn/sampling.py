"""``soft_sampling``: evaluate the relaxation of every gate layer of a model, whatever its sampling."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .logic_conv import LogicConv2d
from .logic_layer import LogicLayer

GATE_LAYERS = (LogicLayer, LogicConv2d)  # the modules with a ``sampling`` of learnable gates


@contextlib.contextmanager
def soft_sampling(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Inside the block every gate layer of ``model`` samples ``'soft'``: the deterministic relaxation.

    why: the relaxed accuracy (and the discretization gap) is a property of the relaxation; a hard
    or Gumbel sampling would report the discrete net or a noisy draw instead, and draw from the RNG.
    """
    layers = [m for m in model.modules() if isinstance(m, GATE_LAYERS)]
    saved = [m.sampling for m in layers]
    try:
        for m in layers:
            m.sampling = "soft"
        yield model
    finally:
        for m, sampling in zip(layers, saved):
            m.sampling = sampling

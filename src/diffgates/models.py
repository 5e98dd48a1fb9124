"""Ready-made architectures as torch modules, for use outside the trainer.

``logic_tree_net`` builds a LogicTreeNet (the conv logic net of Petersen et al., NeurIPS 2024) through
the ``logic_tree`` family, so the module is the one ``diffgates train --preset mnist_conv_s`` trains
and ``diffgates.to_circuit`` turns into a circuit (the module carries its input shape). Example::

    import torch
    from diffgates.models import logic_tree_net
    net = logic_tree_net("S")                                   # MNIST LogicTreeNet-S, 206,128 gates
    scores = net(torch.rand(8, 1, 28, 28))                      # (8, 10)
    cifar = logic_tree_net(k=32, input_shape=(9, 32, 32), tau=20, output_factor=2)
"""
from __future__ import annotations

from typing import Any

import torch

from .families import build_model, logic_tree_spec

# The paper's MNIST sizes: size -> (k, tau, output factor of the last dense layer).
MNIST_SIZES = {"S": (16, 6.5, 2), "M": (64, 28.0, 2), "L": (256, 35.0, 1)}


def logic_tree_net(size: str | None = None, *, k: int | None = None, input_shape=(1, 28, 28), n_classes: int = 10,
                   num_dense: int = 3, tau: float | None = None, output_factor: int | None = None,
                   layout: str = "auto", depth: int = 3, channels_per_tree: int = 2, connections: str = "random",
                   device: str | torch.device = "cpu", implementation: str | None = None,
                   **gate_options: Any) -> torch.nn.Sequential:
    """A LogicTreeNet: conv logic-tree blocks with OR pools, dense logic layers, GroupSum.

    Args:
        size: 'S', 'M' or 'L' for the paper's MNIST k, tau and output factor (explicit arguments win);
            None to give ``k`` yourself.
        k: the base channel count (conv blocks k, 3k, 9k for 28 x 28 inputs; k, 4k, 16k, 32k for 32 x 32).
        input_shape: one sample's (C, H, W).
        n_classes, num_dense, tau, output_factor, layout, depth, channels_per_tree, connections: see
            ``diffgates.families.logic_tree``.
        device, implementation: where the parameters live and which kernels run (``diffgates.kernels``).
        gate_options: LogicLayer's parametrization, init, residual_logit, sampling, gumbel_tau, for
            every gate (init defaults to 'residual').

    Returns:
        The model in training mode, with ``diffgates_spec`` (its JSON spec) attached.
    """
    if size is not None:
        if size not in MNIST_SIZES:
            raise ValueError(f"size={size!r} is not known; expected one of {sorted(MNIST_SIZES)} or None")
        size_k, size_tau, size_factor = MNIST_SIZES[size]
        k = size_k if k is None else k
        tau = size_tau if tau is None else tau
        output_factor = size_factor if output_factor is None else output_factor
    if k is None:
        raise ValueError("logic_tree_net needs size='S'|'M'|'L' or k=")
    spec = logic_tree_spec(input_shape, n_classes, k, num_dense, 10.0 if tau is None else tau, layout, depth,
                           channels_per_tree, 1 if output_factor is None else output_factor, connections,
                           **gate_options)
    model = build_model(spec, device=device, implementation=implementation)
    model.diffgates_spec = spec
    return model

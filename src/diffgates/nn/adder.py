"""AdderNet layers: ``AdderLinear`` and ``Adder2d`` (output -sum|x - w|), and the paper's adaptive learning rate.

An adder layer measures the negative L1 distance between its input and each output's weights instead
of their dot product, so inference needs additions, subtractions and absolute values only (Chen et
al., "AdderNet: Do We Really Need Multiplications in Deep Learning?", CVPR 2020). Its outputs are
always <= 0 and grow with the fan-in, so a BatchNorm follows every adder layer. Gradients are the
paper's (``diffgates.kernels.adder``): x - w for the weights, clamp(w - x, -1, 1) for the input.

The adaptive learning rate rescales each adder layer's weight gradient to norm eta * sqrt(k) (k = the
layer's weight count; eta = 0.2 in the paper's code) before the optimizer uses it, so momentum and
weight decay act on the rescaled gradient. ``AdaptiveGradientScale(model, eta)`` does it;
``attach_adaptive_gradient_scale(optimizer, model, eta)`` runs it before every ``optimizer.step()``
(after any DDP all-reduce: the scale sees the whole batch's gradient). Example::

    layer = Adder2d(20, 50, kernel_size=5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    attach_adaptive_gradient_scale(optimizer, model, eta=0.2)
"""
from __future__ import annotations

import math

import torch

from ..kernels.adder import IMPLEMENTATIONS, adder_conv2d, adder_linear


def _check_implementation(implementation: str | None) -> str | None:
    if implementation is not None and implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation={implementation!r} is not known; expected one of {IMPLEMENTATIONS} or None")
    return implementation


class AdderLinear(torch.nn.Module):
    """Dense adder layer: (N, in_features) -> (N, out_features), y[n, o] = -sum_k |x[n, k] - W[o, k]|.

    Weights are initialised N(0, 1) (the paper's init); there is no bias (the BatchNorm after it has one).
    """

    def __init__(self, in_features: int, out_features: int, *, implementation: str | None = None,
                 device=None, dtype=None):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AdderLinear: {name} must be a positive integer, got {value!r}")
        self.in_features, self.out_features = in_features, out_features
        self.implementation = _check_implementation(implementation)
        self.weight = torch.nn.Parameter(torch.randn(out_features, in_features, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"AdderLinear({self.in_features}, {self.out_features}) expects input (N, "
                             f"{self.in_features}), got {tuple(x.shape)}")
        return adder_linear(x, self.weight, self.implementation)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}"


class Adder2d(torch.nn.Module):
    """Convolutional adder layer: (N, C, H, W) -> (N, O, H', W') with zero padding, as a Conv2d without bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0, *,
                 implementation: str | None = None, device=None, dtype=None):
        super().__init__()
        for name, value, least in (("in_channels", in_channels, 1), ("out_channels", out_channels, 1),
                                   ("kernel_size", kernel_size, 1), ("stride", stride, 1), ("padding", padding, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"Adder2d: {name} must be an integer >= {least}, got {value!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.implementation = _check_implementation(implementation)
        self.weight = torch.nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size,
                                                     device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Adder2d({self.in_channels}, {self.out_channels}) expects input (N, {self.in_channels}, "
                             f"H, W), got {tuple(x.shape)}")
        return adder_conv2d(x, self.weight, self.stride, self.padding, self.implementation)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}")


ADDER_LAYERS = (AdderLinear, Adder2d)


class AdaptiveGradientScale:
    """Rescale every adder layer's weight gradient of ``model`` to L2 norm ``eta * sqrt(k)`` (the paper's eq. 12).

    A zero gradient stays zero (its norm is clamped at 1e-12, as the paper's code does).
    """

    def __init__(self, model: torch.nn.Module, eta: float = 0.2):
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta > 0 or not math.isfinite(eta):
            raise ValueError(f"the adaptive learning rate's eta must be a finite number > 0, got {eta!r}")
        self.eta = float(eta)
        self.weights = [m.weight for m in model.modules() if isinstance(m, ADDER_LAYERS)]

    @torch.no_grad()
    def __call__(self) -> None:
        for w in self.weights:
            if w.grad is not None:
                w.grad.mul_(self.eta * math.sqrt(w.numel()) / w.grad.norm().clamp(min=1e-12))


def attach_adaptive_gradient_scale(optimizer: torch.optim.Optimizer, model: torch.nn.Module, eta: float = 0.2):
    """Run ``AdaptiveGradientScale(model, eta)`` before every ``optimizer.step()``; returns the hook's handle."""
    scale = AdaptiveGradientScale(model, eta)
    return optimizer.register_step_pre_hook(lambda opt, args, kwargs: scale())


__all__ = ["AdderLinear", "Adder2d", "ADDER_LAYERS", "AdaptiveGradientScale", "attach_adaptive_gradient_scale"]

"""Binary and low-bit layers: BinaryConnect, BNN/BinaryNet, XNOR-Net, QNN and LQ-Nets building blocks.

What is here (each as its paper defines it):

* ``sign_ste(x, estimator)``: sign with sign(0) = +1 and a choice of backward ('ste': BinaryNet's
  straight-through estimator clipped to |x| <= 1; 'approx_sign': Bi-Real's 2 - 2|x| on |x| < 1;
  'identity': plain straight-through, used for weights). ``BinaryActivation`` is its module.
* ``QuantActivation(bits, max_value)``: QNN's k-bit uniform activation (clip, round, STE in the clip range).
* ``BinaryLinear`` / ``BinaryConv2d``: latent real weights W, forward with Wb = sign(W) (BinaryNet,
  deterministic) or a Bernoulli draw of hard_sigmoid(W) in training (BinaryConnect, stochastic), each
  optionally scaled per output channel by alpha = mean |W| (XNOR-Net, ``scaling='xnor'``). The
  forward is ``F.linear`` / ``F.conv2d`` with the signs, then alpha and bias as separate steps (``finish``).
* ``LQWeightQuantizer`` / ``LQActivationQuantizer`` and ``LQLinear`` / ``LQConv2d``: LQ-Nets' learned
  bases, nearest-level quantization and the QEM basis update.
* ``Bipolar``, ``FoldableBatchNorm``, ``BinaryBlock``, ``BinaryClassifier`` (with ``OutputScale``): the parts
  of a BNN that deploys exactly (its eval-mode arithmetic is fixed so BN + sign fold into integer
  thresholds; ``diffgates.frontend.binary``);
* ``clip_latent_weights_`` (call after every optimizer step), ``binarynet_lr_scales`` /
  ``binarynet_param_groups`` (BinaryNet's per-layer learning-rate scale), ``recalibrate_batchnorm_``
  (BatchNorm statistics recomputed with the current weights, before deployment).

Example (BinaryNet MLP on MNIST; inputs scaled to 2x - 1)::

    import torch
    from diffgates.nn.binary import (BinaryActivation, BinaryLinear, binarynet_param_groups,
                                     clip_latent_weights_)
    bn = lambda n: torch.nn.BatchNorm1d(n)
    model = torch.nn.Sequential(torch.nn.Flatten(),
                                BinaryLinear(784, 4096), bn(4096), BinaryActivation(),
                                BinaryLinear(4096, 4096), bn(4096), BinaryActivation(),
                                BinaryLinear(4096, 10), bn(10))
    opt = torch.optim.Adam(binarynet_param_groups(model, lr=3e-3))
    ...  # loss.backward(); opt.step(); clip_latent_weights_(model)

A 2-bit LQ-Nets MLP: ``Sequential(Flatten(), LQLinear(784, 256, act_bits=None), BatchNorm1d(256), ReLU(),
LQLinear(256, 10))`` (the first layer keeps its real input; every later one quantizes its input).
"""
from __future__ import annotations

import collections
import itertools
import math

import torch
import torch.nn.functional as F

__all__ = ["ESTIMATORS", "SCALINGS", "BINARIZATIONS", "sign_ste", "hard_sigmoid", "BinaryActivation",
           "QuantActivation", "BinaryLinear", "BinaryConv2d", "BINARY_LAYERS", "LQWeightQuantizer",
           "LQActivationQuantizer", "LQLinear", "LQConv2d", "LQ_LAYERS", "clip_latent_weights_",
           "binarynet_lr_scales", "binarynet_param_groups", "glorot_fans", "Bipolar", "FoldableBatchNorm",
           "OutputScale", "BinaryBlock", "BinaryClassifier", "recalibrate_batchnorm_"]

ESTIMATORS = ("ste", "approx_sign", "identity")
SCALINGS = (None, "xnor")
BINARIZATIONS = ("deterministic", "stochastic")
NORM_PPF_0_75 = 0.6745  # the 75% quantile of N(0, 1): LQ-Nets' basis init constant
LQ_WEIGHT_RIDGE = 1e-4


# ---------------------------------------------------------------- argument checks

def _positive_int(owner: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise ValueError(f"{owner} {name} must be a positive integer, got {name}={value!r}")
    return int(value)


def _pair(owner: str, name: str, value, minimum: int) -> tuple[int, int]:
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    ok = len(items) == 2 and all(not isinstance(v, bool) and isinstance(v, int) and v >= minimum for v in items)
    if not ok:
        raise ValueError(f"{owner} {name} must be an integer >= {minimum} or a pair of them, got {name}={value!r}")
    return items  # type: ignore[return-value]


def _choice(owner: str, name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{owner} {name}={value!r} is not known; expected one of {choices}")


def _check_bias(owner: str, bias) -> bool:
    if not isinstance(bias, bool):
        raise ValueError(f"{owner} bias must be True or False, got bias={bias!r}")
    return bias


# ---------------------------------------------------------------- sign and its estimators

class _SignSTE(torch.autograd.Function):
    """sign(x) with sign(0) = +1; the backward is chosen by ``estimator`` (see ``sign_ste``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, estimator: str) -> torch.Tensor:
        ctx.estimator = estimator
        if estimator != "identity":
            ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.estimator == "identity":
            return grad, None
        (x,) = ctx.saved_tensors
        a = x.abs()
        if ctx.estimator == "ste":
            return grad * (a <= 1).to(grad.dtype), None
        # Bi-Real's ApproxSign: the derivative of its piecewise quadratic, 2 - 2|x| inside (-1, 1).
        return grad * torch.where(a < 1, 2 - 2 * a, torch.zeros_like(a)).to(grad.dtype), None


def sign_ste(x: torch.Tensor, estimator: str = "ste") -> torch.Tensor:
    """Binarize ``x`` to {-1, +1} (sign(0) = +1, as BinaryNet) with a surrogate gradient.

    Args:
        x: any floating tensor.
        estimator: the backward. 'ste': grad * 1[|x| <= 1] (BinaryNet's clipped straight-through;
            x = +-1 still passes); 'approx_sign': grad * (2 - 2|x|) for |x| < 1, else 0 (Bi-Real's
            ApproxSign; 2 at x = 0, 0 at |x| = 1); 'identity': grad unchanged (for latent weights).
    """
    _choice("sign_ste", "estimator", estimator, ESTIMATORS)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"sign_ste expects a floating-point tensor, got x of type "
                         f"{getattr(x, 'dtype', type(x).__name__)}")
    return _SignSTE.apply(x, estimator)


class _StraightThrough(torch.autograd.Function):
    """Forward returns ``q`` (values computed elsewhere, no grad); backward passes grad * mask to ``x``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        ctx.has_mask = mask is not None
        if mask is not None:
            ctx.save_for_backward(mask)
        return q.clone()  # a fresh tensor: q may be a buffer-derived value the caller keeps

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if not ctx.has_mask:
            return grad, None, None
        (mask,) = ctx.saved_tensors
        return grad * mask.to(grad.dtype), None, None


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """BinaryConnect's hard sigmoid clip((x + 1) / 2, 0, 1): the probability that a weight binarizes to +1."""
    return ((x + 1) / 2).clamp(0, 1)


class BinaryActivation(torch.nn.Module):
    """Sign activation (BNN/BinaryNet): outputs in {-1, +1}, sign(0) = +1.

    Args:
        estimator: 'ste' (clipped straight-through, BinaryNet) or 'approx_sign' (Bi-Real).
            'identity' is accepted too (unclipped straight-through).
    """

    def __init__(self, estimator: str = "ste"):
        super().__init__()
        _choice("BinaryActivation", "estimator", estimator, ESTIMATORS)
        self.estimator = estimator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sign_ste(x, self.estimator)

    def extra_repr(self) -> str:
        return f"estimator={self.estimator!r}"


class QuantActivation(torch.nn.Module):
    """QNN's k-bit uniform activation.

    Forward: y = M * floor(clip(x, 0, M) * n / M + 1/2) / n with n = 2^bits - 1 and M = ``max_value``,
    i.e. the nearest of the 2^bits levels {0, M/n, 2M/n, ..., M} (a tie at a midpoint goes up).
    bits=1 gives {0, M}; bits=2 gives {0, M/3, 2M/3, M}. Backward: straight-through inside the clip
    range, grad * 1[0 <= x <= M] (both ends included), zero outside.
    """

    def __init__(self, bits: int, max_value: float = 1.0):
        super().__init__()
        self.bits = _positive_int("QuantActivation", "bits", bits)
        if self.bits > 16:
            raise ValueError(f"QuantActivation bits must be at most 16, got bits={bits!r}")
        if isinstance(max_value, bool) or not isinstance(max_value, (int, float)) or not (
                math.isfinite(max_value) and max_value > 0):
            raise ValueError(f"QuantActivation max_value must be a finite number > 0, got max_value={max_value!r}")
        self.max_value = float(max_value)

    @property
    def steps(self) -> int:
        """n = 2^bits - 1: the number of uniform steps between 0 and max_value."""
        return 2 ** self.bits - 1

    def levels(self) -> torch.Tensor:
        """The 2^bits output values, ascending (float32)."""
        return torch.arange(self.steps + 1, dtype=torch.float32) * self.max_value / self.steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            raise ValueError(f"QuantActivation expects a floating-point tensor, got dtype {x.dtype}")
        m, n = self.max_value, self.steps
        with torch.no_grad():
            # k * m / n (not k * (m / n)): the same rounding as levels(), so the top level is exactly m.
            q = torch.floor(x.clamp(0, m) * (n / m) + 0.5) * m / n
            mask = (x >= 0) & (x <= m)
        return _StraightThrough.apply(x, q, mask)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, max_value={self.max_value}"


# ---------------------------------------------------------------- binary weight layers

class _BinaryWeightLayer(torch.nn.Module):
    """Shared weight handling of BinaryLinear and BinaryConv2d (latent W, binarization, XNOR scale)."""

    weight: torch.nn.Parameter

    def _setup(self, owner: str, shape: tuple[int, ...], bias: bool, scaling, binarize, device, dtype) -> None:
        _check_bias(owner, bias)
        _choice(owner, "scaling", scaling, SCALINGS)
        _choice(owner, "binarize", binarize, BINARIZATIONS)
        self.scaling, self.binarize = scaling, binarize
        factory = {"device": device, "dtype": dtype}
        self.weight = torch.nn.Parameter(torch.empty(shape, **factory))
        self.bias = torch.nn.Parameter(torch.empty(shape[0], **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """W ~ U[-1, 1] (BinaryNet's reference with H = 1: the latent range equals the clip range), bias 0."""
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0)
            if self.bias is not None:
                self.bias.zero_()

    def _alpha(self) -> torch.Tensor:
        # XNOR-Net: mean |W| over everything but the output channel; differentiable, as in the paper.
        return self.weight.abs().flatten(1).mean(1)

    def sign_weight(self) -> torch.Tensor:
        """The {-1, +1} weight the forward multiplies by (with its straight-through graph to W).

        Eval mode, or ``binarize='deterministic'``: sign(W) (sign(0) = +1). Training with
        ``binarize='stochastic'``: +1 with probability hard_sigmoid(W), else -1, a fresh draw from
        torch's global RNG on every call.
        """
        w = self.weight
        if self.binarize == "stochastic" and self.training:
            with torch.no_grad():
                wb = torch.where(torch.rand_like(w) < hard_sigmoid(w), torch.ones_like(w), -torch.ones_like(w))
            return _StraightThrough.apply(w, wb, None)
        return sign_ste(w, "identity")

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        """The layer's output from y = (input times ``sign_weight()``): times alpha (``scaling='xnor'``),
        plus the bias, as separate elementwise steps.

        why: with {-1, +1} inputs y is an exact integer, and each step here is one correctly rounded
        operation per element, so a deployment can fold these steps into integer thresholds exactly
        (``diffgates.frontend.binary``); ``F.linear(x, alpha * sign(W))`` would round the sum instead.
        """
        shape = (-1,) + (1,) * (y.dim() - 2)  # the output channel is dim 1 (linear and conv)
        if self.scaling == "xnor":
            y = y * self._alpha().view(shape)
        if self.bias is not None:
            y = y + self.bias.view(shape)
        return y

    def quantized_weight(self) -> torch.Tensor:
        """``sign_weight()``, times alpha_o = mean |W_o| per output channel with ``scaling='xnor'``
        (the effective weight; the forward applies alpha after the product, see ``finish``)."""
        wb = self.sign_weight()
        if self.scaling == "xnor":
            wb = wb * self._alpha().view(-1, *([1] * (self.weight.dim() - 1)))
        return wb

    def binary_weights(self) -> torch.Tensor:
        """The deployed weights: sign(W) in {-1., +1.} (sign(0) = +1), detached, whatever the mode."""
        w = self.weight.detach()
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    def scales(self) -> torch.Tensor | None:
        """XNOR-Net's per-output-channel alpha = mean |W_o| (detached), or None without scaling."""
        return self._alpha().detach() if self.scaling == "xnor" else None

    def glorot_fans(self) -> tuple[int, int]:
        """(fan_in, fan_out) as Glorot: in_features/out_features, or channels x kernel area for conv."""
        return glorot_fans(self.weight)

    def _extra(self) -> str:
        out = f", bias={self.bias is not None}"
        if self.scaling is not None:
            out += f", scaling={self.scaling!r}"
        if self.binarize != "deterministic":
            out += f", binarize={self.binarize!r}"
        return out


class BinaryLinear(_BinaryWeightLayer):
    """Linear layer with binary {-1, +1} weights (BinaryConnect / BinaryNet / XNOR-Net).

    Args:
        in_features, out_features: sizes, as ``torch.nn.Linear``.
        bias: a real bias per output (initialized to 0).
        scaling: None, or 'xnor' (output o scaled by alpha_o = mean |W_o|; gradient reaches W through alpha too).
        binarize: 'deterministic' (sign) or 'stochastic' (BinaryConnect's Bernoulli of hard_sigmoid(W)
            in training; eval mode always uses the sign).
        device, dtype: of the parameters.

    Attributes:
        weight: latent real weights (out_features, in_features), U[-1, 1] at init. Clip them with
            ``clip_latent_weights_`` after each optimizer step (BinaryConnect).

    ``forward(x) == finish(F.linear(x, sign_weight()))``: the product with the {-1, +1} weights, then
    alpha (if scaled) and the bias; mathematically ``F.linear(x, quantized_weight(), bias)``. In eval
    mode the signs are ``binary_weights()`` and alpha is ``scales()``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False, scaling: str | None = None,
                 binarize: str = "deterministic", device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None):
        super().__init__()
        self.in_features = _positive_int("BinaryLinear", "in_features", in_features)
        self.out_features = _positive_int("BinaryLinear", "out_features", out_features)
        self._setup("BinaryLinear", (self.out_features, self.in_features), bias, scaling, binarize, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"BinaryLinear(in_features={self.in_features}) got input of shape "
                             f"{tuple(x.shape)}: expected the last dimension to be {self.in_features}")
        return self.finish(F.linear(x, self.sign_weight()))

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}{self._extra()}"


class BinaryConv2d(_BinaryWeightLayer):
    """2-d convolution with binary {-1, +1} weights (BinaryConnect / BinaryNet / XNOR-Net).

    Args:
        in_channels, out_channels, kernel_size, stride, padding: as ``torch.nn.Conv2d`` (ints or pairs;
            zero padding; no dilation or groups).
        bias, scaling, binarize, device, dtype: as ``BinaryLinear``.

    ``forward(x) == finish(F.conv2d(x, sign_weight(), None, stride, padding))`` (see ``BinaryLinear``).
    Zero padding adds zeros, not -1s, so only ``padding=0`` deploys to XNOR-popcount form.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = False, scaling: str | None = None, binarize: str = "deterministic",
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.in_channels = _positive_int("BinaryConv2d", "in_channels", in_channels)
        self.out_channels = _positive_int("BinaryConv2d", "out_channels", out_channels)
        self.kernel_size = _pair("BinaryConv2d", "kernel_size", kernel_size, 1)
        self.stride = _pair("BinaryConv2d", "stride", stride, 1)
        self.padding = _pair("BinaryConv2d", "padding", padding, 0)
        self._setup("BinaryConv2d", (self.out_channels, self.in_channels, *self.kernel_size), bias, scaling,
                    binarize, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"BinaryConv2d(in_channels={self.in_channels}) expects input "
                             f"(N, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        return self.finish(F.conv2d(x, self.sign_weight(), None, self.stride, self.padding))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}{self._extra()}")


BINARY_LAYERS = (BinaryLinear, BinaryConv2d)


# ---------------------------------------------------------------- LQ-Nets quantizers

def _all_codes(bits: int, values: tuple[float, float]) -> torch.Tensor:
    """(2^bits, bits) float64: every code e in {values[0], values[1]}^bits."""
    return torch.tensor(list(itertools.product(values, repeat=bits)), dtype=torch.float64)


def _nearest(x: torch.Tensor, basis: torch.Tensor, codes: torch.Tensor):
    """Nearest-level quantization of rows of ``x`` (R, n) with bases (R, K) and all codes (L, K).

    Returns (q, index, sorted_codes): q (R, n) the level values, index (R, n) into the ascending levels,
    sorted_codes (R, L, K) the code of each ascending level. Ties at a midpoint go to the upper level.
    """
    codes = codes.to(torch.float64)  # exact in any dtype; the buffer may have been cast by Module.half()
    levels = basis.to(torch.float64) @ codes.t()                      # (R, L)
    levels, order = levels.sort(dim=1)
    sorted_codes = codes[order]                                       # (R, L, K)
    thresholds = (levels[:, 1:] + levels[:, :-1]) / 2                 # midpoints
    index = torch.searchsorted(thresholds.to(x.dtype).contiguous(), x.contiguous(), right=True)
    q = levels.to(x.dtype).gather(1, index)
    return q, index, sorted_codes


def _least_squares_basis(x: torch.Tensor, index: torch.Tensor, sorted_codes: torch.Tensor,
                         ridge: float) -> torch.Tensor:
    """Per row r: argmin_v ||E_r v - x_r||^2 + ridge ||v||^2 for the current codes E_r (float64 (R, K)).

    Built from per-level counts and sums (E^T E = C^T diag(counts) C, E^T x = C^T sums), never the (n, K) E.
    Rows whose Gram matrix is singular (ridge 0 and a basis bit never used) get NaN.
    """
    rows, n_levels, k = sorted_codes.shape
    counts = torch.zeros(rows, n_levels, dtype=x.dtype, device=x.device).scatter_add_(1, index, torch.ones_like(x))
    sums = torch.zeros(rows, n_levels, dtype=x.dtype, device=x.device).scatter_add_(1, index, x)
    counts, sums = counts.to(torch.float64), sums.to(torch.float64)
    gram = torch.einsum("rlk,rl,rlj->rkj", sorted_codes, counts, sorted_codes)
    gram = gram + ridge * torch.eye(k, dtype=torch.float64, device=x.device)
    rhs = torch.einsum("rlk,rl->rk", sorted_codes, sums)
    solution, info = torch.linalg.solve_ex(gram, rhs)
    # Singular or badly conditioned systems (an unused code bit) would give a meaningless basis.
    bad = (info != 0) | (torch.linalg.cond(gram) > 1e10) | ~torch.isfinite(solution).all(1)
    return torch.where(bad.unsqueeze(1), torch.full_like(solution, float("nan")), solution)


class _LQQuantizer(torch.nn.Module):
    """Shared LQ-Nets machinery: a basis buffer (R, K), nearest-level quantization, the QEM update."""

    basis: torch.Tensor
    code_values: tuple[float, float] = (-1.0, 1.0)
    ridge: float = 0.0

    def _setup(self, owner: str, rows: int, bits: int, momentum: float, update_in_forward: bool,
               init: torch.Tensor) -> None:
        self.bits = _positive_int(owner, "bits", bits)
        if self.bits > 8:
            raise ValueError(f"{owner} bits must be at most 8 (2^bits levels per basis), got bits={bits!r}")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"{owner} momentum must be in [0, 1), got momentum={momentum!r}")
        if not isinstance(update_in_forward, bool):
            raise ValueError(f"{owner} update_in_forward must be True or False, got {update_in_forward!r}")
        self.momentum, self.update_in_forward = float(momentum), update_in_forward
        self.register_buffer("basis", init.reshape(rows, self.bits).to(torch.float32).clone())
        self.register_buffer("_codes", _all_codes(self.bits, self.code_values), persistent=False)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def levels(self) -> torch.Tensor:
        """(R, 2^K) ascending levels v^T e of every basis (R = out_channels for weights, 1 for activations)."""
        codes = self._codes.to(torch.float64)
        return (self.basis.to(torch.float64) @ codes.t()).sort(dim=1).values.to(self.basis.dtype)

    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, codes), no gradient: values like ``x``, codes ``x.shape + (K,)`` in the code alphabet."""
        with torch.no_grad():
            rows = self._rows(x)
            q, index, sorted_codes = _nearest(rows, self.basis, self._codes)
            codes = sorted_codes.gather(1, index.unsqueeze(-1).expand(-1, -1, self.bits))
        return q.reshape(x.shape), codes.reshape(*x.shape, self.bits).to(x.dtype)

    @torch.no_grad()
    def update_basis(self, x: torch.Tensor) -> None:
        """One QEM step on ``x``: codes by the current basis, least squares v*, then v = m v + (1 - m) v*.

        m = ``momentum`` (0.9, LQ-Nets'). A basis whose least-squares system is singular keeps its value.
        """
        rows = self._rows(x.detach())
        _, index, sorted_codes = _nearest(rows, self.basis, self._codes)
        best = _least_squares_basis(rows, index, sorted_codes, self.ridge)
        keep = torch.isnan(best).any(1, keepdim=True)
        new = self.momentum * self.basis.to(torch.float64) + (1 - self.momentum) * best
        self.basis.copy_(torch.where(keep, self.basis.to(torch.float64), new).to(self.basis.dtype))

    def quantization_error(self, x: torch.Tensor) -> float:
        """Mean squared error between ``x`` and its quantization (a diagnostic)."""
        q, _ = self.quantize(x)
        return float(((q - x.detach()) ** 2).mean())


class LQWeightQuantizer(_LQQuantizer):
    """LQ-Nets weight quantizer: w ~ v_o^T e, one learned basis v_o in R^K per output channel, e in {-1,+1}^K.

    Each weight takes the nearest of its channel's 2^K levels (all code combinations, sorted; decided by
    midpoint thresholds, a tie goes up). Backward: identity straight-through.

    Args:
        out_channels: rows of the weight (dim 0); the rest of the weight is flattened per channel.
        bits: K.
        weight_std: the expected weight standard deviation, for the init (LQ-Nets'):
            v_j = 2^j * 0.6745 * weight_std / 2^(K-1), j = 0..K-1 (uniform levels, odd multiples of v_0).
        momentum: moving-average factor m of the QEM update v = m v + (1 - m) v* (0.9).
        update_in_forward: if True, every training-mode forward runs ``update_basis`` on the weight it
            just quantized (after quantizing: the output uses the basis from before the update). If
            False, call ``update_basis(weight)`` yourself.

    The least squares of the update uses a ridge of 1e-4. The basis is a buffer (in ``state_dict``,
    not a Parameter: QEM, not the optimizer, learns it).
    """

    ridge = LQ_WEIGHT_RIDGE

    def __init__(self, out_channels: int, bits: int, weight_std: float = 1.0, momentum: float = 0.9,
                 update_in_forward: bool = True):
        super().__init__()
        self.out_channels = _positive_int("LQWeightQuantizer", "out_channels", out_channels)
        bits = _positive_int("LQWeightQuantizer", "bits", bits)
        if isinstance(weight_std, bool) or not isinstance(weight_std, (int, float)) or not (
                math.isfinite(weight_std) and weight_std > 0):
            raise ValueError(f"LQWeightQuantizer weight_std must be a finite number > 0, got weight_std={weight_std!r}")
        base = NORM_PPF_0_75 * float(weight_std) / 2 ** (bits - 1)
        init = torch.tensor([base * 2 ** j for j in range(bits)]).repeat(self.out_channels, 1)
        self._setup("LQWeightQuantizer", self.out_channels, bits, momentum, update_in_forward, init)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[0] != self.out_channels:
            raise ValueError(f"LQWeightQuantizer(out_channels={self.out_channels}) got a weight of shape "
                             f"{tuple(x.shape)}: expected dim 0 to be {self.out_channels}")
        return x.reshape(self.out_channels, -1)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        q, _ = self.quantize(w)
        out = _StraightThrough.apply(w, q, None)
        if self.training and self.update_in_forward:
            self.update_basis(w)
        return out

    def extra_repr(self) -> str:
        return f"out_channels={self.out_channels}, bits={self.bits}"


class LQActivationQuantizer(_LQQuantizer):
    """LQ-Nets activation quantizer: x ~ v^T e with one learned basis v in R^K per layer, e in {0,1}^K.

    Meant for non-negative inputs (after ReLU). Levels: all 2^K sums of subsets of v (0 among them),
    sorted; nearest level by midpoint thresholds (a tie goes up). Backward: straight-through where
    0 <= x <= top level (both ends included), zero elsewhere.

    Args:
        bits: K.
        init_top: the initial top level; init v_j = 2^j * init_top / (2^K - 1) (uniform levels
            0, v_0, 2 v_0, ...). Default 2 * 0.6745 (LQ-Nets' activation init, for BN + ReLU outputs).
        momentum, update_in_forward: as ``LQWeightQuantizer`` (the update sees the whole batch).

    The least squares has no ridge; when its system is singular (a code bit that no input uses, e.g.
    an all-zero batch) the basis is left unchanged for that step.
    """

    code_values = (0.0, 1.0)
    ridge = 0.0

    def __init__(self, bits: int, init_top: float = 2 * NORM_PPF_0_75, momentum: float = 0.9,
                 update_in_forward: bool = True):
        super().__init__()
        bits = _positive_int("LQActivationQuantizer", "bits", bits)
        if isinstance(init_top, bool) or not isinstance(init_top, (int, float)) or not (
                math.isfinite(init_top) and init_top > 0):
            raise ValueError(f"LQActivationQuantizer init_top must be a finite number > 0, got init_top={init_top!r}")
        init = torch.tensor([float(init_top) * 2 ** j / (2 ** bits - 1) for j in range(bits)])
        self._setup("LQActivationQuantizer", 1, bits, momentum, update_in_forward, init)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(1, -1)

    def top_level(self) -> torch.Tensor:
        """The largest level (a 0-d tensor)."""
        return self.levels()[0, -1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            raise ValueError(f"LQActivationQuantizer expects a floating-point tensor, got dtype {x.dtype}")
        q, _ = self.quantize(x)
        with torch.no_grad():
            mask = (x >= 0) & (x <= self.top_level().to(x.dtype))
        out = _StraightThrough.apply(x, q, mask)
        if self.training and self.update_in_forward:
            self.update_basis(x)
        return out

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class _LQLayer(torch.nn.Module):
    """Shared parts of LQLinear / LQConv2d: real latent weight, weight and input quantizers."""

    weight: torch.nn.Parameter

    def _setup(self, owner: str, shape: tuple[int, ...], bias: bool, weight_bits: int, act_bits: int | None,
               device, dtype) -> None:
        _check_bias(owner, bias)
        weight_bits = _positive_int(owner, "weight_bits", weight_bits)
        if act_bits is not None:
            act_bits = _positive_int(owner, "act_bits", act_bits)
        factory = {"device": device, "dtype": dtype}
        self.weight = torch.nn.Parameter(torch.empty(shape, **factory))
        self.bias = torch.nn.Parameter(torch.empty(shape[0], **factory)) if bias else None
        fan_in = math.prod(shape[1:])
        self.weight_std = math.sqrt(2.0 / fan_in)
        self.weight_quantizer = LQWeightQuantizer(shape[0], weight_bits, weight_std=self.weight_std)
        self.input_quantizer = LQActivationQuantizer(act_bits) if act_bits is not None else None
        self.weight_quantizer.to(device)
        if self.input_quantizer is not None:
            self.input_quantizer.to(device)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """W ~ N(0, 2 / fan_in) (He, matching the weight basis init), bias 0."""
        with torch.no_grad():
            self.weight.normal_(0.0, self.weight_std)
            if self.bias is not None:
                self.bias.zero_()

    def quantized_weight(self) -> torch.Tensor:
        """The K-bit weight the forward uses (identity straight-through to W; updates the basis in training)."""
        return self.weight_quantizer(self.weight)

    def _quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.input_quantizer is None else self.input_quantizer(x)

    def _extra(self) -> str:
        act = self.input_quantizer.bits if self.input_quantizer is not None else None
        return f", bias={self.bias is not None}, weight_bits={self.weight_quantizer.bits}, act_bits={act}"


class LQLinear(_LQLayer):
    """Linear layer with LQ-Nets K-bit weights and (optionally) K-bit inputs.

    Args:
        in_features, out_features, bias: as ``torch.nn.Linear`` (bias initialized to 0).
        weight_bits: bits of the weight quantizer (one basis per output feature, codes in {-1,+1}).
        act_bits: bits of the input quantizer (one basis, codes in {0,1}; for non-negative inputs), or
            None to keep the input real (the first layer).

    ``forward(x) == F.linear(q_in(x), q_w(W), bias)``; training mode also runs one QEM basis update of
    each quantizer per forward.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False, weight_bits: int = 2,
                 act_bits: int | None = 2, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None):
        super().__init__()
        self.in_features = _positive_int("LQLinear", "in_features", in_features)
        self.out_features = _positive_int("LQLinear", "out_features", out_features)
        self._setup("LQLinear", (self.out_features, self.in_features), bias, weight_bits, act_bits, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"LQLinear(in_features={self.in_features}) got input of shape {tuple(x.shape)}: "
                             f"expected the last dimension to be {self.in_features}")
        return F.linear(self._quantize_input(x), self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}{self._extra()}"


class LQConv2d(_LQLayer):
    """2-d convolution with LQ-Nets K-bit weights and (optionally) K-bit inputs.

    Args: as ``BinaryConv2d`` for the geometry, ``LQLinear`` for bias, weight_bits and act_bits.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = False, weight_bits: int = 2, act_bits: int | None = 2,
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.in_channels = _positive_int("LQConv2d", "in_channels", in_channels)
        self.out_channels = _positive_int("LQConv2d", "out_channels", out_channels)
        self.kernel_size = _pair("LQConv2d", "kernel_size", kernel_size, 1)
        self.stride = _pair("LQConv2d", "stride", stride, 1)
        self.padding = _pair("LQConv2d", "padding", padding, 0)
        self._setup("LQConv2d", (self.out_channels, self.in_channels, *self.kernel_size), bias, weight_bits,
                    act_bits, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"LQConv2d(in_channels={self.in_channels}) expects input (N, {self.in_channels}, H, W), "
                             f"got shape {tuple(x.shape)}")
        return F.conv2d(self._quantize_input(x), self.quantized_weight(), self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}{self._extra()}")


LQ_LAYERS = (LQLinear, LQConv2d)


# ---------------------------------------------------------------- deployable binary networks

class Bipolar(torch.nn.Module):
    """Input bits {0, 1} -> {-1, +1} (2x - 1): the first module of a binary network on bit inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x - 1


class FoldableBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm (1-d on (N, C), 2-d on (N, C, H, W)) whose eval-mode arithmetic is fixed.

    Training normalizes with the batch statistics as ``torch.nn.BatchNorm*d`` does. Eval mode computes
    ``((x - running_mean) * scale) + bias`` with ``scale = weight / sqrt(running_var + eps)``, each step
    one elementwise operation (``eval_affine``). why: torch's fused eval kernel may round differently
    in its vector body and its tail (FMA or not), so the sign of a tie could depend on the position;
    here every element of a channel sees the same correctly rounded steps, and a deployment that
    evaluates ``eval_affine`` on every possible integer input folds BN + sign into an exact threshold.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"FoldableBatchNorm expects (N, C) or (N, C, H, W) input, got shape {tuple(x.shape)}")

    def channel_scale(self) -> torch.Tensor:
        """weight / sqrt(running_var + eps) per channel (ones for ``affine=False``), detached."""
        with torch.no_grad():
            scale = 1 / torch.sqrt(self.running_var + self.eps)
            return scale * self.weight if self.affine else scale

    def eval_affine(self, x: torch.Tensor) -> torch.Tensor:
        """The eval-mode output for x: channel dim 1, broadcast over any trailing dims."""
        shape = (-1,) + (1,) * (x.dim() - 2)
        y = (x - self.running_mean.view(shape)) * self.channel_scale().view(shape)
        return y + self.bias.view(shape) if self.affine else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.track_running_stats:
            return super().forward(x)
        self._check_input_dim(x)
        return self.eval_affine(x)


class OutputScale(torch.nn.Module):
    """Multiply by one learnable positive scalar exp(log_scale): logits of a sensible size for the loss
    without changing which class wins (a BatchNorm per class would, and a bias would need a multiply)."""

    def __init__(self, initial: float = 1.0):
        super().__init__()
        if isinstance(initial, bool) or not isinstance(initial, (int, float)) or not (
                math.isfinite(initial) and initial > 0):
            raise ValueError(f"OutputScale initial must be a finite number > 0, got initial={initial!r}")
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(initial)))

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale()


class BinaryBlock(torch.nn.Sequential):
    """One hidden layer of a BNN: binary weights, FoldableBatchNorm, sign, optional 2-d max (OR) pool.

    Children ``layer`` (BinaryLinear or BinaryConv2d), ``norm``, ``act`` (BinaryActivation) and, for
    convolutions, ``pool`` (an ``OrPool2d``: the max of {-1, +1} values is the OR of their bits). As a
    unit it deploys as popcount >= threshold cells (``diffgates.frontend.binary``).
    """

    def __init__(self, layer: "_BinaryWeightLayer", norm: FoldableBatchNorm, act: BinaryActivation,
                 pool: torch.nn.Module | None = None):
        if not isinstance(layer, BINARY_LAYERS):
            raise ValueError(f"BinaryBlock layer must be a BinaryLinear or BinaryConv2d, got {type(layer).__name__}")
        if not isinstance(norm, FoldableBatchNorm) or norm.num_features != layer.weight.shape[0]:
            raise ValueError(f"BinaryBlock norm must be a FoldableBatchNorm({layer.weight.shape[0]}), got {norm!r}")
        if not isinstance(act, BinaryActivation):
            raise ValueError(f"BinaryBlock act must be a BinaryActivation, got {type(act).__name__}")
        if pool is not None and not isinstance(layer, BinaryConv2d):
            raise ValueError("BinaryBlock: only a convolution block may pool")
        modules = {"layer": layer, "norm": norm, "act": act}
        if pool is not None:
            modules["pool"] = pool
        super().__init__(collections.OrderedDict(modules))


class BinaryClassifier(torch.nn.Sequential):
    """The output layer of a BNN: a BinaryLinear without scaling or bias, then an OutputScale.

    Its integer scores are y = (inputs times signs) in [-n, n]; the logits s * y keep their order, so
    the deployed argmax (ties to the lowest class) is the model's.
    """

    def __init__(self, in_features: int, num_classes: int, *, device=None, dtype=None):
        layer = BinaryLinear(in_features, num_classes, device=device, dtype=dtype)
        scale = OutputScale(1.0 / math.sqrt(in_features)).to(device)  # unit-variance logits at init
        super().__init__(collections.OrderedDict({"layer": layer, "scale": scale}))


# ---------------------------------------------------------------- training helpers

def _check_model(owner: str, model) -> None:
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{owner} expects a torch.nn.Module, got model of type {type(model).__name__}")


def glorot_fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a (out, in, *kernel) weight as Glorot: (in * area, out * area)."""
    if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
        raise ValueError(f"glorot_fans expects a weight with at least 2 dims (out, in, ...), got "
                         f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__}")
    area = math.prod(weight.shape[2:])
    return int(weight.shape[1]) * area, int(weight.shape[0]) * area


def clip_latent_weights_(model: torch.nn.Module, bound: float = 1.0) -> torch.nn.Module:
    """Clip the latent weights of every BinaryLinear/BinaryConv2d in ``model`` to [-bound, bound], in place.

    BinaryConnect/BinaryNet call it after each optimizer step (beyond +-1 a latent weight would only
    grow without ever changing its sign's gradient). Biases, BN and LQ layers are left alone. Returns ``model``.
    """
    _check_model("clip_latent_weights_", model)
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not (math.isfinite(bound) and bound > 0):
        raise ValueError(f"clip_latent_weights_ bound must be a finite number > 0, got bound={bound!r}")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BINARY_LAYERS):
                module.weight.clamp_(-bound, bound)
    return model


@torch.no_grad()
def recalibrate_batchnorm_(model: torch.nn.Module, batches) -> int:
    """Recompute the running statistics of every BatchNorm in ``model`` from ``batches``, in place.

    Each BatchNorm's running mean / variance become the equal-weight average over the batches of its
    batch mean / unbiased batch variance, computed with the model's current weights as deployed: only
    the BatchNorms run in training mode, so dropout, stochastic binarization and LQ basis updates stay
    off. why: the running averages mix statistics of binary weights from earlier steps (whose signs
    keep flipping while the learning rate is high), and eval mode and the folded thresholds use them.
    ``batches`` is an iterable of model inputs of at least 2 rows each. Train/eval modes and momenta
    are restored; on an error, or with no batches, the statistics are left as they were. Returns the
    number of rows seen.
    """
    _check_model("recalibrate_batchnorm_", model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             and m.track_running_stats]
    modes = {m: m.training for m in model.modules()}
    saved = [(m, m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in norms]
    rows, completed = 0, False
    try:
        model.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # why: torch then keeps the cumulative (equal-weight) average
            m.train()
        for x in batches:
            if len(x) < 2:
                raise ValueError(f"recalibrate_batchnorm_: a batch of {len(x)} row has no batch variance; "
                                 f"expected batches of at least 2 rows")
            model(x)
            rows += len(x)
        completed = True
    finally:
        for m, momentum, mean, var, count in saved:
            m.momentum = momentum
            if not completed or rows == 0:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
        for m, training in modes.items():
            m.train(training)
    return rows


def binarynet_lr_scales(model: torch.nn.Module) -> dict[torch.nn.Parameter, float]:
    """{weight: 1 / sqrt(1.5 / (fan_in + fan_out))} for every BinaryLinear/BinaryConv2d weight in ``model``.

    BinaryNet's (and BinaryConnect's) per-layer learning-rate scale, the inverse of the Glorot
    half-range; fans as ``glorot_fans`` (conv: channels x kernel area).
    """
    _check_model("binarynet_lr_scales", model)
    scales: dict[torch.nn.Parameter, float] = {}
    for module in model.modules():
        if isinstance(module, BINARY_LAYERS):
            fan_in, fan_out = glorot_fans(module.weight)
            scales[module.weight] = 1.0 / math.sqrt(1.5 / (fan_in + fan_out))
    return scales


def binarynet_param_groups(model: torch.nn.Module, lr: float) -> list[dict]:
    """Optimizer param groups: each binary weight alone at lr * its BinaryNet scale, all else at ``lr``.

    Each group carries ``lr_scale`` (1.0 for the rest), so a learning-rate schedule can keep the
    ratio: ``group['lr'] = base_lr * group['lr_scale']``.
    """
    _check_model("binarynet_param_groups", model)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"binarynet_param_groups lr must be a finite number > 0, got lr={lr!r}")
    scales = binarynet_lr_scales(model)
    groups = [{"params": [p], "lr": lr * s, "lr_scale": s} for p, s in scales.items()]
    rest = [p for p in model.parameters() if p not in scales]
    if rest:
        groups.append({"params": rest, "lr": lr, "lr_scale": 1.0})
    return groups

"""Binary networks (BNNs) -> popcount/threshold circuits and XNOR programs, with exact threshold folding.

A deployable binary network is a Sequential of ``Bipolar`` (input bits -> {-1, +1}), ``BinaryBlock``s
(binary weights, ``FoldableBatchNorm``, sign, optional OR pool), ``Flatten``, ``Dropout`` (the identity
in eval mode) and a final ``BinaryClassifier`` (``diffgates.nn.binary``). In eval mode a block's output bit is

    sign(norm.eval_affine(layer.finish(y))) >= 0,   y = sum_i w_i x_i = 2 p - n,

where p counts the inputs that agree with their weight (XNOR) out of n. ``fold_block`` evaluates that
exact float expression, with the model's own modules and dtype, on every possible p = 0..n of every
channel and reads off the threshold: the bit is ``p >= T`` (BN scale > 0), ``p <= T'`` (scale < 0:
the channel's weights are flipped so it becomes ``p' >= n - T'``) or a constant (scale 0: T = 0 or
n + 1). Each of those steps is one correctly rounded elementwise operation, so the fold reproduces
the float comparison exactly, ties included; a pattern that is not a threshold raises.

Two deployed forms come from one fold:

* the Circuit IR (extractors registered with ``diffgates.frontend``): one threshold cell per neuron
  and position, its popcount row the XNOR literals (``2 * node + (weight == -1)``); the classifier's
  class groups are those literals as nodes (NOT gates where a weight is -1), so a 'group_sum' head
  counts exactly the agreements p of each class;
* ``to_xnor_program(model)``: the same network for the feature-packed XNOR-popcount engine
  (``diffgates.backends.xnor``).

Either way the class scores are the agreements p_c (the model's logits are s * (2 p_c - n)) and the
predicted class is the model's argmax. Example::

    circuit = diffgates.to_circuit(bnn)            # popcount/threshold cells
    program = to_xnor_program(bnn)                 # -> diffgates.backends.xnor.compile_xnor(program)
"""
from __future__ import annotations

import numpy as np
import torch

from .. import gates
from ..ir import Head
from ..nn import OrPool2d
from ..nn.binary import BinaryBlock, BinaryClassifier, BinaryConv2d, Bipolar
from .extract import CircuitBuilder, ExtractionError, _describe, _extract_or_pool, _image_features, register_extractor

# Modules after which the features are {-1, +1} values carried as bits (Flatten only reshapes them).
_BIPOLAR_SOURCES = ("Bipolar", "BinaryBlock")
_PASS_THROUGH = ("Flatten", "Dropout")  # reshape or (in eval mode) identity: the values stay +-1


def fold_block(block: BinaryBlock, position: str = "block") -> tuple[np.ndarray, np.ndarray]:
    """The exact threshold form of a block: (weight bits, thresholds).

    Returns:
        bits: uint8 (out, *fan) in {0, 1}, 1 where the (possibly flipped) weight is +1;
        thresholds: int64 (out,) in [0, n + 1]: the output bit is (agreements with ``bits``) >= threshold.

    Raises:
        ExtractionError: non-finite parameters, or a channel whose bits over p = 0..n are not a threshold.
    """
    layer, norm = block.layer, block.norm
    where = _describe(block, position)
    for name, tensor in (("weight", layer.weight), ("bias", layer.bias), ("norm.weight", norm.weight),
                         ("norm.bias", norm.bias), ("norm.running_mean", norm.running_mean),
                         ("norm.running_var", norm.running_var)):
        if tensor is not None and not bool(torch.isfinite(tensor.detach()).all()):
            raise ExtractionError(f"{where} has non-finite {name} (NaN or inf): the training diverged or the "
                                  f"weights are corrupt")
    signs = layer.binary_weights()
    out, n = signs.shape[0], int(np.prod(signs.shape[1:]))
    p = torch.arange(n + 1, device=signs.device)
    y = (2 * p - n).to(signs.dtype).view(-1, 1, *([1] * (signs.dim() - 2))).expand(n + 1, out, *([1] * (signs.dim() - 2)))
    if norm.training:  # why: training mode normalizes with batch statistics, not the deployed ones
        raise ExtractionError(f"{where}: its FoldableBatchNorm is in training mode; call model.eval() first")
    with torch.no_grad():
        z = norm.eval_affine(layer.finish(y))
    bits = (z >= 0).reshape(n + 1, out).cpu().numpy()  # sign(0) = +1: BinaryActivation's x >= 0
    index = np.arange(n + 1)[:, None]
    first_true = np.where(bits.any(0), bits.argmax(0), n + 1)
    last_true = np.where(bits.any(0), n - bits[::-1].argmax(0), -1)
    rising = (bits == (index >= first_true)).all(0)
    falling = (bits == (index <= last_true)).all(0)
    bad = np.flatnonzero(~rising & ~falling)
    if bad.size:
        raise ExtractionError(f"{where}: channel {int(bad[0])}'s output over the {n + 1} possible popcounts is "
                              f"not a threshold (BatchNorm arithmetic is not monotone here)")
    flip = ~rising  # falling: count disagreements instead (flip the weights)
    thresholds = np.where(flip, n - last_true, first_true).astype(np.int64)
    positive = (signs > 0).cpu().numpy().reshape(out, -1)
    weight_bits = (positive ^ flip[:, None]).astype(np.uint8).reshape(tuple(signs.shape))
    return weight_bits, thresholds


def _require_bipolar(builder: CircuitBuilder, module, position: str) -> None:
    previous = [m for m in builder.modules if m not in _PASS_THROUGH]
    if not previous or previous[-1] not in _BIPOLAR_SOURCES:
        raise ExtractionError(f"{_describe(module, position)} reads real values: a binary network deploys only on "
                              f"{{-1, +1}} inputs, so it must start with Bipolar() on the input bits (modules "
                              f"before it: {builder.modules or 'none'})")


def _extract_bipolar(module: Bipolar, builder: CircuitBuilder, position: str) -> None:
    if builder.modules:
        raise ExtractionError(f"{_describe(module, position)} must be the first module (it maps the input bits to "
                              f"{{-1, +1}}); modules before it: {builder.modules}")


def _dense_features(builder: CircuitBuilder, module, position: str, width: int) -> np.ndarray:
    if builder.features is None:
        builder.start_inputs(width)
    features = builder.features.reshape(-1)
    if features.size != width:
        raise ExtractionError(f"{_describe(module, position)} expects {width} features, but the module before it "
                              f"produces {features.size}")
    return features


def _extract_binary_block(block: BinaryBlock, builder: CircuitBuilder, position: str) -> None:
    _require_bipolar(builder, block, position)
    layer = block.layer
    bits, thresholds = fold_block(block, position)
    negated = 1 - bits.astype(np.int64)  # a -1 weight agrees with a 0 bit: the literal is negated
    if isinstance(layer, BinaryConv2d):
        _check_conv(layer, position)
        feats = _image_features(builder, layer, position, layer.in_channels)
        patches, h_out, w_out = _patches(feats, layer.kernel_size, layer.stride)  # (H_out, W_out, C*kh*kw)
        out = bits.shape[0]
        rows = 2 * patches[None] + negated.reshape(out, 1, 1, -1)  # (out, H_out, W_out, n)
        nodes = builder.add_thresholds(rows.reshape(-1, rows.shape[-1]), np.repeat(thresholds, h_out * w_out))
        builder.features = nodes.reshape(out, h_out, w_out)
        builder.layer_widths.append(int(nodes.size))
        pool = _block_pool(block, position)
        if pool is not None:
            _extract_or_pool(pool, builder, position + ".pool")
    else:
        features = _dense_features(builder, layer, position, layer.in_features)
        rows = 2 * features[None, :] + negated
        builder.features = builder.add_thresholds(rows, thresholds)
        builder.layer_widths.append(int(bits.shape[0]))


def _block_pool(block: BinaryBlock, position: str) -> OrPool2d | None:
    """The block's pool, if any; ExtractionError unless it is an OrPool2d (max = OR on {-1, +1})."""
    pool = getattr(block, "pool", None)
    if pool is not None and not isinstance(pool, OrPool2d):
        raise ExtractionError(f"{_describe(block, position)} pools with {type(pool).__name__}; only OrPool2d "
                              f"(max = OR on {{-1, +1}}) deploys")
    return pool


def _check_conv(layer: BinaryConv2d, position: str) -> None:
    if layer.padding != (0, 0):
        raise ExtractionError(f"{_describe(layer, position)} has padding={layer.padding}: zero padding adds 0, "
                              f"which is neither -1 nor +1, so only padding=0 deploys")


def _patches(feats: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """(H_out, W_out, C*kh*kw) nodes of every window, in the (c, dy, dx) order of a conv weight."""
    c, h, w = feats.shape
    (kh, kw), (sh, sw) = kernel, stride
    h_out, w_out = (h - kh) // sh + 1, (w - kw) // sw + 1
    if h_out < 1 or w_out < 1:
        raise ExtractionError(f"a {kh}x{kw} binary convolution cannot run on a {h} x {w} feature map")
    dy = np.arange(kh)[:, None]
    dx = np.arange(kw)[None, :]
    rows = (np.arange(h_out) * sh)[:, None, None, None, None] + dy[None, None, None]
    cols = (np.arange(w_out) * sw)[None, :, None, None, None] + dx[None, None, None]
    chans = np.arange(c)[None, None, :, None, None]
    return feats[chans, rows, cols].reshape(h_out, w_out, c * kh * kw), h_out, w_out


def _check_classifier(head: BinaryClassifier, position: str) -> None:
    layer = head.layer
    if layer.bias is not None or layer.scaling is not None:
        raise ExtractionError(f"{_describe(head, position)} has a bias or XNOR scaling: per-class offsets and scales "
                              f"change which class wins, so the deployed classifier has neither")


def _extract_binary_classifier(head: BinaryClassifier, builder: CircuitBuilder, position: str) -> None:
    _require_bipolar(builder, head, position)
    _check_classifier(head, position)
    layer = head.layer
    features = _dense_features(builder, layer, position, layer.in_features)
    positive = (layer.binary_weights() > 0).cpu().numpy()
    inverted = builder.add_gates(np.full(features.size, gates.NOT_A), features, features)
    groups = np.where(positive, features[None, :], inverted[None, :])  # (classes, n): true where it agrees
    builder.features = groups.reshape(-1)
    scale = float(head.scale.scale().detach())
    builder.head = Head.group_sum(layer.out_features, 1.0 / (2.0 * scale))  # logits = s*(2p - n): p / tau + const
    builder.layer_widths.append(int(layer.out_features))


def _extract_dropout(module: torch.nn.Dropout, builder: CircuitBuilder, position: str) -> None:
    """Eval-mode dropout is the identity: nothing to emit."""


register_extractor(torch.nn.Dropout, _extract_dropout)
register_extractor(Bipolar, _extract_bipolar)
register_extractor(BinaryBlock, _extract_binary_block)
register_extractor(BinaryClassifier, _extract_binary_classifier)


def to_xnor_program(model: torch.nn.Module, input_shape: tuple[int, ...] | None = None):
    """The XNOR-popcount form of a deployable binary network (see the module docstring).

    Args:
        model: Sequential(Bipolar, [BinaryBlock | Flatten]..., BinaryClassifier), in eval mode.
        input_shape: one sample's shape; default the model's ``diffgates_input_shape`` (set by the family).

    Raises:
        ExtractionError: a module that is not part of that structure, or a fold that fails.
    """
    from ..backends.xnor import OrPool, XnorConv, XnorDense, XnorOutput, XnorProgram

    if input_shape is None:
        input_shape = getattr(model, "diffgates_input_shape", None)
    children = list(model.named_children()) if isinstance(model, torch.nn.Sequential) else []
    if not children or not isinstance(children[0][1], Bipolar) or not isinstance(children[-1][1], BinaryClassifier):
        raise ExtractionError(f"to_xnor_program expects Sequential(Bipolar, BinaryBlock..., BinaryClassifier), got "
                              f"{[type(m).__name__ for _, m in children] or type(model).__name__}")
    first = children[1][1] if len(children) > 1 else None
    if input_shape is None:
        if isinstance(first, BinaryBlock) and isinstance(first.layer, BinaryConv2d):
            raise ExtractionError("to_xnor_program: the model starts with a convolution; pass input_shape=(C, H, W)")
        layer = first.layer if isinstance(first, (BinaryBlock, BinaryClassifier)) else None
        if layer is None:
            raise ExtractionError("to_xnor_program: cannot tell the input size; pass input_shape")
        input_shape = (layer.in_features,)
    if not any(isinstance(m, BinaryBlock) and isinstance(m.layer, BinaryConv2d) for _, m in children):
        # why: without convolutions the image is only flattened; a (C, H, W) program would pack each
        # position in its own word (784 words for MNIST's 784 bits instead of 13)
        input_shape = (int(np.prod(input_shape)),)
    layers: list = []
    for name, module in children[1:]:
        if isinstance(module, (torch.nn.Flatten, torch.nn.Dropout)):
            continue  # dense layers read the map flattened, as the program defines; dropout is eval-mode identity
        if isinstance(module, BinaryBlock):
            bits, thresholds = fold_block(module, name)
            if isinstance(module.layer, BinaryConv2d):
                _check_conv(module.layer, name)
                layers.append(XnorConv(bits, thresholds, stride=module.layer.stride))
                pool = _block_pool(module, name)
                if pool is not None:
                    layers.append(OrPool(kernel=pool.kernel_size, stride=pool.stride))
            else:
                layers.append(XnorDense(bits, thresholds))
        elif isinstance(module, BinaryClassifier):
            _check_classifier(module, name)
            layers.append(XnorOutput((module.layer.binary_weights() > 0).cpu().numpy().astype(np.uint8)))
        else:
            raise ExtractionError(f"to_xnor_program: {_describe(module, name)} is not part of a deployable binary "
                                  f"network (Bipolar, BinaryBlock, Flatten, BinaryClassifier)")
    try:
        return XnorProgram(tuple(int(d) for d in input_shape), layers)
    except ValueError as exc:
        raise ExtractionError(f"to_xnor_program: {exc}") from None

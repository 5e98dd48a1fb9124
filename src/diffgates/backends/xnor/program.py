"""The integer form of a binary network (an ``XnorProgram``) and its plain numpy reference.

Every value is a bit: 1 stands for +1, 0 for -1. Layers, in order:

* ``XnorConv(weights (O, C, kh, kw), thresholds (O,), stride)``: no padding; output bit [o, y, x] is 1
  iff the taps (c, dy, dx) where ``input[c, y*sh+dy, x*sw+dx] == weights[o, c, dy, dx]`` (the XNOR
  agreements) number at least ``thresholds[o]`` (an integer in [0, C*kh*kw + 1]);
* ``OrPool(kernel, stride)``: OR over each window (max pooling of +-1 values), no padding;
* ``XnorDense(weights (O, F), thresholds (O,))``: the same on a vector; a (C, H, W) map before it is
  read flattened in C order (as ``torch.nn.Flatten``);
* ``XnorOutput(weights (K, F))``: last, and only last: the class scores are the agreements (int32),
  the prediction their argmax (ties to the lowest class).

``diffgates.frontend.binary.to_xnor_program`` makes one from a trained BNN; ``reference_scores`` is the
executable definition every engine (``engine.compile_xnor``) must equal. numpy only. Example::

    program = XnorProgram((4,), [XnorDense(w1, t1), XnorOutput(w2)])
    scores = reference_scores(program, bits)          # (N, K) int32
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _bit_array(owner: str, name: str, value, ndim: int) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != ndim:
        raise ValueError(f"{owner} {name} must have {ndim} dimensions, got shape {array.shape}")
    if array.size and not np.isin(array, (0, 1)).all():
        bad = array[~np.isin(array, (0, 1))].flat[0]
        raise ValueError(f"{owner} {name} must hold only 0/1 bits, found {bad.item()!r}")
    if 0 in array.shape:
        raise ValueError(f"{owner} {name} must not be empty, got shape {array.shape}")
    out = np.ascontiguousarray(array, dtype=np.uint8)
    out.setflags(write=False)
    return out


def _thresholds(owner: str, value, count: int, fan_in: int) -> np.ndarray:
    array = np.asarray(value)
    if array.shape != (count,) or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{owner} thresholds must be {count} integers, got shape {array.shape} of {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > fan_in + 1):
        raise ValueError(f"{owner} thresholds must lie in [0, {fan_in + 1}] (the fan-in is {fan_in}), got "
                         f"{int(array.min())}..{int(array.max())}")
    out = np.ascontiguousarray(array, dtype=np.int64)
    out.setflags(write=False)
    return out


def _pair(owner: str, name: str, value) -> tuple[int, int]:
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                                  for v in items):
        raise ValueError(f"{owner} {name} must be a positive integer or a pair of them, got {value!r}")
    return int(items[0]), int(items[1])


@dataclass(frozen=True, eq=False)
class XnorConv:
    weights: np.ndarray
    thresholds: np.ndarray
    stride: tuple[int, int] = (1, 1)

    def __post_init__(self):
        w = _bit_array("XnorConv", "weights", self.weights, 4)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "thresholds", _thresholds("XnorConv", self.thresholds, w.shape[0],
                                                           int(np.prod(w.shape[1:]))))
        object.__setattr__(self, "stride", _pair("XnorConv", "stride", self.stride))

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        o, c, kh, kw = self.weights.shape
        if len(shape) != 3 or shape[0] != c:
            raise ValueError(f"expects a ({c}, H, W) map, got shape {shape}")
        h, w = (shape[1] - kh) // self.stride[0] + 1, (shape[2] - kw) // self.stride[1] + 1
        if shape[1] < kh or shape[2] < kw:
            raise ValueError(f"a {kh}x{kw} kernel does not fit a {shape[1]}x{shape[2]} map")
        return (o, h, w)


@dataclass(frozen=True, eq=False)
class OrPool:
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] | None = None

    def __post_init__(self):
        kernel = _pair("OrPool", "kernel", self.kernel)
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "stride", kernel if self.stride is None else _pair("OrPool", "stride", self.stride))

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 3 or shape[1] < self.kernel[0] or shape[2] < self.kernel[1]:
            raise ValueError(f"a {self.kernel} pool needs a (C, H, W) map at least that large, got shape {shape}")
        return (shape[0], (shape[1] - self.kernel[0]) // self.stride[0] + 1,
                (shape[2] - self.kernel[1]) // self.stride[1] + 1)


@dataclass(frozen=True, eq=False)
class XnorDense:
    weights: np.ndarray
    thresholds: np.ndarray

    def __post_init__(self):
        w = _bit_array("XnorDense", "weights", self.weights, 2)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "thresholds", _thresholds("XnorDense", self.thresholds, w.shape[0], w.shape[1]))

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if int(np.prod(shape)) != self.weights.shape[1]:
            raise ValueError(f"expects {self.weights.shape[1]} features, got shape {shape}")
        return (self.weights.shape[0],)


@dataclass(frozen=True, eq=False)
class XnorOutput:
    weights: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "weights", _bit_array("XnorOutput", "weights", self.weights, 2))

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if int(np.prod(shape)) != self.weights.shape[1]:
            raise ValueError(f"expects {self.weights.shape[1]} features, got shape {shape}")
        return (self.weights.shape[0],)


LAYER_TYPES = (XnorConv, OrPool, XnorDense, XnorOutput)


@dataclass(frozen=True, eq=False)
class XnorProgram:
    """A binary network as integers (see the module docstring); validated at construction.

    Attributes:
        input_shape: (F,) or (C, H, W). layers: the layers. shapes: the shape after each layer.
    """

    input_shape: tuple[int, ...]
    layers: tuple

    def __post_init__(self):
        shape = tuple(self.input_shape)
        if len(shape) not in (1, 3) or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in shape):
            raise ValueError(f"XnorProgram input_shape must be (F,) or (C, H, W) of positive integers, got {shape}")
        layers = tuple(self.layers)
        if not layers or not isinstance(layers[-1], XnorOutput):
            raise ValueError("XnorProgram: the last layer must be an XnorOutput (the class scores)")
        shapes = []
        current = tuple(int(d) for d in shape)
        for i, layer in enumerate(layers):
            if not isinstance(layer, LAYER_TYPES):
                raise ValueError(f"XnorProgram layer {i} is a {type(layer).__name__}, not one of "
                                 f"{[t.__name__ for t in LAYER_TYPES]}")
            if isinstance(layer, XnorOutput) and i != len(layers) - 1:
                raise ValueError(f"XnorProgram layer {i}: an XnorOutput must be the last layer")
            if isinstance(layer, (XnorConv, OrPool)) and shapes and len(shapes[-1]) == 1:
                raise ValueError(f"XnorProgram layer {i} ({type(layer).__name__}) needs a (C, H, W) map, but "
                                 f"layer {i - 1} produces a vector {shapes[-1]}")
            try:
                current = layer.output_shape(current)
            except ValueError as exc:
                raise ValueError(f"XnorProgram layer {i} ({type(layer).__name__}): {exc}") from None
            shapes.append(current)
        object.__setattr__(self, "input_shape", tuple(int(d) for d in shape))
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "shapes", tuple(shapes))

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def num_classes(self) -> int:
        return int(self.layers[-1].weights.shape[0])

    def check_bits(self, bits) -> np.ndarray:
        """``bits`` as uint8 (N, *input_shape); ValueError naming a bad shape or a non-0/1 value."""
        x = np.asarray(bits)
        n_in = self.n_inputs
        if x.ndim == 2 and x.shape[1] == n_in:
            x = x.reshape(x.shape[0], *self.input_shape)
        elif x.shape[1:] != self.input_shape:
            raise ValueError(f"expected input of shape (N, {n_in}) or (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {x.shape}")
        if x.dtype != np.bool_:
            ok = (x == 0) | (x == 1)
            if not ok.all():
                position = np.unravel_index(int(np.flatnonzero(~ok.reshape(-1))[0]), x.shape)
                raise ValueError(f"input must be 0/1 bits; found {x[position].item()!r} at index {tuple(map(int, position))}")
        return x.astype(np.uint8)


def _agreements(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(N, F) x (O, F) bits -> (N, O) counts of equal positions."""
    xs = x.astype(np.int32) * 2 - 1
    ws = w.astype(np.int32) * 2 - 1
    return (xs @ ws.T + w.shape[1]) // 2


def reference_scores(program: XnorProgram, bits) -> np.ndarray:
    """(N, K) int32 class scores of ``program`` on ``bits`` (the semantics every engine must equal)."""
    x = program.check_bits(bits)
    n = x.shape[0]
    for layer in program.layers:
        if isinstance(layer, XnorConv):
            o, c, kh, kw = layer.weights.shape
            _, h_out, w_out = layer.output_shape(x.shape[1:])
            sh, sw = layer.stride
            patches = np.stack([x[:, :, dy:dy + sh * (h_out - 1) + 1:sh, dx:dx + sw * (w_out - 1) + 1:sw]
                                for dy in range(kh) for dx in range(kw)], axis=2)  # (N, C, taps, H, W)
            patches = patches.transpose(0, 3, 4, 1, 2).reshape(n * h_out * w_out, c * kh * kw)
            agree = _agreements(patches, layer.weights.reshape(o, -1))
            x = (agree >= layer.thresholds).reshape(n, h_out, w_out, o).transpose(0, 3, 1, 2).astype(np.uint8)
        elif isinstance(layer, OrPool):
            _, h_out, w_out = layer.output_shape(x.shape[1:])
            (kh, kw), (sh, sw) = layer.kernel, layer.stride
            x = np.max([x[:, :, dy:dy + sh * (h_out - 1) + 1:sh, dx:dx + sw * (w_out - 1) + 1:sw]
                        for dy in range(kh) for dx in range(kw)], axis=0)
        elif isinstance(layer, XnorDense):
            x = (_agreements(x.reshape(n, -1), layer.weights) >= layer.thresholds).astype(np.uint8)
        else:
            return _agreements(x.reshape(n, -1), layer.weights).astype(np.int32)
    raise AssertionError("unreachable: a validated program ends with XnorOutput")


def reference_predict(program: XnorProgram, bits) -> np.ndarray:
    """(N,) int64 argmax of ``reference_scores`` (ties to the lowest class)."""
    return reference_scores(program, bits).argmax(1).astype(np.int64)

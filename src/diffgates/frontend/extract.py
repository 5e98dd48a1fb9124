"""Model -> Circuit extraction: turn a (trained) logic network into the Circuit IR.

``to_circuit(model)`` walks the model's modules in order (nested ``torch.nn.Sequential`` containers
are flattened) and hands each to the extractor registered for its type (``EXTRACTORS``, looked up
along the MRO, so subclasses inherit their base's entry). Extractors append cells to a
``CircuitBuilder``: the built-in ones emit one gate per ``LogicLayer`` neuron with its argmax gate
(``layer.gate_ids()``: what eval mode computes) and its fixed ``connections``; a ``LogicConv2d`` unrolls
its trees over every output position (zero padding reads one constant-0 gate), an ``OrPool2d`` becomes
kh*kw - 1 OR gates per window (given ``input_shape`` when a convolution comes first); ``Flatten`` reshapes;
``GroupSum`` sets the head. The result is exact: for any {0,1} input ``x``::

    group_counts(to_circuit(model), x) == round(model.eval()(x) * tau)

The head is what the model ends with: a ``GroupSum`` gives a 'group_sum' head (or 'argmax' with
``head="argmax"``); a model without one gives a 'bits' head whose outputs are the last layer's
bits. A model that is not a Sequential works when its type has an extractor (which may call
``builder.extract(child, position)`` for its children).

Node numbering: the gates of LogicLayer ``l`` become nodes in layer order, so node
``n_inputs + offset_l + j`` is neuron ``j`` of layer ``l`` (``offset_l`` is the total width of the
layers before ``l``; ``meta["layer_widths"]`` lists the widths). (Constant and single-input gates
have a lower logic depth than their layer, so ``Circuit.is_levelized()`` can be False here;
``ir.passes.levelize`` / ``ir.simplify`` sort by depth.) Example::

    import diffgates
    circuit = diffgates.to_circuit(model)
    circuit.save("net.circuit.json")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .. import gates
from ..ir import Circuit, Head
from ..ir.circuit import THRESHOLD
from ..nn import GroupSum, LogicConv2d, LogicLayer, OrPool2d


class ExtractionError(ValueError):
    """The model cannot be turned into a circuit (unsupported module, dimension mismatch, no gates)."""


Extractor = Callable[[Any, "CircuitBuilder", str], None]


@dataclass
class CircuitBuilder:
    """Mutable state of one extraction: the cells emitted so far and the current feature -> node map.

    ``features`` holds, for every feature the next module reads, the circuit node that computes it
    (an int64 array, 1-D for dense layers; a convolutional extractor may keep it shaped (C, H, W) and
    a Flatten reshapes it). It is None until the first module that fixes the input size.
    """

    n_inputs: int | None = None
    features: np.ndarray | None = None
    ops: list[np.ndarray] = field(default_factory=list)
    a: list[np.ndarray] = field(default_factory=list)
    b: list[np.ndarray] = field(default_factory=list)
    popcount_rows: list[np.ndarray] = field(default_factory=list)
    n_gates: int = 0
    head: Head | None = None
    layer_widths: list[int] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    input_shape: tuple[int, ...] | None = None  # of one sample, for modules that need it (convolutions)
    _zero: int | None = None

    def zero(self) -> int:
        """The node of a constant 0 (one FALSE gate, added on first use; simplification folds it)."""
        if self._zero is None:
            self._zero = int(self.add_gates(np.array([gates.FALSE]), np.zeros(1), np.zeros(1))[0])
        return self._zero

    def start_inputs(self, n_inputs: int, shape: tuple[int, ...] | None = None) -> None:
        """Declare the circuit's input bits (called by the first module that knows the input size)."""
        self.n_inputs = int(n_inputs)
        self.features = np.arange(self.n_inputs, dtype=np.int64)
        if shape is not None:
            self.features = self.features.reshape(shape)

    def add_gates(self, ops: np.ndarray, a_nodes: np.ndarray, b_nodes: np.ndarray) -> np.ndarray:
        """Append gates reading existing nodes; returns the new gates' node ids (in order)."""
        if self.n_inputs is None:
            raise ExtractionError("start_inputs must run before gates are added")
        first = self.n_inputs + self.n_gates
        self.ops.append(np.asarray(ops, dtype=np.uint8).reshape(-1))
        self.a.append(np.asarray(a_nodes, dtype=np.int64).reshape(-1))
        self.b.append(np.asarray(b_nodes, dtype=np.int64).reshape(-1))
        self.n_gates += len(self.ops[-1])
        return np.arange(first, first + len(self.ops[-1]), dtype=np.int64)

    def add_thresholds(self, literal_rows: list[np.ndarray] | np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """Append threshold cells: cell i is ``popcount(literal_rows[i]) >= thresholds[i]``.

        Literals are ``2 * node + negated`` of existing nodes (a binary neuron's weights are the
        polarities). Returns the new cells' node ids.
        """
        rows = [np.asarray(r, dtype=np.int64).reshape(-1) for r in literal_rows]
        thresholds = np.asarray(thresholds, dtype=np.int64).reshape(-1)
        if len(rows) != thresholds.size:
            raise ExtractionError(f"{len(rows)} popcount rows but {thresholds.size} thresholds")
        first_row = len(self.popcount_rows)
        self.popcount_rows.extend(rows)
        row_ids = np.arange(first_row, first_row + len(rows), dtype=np.int64)
        return self.add_gates(np.full(len(rows), THRESHOLD), row_ids, thresholds)

    def extract(self, module: torch.nn.Module, position: str) -> None:
        """Extract one module (containers recurse into their children) with its registered extractor."""
        if self.head is not None:
            raise ExtractionError(f"{_describe(module, position)} follows the GroupSum head; the head must be the "
                                  f"last module")
        if isinstance(module, torch.nn.Sequential) and find_extractor(module) is None:
            for name, child in module.named_children():
                self.extract(child, f"{position}.{name}" if position else name)
            return
        extractor = find_extractor(module)
        if extractor is None:
            supported = ", ".join(["Sequential"] + [t.__name__ for t in EXTRACTORS])
            raise ExtractionError(f"cannot turn {_describe(module, position)} into a circuit: supported module "
                                  f"types are {supported} (diffgates.frontend.register_extractor adds more)")
        extractor(module, self, position or "model")
        self.modules.append(type(module).__name__)


def _describe(module: torch.nn.Module, position: str) -> str:
    return f"{type(module).__name__} at {position or 'model'}"


def _extract_flatten(module: torch.nn.Flatten, builder: CircuitBuilder, position: str) -> None:
    # Features are indexed row-major like torch.nn.Flatten; only a shaped map needs reshaping.
    if module.start_dim != 1 or module.end_dim != -1:
        raise ExtractionError(f"{_describe(module, position)} has start_dim={module.start_dim}, "
                              f"end_dim={module.end_dim}; only Flatten(start_dim=1, end_dim=-1) (the default) "
                              f"keeps one sample per row and is supported")
    if builder.features is not None:
        builder.features = builder.features.reshape(-1)


def _extract_logic_layer(layer: LogicLayer, builder: CircuitBuilder, position: str) -> None:
    if builder.features is None:
        builder.start_inputs(layer.in_dim)
    builder.features = builder.features.reshape(-1)  # LogicLayer.forward flattens extra dims too
    if builder.features.size != layer.in_dim:
        raise ExtractionError(f"{_describe(layer, position)} expects in_dim={layer.in_dim} features, but the "
                              f"module before it produces {builder.features.size}")
    conn = layer.connections.detach().to("cpu", torch.int64).numpy()
    if conn.shape != (2, layer.out_dim):
        raise ExtractionError(f"{_describe(layer, position)} has connections of shape {conn.shape}, "
                              f"expected (2, {layer.out_dim})")
    if conn.size and (conn.min() < 0 or conn.max() >= layer.in_dim):
        raise ExtractionError(f"{_describe(layer, position)} has connection indices in "
                              f"[{conn.min()}, {conn.max()}], outside [0, {layer.in_dim - 1}]")
    weights = layer.weights.detach()
    if not bool(torch.isfinite(weights).all()):
        raise ExtractionError(f"{_describe(layer, position)} has non-finite gate logits (NaN or inf): its gates "
                              f"are undefined; the training diverged or the weights are corrupt")
    ops = layer.gate_ids().to("cpu").numpy()
    builder.features = builder.add_gates(ops, builder.features[conn[0]], builder.features[conn[1]])
    builder.layer_widths.append(int(layer.out_dim))


def _image_features(builder: CircuitBuilder, module, position: str, channels: int) -> np.ndarray:
    """The (C, H, W) nodes a convolutional module reads (declaring the inputs when it comes first)."""
    if builder.features is None:
        shape = builder.input_shape
        if shape is None or len(shape) != 3:
            raise ExtractionError(f"{_describe(module, position)} is the first module: the circuit needs the "
                                  f"input's (C, H, W) to unroll it; pass to_circuit(..., input_shape=(C, H, W)), "
                                  f"got input_shape={shape!r}")
        builder.start_inputs(int(np.prod(shape)), tuple(shape))
    if builder.features.ndim != 3 or builder.features.shape[0] != channels:
        raise ExtractionError(f"{_describe(module, position)} expects a ({channels}, H, W) feature map, but the "
                              f"module before it produces shape {builder.features.shape}")
    return builder.features


def _extract_logic_conv(layer: LogicConv2d, builder: CircuitBuilder, position: str) -> None:
    feats = _image_features(builder, layer, position, layer.in_channels)
    _, height, width = feats.shape
    out, h_out, w_out = layer.conv_shape(height, width)
    if h_out < 1 or w_out < 1:
        raise ExtractionError(f"{_describe(layer, position)} cannot run on a {height} x {width} feature map")
    if not bool(torch.isfinite(layer.weights.detach()).all()):
        raise ExtractionError(f"{_describe(layer, position)} has non-finite gate parameters (NaN or inf): its "
                              f"gates are undefined; the training diverged or the weights are corrupt")
    p, s = layer.padding, layer.stride
    padded = feats
    if p:
        padded = np.full((feats.shape[0], height + 2 * p, width + 2 * p), builder.zero(), dtype=np.int64)
        padded[:, p:p + height, p:p + width] = feats
    conn = layer.connections.detach().to("cpu", torch.int64).numpy()
    ch, dy, dx = (conn[:, :, k, None, None] for k in range(3))
    rows = np.arange(h_out)[:, None] * s
    cols = np.arange(w_out)[None, :] * s
    nodes = padded[ch, dy + rows, dx + cols]  # (out, leaves, H_out, W_out): every leaf at every position
    ids = layer.gate_ids().to("cpu").numpy()
    first = 0
    while nodes.shape[1] > 1:
        count = nodes.shape[1] // 2
        ops = np.broadcast_to(ids[:, first:first + count, None, None], (out, count, h_out, w_out))
        new = builder.add_gates(ops, nodes[:, 0::2], nodes[:, 1::2])
        nodes = new.reshape(out, count, h_out, w_out)
        first += count
    builder.features = nodes[:, 0]
    builder.layer_widths.append(int(out * (2 ** layer.depth - 1) * h_out * w_out))
    if layer.pool is not None:  # the fused OR pool: the same gates as a separate OrPool2d
        _extract_or_pool(layer.pool, builder, position + ".pool")


def _extract_or_pool(pool: OrPool2d, builder: CircuitBuilder, position: str) -> None:
    if builder.features is None or builder.features.ndim != 3:
        raise ExtractionError(f"{_describe(pool, position)} needs a (C, H, W) feature map before it")
    channels, height, width = builder.features.shape
    _, h_out, w_out = pool.output_shape(channels, height, width)
    (kh, kw), (sh, sw) = pool.kernel_size, pool.stride
    if h_out < 1 or w_out < 1:
        raise ExtractionError(f"{_describe(pool, position)} cannot pool a {height} x {width} feature map")
    # The window's values in row-major order, OR-reduced pairwise: kh*kw - 1 gates per window.
    values = [builder.features[:, dy:dy + sh * (h_out - 1) + 1:sh, dx:dx + sw * (w_out - 1) + 1:sw]
              for dy in range(kh) for dx in range(kw)]
    before = builder.n_gates
    while len(values) > 1:
        pairs = [builder.add_gates(np.full(a.size, gates.OR), a, b).reshape(a.shape)
                 for a, b in zip(values[0::2], values[1::2])]
        values = pairs + values[len(pairs) * 2:]
    builder.features = values[0]
    builder.layer_widths.append(int(builder.n_gates - before))


def _extract_group_sum(head: GroupSum, builder: CircuitBuilder, position: str) -> None:
    if builder.features is None:
        raise ExtractionError(f"{_describe(head, position)} comes before any LogicLayer: the circuit has no "
                              f"inputs to sum")
    width = builder.features.size
    if width % head.k:
        raise ExtractionError(f"{_describe(head, position)} has k={head.k} classes, but the layer before it "
                              f"has {width} outputs, not divisible by {head.k}")
    builder.features = builder.features.reshape(-1)
    builder.head = Head.group_sum(head.k, head.tau)


# Module type -> extractor. Lookup walks the module's MRO, so subclasses inherit their base's entry.
EXTRACTORS: dict[type, Extractor] = {
    torch.nn.Flatten: _extract_flatten,
    LogicLayer: _extract_logic_layer,
    LogicConv2d: _extract_logic_conv,
    OrPool2d: _extract_or_pool,
    GroupSum: _extract_group_sum,
}


def register_extractor(module_type: type, extractor: Extractor) -> None:
    """Teach ``to_circuit`` a new module type.

    Args:
        module_type: the ``torch.nn.Module`` subclass (subclasses of it are covered too).
        extractor: ``fn(module, builder, position)`` that reads ``builder.features`` (the node of every
            input feature), appends cells with ``builder.add_gates(ops, a_nodes, b_nodes)`` or
            ``builder.add_thresholds(rows, thresholds)`` and sets ``builder.features`` to the nodes of
            the module's outputs. ``position`` names the module in error messages.
    """
    EXTRACTORS[module_type] = extractor


def find_extractor(module: torch.nn.Module) -> Extractor | None:
    for cls in type(module).__mro__:
        if cls in EXTRACTORS:
            return EXTRACTORS[cls]
    return None


def to_circuit(model: torch.nn.Module, input_layout: dict[str, Any] | None = None,
               head: str | None = None, input_shape: tuple[int, ...] | None = None) -> Circuit:
    """Extract the exact eval-mode circuit of a logic network.

    Args:
        model: a ``torch.nn.Module`` whose modules (nested Sequentials flattened) all have extractors:
            by default ``Flatten``, ``LogicLayer`` and a final ``GroupSum``. Training mode does not
            matter: the argmax gate of every neuron (what eval mode computes) is used.
        input_layout: optional description of the input bit encoding (from ``diffgates.data``), stored
            in the circuit for exporters and reports.
        head: None (the model's own: 'group_sum' with a GroupSum, else 'bits'), or 'argmax' to keep only
            the winning class of a GroupSum head, or 'bits' for the raw output bits.
        input_shape: one sample's shape, e.g. (C, H, W); needed when the model starts with a
            convolution (a ``LogicConv2d`` does not know its input's height and width). None: the
            model's ``diffgates_input_shape`` attribute, if any.

    Returns:
        A ``Circuit`` with one cell per neuron; ``meta`` records ``source="model"``, ``layer_widths``
        and the module types.

    Raises:
        ExtractionError: for an unsupported module type, mismatched consecutive dimensions, non-finite
            logits, or a model without any logic layer.
    """
    if not isinstance(model, torch.nn.Module):
        raise ExtractionError(f"to_circuit expects a torch.nn.Module, got {type(model).__name__}")
    if input_layout is not None and not isinstance(input_layout, dict):
        raise ExtractionError(f"input_layout must be a dict or None, got {type(input_layout).__name__}")
    if head not in (None, "group_sum", "argmax", "bits"):
        raise ExtractionError(f"head={head!r} is not known; expected None, 'group_sum', 'argmax' or 'bits'")
    if input_shape is None:  # models built from a spec carry it (families.logic_tree)
        input_shape = getattr(model, "diffgates_input_shape", None)
    builder = CircuitBuilder(input_shape=None if input_shape is None else tuple(int(d) for d in input_shape))
    builder.extract(model, "")
    if builder.n_inputs is None:
        raise ExtractionError(f"model has no logic layer (modules: {builder.modules or 'none'}); nothing to "
                              f"turn into a circuit")
    final = builder.head or Head.bits()
    if head is not None and head != final.kind:
        if not final.grouped and head != "bits":
            raise ExtractionError(f"head={head!r} needs the class groups of a GroupSum, and the model has none")
        final = Head.bits() if head == "bits" else (Head.argmax(final.num_classes) if head == "argmax"
                                                      else Head.group_sum(final.num_classes, final.tau))
    empty = np.zeros(0, dtype=np.int64)
    ops = np.concatenate(builder.ops) if builder.ops else empty.astype(np.uint8)
    a = np.concatenate(builder.a) if builder.a else empty
    b = np.concatenate(builder.b) if builder.b else empty
    rows = builder.popcount_rows
    ptr = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int64)
    lits = np.concatenate(rows) if rows else empty
    meta = {"source": "model", "layer_widths": builder.layer_widths, "modules": builder.modules}
    return Circuit(n_inputs=builder.n_inputs, ops=ops, a=a, b=b, outputs=builder.features.reshape(-1), head=final,
                   popcount_ptr=ptr, popcount_lits=lits, input_layout=input_layout, meta=meta)

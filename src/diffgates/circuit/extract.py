"""Model -> Circuit extraction: turn a (trained) logic network into the Circuit IR.

``to_circuit(model)`` walks a ``torch.nn.Sequential`` (nested Sequentials are flattened) of
``torch.nn.Flatten`` / ``LogicLayer`` modules ending in a ``GroupSum``, and emits one gate per neuron
with the neuron's argmax gate (``layer.gate_ids()``: what eval mode computes) and its fixed
``connections``. The result is exact: for any {0,1} input ``x``::

    group_counts(to_circuit(model), x) == round(model.eval()(x) * tau)

Node numbering: the gates of LogicLayer ``l`` become nodes in layer order, so node
``n_inputs + offset_l + j`` is neuron ``j`` of layer ``l`` (``offset_l`` is the total width of the
layers before ``l``; ``meta["layer_widths"]`` lists the widths). Every gate reads only the layer before
it. (Constant and single-input gates have a lower logic depth than their layer, so
``Circuit.is_levelized()`` can be False here; ``passes.levelize`` / ``passes.simplify`` sort by depth.)

Module types are handled through the ``EXTRACTORS`` table (module type -> extractor function), so
new layer kinds (e.g. convolutional logic layers) register an extractor instead of editing an
if-chain; see ``register_extractor``. Example::

    import diffgates
    circuit = diffgates.to_circuit(model)
    circuit.save("net.circuit.json")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..nn import GroupSum, LogicLayer
from .ir import Circuit


class ExtractionError(ValueError):
    """The model cannot be turned into a circuit (unsupported module, dimension mismatch, no head)."""


@dataclass
class CircuitBuilder:
    """Mutable state of one extraction: the gates emitted so far and the current feature -> node map.

    ``features`` holds, for every feature the next module reads, the circuit node that computes it
    (an int64 array, 1-D for dense layers; a future convolutional extractor may keep it shaped
    (C, H, W) and a Flatten reshapes it). It is None until the first module that fixes the input size.
    """

    n_inputs: int | None = None
    features: np.ndarray | None = None
    ops: list[np.ndarray] = field(default_factory=list)
    a: list[np.ndarray] = field(default_factory=list)
    b: list[np.ndarray] = field(default_factory=list)
    n_gates: int = 0
    head: GroupSum | None = None
    layer_widths: list[int] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)

    def start_inputs(self, n_inputs: int) -> None:
        """Declare the circuit's input bits (called by the first module that knows the input size)."""
        self.n_inputs = int(n_inputs)
        self.features = np.arange(self.n_inputs, dtype=np.int64)

    def add_gates(self, ops: np.ndarray, a_nodes: np.ndarray, b_nodes: np.ndarray) -> np.ndarray:
        """Append gates reading existing nodes; returns the new gates' node ids (in order)."""
        assert self.n_inputs is not None, "start_inputs must run before gates are added"
        first = self.n_inputs + self.n_gates
        self.ops.append(np.asarray(ops, dtype=np.uint8))
        self.a.append(np.asarray(a_nodes, dtype=np.int64))
        self.b.append(np.asarray(b_nodes, dtype=np.int64))
        self.n_gates += len(self.ops[-1])
        return np.arange(first, first + len(self.ops[-1]), dtype=np.int64)


def _describe(module: torch.nn.Module, position: str) -> str:
    return f"{type(module).__name__} at {position}"


def _extract_flatten(module: torch.nn.Flatten, builder: CircuitBuilder, position: str) -> None:
    # Features are already indexed row-major like torch.nn.Flatten; only a shaped map needs reshaping.
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
    ops = layer.gate_ids().to("cpu").numpy()
    builder.features = builder.add_gates(ops, builder.features[conn[0]], builder.features[conn[1]])
    builder.layer_widths.append(int(layer.out_dim))


def _extract_group_sum(head: GroupSum, builder: CircuitBuilder, position: str) -> None:
    if builder.features is None:
        raise ExtractionError(f"{_describe(head, position)} comes before any LogicLayer: the circuit has no "
                              f"inputs to sum")
    width = builder.features.size
    if width % head.k:
        raise ExtractionError(f"{_describe(head, position)} has k={head.k} classes, but the layer before it "
                              f"has {width} outputs, not divisible by {head.k}")
    builder.features = builder.features.reshape(-1)
    builder.head = head


Extractor = Callable[[Any, CircuitBuilder, str], None]

# Module type -> extractor. Lookup walks the module's MRO, so subclasses inherit their base's entry.
EXTRACTORS: dict[type, Extractor] = {
    torch.nn.Flatten: _extract_flatten,
    LogicLayer: _extract_logic_layer,
    GroupSum: _extract_group_sum,
}


def register_extractor(module_type: type, extractor: Extractor) -> None:
    """Teach ``to_circuit`` a new module type.

    Args:
        module_type: the ``torch.nn.Module`` subclass (subclasses of it are covered too).
        extractor: ``fn(module, builder, position)`` that reads ``builder.features`` (the node of every
            input feature), appends gates with ``builder.add_gates(ops, a_nodes, b_nodes)`` and sets
            ``builder.features`` to the nodes of the module's outputs. ``position`` names the module in
            error messages.
    """
    EXTRACTORS[module_type] = extractor


def _find_extractor(module: torch.nn.Module) -> Extractor | None:
    for cls in type(module).__mro__:
        if cls in EXTRACTORS:
            return EXTRACTORS[cls]
    return None


def _leaves(module: torch.nn.Module, prefix: str):
    """(position, module) of every non-Sequential module, nested Sequentials flattened in order."""
    if isinstance(module, torch.nn.Sequential):
        for name, child in module.named_children():
            yield from _leaves(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield (prefix or "model"), module


def to_circuit(model: torch.nn.Module, input_layout: dict[str, Any] | None = None) -> Circuit:
    """Extract the exact eval-mode circuit of a logic network.

    Args:
        model: a ``torch.nn.Sequential`` (nested ones are fine) of ``Flatten`` / ``LogicLayer`` modules
            ending in a ``GroupSum``. Training mode does not matter: the argmax gate of every neuron
            (what eval mode computes) is used.
        input_layout: optional description of the input bit encoding (from ``diffgates.data``), stored
            in the circuit for exporters and reports.

    Returns:
        A levelized ``Circuit`` with one gate per neuron, ``num_classes = k`` and ``tau`` of the
        GroupSum; ``meta`` records ``source="model"``, ``layer_widths`` and the module types.

    Raises:
        ExtractionError: for an unsupported module type, mismatched consecutive dimensions, a model
            without a LogicLayer, or one that does not end in a GroupSum.
    """
    if not isinstance(model, torch.nn.Module):
        raise ExtractionError(f"to_circuit expects a torch.nn.Module, got {type(model).__name__}")
    if input_layout is not None and not isinstance(input_layout, dict):
        raise ExtractionError(f"input_layout must be a dict or None, got {type(input_layout).__name__}")
    supported = ", ".join(["Sequential"] + [t.__name__ for t in EXTRACTORS])
    builder = CircuitBuilder()
    for position, module in _leaves(model, ""):
        if builder.head is not None:
            raise ExtractionError(f"{_describe(module, position)} follows the GroupSum head; GroupSum must be "
                                  f"the last module")
        extractor = _find_extractor(module)
        if extractor is None:
            raise ExtractionError(f"cannot turn {_describe(module, position)} into a circuit: "
                                  f"supported module types are {supported}")
        extractor(module, builder, position)
        builder.modules.append(type(module).__name__)
    if builder.n_inputs is None:
        raise ExtractionError(f"model has no LogicLayer (modules: {builder.modules or 'none'}); nothing to "
                              f"turn into a circuit")
    if builder.head is None:
        raise ExtractionError(f"model must end in a GroupSum head (it gives the classes and tau); got modules "
                              f"{builder.modules}. Wrap it, e.g. torch.nn.Sequential(model, GroupSum(k, tau))")
    empty = np.zeros(0, dtype=np.int64)
    ops = np.concatenate(builder.ops) if builder.ops else empty.astype(np.uint8)
    a = np.concatenate(builder.a) if builder.a else empty
    b = np.concatenate(builder.b) if builder.b else empty
    meta = {"source": "model", "layer_widths": builder.layer_widths, "modules": builder.modules}
    return Circuit(n_inputs=builder.n_inputs, ops=ops, a=a, b=b, outputs=builder.features,
                   num_classes=builder.head.k, tau=builder.head.tau, input_layout=input_layout, meta=meta)

"""Architecture specs: build a model from a JSON-able dict, and read the dict back from a model.

A spec says everything needed to rebuild a model's structure (its weights come from a state dict):

* logic nets ``{"kind": "logic", "in_dim", "n_classes", "tau", "input_shape", "layers": [{"in_dim",
  "out_dim", "grad_factor", "connections"}, ...]}`` -> ``Sequential(Flatten, LogicLayer..., GroupSum)``;
* MLP baselines ``{"kind": "mlp", "in_dim", "n_classes", "input_shape", "hidden": [w, ...]}`` ->
  ``Sequential(Flatten, Linear, ReLU, ..., Linear)`` (a float network, not a logic net).

Example::

    spec = logic_spec(in_dim=784, n_classes=10, num_neurons=2000, num_layers=4, tau=10)
    model = build_model(spec)            # Flatten + 4 x LogicLayer(., 2000) + GroupSum(10, 10)
    assert model_spec(model, input_shape=spec["input_shape"]) == spec
"""
from __future__ import annotations

from typing import Any

import torch

from ..nn import GroupSum, LogicLayer
from ..nn.connections import CONNECTION_KINDS

SPEC_FORMAT = "diffgates.model_spec"
SPEC_VERSION = 1
KINDS = ("logic", "mlp")


def _check_int(where: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}")
    return value


def logic_spec(in_dim: int, n_classes: int, num_neurons: int, num_layers: int, tau: float = 10.0,
               connections: str = "unique", grad_factor: float = 1.0,
               input_shape: list[int] | tuple[int, ...] | None = None) -> dict[str, Any]:
    """Spec of Flatten + ``num_layers`` LogicLayers of width ``num_neurons`` + GroupSum(n_classes, tau).

    Returns:
        A validated JSON-able spec dict.
    """
    layers, width = [], in_dim
    for _ in range(num_layers):
        layers.append({"in_dim": width, "out_dim": num_neurons, "grad_factor": float(grad_factor),
                       "connections": connections})
        width = num_neurons
    spec = {"format": SPEC_FORMAT, "version": SPEC_VERSION, "kind": "logic", "in_dim": in_dim,
            "input_shape": list(input_shape) if input_shape is not None else [in_dim],
            "n_classes": n_classes, "tau": float(tau), "layers": layers}
    return validate_spec(spec)


def mlp_spec(in_dim: int, n_classes: int, num_neurons: int, num_layers: int,
             input_shape: list[int] | tuple[int, ...] | None = None) -> dict[str, Any]:
    """Spec of a ReLU MLP with ``num_layers`` hidden layers of ``num_neurons`` units."""
    spec = {"format": SPEC_FORMAT, "version": SPEC_VERSION, "kind": "mlp", "in_dim": in_dim,
            "input_shape": list(input_shape) if input_shape is not None else [in_dim],
            "n_classes": n_classes, "hidden": [num_neurons] * num_layers}
    return validate_spec(spec)


def validate_spec(spec: Any, where: str = "model spec") -> dict[str, Any]:
    """Check a spec's structure and sizes; ValueError naming the bad field. Returns ``spec``."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(spec).__name__}")
    if spec.get("format") != SPEC_FORMAT:
        raise ValueError(f"{where}: format is {spec.get('format')!r}, expected {SPEC_FORMAT!r} "
                         f"(not a diffgates model spec)")
    if spec.get("version") != SPEC_VERSION:
        raise ValueError(f"{where}: version {spec.get('version')!r} is not supported (expected {SPEC_VERSION})")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where}: kind={kind!r} is not known; expected one of {KINDS}")
    in_dim = _check_int(where, "in_dim", spec.get("in_dim"))
    n_classes = _check_int(where, "n_classes", spec.get("n_classes"))
    shape = spec.get("input_shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 1 for d in shape):
        raise ValueError(f"{where}: input_shape must be a list of positive integers, got {shape!r}")
    numel = 1
    for d in shape:
        numel *= d
    if numel != in_dim:
        raise ValueError(f"{where}: input_shape {shape} holds {numel} values but in_dim is {in_dim}")
    if kind == "mlp":
        hidden = spec.get("hidden")
        if not isinstance(hidden, list):
            raise ValueError(f"{where}: 'hidden' must be a list of layer widths, got {hidden!r}")
        for i, w in enumerate(hidden):
            _check_int(where, f"hidden[{i}]", w)
        return spec
    tau = spec.get("tau")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
        raise ValueError(f"{where}: tau must be a number > 0, got {tau!r}")
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"{where}: 'layers' must be a non-empty list of logic layers, got {layers!r}")
    width = in_dim
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise ValueError(f"{where}: layers[{i}] must be an object, got {layer!r}")
        lin = _check_int(where, f"layers[{i}].in_dim", layer.get("in_dim"))
        _check_int(where, f"layers[{i}].out_dim", layer.get("out_dim"))
        if lin != width:
            raise ValueError(f"{where}: layers[{i}].in_dim is {lin} but the previous layer outputs {width}")
        if layer.get("connections") not in CONNECTION_KINDS:
            raise ValueError(f"{where}: layers[{i}].connections={layer.get('connections')!r}; expected one of "
                             f"{CONNECTION_KINDS}")
        gf = layer.get("grad_factor")
        if isinstance(gf, bool) or not isinstance(gf, (int, float)) or not gf > 0:
            raise ValueError(f"{where}: layers[{i}].grad_factor must be a number > 0, got {gf!r}")
        width = layer["out_dim"]
    if width % n_classes:
        raise ValueError(f"{where}: the last logic layer has {width} outputs, not divisible into "
                         f"n_classes={n_classes} equal GroupSum blocks; choose -k as a multiple of {n_classes}")
    return spec


def build_model(spec: dict[str, Any], device: str | torch.device = "cpu",
                implementation: str | None = None) -> torch.nn.Sequential:
    """A freshly initialised model with the structure of ``spec`` (weights from torch's global RNG).

    Args:
        spec: a logic or MLP spec (see module docstring); validated first.
        device: where parameters live.
        implementation: LogicLayer kernel (None: fused kernel for the device).

    Returns:
        ``torch.nn.Sequential`` in training mode.
    """
    validate_spec(spec)
    modules: list[torch.nn.Module] = [torch.nn.Flatten()]
    if spec["kind"] == "mlp":
        width = spec["in_dim"]
        for w in spec["hidden"]:
            modules += [torch.nn.Linear(width, w, device=device), torch.nn.ReLU()]
            width = w
        modules.append(torch.nn.Linear(width, spec["n_classes"], device=device))
        return torch.nn.Sequential(*modules)
    for layer in spec["layers"]:
        modules.append(LogicLayer(layer["in_dim"], layer["out_dim"], device=device,
                                  grad_factor=layer["grad_factor"], implementation=implementation,
                                  connections=layer["connections"]))
    modules.append(GroupSum(spec["n_classes"], spec["tau"]))
    return torch.nn.Sequential(*modules)


def model_spec(model: torch.nn.Module, input_shape: list[int] | tuple[int, ...] | None = None) -> dict[str, Any]:
    """The spec of a model of the two supported shapes (inverse of ``build_model``).

    Args:
        model: ``Sequential(Flatten, LogicLayer..., GroupSum)`` or ``Sequential(Flatten, Linear, ReLU, ..., Linear)``
            (a DistributedDataParallel wrapper is unwrapped).
        input_shape: per-sample input shape to record (default: ``[in_dim]``).

    Raises:
        ValueError: the model is neither shape (the message lists its modules).
    """
    model = getattr(model, "module", model)  # DDP wraps the real model in .module
    mods = list(model.children()) if isinstance(model, torch.nn.Sequential) else []
    body = mods[1:] if mods and isinstance(mods[0], torch.nn.Flatten) else mods
    names = [type(m).__name__ for m in mods] or [type(model).__name__]
    if body and all(isinstance(m, LogicLayer) for m in body[:-1]) and isinstance(body[-1], GroupSum) and len(body) > 1:
        logic = body[:-1]
        spec = {"format": SPEC_FORMAT, "version": SPEC_VERSION, "kind": "logic", "in_dim": logic[0].in_dim,
                "input_shape": list(input_shape) if input_shape is not None else [logic[0].in_dim],
                "n_classes": body[-1].k, "tau": float(body[-1].tau),
                "layers": [{"in_dim": m.in_dim, "out_dim": m.out_dim, "grad_factor": float(m.grad_factor),
                            "connections": m.connection_kind} for m in logic]}
        return validate_spec(spec)
    linears = body[0::2]
    relus = body[1::2]
    if (body and len(body) % 2 == 1 and all(isinstance(m, torch.nn.Linear) for m in linears)
            and all(isinstance(m, torch.nn.ReLU) for m in relus)):
        spec = {"format": SPEC_FORMAT, "version": SPEC_VERSION, "kind": "mlp", "in_dim": linears[0].in_features,
                "input_shape": list(input_shape) if input_shape is not None else [linears[0].in_features],
                "n_classes": linears[-1].out_features, "hidden": [m.out_features for m in linears[:-1]]}
        return validate_spec(spec)
    raise ValueError(f"model_spec: unsupported model structure {names}; expected Sequential(Flatten, LogicLayer, ..., "
                     f"GroupSum) or Sequential(Flatten, Linear, ReLU, ..., Linear)")


def layer_widths(spec: dict[str, Any]) -> list[int]:
    """Widths of the layers that count as the model's size: logic layers' gates, or MLP hidden + output units."""
    if spec["kind"] == "logic":
        return [layer["out_dim"] for layer in spec["layers"]]
    return list(spec["hidden"]) + [spec["n_classes"]]

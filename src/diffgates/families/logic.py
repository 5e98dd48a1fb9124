"""The logic family: ``Flatten + LogicLayer... + GroupSum``, the differentiable logic gate networks.

Spec: ``{header, "kind": "logic", "tau", "layers": [{"in_dim", "out_dim", "grad_factor",
"connections", "parametrization", "init", "residual_logit", "sampling", "gumbel_tau"}, ...]}``; the
last five are optional (files written before they existed mean softmax16, soft sampling) -> ``Sequential(Flatten, LogicLayer..., GroupSum(n_classes, tau))``. As
deployed it is the discrete circuit: the eval-mode network on exact input bits, extracted by
``diffgates.frontend.to_circuit``. Example::

    spec = logic_spec(in_dim=784, n_classes=10, num_neurons=2000, num_layers=4, tau=10)
    model = LOGIC.build(spec)            # Flatten + 4 x LogicLayer(., 2000) + GroupSum(10, 10)
    assert LOGIC.spec_of(model) == spec
"""
from __future__ import annotations

from typing import Any

import torch

from ..kernels import parametrizations as param
from ..nn import GroupSum, LogicLayer
from ..nn.connections import CONNECTION_KINDS
from .base import ModelFamily, check_int, check_number, spec_header


# Per-layer keys of how gates are parametrized and trained, and their values in older spec files.
GATE_KEYS = {"parametrization": "softmax16", "init": None, "residual_logit": None, "sampling": "soft",
             "gumbel_tau": 1.0}


def logic_spec(in_dim: int, n_classes: int, num_neurons: int, num_layers: int, tau: float = 10.0,
               connections: str = "unique", grad_factor: float = 1.0, input_shape=None,
               **gate_options: Any) -> dict[str, Any]:
    """Spec of Flatten + ``num_layers`` LogicLayers of width ``num_neurons`` + GroupSum(n_classes, tau).

    ``gate_options``: any of ``GATE_KEYS`` (LogicLayer's parametrization, init, residual_logit,
    sampling, gumbel_tau), the same for every layer; init and residual_logit are stored resolved.
    """
    unknown = sorted(set(gate_options) - set(GATE_KEYS))
    if unknown:
        raise ValueError(f"logic_spec got unknown options {unknown}; expected some of {sorted(GATE_KEYS)}")
    gate = _resolved({**GATE_KEYS, **gate_options})
    layers, width = [], in_dim
    for _ in range(num_layers):
        layers.append({"in_dim": width, "out_dim": num_neurons, "grad_factor": float(grad_factor),
                       "connections": connections, **gate})
        width = num_neurons
    spec = {**spec_header("logic", in_dim, n_classes, input_shape), "tau": float(tau), "layers": layers}
    return LOGIC.validate(spec, "logic spec")


def _resolved(gate: dict[str, Any]) -> dict[str, Any]:
    """Gate options with the parametrization's default init and residual logit filled in (a full record)."""
    p = param.check_parametrization(gate["parametrization"])
    init = param.DEFAULT_INIT[p] if gate["init"] is None else gate["init"]
    logit = param.DEFAULT_RESIDUAL_LOGIT[p] if gate["residual_logit"] is None else float(gate["residual_logit"])
    return {"parametrization": p, "init": init, "residual_logit": logit, "sampling": gate["sampling"],
            "gumbel_tau": float(gate["gumbel_tau"])}


class LogicFamily(ModelFamily):
    name = "logic"
    description = "logic gate network: Flatten, -l LogicLayers of -k gates, GroupSum(classes, -t)"
    is_circuit = True

    def spec_from_config(self, config, dataset) -> dict[str, Any]:
        n_classes = int(dataset.n_classes)
        if config.num_neurons % n_classes:
            raise ValueError(f"-k {config.num_neurons} is not divisible by the {n_classes} classes of "
                             f"{config.dataset}: GroupSum splits the last layer into {n_classes} equal blocks; "
                             f"choose -k as a multiple of {n_classes}")
        return logic_spec(int(dataset.n_inputs), n_classes, config.num_neurons, config.num_layers, config.tau,
                          config.connections, config.grad_factor, [int(d) for d in dataset.input_shape],
                          **{key: getattr(config, key) for key in GATE_KEYS})

    def validate(self, spec: dict[str, Any], where: str) -> dict[str, Any]:
        check_number(where, "tau", spec.get("tau"))
        layers = spec.get("layers")
        if not isinstance(layers, list) or not layers:
            raise ValueError(f"{where}: 'layers' must be a non-empty list of logic layers, got {layers!r}")
        width = spec["in_dim"]
        for i, layer in enumerate(layers):
            if not isinstance(layer, dict):
                raise ValueError(f"{where}: layers[{i}] must be an object, got {layer!r}")
            lin = check_int(where, f"layers[{i}].in_dim", layer.get("in_dim"))
            check_int(where, f"layers[{i}].out_dim", layer.get("out_dim"))
            if lin != width:
                raise ValueError(f"{where}: layers[{i}].in_dim is {lin} but the previous layer outputs {width}")
            if layer.get("connections") not in CONNECTION_KINDS:
                raise ValueError(f"{where}: layers[{i}].connections={layer.get('connections')!r}; expected one "
                                 f"of {CONNECTION_KINDS}")
            check_number(where, f"layers[{i}].grad_factor", layer.get("grad_factor"))
            try:
                gate = _resolved({key: layer.get(key, default) for key, default in GATE_KEYS.items()})
                param.check_sampling(gate["sampling"], gate["gumbel_tau"])
                param.initial_weights(gate["parametrization"], 0, gate["init"], gate["residual_logit"])
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{where}: layers[{i}]: {exc}") from None
            width = layer["out_dim"]
        if width % spec["n_classes"]:
            raise ValueError(f"{where}: the last logic layer has {width} outputs, not divisible into "
                             f"n_classes={spec['n_classes']} equal GroupSum blocks; choose -k as a multiple of "
                             f"{spec['n_classes']}")
        return spec

    def build(self, spec, device="cpu", implementation=None) -> torch.nn.Module:
        modules: list[torch.nn.Module] = [torch.nn.Flatten()]
        for layer in spec["layers"]:
            gate = _resolved({key: layer.get(key, default) for key, default in GATE_KEYS.items()})
            modules.append(LogicLayer(layer["in_dim"], layer["out_dim"], device=device,
                                      grad_factor=layer["grad_factor"], implementation=implementation,
                                      connections=layer["connections"], **gate))
        modules.append(GroupSum(spec["n_classes"], spec["tau"]))
        return torch.nn.Sequential(*modules)

    def spec_of(self, model, input_shape=None):
        mods = list(model.children()) if isinstance(model, torch.nn.Sequential) else []
        body = mods[1:] if mods and isinstance(mods[0], torch.nn.Flatten) else mods
        if not (len(body) > 1 and all(isinstance(m, LogicLayer) for m in body[:-1]) and isinstance(body[-1], GroupSum)):
            return None
        logic = body[:-1]
        spec = {**spec_header("logic", logic[0].in_dim, body[-1].k, input_shape), "tau": float(body[-1].tau),
                "layers": [{"in_dim": m.in_dim, "out_dim": m.out_dim, "grad_factor": float(m.grad_factor),
                            "connections": m.connection_kind, **m.gate_options()} for m in logic]}
        return self.validate(spec, "model_spec")

    def layer_widths(self, spec):
        return [layer["out_dim"] for layer in spec["layers"]]

    def describe(self, spec, model) -> str:
        widths = self.layer_widths(spec)
        params = sum(p.numel() for p in model.parameters())
        return f"logic net, {len(widths)} layers x {widths[0]} = {sum(widths)} gates, {params} parameters"

    def size(self, spec, model) -> dict[str, Any]:
        widths = self.layer_widths(spec)
        return {"kind": self.name, "is_logic_net": True, "parameters": sum(p.numel() for p in model.parameters()),
                "gates_total": sum(widths), "gates_per_layer": widths}

    def deploy(self, model, input_layout=None):
        from ..frontend import to_circuit

        return to_circuit(getattr(model, "module", model), input_layout=input_layout)


LOGIC = LogicFamily()

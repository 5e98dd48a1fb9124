"""The MLP family: float ReLU networks, the baselines logic nets are compared with.

Spec: ``{header, "kind": "mlp", "hidden": [w, ...]}`` -> ``Sequential(Flatten, Linear, ReLU, ...,
Linear)``. A float network has no discrete form: its accuracy as deployed is its plain accuracy, and
it deploys to no circuit. Example::

    spec = mlp_spec(in_dim=784, n_classes=10, num_neurons=128, num_layers=3)
    model = MLP.build(spec)
"""
from __future__ import annotations

from typing import Any

import torch

from .base import ModelFamily, accuracy_counts, check_int, spec_header


def mlp_spec(in_dim: int, n_classes: int, num_neurons: int, num_layers: int, input_shape=None) -> dict[str, Any]:
    """Spec of a ReLU MLP with ``num_layers`` hidden layers of ``num_neurons`` units."""
    spec = {**spec_header("mlp", in_dim, n_classes, input_shape), "hidden": [num_neurons] * num_layers}
    return MLP.validate(spec, "mlp spec")


class MlpFamily(ModelFamily):
    name = "mlp"
    description = "baseline ReLU MLP: Flatten, -l hidden Linear+ReLU layers of -k units, Linear (not a logic net)"

    def spec_from_config(self, config, dataset) -> dict[str, Any]:
        return mlp_spec(int(dataset.n_inputs), int(dataset.n_classes), config.num_neurons, config.num_layers,
                        [int(d) for d in dataset.input_shape])

    def validate(self, spec, where):
        hidden = spec.get("hidden")
        if not isinstance(hidden, list):
            raise ValueError(f"{where}: 'hidden' must be a list of layer widths, got {hidden!r}")
        for i, w in enumerate(hidden):
            check_int(where, f"hidden[{i}]", w)
        return spec

    def build(self, spec, device="cpu", implementation=None):
        modules: list[torch.nn.Module] = [torch.nn.Flatten()]
        width = spec["in_dim"]
        for w in spec["hidden"]:
            modules += [torch.nn.Linear(width, w, device=device), torch.nn.ReLU()]
            width = w
        modules.append(torch.nn.Linear(width, spec["n_classes"], device=device))
        return torch.nn.Sequential(*modules)

    def spec_of(self, model, input_shape=None):
        mods = list(model.children()) if isinstance(model, torch.nn.Sequential) else []
        body = mods[1:] if mods and isinstance(mods[0], torch.nn.Flatten) else mods
        linears, relus = body[0::2], body[1::2]
        if not (body and len(body) % 2 == 1 and all(isinstance(m, torch.nn.Linear) for m in linears)
                and all(isinstance(m, torch.nn.ReLU) for m in relus)):
            return None
        spec = {**spec_header("mlp", linears[0].in_features, linears[-1].out_features, input_shape),
                "hidden": [m.out_features for m in linears[:-1]]}
        return self.validate(spec, "model_spec")

    def layer_widths(self, spec):
        return list(spec["hidden"]) + [spec["n_classes"]]

    def describe(self, spec, model) -> str:
        params = sum(p.numel() for p in model.parameters())
        return f"ReLU MLP (not a logic net), hidden {spec['hidden']}, {params} parameters"

    def size(self, spec, model):
        widths = self.layer_widths(spec)
        return {"kind": self.name, "is_logic_net": False, "parameters": sum(p.numel() for p in model.parameters()),
                "units_total": sum(widths), "units_per_layer": widths,
                "note": "a float ReLU MLP baseline, not a logic net: its eval-mode accuracy is its plain accuracy"}

    def deployed_accuracy(self, model, x_raw, y, encode, *, batch_size=2000, device="cpu", shard=(0, 1)):
        # A float network is deployed as it is: the plain (training-style input) accuracy.
        return accuracy_counts(model, x_raw, y, encode, binary=False, train_mode=False, batch_size=batch_size,
                               device=device, shard=shard)


MLP = MlpFamily()

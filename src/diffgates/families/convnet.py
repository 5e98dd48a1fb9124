"""The conv-net skeleton the adder and shift families share: spec fields, validation, building, sizes.

A family built on it (``ConvNetFamily``) says only which layer computes each weighted sum
(``make_layer``); the skeleton, for spec ``{header, "kind", "conv": [[channels, kernel, pool], ...],
"hidden": [w, ...], ...}``, builds a ``ConvNetwork`` (a Sequential):

    per conv entry:   layer (kernel x kernel, no padding), BatchNorm2d, ReLU, MaxPool2d(pool) if pool > 1
    Flatten
    per hidden width: layer, BatchNorm1d, ReLU
    classifier:       layer to the classes [, BatchNorm1d when the family's classifier needs one]

The topology option picks the conv entries: ``lenet5`` is LeNet-5-BN as the AdderNet paper's MNIST
model (20 and 50 channels of 5x5 kernels, each followed by a 2x2 max pool; with -k 500 -l 1 the
Caffe LeNet's 500-unit hidden layer), ``mlp`` has none. These models take the dataset's real-valued
input (pixels in [0, 1]), not bits. Example (a family's build)::

    spec = {**spec_header("adder", 784, 10, [1, 28, 28]), "conv": [[20, 5, 2], [50, 5, 2]], "hidden": [500], ...}
    model = ADDER.build(spec)
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .base import ModelFamily, Option, accuracy_counts, check_int, spec_header

TOPOLOGIES = {"lenet5": [[20, 5, 2], [50, 5, 2]], "mlp": []}
TOPOLOGY_OPTION = Option("topology", str, "lenet5", "lenet5 (conv 20 5x5, pool 2, conv 50 5x5, pool 2, then the "
                         "hidden layers; the AdderNet paper's LeNet-5-BN) or mlp (hidden layers only)",
                         tuple(TOPOLOGIES))


class ConvNetwork(torch.nn.Sequential):
    """A model of a ``ConvNetFamily``: the Sequential its spec describes; ``spec`` is kept for ``spec_of``."""

    def __init__(self, modules: list[torch.nn.Module], spec: dict[str, Any]):
        super().__init__(*modules)
        self.spec = spec
        self.diffgates_input_shape = tuple(spec["input_shape"])


def conv_output_shape(spec: dict[str, Any]) -> tuple[int, int, int]:
    """(C, H, W) after the conv blocks (the input shape when there are none)."""
    c, h, w = spec["input_shape"] if len(spec["input_shape"]) == 3 else (spec["in_dim"], 1, 1)
    for channels, kernel, pool in spec["conv"]:
        c, h, w = channels, h - kernel + 1, w - kernel + 1
        if pool > 1:
            h, w = h // pool, w // pool
    return c, h, w


def check_blocks(spec: dict[str, Any], where: str, hidden_required: bool = False) -> None:
    """Check a spec's ``conv`` ([channels, kernel, pool] per block) and ``hidden`` (widths) against its input
    shape; ValueError naming the bad field. Shared with the binary family, whose specs have both fields."""
    hidden = spec.get("hidden")
    if not isinstance(hidden, list) or (hidden_required and not hidden):
        raise ValueError(f"{where}: 'hidden' must be a {'non-empty ' if hidden_required else ''}list of layer "
                         f"widths, got {hidden!r}")
    for i, w in enumerate(hidden):
        check_int(where, f"hidden[{i}]", w)
    conv = spec.get("conv")
    if not isinstance(conv, list):
        raise ValueError(f"{where}: 'conv' must be a list of [channels, kernel, pool], got {conv!r}")
    for i, block in enumerate(conv):
        if not isinstance(block, list) or len(block) != 3:
            raise ValueError(f"{where}: conv[{i}] must be [channels, kernel, pool], got {block!r}")
        for name, v in zip(("channels", "kernel", "pool"), block):
            check_int(where, f"conv[{i}].{name}", v)
    if not conv:
        return
    if len(spec["input_shape"]) != 3:
        raise ValueError(f"{where}: conv blocks need input_shape (C, H, W), got {spec['input_shape']}")
    c, h, w = spec["input_shape"]
    for i, (channels, kernel, pool) in enumerate(conv):
        h, w = h - kernel + 1, w - kernel + 1
        if h < 1 or w < 1 or h < pool or w < pool:
            raise ValueError(f"{where}: the conv blocks {conv} shrink the {spec['input_shape']} input to "
                             f"nothing at conv[{i}]; use fewer blocks or a larger input")
        h, w = (h // pool, w // pool) if pool > 1 else (h, w)


def layer_widths(spec: dict[str, Any]) -> list[int]:
    """Units per layer: each conv block's outputs before pooling, the hidden widths, the classes."""
    widths = []
    c, h, w = spec["input_shape"] if spec["conv"] else (0, 0, 0)
    for channels, kernel, pool in spec["conv"]:
        h, w = h - kernel + 1, w - kernel + 1
        widths.append(channels * h * w)
        if pool > 1:
            h, w = h // pool, w // pool
    return widths + list(spec["hidden"]) + [spec["n_classes"]]


class ConvNetFamily(ModelFamily):
    """A family of ``ConvNetwork``s; subclasses set ``name`` and implement ``make_layer`` and ``layer_fields``."""

    layer_fields: tuple[str, ...] = ()  # the spec fields of the subclass (validated by ``validate_layers``)

    def make_layer(self, spec: dict[str, Any], role: str, n_in: int, n_out: int, kernel: int | None,
                   device) -> torch.nn.Module:
        """The weighted sum of one block: ``role`` is 'first' (the first layer), 'hidden' or 'classifier';
        ``kernel`` is the conv kernel size, None for a dense layer."""
        raise NotImplementedError

    def classifier_needs_norm(self, spec: dict[str, Any]) -> bool:
        """Whether a BatchNorm1d follows the classifier (e.g. an adder classifier, whose outputs are <= 0)."""
        return False

    def validate_layers(self, spec: dict[str, Any], where: str) -> None:
        """Check the subclass's spec fields."""

    def spec_fields(self, options: dict[str, Any]) -> dict[str, Any]:
        """The subclass's spec fields from its checked options."""
        return {}

    # -- spec -------------------------------------------------------------------------------------
    def spec_from_config(self, config, dataset) -> dict[str, Any]:
        opts = self.check_options(config.model_options)
        shape = [int(d) for d in dataset.input_shape]
        conv = [list(c) for c in TOPOLOGIES[opts["topology"]]]
        if conv and len(shape) != 3:
            raise ValueError(f"--topology {opts['topology']} needs image inputs (C, H, W); {dataset.name} has input "
                             f"shape {shape}; use --topology mlp")
        spec = {**spec_header(self.name, int(dataset.n_inputs), int(dataset.n_classes), shape), "conv": conv,
                "hidden": [config.num_neurons] * config.num_layers, **self.spec_fields(opts)}
        return self.validate(spec, f"{self.name} spec")

    def validate(self, spec, where):
        check_blocks(spec, where)
        missing = [f for f in self.layer_fields if f not in spec]
        if missing:
            raise ValueError(f"{where}: the {self.name} spec lacks {missing}")
        self.validate_layers(spec, where)
        return spec

    # -- model ------------------------------------------------------------------------------------
    def build(self, spec, device="cpu", implementation=None):
        modules: list[torch.nn.Module] = []
        role = "first"
        channels = spec["input_shape"][0] if spec["conv"] else None
        for c, kernel, pool in spec["conv"]:
            modules += [self.make_layer(spec, role, channels, c, kernel, device),
                        torch.nn.BatchNorm2d(c, device=device), torch.nn.ReLU()]
            if pool > 1:
                modules.append(torch.nn.MaxPool2d(pool))
            channels, role = c, "hidden"
        modules.append(torch.nn.Flatten())
        width = math.prod(conv_output_shape(spec)) if spec["conv"] else spec["in_dim"]
        for w in spec["hidden"]:
            modules += [self.make_layer(spec, role, width, w, None, device), torch.nn.BatchNorm1d(w, device=device),
                        torch.nn.ReLU()]
            width, role = w, "hidden"
        modules.append(self.make_layer(spec, "classifier", width, spec["n_classes"], None, device))
        if self.classifier_needs_norm(spec):
            modules.append(torch.nn.BatchNorm1d(spec["n_classes"], device=device))
        return ConvNetwork(modules, dict(spec))

    def spec_of(self, model, input_shape=None):
        if not isinstance(model, ConvNetwork) or model.spec.get("kind") != self.name:
            return None
        return self.validate(dict(model.spec), "model_spec")

    def layer_widths(self, spec):
        return layer_widths(spec)

    def variant(self, spec) -> str:
        """The model's kind in words, for logs and results."""
        return self.name

    def describe(self, spec, model) -> str:
        params = sum(p.numel() for p in model.parameters())
        conv = f"conv {[c for c, _, _ in spec['conv']]} + " if spec["conv"] else ""
        return f"{self.variant(spec)}: {conv}hidden {spec['hidden']}, {params} parameters"

    def size(self, spec, model):
        widths = self.layer_widths(spec)
        return {"kind": self.name, "is_logic_net": False, "variant": self.variant(spec),
                "parameters": sum(p.numel() for p in model.parameters()), "units_total": sum(widths),
                "units_per_layer": widths}

    # -- evaluation -------------------------------------------------------------------------------
    def deployed_accuracy(self, model, x_raw, y, encode, *, batch_size=2000, device="cpu", shard=(0, 1)):
        # The float eval-mode model on the dataset's real-valued input.
        return accuracy_counts(model, x_raw, y, encode, binary=False, train_mode=False, batch_size=batch_size,
                               device=device, shard=shard)

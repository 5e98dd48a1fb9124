"""The logic-tree family: convolutional logic gate networks (LogicTreeNet, Petersen et al., NeurIPS 2024).

Spec: ``{header, "kind": "logic_tree", "tau", "blocks": [{"in_channels", "out_channels",
"kernel_size": [kh, kw], "stride", "padding", "depth", "channels_per_tree", "pool": [kh, kw] | null,
<gate options>}, ...], "layers": [<dense logic layers as in the logic family>]}`` ->
``Sequential(LogicConv2d(pool=...), ..., Flatten, LogicLayer..., GroupSum(n_classes, tau))`` (each
block's OR pool fused into its conv layer; a model with separate ``OrPool2d`` modules reads back to
the same spec). The
gate options are the logic family's (``GATE_KEYS``), stored resolved; an unset init is 'residual'
here for every gate, as the paper (and its z_A = 5 for softmax16).

Architectures (``logic_tree_spec``; -k is the paper's k, -l the number of dense layers):
  MNIST (28 x 28): conv k 5x5 (no padding), conv 3k 3x3 (pad 1), conv 9k 3x3 (pad 1), each followed by
      a 2x2 OR pool -> 9k x 3 x 3 = 81k features;
  CIFAR-10 (32 x 32): conv k, 4k, 16k, 32k, 3x3 pad 1, each followed by a 2x2 OR pool -> 128k features;
  then dense logic layers 1280k, 640k, 320k, ... (halving; -l of them), the last one widened by
  ``output_factor`` (the paper's "x2 output gate factor" of S and M; our reading: the last dense
  layer only), then GroupSum.
Gate counts (``size``) follow the paper: every tree at every position, kh*kw - 1 ORs per pool window.

Example::

    spec = logic_tree_spec((1, 28, 28), 10, k=16, num_dense=3, tau=6.5)   # LogicTreeNet-S for MNIST
    model = LOGIC_TREE.build(spec)
"""
from __future__ import annotations

from typing import Any

import torch

from ..kernels.trees import output_size
from ..nn import LogicConv2d, OrPool2d
from ..nn.connections import CONNECTION_KINDS
from .base import ModelFamily, Option, check_int, check_number, spec_header
from .logic import GATE_KEYS, LOGIC, _resolved

LAYOUTS = ("auto", "mnist", "cifar")
# (channel multiple of k, kernel, padding) per conv block; every block is followed by a 2x2 OR pool.
_BLOCKS = {"mnist": ((1, 5, 0), (3, 3, 1), (9, 3, 1)), "cifar": ((1, 3, 1), (4, 3, 1), (16, 3, 1), (32, 3, 1))}
_AUTO = {(28, 28): "mnist", (32, 32): "cifar"}
_BLOCK_KEYS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "depth", "channels_per_tree", "pool")


def _gate(options: dict[str, Any]) -> dict[str, Any]:
    gate = {**GATE_KEYS, **options}
    if gate["init"] is None:
        gate["init"] = "residual"
    return _resolved(gate)


def logic_tree_spec(input_shape, n_classes: int, k: int, num_dense: int = 3, tau: float = 10.0,
                    layout: str = "auto", depth: int = 3, channels_per_tree: int = 2, output_factor: int = 1,
                    connections: str = "random", grad_factor: float = 1.0, **gate_options: Any) -> dict[str, Any]:
    """Spec of a LogicTreeNet (see the module docstring) for one sample of ``input_shape`` (C, H, W)."""
    unknown = sorted(set(gate_options) - set(GATE_KEYS))
    if unknown:
        raise ValueError(f"logic_tree_spec got unknown options {unknown}; expected some of {sorted(GATE_KEYS)}")
    shape = [int(d) for d in input_shape]
    if len(shape) != 3:
        raise ValueError(f"a LogicTreeNet needs image inputs (C, H, W), got input_shape={shape}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not known; expected one of {LAYOUTS}")
    if layout == "auto":
        if tuple(shape[1:]) not in _AUTO:
            raise ValueError(f"no LogicTreeNet layout for {shape[1]} x {shape[2]} images (known: 28 x 28 -> mnist, "
                             f"32 x 32 -> cifar); pass --layout mnist or --layout cifar")
        layout = _AUTO[tuple(shape[1:])]
    for name, value in (("k", k), ("num_dense", num_dense), ("output_factor", output_factor)):
        check_int("logic_tree_spec", name, value)
    gate = _gate(gate_options)
    blocks, channels = [], shape[0]
    for multiple, kernel, padding in _BLOCKS[layout]:
        blocks.append({"in_channels": channels, "out_channels": multiple * k, "kernel_size": [kernel, kernel],
                       "stride": 1, "padding": padding, "depth": int(depth), "channels_per_tree": int(channels_per_tree),
                       "pool": [2, 2], **gate})
        channels = multiple * k
    width = _conv_features(shape, blocks, "logic_tree_spec")
    layers = []
    for i in range(num_dense):
        out = 1280 * k // 2 ** i * (output_factor if i == num_dense - 1 else 1)
        layers.append({"in_dim": width, "out_dim": out, "grad_factor": float(grad_factor), "connections": connections,
                       **gate})
        width = out
    spec = {**spec_header("logic_tree", shape[0] * shape[1] * shape[2], n_classes, shape), "tau": float(tau),
            "blocks": blocks, "layers": layers}
    return LOGIC_TREE.validate(spec, "logic_tree spec")


def _conv_features(shape, blocks, where: str) -> int:
    """Features after the conv blocks for one sample of ``shape``; ValueError where a block does not fit."""
    channels, height, width = shape
    for i, block in enumerate(blocks):
        channels = block["out_channels"]
        height, width = output_size(height, width, tuple(block["kernel_size"]), block["stride"], block["padding"])
        if block["pool"] is not None:
            channels, height, width = OrPool2d(block["pool"]).output_shape(channels, height, width)
        if height < 1 or width < 1:
            raise ValueError(f"{where}: blocks[{i}] leaves no spatial positions of a {shape[1]} x {shape[2]} input")
    return channels * height * width


class LogicTreeFamily(ModelFamily):
    name = "logic_tree"
    description = ("convolutional logic net (LogicTreeNet): conv blocks of k, 3k, 9k (MNIST) or k..32k (CIFAR) "
                   "logic trees with OR pools, -l dense logic layers 1280k, 640k, ..., GroupSum")
    is_circuit = True
    options = (
        Option("layout", str, "auto", "conv blocks: mnist (28x28), cifar (32x32), auto from the input size",
               LAYOUTS),
        Option("tree_depth", int, 3, "depth of every conv logic tree (2^d leaves, 2^d - 1 gates)"),
        Option("channels_per_tree", int, 2, "input channels one conv tree may read"),
        Option("output_factor", int, 1, "width multiplier of the last dense layer (the paper's S and M: 2)"),
    )

    def spec_from_config(self, config, dataset) -> dict[str, Any]:
        opts = self.check_options(config.model_options)
        return logic_tree_spec([int(d) for d in dataset.input_shape], int(dataset.n_classes), config.num_neurons,
                               config.num_layers, config.tau, opts["layout"], opts["tree_depth"],
                               opts["channels_per_tree"], opts["output_factor"], config.connections, config.grad_factor,
                               **{key: getattr(config, key) for key in GATE_KEYS})

    def validate(self, spec: dict[str, Any], where: str) -> dict[str, Any]:
        check_number(where, "tau", spec.get("tau"))
        blocks = spec.get("blocks")
        if not isinstance(blocks, list) or not blocks:
            raise ValueError(f"{where}: 'blocks' must be a non-empty list of conv blocks, got {blocks!r}")
        shape = spec["input_shape"]
        if len(shape) != 3:
            raise ValueError(f"{where}: a logic_tree net needs input_shape (C, H, W), got {shape}")
        channels = shape[0]
        for i, block in enumerate(blocks):
            at = f"blocks[{i}]"
            if not isinstance(block, dict):
                raise ValueError(f"{where}: {at} must be an object, got {block!r}")
            missing = [key for key in _BLOCK_KEYS if key not in block]
            if missing:
                raise ValueError(f"{where}: {at} lacks {missing}")
            if check_int(where, f"{at}.in_channels", block["in_channels"]) != channels:
                raise ValueError(f"{where}: {at}.in_channels is {block['in_channels']} but the input or the block "
                                 f"before it has {channels} channels")
            channels = check_int(where, f"{at}.out_channels", block["out_channels"])
            for key in ("stride", "depth", "channels_per_tree"):
                check_int(where, f"{at}.{key}", block[key])
            if isinstance(block["padding"], bool) or not isinstance(block["padding"], int) or block["padding"] < 0:
                raise ValueError(f"{where}: {at}.padding must be an integer >= 0, got {block['padding']!r}")
            for key in ("kernel_size",) + (("pool",) if block["pool"] is not None else ()):
                value = block[key]
                if not (isinstance(value, list) and len(value) == 2):
                    raise ValueError(f"{where}: {at}.{key} must be [kh, kw], got {value!r}")
                for v in value:
                    check_int(where, f"{at}.{key}", v)
            try:
                _gate({key: block.get(key, default) for key, default in GATE_KEYS.items()})
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{where}: {at}: {exc}") from None
        features = _conv_features(shape, blocks, where)
        layers = spec.get("layers")
        if not isinstance(layers, list) or not layers:
            raise ValueError(f"{where}: 'layers' must be a non-empty list of dense logic layers, got {layers!r}")
        if layers[0].get("in_dim") != features:
            raise ValueError(f"{where}: layers[0].in_dim is {layers[0].get('in_dim')!r} but the conv blocks output "
                             f"{features} features")
        # The dense part is a logic net on the conv features: the logic family checks it.
        LOGIC.validate({**spec, "in_dim": features, "layers": layers}, where)
        for i, layer in enumerate(layers):
            if layer.get("connections") not in CONNECTION_KINDS:
                raise ValueError(f"{where}: layers[{i}].connections={layer.get('connections')!r}")
        return spec

    def build(self, spec, device="cpu", implementation=None) -> torch.nn.Module:
        modules: list[torch.nn.Module] = []
        for block in spec["blocks"]:
            gate = _gate({key: block.get(key, default) for key, default in GATE_KEYS.items()})
            # The block's OR pool is fused into the conv layer (one pass; same numbers as OrPool2d after it).
            modules.append(LogicConv2d(block["in_channels"], block["out_channels"], tuple(block["kernel_size"]),
                                       depth=block["depth"], stride=block["stride"], padding=block["padding"],
                                       channels_per_tree=block["channels_per_tree"], device=device,
                                       implementation=implementation,
                                       pool=None if block["pool"] is None else tuple(block["pool"]), **gate))
        modules.append(torch.nn.Flatten())
        dense = LOGIC.build({**spec, "layers": spec["layers"]}, device=device, implementation=implementation)
        modules += list(dense.children())[1:]  # the logic family's LogicLayers and GroupSum, without its Flatten
        model = torch.nn.Sequential(*modules)
        model.diffgates_input_shape = tuple(spec["input_shape"])  # what circuit extraction unrolls over
        return model

    def spec_of(self, model, input_shape=None):
        mods = list(model.children()) if isinstance(model, torch.nn.Sequential) else []
        if not mods or not isinstance(mods[0], LogicConv2d):
            return None
        shape = list(input_shape or getattr(model, "diffgates_input_shape", None) or [])
        if len(shape) != 3:
            return None
        blocks, i = [], 0
        while i < len(mods) and isinstance(mods[i], LogicConv2d):
            conv = mods[i]
            following = mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], OrPool2d) else None
            if conv.pool is not None and following is not None:
                return None  # two pools in a row: not a LogicTreeNet block
            pool = conv.pool or following
            if pool is not None and pool.stride != pool.kernel_size:
                return None  # the spec stores non-overlapping pools only
            blocks.append({"in_channels": conv.in_channels, "out_channels": conv.out_channels,
                           "kernel_size": list(conv.kernel_size), "stride": conv.stride, "padding": conv.padding,
                           "depth": conv.depth, "channels_per_tree": conv.channels_per_tree,
                           "pool": list(pool.kernel_size) if pool is not None else None, **conv.gate_options()})
            i += 2 if following is not None else 1
        dense = LOGIC.spec_of(torch.nn.Sequential(*mods[i:]))
        if dense is None:
            return None
        spec = {**spec_header("logic_tree", shape[0] * shape[1] * shape[2], dense["n_classes"], shape),
                "tau": dense["tau"], "blocks": blocks, "layers": dense["layers"]}
        return self.validate(spec, "model_spec")

    def gate_counts(self, spec: dict[str, Any]) -> list[int]:
        """Gates per module as the paper counts them: every tree position, kh*kw - 1 ORs per pool window."""
        channels, height, width = spec["input_shape"]
        counts = []
        for block in spec["blocks"]:
            channels = block["out_channels"]
            height, width = output_size(height, width, tuple(block["kernel_size"]), block["stride"], block["padding"])
            counts.append(channels * height * width * (2 ** block["depth"] - 1))
            if block["pool"] is not None:
                pool = OrPool2d(block["pool"])
                channels, height, width = pool.output_shape(channels, height, width)
                counts.append(channels * height * width * (pool.kernel_size[0] * pool.kernel_size[1] - 1))
        return counts + [layer["out_dim"] for layer in spec["layers"]]

    def layer_widths(self, spec):
        return self.gate_counts(spec)

    def describe(self, spec, model) -> str:
        counts = self.gate_counts(spec)
        params = sum(p.numel() for p in model.parameters())
        channels = [b["out_channels"] for b in spec["blocks"]]
        dense = [layer["out_dim"] for layer in spec["layers"]]
        return (f"logic tree net, conv {channels} + dense {dense} = {sum(counts)} gates (every position counted), "
                f"{params} parameters")

    def size(self, spec, model) -> dict[str, Any]:
        counts = self.gate_counts(spec)
        return {"kind": self.name, "is_logic_net": True, "parameters": sum(p.numel() for p in model.parameters()),
                "gates_total": sum(counts), "gates_per_layer": counts,
                "gate_count_convention": "every tree at every output position, kh*kw - 1 OR gates per pool window, "
                                         "before simplification"}

    def deploy(self, model, input_layout=None):
        from ..frontend import to_circuit

        model = getattr(model, "module", model)
        return to_circuit(model, input_layout=input_layout, input_shape=getattr(model, "diffgates_input_shape", None))


LOGIC_TREE = LogicTreeFamily()

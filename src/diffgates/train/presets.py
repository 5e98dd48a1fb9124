"""Named training presets: every configuration of the published experiments, plus the MLP baselines.

A preset is a set of ``TrainConfig`` values; flags given on the command line override it (the
trainer prints which). Values not in a preset keep the ``TrainConfig`` defaults, which are the
original script's defaults (``-bs 128 -lr 0.01 -ni 100000 -ef 2000 --connections unique``).

Every dense preset trains on the whole official training set, as the original's experiments did (its
``-vss`` defaults to 0 and its UCI loaders hold out nothing): ``--val-fraction 0``, so the model
reported is the final one, not one picked by a validation score. The conv presets (``*_conv_*``)
hold out a validation split and keep the best model by it, as the conv paper did. Add ``--val-fraction 0.1`` to hold
out a validation split and keep the best model by it.

Where a value is our choice rather than the paper's, the preset's ``note`` says so. List them with
``diffgates train --list-presets``; use one with ``diffgates train --preset mnist20x20_small --out DIR``.

Example::

    from diffgates.train.presets import resolve_preset
    cfg = resolve_preset("adult")                       # TrainConfig with -t 20 -k 256 -l 5 -ni 100000
    cfg = resolve_preset("adult", {"num_iterations": 1000})
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import TrainConfig

# The original script's dataset names, accepted as aliases of ours.
DATASET_ALIASES = {"cifar-10-3-thresholds": "cifar10_3", "cifar-10-31-thresholds": "cifar10_31",
                   "fashion-mnist": "fashion_mnist"}


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    values: dict[str, Any] = field(default_factory=dict)  # TrainConfig field -> value
    note: str = ""  # where a value is not from the paper, or what the preset is for

    def flags(self) -> str:
        """The preset as original-style command-line flags (for --list-presets and the README)."""
        short = {"batch_size": "-bs", "tau": "-t", "num_neurons": "-k", "num_layers": "-l",
                 "num_iterations": "-ni", "eval_freq": "-ef", "learning_rate": "-lr", "architecture": "-a"}
        values = {key: value for key, value in self.values.items() if key != "model_options"}
        values.update(self.values.get("model_options", {}))  # a family's options are flags of their own
        return " ".join(f"{short.get(key, '--' + key.replace('_', '-'))} {value}"
                        for key, value in values.items() if key != "architecture" or value != "logic")


# MONK: the paper names the datasets but not their configs. Chosen from a small sweep on MONK-1/2/3
# (widths 48-128, depths 2-6, tau 5-10): the best of those on all three.
_MONK_NOTE = ("diffgates choice (the paper's config is not given): -bs 32 -t 10 -k 128 -l 4 -ni 5000 -ef 500; "
              "128 is near the limit of 136 distinct input pairs of 17 inputs (--connections unique)")


# The original's experiments hold out no validation split (see the module docstring).
_WHOLE_TRAINING_SET = {"val_fraction": 0.0}


def _logic(name: str, description: str, note: str = "", **values: Any) -> Preset:
    return Preset(name, description, {"architecture": "logic", **values, **_WHOLE_TRAINING_SET}, note)


# LogicTreeNet (conv logic nets, Petersen et al. 2024): k, tau, batch as published; MNIST 50,000/10,000
# with evaluation every 5,000 steps, CIFAR-10 45,000/5,000 every 2,000, best model by validation.
_CONV_NOTE = ("steps (-ni) are our choice (the paper does not state them); the last dense layer is widened "
              "x{factor} (our reading of the paper's output gate factor); dense connections random")
_CONV_MNIST = {"S": (16, 6.5, 512, 2), "M": (64, 28.0, 256, 2), "L": (256, 35.0, 128, 1)}
_CONV_CIFAR = {"S": (32, 20.0, 128, 2), "M": (256, 40.0, 128, 2)}


def _conv_presets() -> list[Preset]:
    presets = []
    for dataset, label, sizes in (("mnist", "MNIST", _CONV_MNIST), ("fashion_mnist", "Fashion-MNIST", _CONV_MNIST),
                                  ("cifar10_3", "CIFAR-10 (3 thresholds)", _CONV_CIFAR)):
        cifar = dataset.startswith("cifar")
        for size, (k, tau, batch, factor) in sizes.items():
            if dataset == "fashion_mnist" and size == "L":
                continue
            name = f"{dataset.split('_3')[0]}_conv_{size.lower()}"
            values = {"architecture": "logic_tree", "dataset": dataset, "num_neurons": k, "num_layers": 3, "tau": tau,
                      "batch_size": batch, "learning_rate": 0.02 if cifar else 0.01, "connections": "random",
                      "num_iterations": 100_000 if cifar else 50_000, "eval_freq": 2_000 if cifar else 5_000,
                      "val_fraction": 0.1 if cifar else 1 / 6, "model_options": {"output_factor": factor},
                      **({"weight_decay": 0.002} if cifar else {})}
            presets.append(Preset(name, f"{label} LogicTreeNet-{size} (k={k})", values,
                                  _CONV_NOTE.format(factor=factor)))
    return presets


# Binary and low-bit networks (families.binary). The architectures follow FINN's LFC (784-1024x3-10) and
# BinaryNet (3x4096); the conv net is FINN's CNV pattern shrunk to 28x28 (64, 64, pool, 128, 128, pool,
# 3x3 kernels without padding, one hidden layer of 512). Adam with a cosine decay, batch 100: our choices.
_BINARY_NOTE = "diffgates choice: Adam, --lr-schedule cosine, batch 100 and -ni (the papers train 500-1000 epochs)"


def _binary(name: str, description: str, dataset: str, k: int, layers: int, steps: int, lr: float = 0.005,
            **options: Any) -> Preset:
    values = {"architecture": "binary", "dataset": dataset, "batch_size": 100, "num_neurons": k, "num_layers": layers,
              "learning_rate": lr, "lr_schedule": "cosine", "num_iterations": steps, "eval_freq": steps // 6,
              **_WHOLE_TRAINING_SET}
    if options:
        values["model_options"] = options
    return Preset(name, description, values, _BINARY_NOTE)


def _binary_presets() -> list[Preset]:
    presets = []
    for dataset, label in (("mnist", "MNIST"), ("fashion_mnist", "Fashion-MNIST")):
        short = dataset.replace("fashion_mnist", "fashion")
        presets += [
            _binary(f"bnn_mlp_{short}", f"{label} BNN MLP 784-1024x3-10 (FINN LFC)", dataset, 1024, 3, 18_000),
            _binary(f"bnn_conv_{short}", f"{label} binary ConvNet 64-64-128-128 + 512", dataset, 512, 1, 12_000,
                    topology="conv"),
        ]
    presets += [
        _binary("bnn_mlp_mnist_4096", "MNIST BNN MLP 784-4096x3-10 (BinaryNet), BinaryNet LR scaling", "mnist",
                4096, 3, 18_000, lr=0.003, lr_scaling="binarynet"),
        _binary("xnor_mlp_mnist", "MNIST XNOR-Net MLP 784-1024x3-10 (per-channel scales)", "mnist", 1024, 3, 18_000,
                scaling="xnor"),
        _binary("qnn_mlp_mnist", "MNIST QNN MLP 784-1024x3-10, binary weights, 2-bit activations", "mnist",
                1024, 3, 18_000, activation="qnn", activation_bits=2),
        _binary("lq_mlp_mnist", "MNIST LQ-Nets MLP 784-1024x3-10, 2-bit weights and activations", "mnist",
                1024, 3, 18_000, lr=0.001, weight_bits=2, activation="lq", activation_bits=2),
    ]
    return presets


# AdderNet (families.adder): LeNet-5-BN as the paper's MNIST model, its CIFAR recipe's optimizer (SGD,
# momentum 0.9, weight decay 5e-4, cosine decay from 0.1, eta 0.2); batch and steps are our choice.
_ADDER_NOTE = "diffgates choice: batch 128 and -ni (the paper gives no MNIST schedule); optimizer as its CIFAR recipe"


def _adder_presets() -> list[Preset]:
    presets = []
    for dataset, label in (("mnist", "MNIST"), ("fashion_mnist", "Fashion-MNIST")):
        short = dataset.replace("fashion_mnist", "fashion")
        values = {"architecture": "adder", "dataset": dataset, "batch_size": 128, "num_neurons": 500, "num_layers": 1,
                  "learning_rate": 0.1, "weight_decay": 5e-4, "lr_schedule": "cosine", "num_iterations": 9_000,
                  "eval_freq": 1_500, **_WHOLE_TRAINING_SET}
        presets.append(Preset(f"adder_lenet_{short}", f"{label} AdderNet LeNet-5-BN (20-50 adder conv, 500)",
                              values, _ADDER_NOTE))
    return presets


_PRESETS = [
    _logic("mnist20x20_small", "MNIST 20x20, 48K gates (published 97.69%)",
           dataset="mnist20x20", batch_size=100, tau=10, num_neurons=8000, num_layers=6, num_iterations=200_000),
    _logic("mnist_large", "MNIST 28x28, 384K gates",
           note="-ni is the original script's default (100000); the paper does not list it",
           dataset="mnist", batch_size=100, tau=30, num_neurons=64_000, num_layers=6),
    _logic("cifar10_3_small", "CIFAR-10, 3 thermometer thresholds, 48K gates",
           dataset="cifar10_3", tau=100, num_neurons=12_000, num_layers=4),
    _logic("cifar10_3_large", "CIFAR-10, 3 thermometer thresholds, 512K gates",
           dataset="cifar10_3", tau=100, num_neurons=128_000, num_layers=4),
    _logic("cifar10_31_small", "CIFAR-10, 31 thermometer thresholds, 1.28M gates",
           note="-t 100 as for the 3-threshold models (only -k and -l are published)",
           dataset="cifar10_31", tau=100, num_neurons=256_000, num_layers=5),
    _logic("cifar10_31_medium", "CIFAR-10, 31 thermometer thresholds, 2.56M gates",
           note="-t 100 as for the 3-threshold models (only -k and -l are published)",
           dataset="cifar10_31", tau=100, num_neurons=512_000, num_layers=5),
    _logic("cifar10_31_large", "CIFAR-10, 31 thermometer thresholds, 5.12M gates",
           note="-t 100 as for the 3-threshold models (only -k and -l are published)",
           dataset="cifar10_31", tau=100, num_neurons=1_024_000, num_layers=5),
    _logic("adult", "UCI Adult (116 inputs), 1280 gates",
           dataset="adult", tau=20, num_neurons=256, num_layers=5, num_iterations=100_000),
    _logic("breast_cancer", "UCI Breast cancer (51 inputs), 640 gates",
           note="-ni is the original script's default (100000)",
           dataset="breast_cancer", learning_rate=0.001, tau=20, num_neurons=128, num_layers=5),
    _logic("monk1", "UCI MONK-1 (17 inputs), 512 gates",
           note=_MONK_NOTE, dataset="monk1", batch_size=32, tau=10, num_neurons=128, num_layers=4,
           num_iterations=5_000, eval_freq=500),
    _logic("monk2", "UCI MONK-2 (17 inputs), 512 gates",
           note=_MONK_NOTE, dataset="monk2", batch_size=32, tau=10, num_neurons=128, num_layers=4,
           num_iterations=5_000, eval_freq=500),
    _logic("monk3", "UCI MONK-3 (17 inputs), 512 gates",
           note=_MONK_NOTE, dataset="monk3", batch_size=32, tau=10, num_neurons=128, num_layers=4,
           num_iterations=5_000, eval_freq=500),
    *_conv_presets(),
    *_binary_presets(),
    *_adder_presets(),
    Preset("mlp_small", "baseline ReLU MLP, 3 hidden layers of 128 (not a logic net)",
           {"architecture": "mlp", "dataset": "mnist", "batch_size": 100, "num_neurons": 128, "num_layers": 3,
            "learning_rate": 0.001, "num_iterations": 20_000, **_WHOLE_TRAINING_SET},
           note="a float network: its 'eval mode' accuracy is its plain accuracy; lr 0.001 and -ni 20000 "
                "are our choices for Adam on a ReLU MLP; override --dataset to compare on another set"),
    Preset("mlp_large", "baseline ReLU MLP, 7 hidden layers of 2048 (not a logic net)",
           {"architecture": "mlp", "dataset": "mnist", "batch_size": 100, "num_neurons": 2048, "num_layers": 7,
            "learning_rate": 0.001, "num_iterations": 20_000, **_WHOLE_TRAINING_SET},
           note="a float network: its 'eval mode' accuracy is its plain accuracy; lr 0.001 and -ni 20000 "
                "are our choices for Adam on a ReLU MLP; override --dataset to compare on another set"),
]
PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError listing the known names otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def resolve_preset(name: str | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """TrainConfig defaults < preset ``name`` (if any) < ``overrides``; not yet validated.

    Args:
        name: a key of ``PRESETS``, or None for defaults only.
        overrides: TrainConfig field -> value (e.g. the flags given on the command line); ``model_options``
            are merged option by option into the preset's.

    Returns:
        The merged TrainConfig (``preset`` field set to ``name``).
    """
    values: dict[str, Any] = {}
    if name is not None:
        values.update(get_preset(name).values)
        values["preset"] = name
    overrides = dict(overrides or {})
    if "model_options" in overrides:  # why: one typed family option changes that option, not the preset's others
        overrides["model_options"] = {**values.get("model_options", {}), **overrides["model_options"]}
    values.update(overrides)
    if values.get("dataset") in DATASET_ALIASES:
        values["dataset"] = DATASET_ALIASES[values["dataset"]]
    return TrainConfig.from_dict(values, where=f"preset {name!r}" if name else "config")


def describe_presets() -> str:
    """One block per preset: name, description, flags, note (what --list-presets prints)."""
    lines = []
    for p in _PRESETS:
        lines.append(f"{p.name:<18} {p.description}")
        lines.append(f"{'':<18} {p.flags()}")
        if p.note:
            lines.append(f"{'':<18} note: {p.note}")
    return "\n".join(lines)

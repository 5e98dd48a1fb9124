"""The binary family: BNN/BinaryNet, XNOR-Net and BinaryConnect networks, and their low-bit cousins (QNN, LQ-Nets).

Spec: ``{header, "kind": "binary", "conv": [[channels, kernel, pool], ...], "hidden": [w, ...],
"weight_bits", "activation", "activation_bits", "scaling", "binarize", "estimator"}`` builds a
``BinaryNetwork`` (a Sequential):

    Bipolar (input bits -> {-1, +1})
    per conv entry:  BinaryConv2d(kernel, no padding), FoldableBatchNorm, activation, OrPool2d(pool) if pool > 1
    Flatten
    per hidden width: [Dropout], BinaryLinear, FoldableBatchNorm, activation
    [Dropout]
    BinaryClassifier (BinaryLinear to the classes, one positive output scale)

``weight_bits=1`` and ``activation='sign'`` is a BNN (BinaryNet; ``scaling='xnor'`` gives XNOR-Net's
per-channel scales, ``binarize='stochastic'`` BinaryConnect's stochastic weights): its blocks are
``BinaryBlock``s, it deploys exactly as popcount/threshold cells (``deploy``: the Circuit IR, so the
C engine, Verilog and netlists take it) and as an XNOR-popcount program (``xnor_program``). Other
settings train and report accuracy but do not deploy as circuits: ``activation='qnn'`` (QNN's k-bit
uniform activations, ``activation_bits``), ``weight_bits >= 2`` (LQ-Nets' learned weight bases) with
``activation='lq'`` (LQ-Nets' learned activation bases on ReLU outputs) or 'qnn'.

The network trains on the dataset's exact input bits (``binary_inputs``): the deployed network sees
what the trained one saw. Training options (not part of the model): ``latent_clip`` (clip latent
binary weights to [-c, c] after every step; 0 disables), ``lr_scaling='binarynet'`` (each binary
weight's learning rate times 1/sqrt(1.5/(fan_in+fan_out))), ``optimizer='askew_sgd'`` (AskewSGD,
momentum 0.9: the binary weights interval-constrained, eps annealed once per epoch after the first),
``bn_recalibrate=N`` (before every evaluation, BatchNorm statistics recomputed over N fixed training
rows with the current weights: the deployed thresholds then match the weights they threshold). Example::

    spec = binary_spec(in_dim=784, n_classes=10, hidden=[1024] * 3, input_shape=[1, 28, 28])
    model = BINARY.build(spec)
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..nn import OrPool2d
from ..nn.binary import (BINARY_LAYERS, BinaryActivation, BinaryBlock, BinaryClassifier, BinaryConv2d, BinaryLinear,
                         Bipolar, FoldableBatchNorm, LQConv2d, LQLinear, QuantActivation, binarynet_param_groups,
                         clip_latent_weights_, recalibrate_batchnorm_)
from ..optim import AskewSGD
from .base import ModelFamily, Option, accuracy_counts, adam_optimizer, check_int, spec_header
from .convnet import check_blocks, conv_output_shape, layer_widths

WEIGHT_LAYERS = (*BINARY_LAYERS, LQLinear, LQConv2d)
ACTIVATIONS = ("sign", "qnn", "lq")
CONV_KERNEL = 3
ASKEW_MOMENTUM = 0.9  # AskewSGD settings of this family (our choice: the paper's were not at hand)
ASKEW_WARMUP_EPOCHS = 1


class BinaryNetwork(torch.nn.Sequential):
    """A binary-family model: the Sequential the spec describes; ``spec`` is kept for ``spec_of``."""

    def __init__(self, modules: list[torch.nn.Module], spec: dict[str, Any]):
        super().__init__(*modules)
        self.spec = spec
        self.diffgates_input_shape = tuple(spec["input_shape"])


def binary_spec(in_dim: int, n_classes: int, hidden: list[int], conv: list[list[int]] | None = None,
                input_shape=None, weight_bits: int = 1, activation: str = "sign", activation_bits: int = 2,
                scaling: str | None = None, binarize: str = "deterministic", estimator: str = "ste",
                dropout: tuple[float, float] = (0.0, 0.0)) -> dict[str, Any]:
    """Spec of a binary network (see the module docstring); validated."""
    spec = {**spec_header("binary", in_dim, n_classes, input_shape), "conv": [list(c) for c in conv or []],
            "hidden": list(hidden), "weight_bits": weight_bits, "activation": activation,
            "activation_bits": activation_bits, "scaling": scaling, "binarize": binarize, "estimator": estimator,
            "dropout": [float(p) for p in dropout]}
    return BINARY.validate(spec, "binary spec")


def deployable(spec: dict[str, Any]) -> bool:
    """Whether the spec is a BNN (1-bit weights, sign activations): the form that deploys as a circuit."""
    return spec["weight_bits"] == 1 and spec["activation"] == "sign"


class BinaryFamily(ModelFamily):
    name = "binary"
    description = ("binary and low-bit networks (BNN/XNOR-Net/BinaryConnect; QNN, LQ-Nets): -l hidden layers of "
                   "-k units, optional conv blocks; BNNs deploy as popcount/threshold circuits")
    is_circuit = True  # BNNs do; ``deploy`` explains when a low-bit variant does not
    binary_inputs = True
    options = (
        Option("topology", str, "mlp", "mlp (hidden layers only) or conv (conv blocks c, c, pool, 2c, 2c, pool of "
               "3x3 kernels without padding, then the hidden layers)", ("mlp", "conv")),
        Option("conv_width", int, 64, "channels c of the first conv blocks (--topology conv)"),
        Option("weight_bits", int, 1, "1: binary weights (sign); >= 2: LQ-Nets' learned K-bit weight bases"),
        Option("activation", str, "sign", "sign (BNN), qnn (k-bit uniform) or lq (LQ-Nets' learned bases on ReLU)",
               ACTIVATIONS),
        Option("activation_bits", int, 2, "bits of the qnn/lq activations"),
        Option("scaling", str, "none", "none, or xnor (XNOR-Net's per-output-channel mean |W|)", ("none", "xnor")),
        Option("binarize", str, "deterministic", "deterministic (sign) or stochastic (BinaryConnect)",
               ("deterministic", "stochastic")),
        Option("estimator", str, "ste", "sign gradient: ste (clipped straight-through) or approx_sign (Bi-Real)",
               ("ste", "approx_sign")),
        Option("dropout_in", float, 0.0, "dropout on the input of the first dense layer (training only)"),
        Option("dropout_hidden", float, 0.0, "dropout on the input of every later dense layer (training only)"),
        Option("latent_clip", float, 1.0, "clip latent binary weights to [-c, c] after every step (0: never)"),
        Option("lr_scaling", str, "none", "none, or binarynet (per-layer 1/sqrt(1.5/(fan_in+fan_out)))",
               ("none", "binarynet")),
        Option("optimizer", str, "adam", "adam (AdamW with --weight-decay) or askew_sgd (binary weights)",
               ("adam", "askew_sgd")),
        Option("bn_recalibrate", int, 0, "before every evaluation (and so in the saved models) recompute the "
               "BatchNorm statistics over N fixed training rows with the current weights (0: keep the running "
               "averages)"),
    )

    # -- spec -------------------------------------------------------------------------------------
    def spec_from_config(self, config, dataset) -> dict[str, Any]:
        opts = self.check_options(config.model_options)
        if opts["bn_recalibrate"] < 0 or opts["bn_recalibrate"] == 1:  # why 2: one row has no batch variance
            raise ValueError(f"--bn-recalibrate must be 0 (off) or a number of training rows >= 2, got "
                             f"{opts['bn_recalibrate']}")
        shape = [int(d) for d in dataset.input_shape]
        conv = []
        if opts["topology"] == "conv":
            if len(shape) != 3:
                raise ValueError(f"--topology conv needs image inputs (C, H, W); {dataset.name} has input shape {shape}")
            c = opts["conv_width"]
            conv = [[c, CONV_KERNEL, 1], [c, CONV_KERNEL, 2], [2 * c, CONV_KERNEL, 1], [2 * c, CONV_KERNEL, 2]]
        return binary_spec(int(dataset.n_inputs), int(dataset.n_classes), [config.num_neurons] * config.num_layers,
                           conv, shape, weight_bits=opts["weight_bits"], activation=opts["activation"],
                           activation_bits=opts["activation_bits"],
                           scaling=None if opts["scaling"] == "none" else opts["scaling"], binarize=opts["binarize"],
                           estimator=opts["estimator"], dropout=(opts["dropout_in"], opts["dropout_hidden"]))

    def validate(self, spec, where):
        check_blocks(spec, where, hidden_required=True)
        bits = check_int(where, "weight_bits", spec.get("weight_bits"))
        if bits > 8:
            raise ValueError(f"{where}: weight_bits must be at most 8, got {bits}")
        if spec.get("activation") not in ACTIVATIONS:
            raise ValueError(f"{where}: activation={spec.get('activation')!r} is not one of {ACTIVATIONS}")
        if spec["activation"] == "lq" and bits == 1:
            raise ValueError(f"{where}: activation='lq' quantizes inside LQ-Nets layers; it needs weight_bits >= 2")
        if not 1 <= check_int(where, "activation_bits", spec.get("activation_bits")) <= 8:
            raise ValueError(f"{where}: activation_bits must be in 1..8, got {spec['activation_bits']}")
        for key, choices in (("scaling", (None, "xnor")), ("binarize", ("deterministic", "stochastic")),
                             ("estimator", ("ste", "approx_sign"))):
            if spec.get(key) not in choices:
                raise ValueError(f"{where}: {key}={spec.get(key)!r} is not one of {choices}")
        if bits > 1 and (spec["scaling"] is not None or spec["binarize"] != "deterministic"):
            raise ValueError(f"{where}: scaling/binarize apply to binary weights (weight_bits=1), got "
                             f"weight_bits={bits} with scaling={spec['scaling']!r}, binarize={spec['binarize']!r}")
        dropout = spec.get("dropout", [0.0, 0.0])
        if not (isinstance(dropout, list) and len(dropout) == 2 and all(
                isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p < 1 for p in dropout)):
            raise ValueError(f"{where}: dropout must be [input, hidden] probabilities in [0, 1), got {dropout!r}")
        return spec

    # -- model ------------------------------------------------------------------------------------
    def build(self, spec, device="cpu", implementation=None):
        binary = spec["weight_bits"] == 1
        act_name, act_bits = spec["activation"], spec["activation_bits"]
        first = [True]

        def weight_layer(kind: str, n_in: int, n_out: int):
            if binary:
                options = {"scaling": spec["scaling"], "binarize": spec["binarize"], "device": device}
                return (BinaryConv2d(n_in, n_out, CONV_KERNEL, **options) if kind == "conv"
                        else BinaryLinear(n_in, n_out, **options))
            # LQ-Nets: the input quantizer of each layer after the first quantizes the previous ReLU output.
            act = act_bits if act_name == "lq" and not first[0] else None
            options = {"weight_bits": spec["weight_bits"], "act_bits": act, "device": device}
            return LQConv2d(n_in, n_out, CONV_KERNEL, **options) if kind == "conv" else LQLinear(n_in, n_out, **options)

        def block(kind: str, n_in: int, n_out: int, pool: int = 1) -> torch.nn.Module:
            layer = weight_layer(kind, n_in, n_out)
            first[0] = False
            norm = FoldableBatchNorm(n_out, device=device)
            pooling = OrPool2d(pool) if pool > 1 else None
            if act_name == "sign":
                act = BinaryActivation(spec["estimator"])
                if binary:
                    return BinaryBlock(layer, norm, act, pooling)
            elif act_name == "qnn":
                act = QuantActivation(act_bits)
            else:
                act = torch.nn.ReLU()
            return torch.nn.Sequential(*[m for m in (layer, norm, act, pooling) if m is not None])

        modules: list[torch.nn.Module] = [Bipolar()]
        channels = spec["input_shape"][0] if spec["conv"] else None
        for c, kernel, pool in spec["conv"]:
            modules.append(block("conv", channels, c, pool))
            channels = c
        modules.append(torch.nn.Flatten())
        width = math.prod(conv_output_shape(spec)) if spec["conv"] else spec["in_dim"]
        p_in, p_hidden = spec.get("dropout", [0.0, 0.0])
        for i, w in enumerate([*spec["hidden"], None]):
            p = p_in if i == 0 else p_hidden
            if p > 0:  # why: the BNN recipes regularize the dense layers' inputs; eval mode is unchanged
                modules.append(torch.nn.Dropout(p))
            if w is not None:
                modules.append(block("dense", width, w))
                width = w
        if binary:
            modules.append(BinaryClassifier(width, spec["n_classes"], device=device))
        else:  # LQ-Nets keep the classifier in full precision
            modules.append(torch.nn.Linear(width, spec["n_classes"], device=device))
        return BinaryNetwork(modules, dict(spec))

    def spec_of(self, model, input_shape=None):
        if not isinstance(model, BinaryNetwork):
            return None
        return self.validate(dict(model.spec), "model_spec")

    def layer_widths(self, spec):
        return layer_widths(spec)

    def _kind(self, spec) -> str:
        if deployable(spec):
            return "XNOR-Net" if spec["scaling"] == "xnor" else (
                "BinaryConnect BNN" if spec["binarize"] == "stochastic" else "BNN")
        weights = "binary" if spec["weight_bits"] == 1 else f"LQ {spec['weight_bits']}-bit"
        acts = {"sign": "sign", "qnn": f"QNN {spec['activation_bits']}-bit",
                "lq": f"LQ {spec['activation_bits']}-bit"}[spec["activation"]]
        return f"{weights} weights, {acts} activations"

    def describe(self, spec, model) -> str:
        params = sum(p.numel() for p in model.parameters())
        conv = f"conv {[c for c, _, _ in spec['conv']]} + " if spec["conv"] else ""
        return f"{self._kind(spec)}: {conv}hidden {spec['hidden']}, {params} parameters"

    def size(self, spec, model):
        widths = self.layer_widths(spec)
        weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, WEIGHT_LAYERS))
        return {"kind": self.name, "is_logic_net": False, "variant": self._kind(spec),
                "parameters": sum(p.numel() for p in model.parameters()), "quantized_weights": weights,
                "weight_bits": spec["weight_bits"], "units_total": sum(widths), "units_per_layer": widths,
                "deploys_as_circuit": deployable(spec)}

    # -- training ---------------------------------------------------------------------------------
    def make_optimizer(self, model, config) -> torch.optim.Optimizer:
        opts = self.check_options(config.model_options)
        lr = config.learning_rate
        groups = (binarynet_param_groups(model, lr) if opts["lr_scaling"] == "binarynet"
                  else [{"params": list(model.parameters()), "lr": lr}])
        if opts["optimizer"] == "askew_sgd":
            binary_params = {id(m.weight) for m in model.modules() if isinstance(m, BINARY_LAYERS)}
            if not binary_params:
                raise ValueError("--optimizer askew_sgd constrains binary weights; this model has none "
                                 "(weight_bits >= 2)")
            # why: the interval constraint is for the binary latent weights; BN and scales are plain SGD.
            split = [{**g, "params": [p for p in g["params"] if (id(p) in binary_params) == constrained],
                      "constrained": constrained} for g in groups for constrained in (True, False)]
            return AskewSGD([g for g in split if g["params"]], lr=lr, momentum=ASKEW_MOMENTUM)
        return adam_optimizer(groups, config)

    def after_step(self, model, optimizer, config, step: int, steps_per_epoch: int) -> None:
        bound = self.check_options(config.model_options)["latent_clip"]
        if bound > 0:
            clip_latent_weights_(model, bound)
        # AskewSGD: plain clipped SGD for the first epoch (eps = 1), then eps shrinks once per epoch.
        if isinstance(optimizer, AskewSGD) and step % steps_per_epoch == 0 and step // steps_per_epoch > ASKEW_WARMUP_EPOCHS - 1:
            optimizer.anneal()

    def before_evaluation(self, model, config, training_batches) -> None:
        rows = self.check_options(config.model_options)["bn_recalibrate"]
        if rows > 0:
            recalibrate_batchnorm_(getattr(model, "module", model), training_batches(rows))

    # -- deployment -------------------------------------------------------------------------------
    def deployed_accuracy(self, model, x_raw, y, encode, *, batch_size=2000, device="cpu", shard=(0, 1)):
        # Eval mode is the deployed network: signs of the weights, folded BN thresholds, on exact bits.
        return accuracy_counts(model, x_raw, y, encode, binary=True, train_mode=False, batch_size=batch_size,
                               device=device, shard=shard)

    def _require_deployable(self, model) -> dict[str, Any]:
        model = getattr(model, "module", model)
        spec = self.spec_of(model)
        if spec is None or not deployable(spec):
            kind = self._kind(spec) if spec else type(model).__name__
            raise ValueError(f"this binary-family model ({kind}) has no circuit form: only BNNs (weight_bits=1, "
                             f"activation='sign') deploy as popcount/threshold cells")
        return spec

    def deploy(self, model, input_layout=None):
        from ..frontend import to_circuit

        self._require_deployable(model)
        model = getattr(model, "module", model)
        return to_circuit(model.eval(), input_layout=input_layout, input_shape=model.diffgates_input_shape)

    def deployed_counts(self, model, x: torch.Tensor, circuit) -> torch.Tensor:
        """(N, classes) int64 agreements per class, from the eval model: what the circuit's group sums count."""
        model = getattr(model, "module", model)
        classifier = model[-1]
        captured = []
        handle = classifier.layer.register_forward_hook(lambda m, inputs, out: captured.append(out))
        try:
            with torch.no_grad():
                model.eval()(x)
        finally:
            handle.remove()
        y = captured[0]
        return ((y + classifier.layer.in_features) / 2).round().to(torch.int64)

    def xnor_program(self, model):
        """The model's XNOR-popcount program (``diffgates.backends.xnor``)."""
        from ..frontend.binary import to_xnor_program

        self._require_deployable(model)
        model = getattr(model, "module", model)
        return to_xnor_program(model.eval(), model.diffgates_input_shape)


BINARY = BinaryFamily()

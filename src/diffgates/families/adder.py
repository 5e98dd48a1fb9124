"""The adder family: AdderNet (Chen et al., CVPR 2020), every hidden weighted sum an L1 distance.

Spec: the conv-net skeleton's (``families.convnet``: ``conv``, ``hidden``) plus ``"multiply_ends":
bool``. Each hidden conv and dense layer is an adder layer (``nn.adder``: -sum|x - w|) followed by
BatchNorm and ReLU; with ``multiply_ends`` (the paper's choice, the default) the first conv and the
classifier stay ordinary multiplying layers, else they are adder layers too (the classifier then
followed by a BatchNorm1d, since adder outputs are <= 0).

Training options (not part of the model): ``optimizer`` sgd (momentum 0.9, weight decay -
``--weight-decay`` - as L2 inside the gradient, the paper's recipe) or adam; ``eta``, the adaptive
learning rate of the adder layers (each weight gradient rescaled to norm eta sqrt(k) before the
step; 0 turns it off). Example::

    diffgates train --preset adder_lenet_mnist --out runs/adder
"""
from __future__ import annotations

import torch

from ..nn.adder import Adder2d, AdderLinear, attach_adaptive_gradient_scale
from .base import Option, adam_optimizer
from .convnet import TOPOLOGY_OPTION, ConvNetFamily

SGD_MOMENTUM = 0.9  # the paper's


class AdderFamily(ConvNetFamily):
    name = "adder"
    description = ("AdderNet: adder layers (-sum|x - w|) + BatchNorm + ReLU, LeNet-5-BN (--topology lenet5) or "
                   "-l hidden layers of -k units; first conv and classifier multiply unless --ends adder")
    layer_fields = ("multiply_ends",)
    options = (
        TOPOLOGY_OPTION,
        Option("ends", str, "multiply", "the first layer and the classifier: multiply (the paper's) or adder",
               ("multiply", "adder")),
        Option("eta", float, 0.2, "adaptive learning rate: each adder layer's weight gradient rescaled to norm "
               "eta*sqrt(weights) before the step (0: off)"),
        Option("optimizer", str, "sgd", "sgd (momentum 0.9, --weight-decay as L2) or adam (AdamW with "
               "--weight-decay)", ("sgd", "adam")),
    )

    def spec_fields(self, options):
        if options["eta"] < 0:
            raise ValueError(f"--eta must be >= 0 (0 turns the adaptive learning rate off), got {options['eta']}")
        return {"multiply_ends": options["ends"] == "multiply"}

    def validate_layers(self, spec, where):
        if not isinstance(spec["multiply_ends"], bool):
            raise ValueError(f"{where}: multiply_ends must be true or false, got {spec['multiply_ends']!r}")

    def make_layer(self, spec, role, n_in, n_out, kernel, device):
        if role != "hidden" and spec["multiply_ends"]:
            return (torch.nn.Conv2d(n_in, n_out, kernel, device=device) if kernel
                    else torch.nn.Linear(n_in, n_out, device=device))
        return Adder2d(n_in, n_out, kernel, device=device) if kernel else AdderLinear(n_in, n_out, device=device)

    def classifier_needs_norm(self, spec):
        return not spec["multiply_ends"]

    def variant(self, spec):
        return "AdderNet" + ("" if spec["multiply_ends"] else " (adder first layer and classifier)")

    def make_optimizer(self, model, config):
        opts = self.check_options(config.model_options)
        if opts["optimizer"] == "sgd":
            optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=SGD_MOMENTUM,
                                        weight_decay=config.weight_decay)
        else:
            optimizer = adam_optimizer(model.parameters(), config)
        if opts["eta"] > 0:
            attach_adaptive_gradient_scale(optimizer, getattr(model, "module", model), opts["eta"])
        return optimizer


ADDER = AdderFamily()

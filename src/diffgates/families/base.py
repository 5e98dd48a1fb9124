"""What a model family is: the contract every family module fulfils, and what they share.

A family (``ModelFamily``) is one kind of model diffgates trains and deploys: logic gate networks,
float MLP baselines, and later binary, adder or shift networks. It declares

* ``name`` (the ``architecture`` of a TrainConfig and the ``kind`` of a spec), a description, and
  the ``options`` of its own (``Option``: a name, a type, a default; the CLI offers them as flags and
  the config keeps them in ``model_options``);
* ``spec_from_config`` / ``validate`` / ``build`` / ``spec_of``: the architecture as a JSON-able
  spec (everything needed to rebuild the model; weights come from a state dict), checked, built, and
  read back from a model;
* ``describe`` / ``size``: a one-line description for logs and the size record of ``results.json``;
* ``deployed_accuracy``: accuracy as deployed (a logic net: the discrete circuit, on exact input
  bits; a float baseline: its plain accuracy);
* ``deploy``: the Circuit of a model, or None for a family that is not a Boolean circuit, and
  ``deployed_counts``: the class counts that circuit must give, from the eval model;
* training hooks: ``binary_inputs`` (train on exact input bits), ``make_optimizer``, ``after_step``,
  ``before_evaluation``.

Specs share a header: ``{"format": "diffgates.model_spec", "version": 1, "kind", "in_dim",
"n_classes", "input_shape", ...}`` (``spec_header``, ``check_header``). ``accuracy_counts`` is the
batched evaluation every family's ``deployed_accuracy`` uses. Add a family: one module with a
``ModelFamily`` subclass, and one ``register_family`` line in ``diffgates.families``.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from ..nn import soft_sampling

SPEC_FORMAT = "diffgates.model_spec"
SPEC_VERSION = 1


@dataclass(frozen=True)
class Option:
    """A family's own setting: ``--NAME`` on the command line, ``model_options[NAME]`` in the config."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None

    def check(self, value: Any, where: str = "model_options") -> Any:
        """``value`` converted to the option's type; ValueError naming the option otherwise."""
        try:
            converted = self.type(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {self.name}={value!r} is not a {self.type.__name__}") from None
        if self.choices is not None and converted not in self.choices:
            raise ValueError(f"{where}: {self.name}={value!r} is not one of {list(self.choices)}")
        return converted


def check_int(where: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}")
    return value


def check_number(where: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{where}: {name} must be a number > 0, got {value!r}")
    return float(value)


def spec_header(kind: str, in_dim: int, n_classes: int, input_shape) -> dict[str, Any]:
    """The fields every spec starts with."""
    return {"format": SPEC_FORMAT, "version": SPEC_VERSION, "kind": kind, "in_dim": int(in_dim),
            "input_shape": list(input_shape) if input_shape is not None else [int(in_dim)],
            "n_classes": int(n_classes)}


def check_header(spec: Any, where: str) -> tuple[int, int]:
    """Validate the shared header of a spec; returns (in_dim, n_classes)."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(spec).__name__}")
    if spec.get("format") != SPEC_FORMAT:
        raise ValueError(f"{where}: format is {spec.get('format')!r}, expected {SPEC_FORMAT!r} "
                         f"(not a diffgates model spec)")
    if spec.get("version") != SPEC_VERSION:
        raise ValueError(f"{where}: version {spec.get('version')!r} is not supported (expected {SPEC_VERSION})")
    in_dim = check_int(where, "in_dim", spec.get("in_dim"))
    n_classes = check_int(where, "n_classes", spec.get("n_classes"))
    shape = spec.get("input_shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                                              for d in shape):
        raise ValueError(f"{where}: input_shape must be a list of positive integers, got {shape!r}")
    numel = 1
    for d in shape:
        numel *= d
    if numel != in_dim:
        raise ValueError(f"{where}: input_shape {shape} holds {numel} values but in_dim is {in_dim}")
    return in_dim, n_classes


@torch.no_grad()
def accuracy_counts(model: torch.nn.Module, x_raw: torch.Tensor, y: torch.Tensor,
                    encode: Callable[[torch.Tensor, bool], torch.Tensor], *, binary: bool, train_mode: bool = False,
                    batch_size: int = 2000, device: str | torch.device = "cpu",
                    shard: tuple[int, int] = (0, 1)) -> tuple[int, int]:
    """(correct, total) of ``model`` on the rows ``x_raw``/``y`` (or one shard of them).

    Args:
        model: classifier returning (N, n_classes) scores; its train/eval mode is restored afterwards.
        x_raw: raw dataset rows (as stored by ``diffgates.data``); y: int64 labels.
        encode: ``dataset.encode(x_raw_batch, binary)``.
        binary: True for exact {0, 1} bits (the discrete network's inputs).
        train_mode: evaluate the relaxed network (``model.train()``, soft sampling: no noise, no
            straight-through) instead of the discrete one.
        batch_size: rows per forward pass.
        device: where to run.
        shard: (rank, world_size): this call evaluates rows rank, rank + world_size, ...

    Returns:
        (number of correct predictions, number of rows evaluated).
    """
    rank, world = shard
    model = getattr(model, "module", model)
    was_training = model.training
    model.train(train_mode)
    correct = 0
    rows = torch.arange(rank, len(y), world)
    relaxation = soft_sampling(model) if train_mode else contextlib.nullcontext()
    # why: a train-mode forward updates BatchNorm running statistics; evaluation must not change the model
    buffers = [(b, b.detach().clone()) for b in model.buffers()] if train_mode else []
    try:
        with relaxation:
            # why near-equal batches: a train-mode BatchNorm cannot normalize a last batch of one row
            for idx in torch.tensor_split(rows, max(1, math.ceil(len(rows) / batch_size))):
                x = encode(x_raw[idx].to(device, non_blocking=True), binary)  # encode where the model runs
                pred = model(x).argmax(-1).cpu()
                correct += int((pred == y[idx]).sum())
    finally:
        for buffer, saved in buffers:
            buffer.copy_(saved)
        model.train(was_training)
    return correct, len(rows)


def adam_optimizer(params, config) -> torch.optim.Optimizer:
    """Adam at ``config.learning_rate`` over ``params`` (parameters or param groups); AdamW when
    ``config.weight_decay`` > 0. The trainer's default, and what families with their own groups use."""
    if config.weight_decay > 0:
        return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.learning_rate)


class ModelFamily:
    """A model family (see the module docstring). Subclasses set ``name`` and implement the methods."""

    name: str = ""
    description: str = ""
    options: tuple[Option, ...] = ()
    is_circuit: bool = False  # deploys as a Boolean circuit (the C/GPU engines, Verilog, netlists)

    def spec_from_config(self, config, dataset) -> dict[str, Any]:
        """The spec of the model ``config`` (a TrainConfig) describes for ``dataset``."""
        raise NotImplementedError

    def validate(self, spec: dict[str, Any], where: str) -> dict[str, Any]:
        """Check the family's part of ``spec`` (the header is checked already); returns ``spec``."""
        raise NotImplementedError

    def build(self, spec: dict[str, Any], device: str | torch.device = "cpu",
              implementation: str | None = None) -> torch.nn.Module:
        """A freshly initialised model (weights from torch's global RNG), in training mode."""
        raise NotImplementedError

    def spec_of(self, model: torch.nn.Module, input_shape=None) -> dict[str, Any] | None:
        """The spec of ``model`` when it is of this family, else None."""
        raise NotImplementedError

    def layer_widths(self, spec: dict[str, Any]) -> list[int]:
        """The widths that count as the model's size (gates per layer, units per layer)."""
        raise NotImplementedError

    def describe(self, spec: dict[str, Any], model: torch.nn.Module) -> str:
        """One line for the training log."""
        raise NotImplementedError

    def size(self, spec: dict[str, Any], model: torch.nn.Module) -> dict[str, Any]:
        """The ``model`` record of results.json (kind, parameters, widths)."""
        raise NotImplementedError

    def deployed_accuracy(self, model, x_raw, y, encode, *, batch_size: int = 2000, device="cpu",
                          shard: tuple[int, int] = (0, 1)) -> tuple[int, int]:
        """(correct, total) of the model as deployed; by default the eval-mode model on exact bits."""
        return accuracy_counts(model, x_raw, y, encode, binary=True, train_mode=False, batch_size=batch_size,
                               device=device, shard=shard)

    def deploy(self, model: torch.nn.Module, input_layout: dict | None = None):
        """The model's Circuit, or None when the family is not a Boolean circuit."""
        return None

    def deployed_counts(self, model: torch.nn.Module, x: torch.Tensor, circuit) -> torch.Tensor:
        """(N, classes) int64: the class counts ``circuit`` (from ``deploy``) must give on input ``x``,
        computed by the eval-mode model. Default: logits times the head's tau (GroupSum heads)."""
        with torch.no_grad():
            return torch.round(model.eval()(x) * circuit.tau).to(torch.int64)

    # -- training hooks (the one trainer calls these; the defaults are the logic nets' recipe) --------
    binary_inputs: bool = False  # train on the exact input bits (encode(x, binary=True)) instead of the relaxed input

    def make_optimizer(self, model: torch.nn.Module, config) -> torch.optim.Optimizer:
        """Adam with ``-lr``; AdamW with ``--weight-decay`` > 0 (``adam_optimizer``)."""
        return adam_optimizer(model.parameters(), config)

    def after_step(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config, step: int,
                   steps_per_epoch: int) -> None:
        """Called after optimizer step ``step`` (1-based): projections, annealing. Default: nothing."""

    def before_evaluation(self, model: torch.nn.Module, config,
                          training_batches: Callable[[int], Iterable[torch.Tensor]]) -> None:
        """Called before each evaluation (whose model is then saved): e.g. recalibrate statistics.
        ``training_batches(n)`` yields n fixed training rows (encoded, not augmented) in batches. Default: nothing."""

    def check_options(self, options: dict[str, Any], where: str = "model_options") -> dict[str, Any]:
        """Every option of this family with its value (defaults filled in); unknown keys are an error."""
        known = {o.name: o for o in self.options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"{where}: {unknown} are not options of the {self.name!r} family (it has "
                             f"{sorted(known) or 'none'})")
        return {name: o.check(options.get(name, o.default), where) for name, o in known.items()}

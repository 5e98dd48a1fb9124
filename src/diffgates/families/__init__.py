"""Model families: every kind of model diffgates trains and deploys, in one registry.

The trainer, the CLI and the model files never branch on a family's name: they look the family up
here (``get_family(config.architecture)``, ``get_family(spec["kind"])``, ``family_of_model(model)``)
and call its methods (``base.ModelFamily``). Families today: ``logic`` (``logic``), ``logic_tree``
(``logic_tree``, conv logic nets), ``mlp`` (``mlp``), ``binary`` (``binary``: BNN, XNOR-Net, QNN,
LQ-Nets) and ``adder`` (``adder``: AdderNet, on the conv-net skeleton of ``convnet``). To add one,
write a module with a ``ModelFamily`` subclass and add one line below::

    register_family(MyFamily())

``validate_spec``, ``build_model`` and ``model_spec`` are the family-independent entry points.
"""
from __future__ import annotations

from typing import Any

import torch

from .adder import ADDER
from .base import SPEC_FORMAT, SPEC_VERSION, ModelFamily, Option, accuracy_counts, check_header
from .binary import BINARY, binary_spec
from .logic import LOGIC, logic_spec
from .logic_tree import LOGIC_TREE, logic_tree_spec
from .mlp import MLP, mlp_spec

FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add a family to the registry (its ``name`` must be new)."""
    if not family.name or family.name in FAMILIES:
        raise ValueError(f"a model family needs a new name; {family.name!r} is {'taken' if family.name else 'empty'}")
    FAMILIES[family.name] = family
    return family


register_family(LOGIC)
register_family(LOGIC_TREE)
register_family(MLP)
register_family(BINARY)
register_family(ADDER)


def get_family(name: str) -> ModelFamily:
    """The family called ``name``; ValueError listing the known ones otherwise."""
    if name not in FAMILIES:
        raise ValueError(f"architecture {name!r} is not known; expected one of {sorted(FAMILIES)}")
    return FAMILIES[name]


def validate_spec(spec: Any, where: str = "model spec") -> dict[str, Any]:
    """Check a spec (header, then its family's part); ValueError naming the bad field. Returns ``spec``."""
    check_header(spec, where)
    kind = spec.get("kind")
    if kind not in FAMILIES:
        raise ValueError(f"{where}: kind={kind!r} is not known; expected one of {sorted(FAMILIES)}")
    return FAMILIES[kind].validate(spec, where)


def build_model(spec: dict[str, Any], device: str | torch.device = "cpu",
                implementation: str | None = None) -> torch.nn.Module:
    """A freshly initialised model with the structure of ``spec`` (validated first), in training mode."""
    validate_spec(spec)
    model = FAMILIES[spec["kind"]].build(spec, device=device, implementation=implementation)
    model.diffgates_family = spec["kind"]  # why: two families may build look-alike structures
    return model


def model_spec(model: torch.nn.Module, input_shape=None) -> dict[str, Any]:
    """The spec of a model of any registered family (inverse of ``build_model``; DDP wrappers unwrapped)."""
    model = getattr(model, "module", model)
    built_by = getattr(model, "diffgates_family", None)
    if built_by in FAMILIES:
        spec = FAMILIES[built_by].spec_of(model, input_shape)
        if spec is not None:
            return spec
    specs = {name: spec for name, family in FAMILIES.items()
             if (spec := family.spec_of(model, input_shape)) is not None}
    if len(specs) == 1:
        return next(iter(specs.values()))
    mods = [type(m).__name__ for m in model.children()] or [type(model).__name__]
    if specs:
        raise ValueError(f"model_spec: the model structure {mods} fits several model families ({sorted(specs)}); "
                         f"build it with diffgates.families.build_model to say which")
    raise ValueError(f"model_spec: unsupported model structure {mods}; no model family ({sorted(FAMILIES)}) "
                     f"recognises it")


def family_of_model(model: torch.nn.Module) -> ModelFamily:
    """The family of a built model."""
    return FAMILIES[model_spec(model)["kind"]]


__all__ = ["FAMILIES", "ModelFamily", "Option", "register_family", "get_family", "validate_spec", "build_model",
           "model_spec", "family_of_model", "logic_spec", "mlp_spec", "binary_spec", "accuracy_counts", "SPEC_FORMAT", "SPEC_VERSION"]

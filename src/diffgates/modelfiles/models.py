"""Saved models: ``stem.safetensors`` (weights + description) and ``stem.json`` (the same description).

The safetensors file holds the ``state_dict`` (for logic nets: gate logits *and* connections) and,
in its metadata entry ``"diffgates"``, the JSON description: format, architecture spec (any
registered family, ``diffgates.families``), training config, the dataset's ``input_layout``, step,
metrics. It is the authority (one atomic write holds weights and description together); the
``.json`` beside it is the human-readable copy. A run folder written by ``diffgates train`` holds
``model.*`` (last) and ``best.*`` (best by validation).

Example::

    save_model(model, "runs/x/model", spec=spec, config=cfg.to_dict(), input_layout=ds.input_layout, step=100)
    model = load_model("runs/x")                 # last model, eval mode, on the CPU
    model = load_model("runs/x/best.json")       # best model
    model.diffgates_input_layout, model.diffgates_config
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from .._atomic import atomic_write
from ..families import build_model, validate_spec
from .tensors import TensorFileError, read_metadata, read_tensors, write_tensors

MODEL_FORMAT = "diffgates.model"
FORMAT_VERSION = 1
META_KEY = "diffgates"  # the metadata entry that holds our JSON description
WHICH = {"last": "model", "best": "best"}


class ModelFileError(ValueError):
    """A model file is missing, corrupt, foreign, or does not fit the model it is loaded into."""


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` via a temp file and ``os.replace``."""
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=1, allow_nan=False)
        f.write("\n")


def read_description(path: Path, expected_format: str, error: type[ModelFileError] = ModelFileError) -> dict[str, Any]:
    """The JSON description in a safetensors file's metadata; ``error`` when it is foreign or corrupt."""
    try:
        metadata = read_metadata(path)
    except TensorFileError as exc:
        raise error(str(exc)) from None
    if META_KEY not in metadata:
        raise error(f"{path}: a safetensors file without diffgates metadata (keys {sorted(metadata)}): not "
                    f"written by diffgates, cannot tell its architecture")
    try:
        info = json.loads(metadata[META_KEY])
    except json.JSONDecodeError as exc:
        raise error(f"{path}: corrupt diffgates metadata (invalid JSON: {exc})") from None
    if not isinstance(info, dict) or info.get("format") != expected_format:
        got = info.get("format") if isinstance(info, dict) else type(info).__name__
        raise error(f"{path}: holds a {got!r} file, expected {expected_format!r}")
    if info.get("format_version") != FORMAT_VERSION:
        raise error(f"{path}: format_version {info.get('format_version')!r} is not supported "
                    f"(this diffgates reads version {FORMAT_VERSION})")
    return info


def load_tensors(path: Path, error: type[ModelFileError] = ModelFileError) -> dict[str, torch.Tensor]:
    try:
        tensors, _ = read_tensors(path)
    except TensorFileError as exc:
        raise error(str(exc)) from None
    return tensors


def save_model(model: torch.nn.Module, stem: str | os.PathLike, *, spec: dict[str, Any], config: dict[str, Any],
               input_layout: Any, step: int, metrics: dict[str, Any] | None = None) -> Path:
    """Write ``stem.safetensors`` and ``stem.json`` for ``model`` atomically.

    Args:
        model: the model (a DDP wrapper is unwrapped); its ``state_dict`` is saved.
        stem: path without suffix, e.g. ``run_dir / "model"``.
        spec: the architecture spec (``diffgates.families.model_spec``).
        config: the run's TrainConfig as a dict.
        input_layout: the dataset's JSON-able input bit layout (used by circuit exporters).
        step: optimizer steps done.
        metrics: the evaluation record of this model.

    Returns:
        The path of the ``.safetensors`` file.
    """
    stem = Path(stem)
    model = getattr(model, "module", model)
    info = {"format": MODEL_FORMAT, "format_version": FORMAT_VERSION, "diffgates_version": __version__,
            "save_id": uuid.uuid4().hex, "step": int(step), "architecture": spec, "config": config,
            "input_layout": input_layout, "metrics": metrics or {}}
    text = json.dumps(info, allow_nan=False)
    target = stem.with_suffix(".safetensors")
    write_tensors(target, model.state_dict(), {META_KEY: text})
    write_json_atomic(stem.with_suffix(".json"), info)
    return target


def resolve_model_path(path: str | os.PathLike, which: str = "last") -> Path:
    """The ``.safetensors`` file meant by ``path``: a run dir (``which`` = last/best), a ``.json`` or a file.

    Raises:
        ModelFileError: nothing loadable there (the message says what was looked for).
    """
    if which not in WHICH:
        raise ModelFileError(f"which={which!r} is not known; expected one of {sorted(WHICH)}")
    path = Path(path)
    if path.is_dir():
        target = path / f"{WHICH[which]}.safetensors"
        if not target.exists():
            have = sorted(p.name for p in path.glob("*.safetensors"))
            raise ModelFileError(f"{path} has no {target.name} (a `diffgates train --out` folder holds "
                                 f"model.safetensors and best.safetensors; found {have or 'no .safetensors files'})")
        return target
    if path.suffix == ".json":
        try:
            info = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelFileError(f"{path}: no such file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"{path}: not a diffgates model description (invalid JSON: {exc})") from None
        if not isinstance(info, dict) or info.get("format") != MODEL_FORMAT:
            got = info.get("format") if isinstance(info, dict) else type(info).__name__
            raise ModelFileError(f"{path}: format is {got!r}, expected {MODEL_FORMAT!r} (a model.json or "
                                 f"best.json written by diffgates train)")
        target = path.with_suffix(".safetensors")
        if not target.exists():
            raise ModelFileError(f"{path} describes a model but its weights {target.name} are missing beside it")
        return target
    if not path.exists():
        raise ModelFileError(f"{path}: no such file or folder")
    return path


def load_model(path: str | os.PathLike, which: str = "last", device: str | torch.device = "cpu",
               implementation: str | None = None) -> torch.nn.Module:
    """Load a model saved by ``diffgates train`` in eval mode.

    Args:
        path: a run directory, a ``.safetensors`` model file, or its ``.json`` description.
        which: for a run directory, ``"last"`` (model.safetensors) or ``"best"`` (best.safetensors).
        device: where the parameters go.
        implementation: LogicLayer kernel to use (None: fused for the device).

    Returns:
        The model in eval mode, with ``diffgates_input_layout`` (the dataset's input layout),
        ``diffgates_config`` (the TrainConfig dict), ``diffgates_spec`` and ``diffgates_info`` (the
        whole description: step, metrics, ...) attached.

    Raises:
        ModelFileError: missing, corrupt or foreign files, or weights that do not fit the architecture.
    """
    target = resolve_model_path(path, which)
    info = read_description(target, MODEL_FORMAT)
    try:
        spec = validate_spec(info.get("architecture"), where=f"{target}: architecture")
    except ValueError as exc:
        raise ModelFileError(str(exc)) from None
    tensors = load_tensors(target)
    with torch.random.fork_rng(devices=[]):  # why: building draws random init we overwrite; keep caller's RNG
        model = build_model(spec, device="cpu", implementation=implementation)
    load_state(model, tensors, target)
    model = model.to(device).eval()
    model.diffgates_input_layout = info.get("input_layout")
    model.diffgates_config = info.get("config")
    model.diffgates_spec = spec
    model.diffgates_info = info
    return model


def load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], where: Path,
               error: type[ModelFileError] = ModelFileError) -> None:
    """load_state_dict(strict) with errors that name the file and the mismatching keys/shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise error(f"{where}: tensors do not match the architecture: missing {missing[:8]}, "
                    f"unexpected {extra[:8]}")
    for key, value in expected.items():
        if tensors[key].shape != value.shape or tensors[key].dtype != value.dtype:
            raise error(f"{where}: tensor {key!r} is {tensors[key].dtype} {tuple(tensors[key].shape)}, "
                        f"the architecture expects {value.dtype} {tuple(value.shape)}")
    try:
        model.load_state_dict(tensors, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise error(f"{where}: {exc}") from None

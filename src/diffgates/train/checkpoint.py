"""Run files of ``diffgates train``: saved models (last and best) and resumable training checkpoints.

A run directory holds:

* ``model.safetensors`` + ``model.json``: the last evaluated model; ``best.safetensors`` + ``best.json``:
  the model with the best validation accuracy of the discrete network. The safetensors file holds the
  ``state_dict`` (LogicLayer logits *and* connections) and, in its ``__metadata__["diffgates"]``, the
  same JSON as the ``.json`` file beside it: format, architecture spec, config, the dataset's
  ``input_layout``, step, metrics. The safetensors file is the authority (one atomic write holds
  weights and description together); the ``.json`` is the human-readable copy.
* ``checkpoint.safetensors`` + ``checkpoint.json``: everything needed to continue training exactly:
  model, Adam state tensors, step, RNG states (torch CPU/CUDA, numpy, python ``random``) and the
  trainer's state (metrics so far, running sums, best). The data order is a pure function of
  (seed, step) (see ``trainer.batch_indices``), so the step restores the position in the data stream.

All files are written atomically (temp file + ``os.replace``). Nothing here unpickles anything:
tensors come from safetensors, everything else from JSON.

Example::

    model = load_model("runs/mnist")                 # last model, eval mode, on CPU
    model = load_model("runs/mnist/best.json")       # best model
    model.diffgates_input_layout, model.diffgates_config
"""
from __future__ import annotations

import json
import os
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from .._atomic import atomic_write
from ..safetensors_io import SafetensorsError, load_file, read_header, save_file
from .model_spec import build_model, validate_spec

MODEL_FORMAT = "diffgates.model"
CHECKPOINT_FORMAT = "diffgates.train_checkpoint"
FORMAT_VERSION = 1
META_KEY = "diffgates"  # the __metadata__ entry that holds our JSON description
WHICH = {"last": "model", "best": "best"}


class CheckpointError(ValueError):
    """A run file is missing, corrupt, foreign, or does not fit the model or config it is loaded into."""


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` via a temp file and ``os.replace``."""
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=1, allow_nan=False)
        f.write("\n")


def _read_description(path: Path, expected_format: str) -> dict[str, Any]:
    """The JSON description stored in a safetensors file's metadata; CheckpointError when foreign."""
    try:
        _, metadata = read_header(path)
    except SafetensorsError as exc:
        raise CheckpointError(str(exc)) from None
    if META_KEY not in metadata:
        raise CheckpointError(f"{path}: a safetensors file without diffgates metadata (keys "
                              f"{sorted(metadata)}): not written by diffgates, cannot tell its architecture")
    try:
        info = json.loads(metadata[META_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt diffgates metadata (invalid JSON: {exc})") from None
    if not isinstance(info, dict) or info.get("format") != expected_format:
        got = info.get("format") if isinstance(info, dict) else type(info).__name__
        raise CheckpointError(f"{path}: holds a {got!r} file, expected {expected_format!r}")
    if info.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {info.get('format_version')!r} is not supported "
                              f"(this diffgates reads version {FORMAT_VERSION})")
    return info


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        tensors, _ = load_file(path)
    except SafetensorsError as exc:
        raise CheckpointError(str(exc)) from None
    return tensors


# ----------------------------------------------------------------------------------------------------
# Saved models (model.* and best.*)
# ----------------------------------------------------------------------------------------------------

def save_model(model: torch.nn.Module, stem: str | os.PathLike, *, spec: dict[str, Any], config: dict[str, Any],
               input_layout: Any, step: int, metrics: dict[str, Any] | None = None) -> Path:
    """Write ``stem.safetensors`` and ``stem.json`` for ``model`` atomically.

    Args:
        model: the model (a DDP wrapper is unwrapped); its ``state_dict`` is saved.
        stem: path without suffix, e.g. ``run_dir / "model"``.
        spec: the architecture spec (``model_spec.model_spec``).
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
    tensors = {k: v.detach() for k, v in model.state_dict().items()}
    target = stem.with_suffix(".safetensors")
    save_file(tensors, target, metadata={META_KEY: text})
    write_json_atomic(stem.with_suffix(".json"), info)
    return target


def resolve_model_path(path: str | os.PathLike, which: str = "last") -> Path:
    """The ``.safetensors`` file meant by ``path``: a run dir (``which`` = last/best), a ``.json`` or a file.

    Raises:
        CheckpointError: nothing loadable there (the message says what was looked for).
    """
    if which not in WHICH:
        raise CheckpointError(f"which={which!r} is not known; expected one of {sorted(WHICH)}")
    path = Path(path)
    if path.is_dir():
        target = path / f"{WHICH[which]}.safetensors"
        if not target.exists():
            have = sorted(p.name for p in path.glob("*.safetensors"))
            raise CheckpointError(f"{path} has no {target.name} (a `diffgates train --out` folder holds "
                                  f"model.safetensors and best.safetensors; found {have or 'no .safetensors files'})")
        return target
    if path.suffix == ".json":
        try:
            info = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no such file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: not a diffgates model description (invalid JSON: {exc})") from None
        if not isinstance(info, dict) or info.get("format") != MODEL_FORMAT:
            got = info.get("format") if isinstance(info, dict) else type(info).__name__
            raise CheckpointError(f"{path}: format is {got!r}, expected {MODEL_FORMAT!r} (a model.json or "
                                  f"best.json written by diffgates train)")
        target = path.with_suffix(".safetensors")
        if not target.exists():
            raise CheckpointError(f"{path} describes a model but its weights {target.name} are missing beside it")
        return target
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
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
        ``torch.nn.Sequential`` in eval mode, with ``diffgates_input_layout`` (the dataset's input
        layout), ``diffgates_config`` (the TrainConfig dict), ``diffgates_spec`` and
        ``diffgates_info`` (the whole description: step, metrics, ...) attached.

    Raises:
        CheckpointError: missing, corrupt or foreign files, or weights that do not fit the architecture.
    """
    target = resolve_model_path(path, which)
    info = _read_description(target, MODEL_FORMAT)
    try:
        spec = validate_spec(info.get("architecture"), where=f"{target}: architecture")
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    tensors = _load_tensors(target)
    with torch.random.fork_rng(devices=[]):  # why: building draws random init we overwrite; keep caller's RNG
        model = build_model(spec, device="cpu", implementation=implementation)
    _load_state(model, tensors, target)
    model = model.to(device).eval()
    model.diffgates_input_layout = info.get("input_layout")
    model.diffgates_config = info.get("config")
    model.diffgates_spec = spec
    model.diffgates_info = info
    return model


def _load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], where: Path) -> None:
    """load_state_dict(strict) with errors that name the file and the mismatching keys/shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{where}: tensors do not match the architecture: missing {missing[:8]}, "
                              f"unexpected {extra[:8]}")
    for key, value in expected.items():
        if tensors[key].shape != value.shape or tensors[key].dtype != value.dtype:
            raise CheckpointError(f"{where}: tensor {key!r} is {tensors[key].dtype} {tuple(tensors[key].shape)}, "
                                  f"the architecture expects {value.dtype} {tuple(value.shape)}")
    try:
        model.load_state_dict(tensors, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{where}: {exc}") from None


# ----------------------------------------------------------------------------------------------------
# RNG states
# ----------------------------------------------------------------------------------------------------

def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON) of the torch CPU/CUDA, numpy and python ``random`` global RNG states."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["rng.numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    tensors["rng.python"] = torch.tensor(internal, dtype=torch.int64)
    meta = {"numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
            "python": {"version": version, "gauss_next": gauss_next}}
    return tensors, meta


def restore_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state``."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda][: torch.cuda.device_count()])
    np_meta = meta["numpy"]
    np.random.set_state((np_meta["kind"], tensors["rng.numpy_keys"].numpy().astype(np.uint32), np_meta["pos"],
                         np_meta["has_gauss"], np_meta["cached_gaussian"]))
    py = meta["python"]
    random.setstate((py["version"], tuple(int(v) for v in tensors["rng.python"].tolist()), py["gauss_next"]))


# ----------------------------------------------------------------------------------------------------
# Resumable training checkpoints
# ----------------------------------------------------------------------------------------------------

@dataclass
class TrainingCheckpoint:
    """What ``load_training_checkpoint`` returns."""
    step: int
    config: dict[str, Any]
    state: dict[str, Any]          # trainer state (metrics so far, running sums, best, elapsed, ...)
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]  # a torch optimizer state_dict
    rng_tensors: dict[str, torch.Tensor]
    rng_meta: dict[str, Any]


def checkpoint_paths(run_dir: str | os.PathLike) -> tuple[Path, Path]:
    run_dir = Path(run_dir)
    return run_dir / "checkpoint.safetensors", run_dir / "checkpoint.json"


def save_training_checkpoint(run_dir: str | os.PathLike, model: torch.nn.Module,
                             optimizer: torch.optim.Optimizer, *, step: int, config: dict[str, Any],
                             state: dict[str, Any]) -> Path:
    """Write ``checkpoint.safetensors`` (+ readable ``checkpoint.json``) atomically.

    Args:
        run_dir: the run directory.
        model: the model (DDP wrapper unwrapped).
        optimizer: its optimizer; tensor entries of its state go to safetensors, the rest to JSON.
        step: optimizer steps done.
        config: TrainConfig dict.
        state: JSON-able trainer state.

    Returns:
        Path of ``checkpoint.safetensors``.
    """
    model = getattr(model, "module", model)
    tensors = {f"model.{k}": v.detach() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    opt_json: dict[str, Any] = {"param_groups": opt["param_groups"], "state": {}}
    for pid, entries in opt["state"].items():
        opt_json["state"][str(pid)] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value.detach()
                opt_json["state"][str(pid)][key] = {"tensor": f"optim.{pid}.{key}"}
            else:
                opt_json["state"][str(pid)][key] = {"value": value}
    rng_tensors, rng_meta = capture_rng_state()
    tensors.update(rng_tensors)
    info = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION, "diffgates_version": __version__,
            "step": int(step), "config": config, "optimizer": opt_json, "rng": rng_meta, "state": state}
    text = json.dumps(info, allow_nan=False)
    target, readable = checkpoint_paths(run_dir)
    save_file(tensors, target, metadata={META_KEY: text})
    write_json_atomic(readable, info)
    return target


def read_checkpoint_info(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON description of ``run_dir``'s training checkpoint, or None when there is none."""
    target, _ = checkpoint_paths(run_dir)
    if not target.exists():
        return None
    return _read_description(target, CHECKPOINT_FORMAT)


def load_training_checkpoint(run_dir: str | os.PathLike) -> TrainingCheckpoint | None:
    """Read ``run_dir/checkpoint.safetensors``; None when the run has no checkpoint yet.

    Raises:
        CheckpointError: corrupt, foreign or incomplete checkpoint (message names the file and problem).
    """
    target, _ = checkpoint_paths(run_dir)
    info = read_checkpoint_info(run_dir)
    if info is None:
        return None
    tensors = _load_tensors(target)
    try:
        model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        opt_json = info["optimizer"]
        opt_state: dict[int, dict[str, Any]] = {}
        for pid, entries in opt_json["state"].items():
            opt_state[int(pid)] = {key: tensors[e["tensor"]] if "tensor" in e else e["value"]
                                   for key, e in entries.items()}
        rng_tensors = {k: v for k, v in tensors.items() if k.startswith("rng.")}
        for key in ("rng.torch", "rng.numpy_keys", "rng.python"):
            if key not in rng_tensors:
                raise KeyError(key)
        groups = [dict(g) for g in opt_json["param_groups"]]
        for group in groups:
            if isinstance(group.get("betas"), list):
                group["betas"] = tuple(group["betas"])  # why: JSON turned Adam's tuple into a list
        return TrainingCheckpoint(step=int(info["step"]), config=info["config"], state=info["state"],
                                  model_state=model_state,
                                  optimizer_state={"state": opt_state, "param_groups": groups},
                                  rng_tensors=rng_tensors, rng_meta=info["rng"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{target}: incomplete or corrupt training checkpoint (missing or bad entry "
                              f"{exc}); delete it to start over") from None


def restore_training_checkpoint(ckpt: TrainingCheckpoint, model: torch.nn.Module,
                                optimizer: torch.optim.Optimizer, where: str | os.PathLike = "checkpoint") -> None:
    """Load a checkpoint's model, optimizer and RNG states into live objects."""
    _load_state(getattr(model, "module", model), ckpt.model_state, Path(where))
    try:
        optimizer.load_state_dict(ckpt.optimizer_state)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: optimizer state does not fit this model: {exc}") from None
    restore_rng_state(ckpt.rng_tensors, ckpt.rng_meta)

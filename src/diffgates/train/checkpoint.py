"""Resumable training checkpoints of ``diffgates train``: model, Adam state, RNG states, trainer state.

``checkpoint.safetensors`` + ``checkpoint.json`` in a run folder hold everything needed to continue
training exactly: model, Adam state tensors, step, RNG states (torch CPU/CUDA, numpy, python
``random``) and the trainer's state (metrics so far, running sums, best). The data order is a pure
function of (seed, step) (see ``trainer.DataOrder``), so the step restores the position in the data
stream. The saved models beside them (``model.*``, ``best.*``) are ``diffgates.modelfiles``.

All files are written atomically (temp file + ``os.replace``). Nothing here unpickles anything:
tensors come from safetensors, everything else from JSON. Example::

    save_training_checkpoint(run_dir, model, optimizer, step=100, config=cfg.to_dict(), state=state)
    ckpt = load_training_checkpoint(run_dir)          # None when the run has none yet
    cfg = saved_config(run_dir, ckpt.config)          # the TrainConfig it was trained with
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..modelfiles import (FORMAT_VERSION, META_KEY, ModelFileError, load_state, read_description, write_json_atomic,
                          write_tensors)
from ..modelfiles.models import load_tensors
from .config import TrainConfig

CHECKPOINT_FORMAT = "diffgates.train_checkpoint"


class CheckpointError(ModelFileError):
    """A run file is missing, corrupt, foreign, or does not fit the model or config it is loaded into."""


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
    write_tensors(target, tensors, {META_KEY: text})
    write_json_atomic(readable, info)
    return target


def read_checkpoint_info(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON description of ``run_dir``'s training checkpoint, or None when there is none."""
    target, _ = checkpoint_paths(run_dir)
    if not target.exists():
        return None
    return read_description(target, CHECKPOINT_FORMAT, CheckpointError)


def saved_config(run_dir: str | os.PathLike, config: Any) -> TrainConfig:
    """The TrainConfig of ``run_dir``'s checkpoint from its saved ``config`` dict; CheckpointError if it is none."""
    try:
        return TrainConfig.from_dict(config, where=f"{checkpoint_paths(run_dir)[0]} config")
    except (TypeError, ValueError) as exc:
        raise CheckpointError(str(exc)) from None


def load_training_checkpoint(run_dir: str | os.PathLike) -> TrainingCheckpoint | None:
    """Read ``run_dir/checkpoint.safetensors``; None when the run has no checkpoint yet.

    Raises:
        CheckpointError: corrupt, foreign or incomplete checkpoint (message names the file and problem).
    """
    target, _ = checkpoint_paths(run_dir)
    info = read_checkpoint_info(run_dir)
    if info is None:
        return None
    tensors = load_tensors(target, CheckpointError)
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
    load_state(getattr(model, "module", model), ckpt.model_state, Path(where), CheckpointError)
    try:
        optimizer.load_state_dict(ckpt.optimizer_state)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: optimizer state does not fit this model: {exc}") from None
    restore_rng_state(ckpt.rng_tensors, ckpt.rng_meta)

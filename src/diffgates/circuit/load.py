"""Load a Circuit from whatever a user points at: a circuit JSON, a training run, or its weights file.

``load_circuit(path)`` is what every circuit consumer (``diffgates circuit``, ``diffgates export``,
the engines) calls on a user-given path:

* a circuit JSON file (``Circuit.save`` / ``diffgates circuit --out``);
* a run directory written by ``diffgates train`` (its last model), or a model file of one
  (``model.safetensors``, ``best.safetensors`` or the ``.json`` description beside it): the model is
  rebuilt with ``diffgates.train.checkpoint.load_model`` and extracted with ``to_circuit``, keeping the
  dataset's input bit layout (``model.diffgates_input_layout``) as the circuit's ``input_layout``.

Pickled PyTorch files (``.pt``/``.pth``/``.ckpt``) are refused: unpickling runs arbitrary code.
Example::

    from diffgates.circuit.load import load_circuit
    circuit = load_circuit("runs/mnist")          # extracted and simplified
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

from .ir import FORMAT_NAME, Circuit, CircuitFormatError

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")
_ACCEPTED = ("a circuit JSON file (diffgates circuit --out), a run directory written by diffgates train, "
             "or one of its model files (model.safetensors / model.json)")
MODEL_FORMAT = "diffgates.model"  # format tag of the model.json files of diffgates.train.checkpoint


def _circuit_of_model(path: Path) -> Circuit:
    try:
        checkpoint = importlib.import_module("diffgates.train.checkpoint")
    except ImportError as exc:  # the trainer is an optional part of an install
        raise CircuitFormatError(f"{path} is a trained model, but loading models needs "
                                 f"diffgates.train.checkpoint, which is not available here ({exc})") from exc
    from .extract import to_circuit  # torch is only needed on this branch

    model = checkpoint.load_model(path)
    circuit = to_circuit(model, input_layout=getattr(model, "diffgates_input_layout", None))
    circuit.meta["model_path"] = str(path)
    return circuit


def load_circuit(path: str | os.PathLike, simplify: bool = True) -> Circuit:
    """Load or extract the circuit stored at ``path``.

    Args:
        path: a circuit JSON file, a ``diffgates train`` run directory, or a model file of one
            (``.safetensors``, or the model ``.json`` beside it).
        simplify: run ``passes.simplify`` on the result (harmless on an already simplified circuit).

    Returns:
        The Circuit (extracted from the model for run directories and weights files).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CircuitFormatError: the file is not one of the accepted kinds, or is corrupt.
        ValueError: from the trainer's ``load_model`` (``CheckpointError``) for a broken model file, or
            from ``to_circuit`` (``ExtractionError``) for a model that is not a logic network.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; expected {_ACCEPTED}")
    if path.is_dir() or path.suffix == ".safetensors":
        circuit = _circuit_of_model(path)
    elif path.suffix.lower() in PICKLE_SUFFIXES:
        raise CircuitFormatError(f"{path} looks like a pickled PyTorch file ({path.suffix}); diffgates never "
                                 f"unpickles files (unpickling can run arbitrary code). Expected {_ACCEPTED}")
    else:
        try:
            data = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CircuitFormatError(f"{path} is not a JSON file ({exc}); expected {_ACCEPTED}") from exc
        if isinstance(data, dict) and data.get("format") == MODEL_FORMAT:
            return _finish(_circuit_of_model(path), simplify)
        if not (isinstance(data, dict) and data.get("format") == FORMAT_NAME):
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise CircuitFormatError(f"{path} is JSON but not a diffgates circuit (format={found!r}); "
                                     f"expected {_ACCEPTED}")
        circuit = Circuit.from_dict(data, source=str(path))
    return _finish(circuit, simplify)


def _finish(circuit: Circuit, simplify: bool) -> Circuit:
    if not simplify:
        return circuit
    from .passes import simplify as run_passes

    return run_passes(circuit)

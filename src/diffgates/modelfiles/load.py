"""Load a Circuit from whatever a user points at: a circuit file, a training run, or its model file.

``load_circuit(path)`` is what every circuit consumer (``diffgates circuit``, ``diffgates export``,
``diffgates compile``, ``verify-verilog``) calls on a user-given path:

* a circuit file (``Circuit.save`` / ``diffgates circuit --out``): JSON, or the safetensors container
  for large circuits (told apart from a model file by its metadata, not its name);
* a run directory written by ``diffgates train`` (its last model), or a model file of one
  (``model.safetensors``, ``best.safetensors`` or the ``.json`` description beside it): the model is
  rebuilt (``models.load_model``) and deployed by its family (``diffgates.families``: a logic net
  extracts with ``diffgates.frontend.to_circuit``), keeping the dataset's input bit layout.

Pickled PyTorch files (``.pt``/``.pth``/``.ckpt``) are refused: unpickling runs arbitrary code.
Example::

    from diffgates.modelfiles import load_circuit
    circuit = load_circuit("runs/mnist")          # extracted and simplified
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..families import get_family
from ..ir import Circuit, CircuitFormatError
from ..ir import simplify as simplify_circuit
from ..ir.serialize import FORMAT_NAME, sniff
from .models import META_KEY, MODEL_FORMAT, load_model
from .tensors import TensorFileError, read_metadata

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")
_ACCEPTED = ("a circuit file (diffgates circuit --out: JSON or .safetensors), a run directory written by "
             "diffgates train, or one of its model files (model.safetensors / model.json)")


def _circuit_of_model(path: Path) -> Circuit:
    model = load_model(path)
    family = get_family(model.diffgates_spec["kind"])
    circuit = family.deploy(model, input_layout=getattr(model, "diffgates_input_layout", None))
    if circuit is None:
        raise CircuitFormatError(f"{path} is a {family.name!r} model ({family.description}): it has no circuit "
                                 f"form to extract")
    circuit.meta["model_path"] = str(path)
    return circuit


def _kind_of_safetensors(path: Path) -> str:
    """'circuit' or 'model' from a safetensors file's metadata."""
    try:
        metadata = read_metadata(path)
    except TensorFileError as exc:
        raise CircuitFormatError(str(exc)) from None
    if metadata.get("format") == FORMAT_NAME:
        return "circuit"
    if META_KEY in metadata:
        return "model"
    raise CircuitFormatError(f"{path} is a safetensors file of neither a diffgates circuit nor a model (metadata "
                             f"keys {sorted(metadata)}); expected {_ACCEPTED}")


def load_circuit(path: str | os.PathLike, simplify: bool = True) -> Circuit:
    """Load or extract the circuit stored at ``path``.

    Args:
        path: a circuit file, a ``diffgates train`` run directory, or a model file of one.
        simplify: run ``diffgates.ir.simplify`` on the result (harmless on an already simplified circuit).

    Returns:
        The Circuit (extracted from the model for run directories and model files).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CircuitFormatError: the file is not one of the accepted kinds, or is corrupt.
        ValueError: from ``load_model`` (``ModelFileError``) for a broken model file, or from
            ``to_circuit`` (``ExtractionError``) for a model that is not a logic network.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; expected {_ACCEPTED}")
    if path.is_dir():
        circuit = _circuit_of_model(path)
    elif path.suffix.lower() in PICKLE_SUFFIXES:
        raise CircuitFormatError(f"{path} looks like a pickled PyTorch file ({path.suffix}); diffgates never "
                                 f"unpickles files (unpickling can run arbitrary code). Expected {_ACCEPTED}")
    else:
        kind = sniff(path)
        if kind == "safetensors":
            circuit = Circuit.load(path) if _kind_of_safetensors(path) == "circuit" else _circuit_of_model(path)
        elif kind == "json":
            try:
                data = json.loads(path.read_bytes())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise CircuitFormatError(f"{path} is not a JSON file ({exc}); expected {_ACCEPTED}") from exc
            if isinstance(data, dict) and data.get("format") == MODEL_FORMAT:
                circuit = _circuit_of_model(path)
            elif isinstance(data, dict) and data.get("format") == FORMAT_NAME:
                circuit = Circuit.from_dict(data, source=str(path))
            else:
                found = data.get("format") if isinstance(data, dict) else type(data).__name__
                raise CircuitFormatError(f"{path} is JSON but not a diffgates circuit (format={found!r}); "
                                         f"expected {_ACCEPTED}")
        else:
            raise CircuitFormatError(f"{path} is neither JSON nor a safetensors file; expected {_ACCEPTED}")
    return simplify_circuit(circuit) if simplify else circuit

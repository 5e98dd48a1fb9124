"""Model files: saved models, circuits from run folders, and the safetensors tensor files under both.

* ``tensors``: ``write_tensors`` / ``read_tensors`` / ``read_metadata`` through the ``safetensors``
  package, atomic, with errors naming the file (``TensorFileError``);
* ``models``: ``save_model`` / ``load_model`` / ``resolve_model_path`` (``model.*`` and ``best.*`` of a
  run folder; ``ModelFileError``);
* ``load``: ``load_circuit(path)`` for a circuit file, a run folder or a model file.

The training checkpoints (optimizer and RNG state) build on these in ``diffgates.train.checkpoint``.
"""
from .load import PICKLE_SUFFIXES, load_circuit
from .models import (FORMAT_VERSION, META_KEY, MODEL_FORMAT, WHICH, ModelFileError, load_model, load_state,
                     read_description, resolve_model_path, save_model, write_json_atomic)
from .tensors import TensorFileError, read_metadata, read_tensors, write_tensors

__all__ = ["load_circuit", "load_model", "save_model", "resolve_model_path", "read_description", "load_state",
           "write_json_atomic", "ModelFileError", "TensorFileError", "read_tensors", "write_tensors",
           "read_metadata", "MODEL_FORMAT", "FORMAT_VERSION", "META_KEY", "WHICH", "PICKLE_SUFFIXES"]

"""Circuits: the IR (``ir``), extraction from models (``extract``), simplification (``passes``) and
the numpy reference evaluator (``evaluate``)."""
from .evaluate import as_input_bits, evaluate_outputs, group_counts, predict
from .ir import Circuit, CircuitFormatError

__all__ = ["Circuit", "CircuitFormatError", "as_input_bits", "evaluate_outputs", "group_counts", "predict"]

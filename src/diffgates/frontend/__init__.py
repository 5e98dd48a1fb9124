"""The front end: trained torch models -> the Circuit IR, through a registry of extractors per module type.

``to_circuit(model)`` is the entry point (also ``diffgates.to_circuit``); a new layer kind registers
``register_extractor(ModuleType, fn)`` instead of editing an if-chain. See ``extract``.
"""
from .extract import EXTRACTORS, CircuitBuilder, ExtractionError, find_extractor, register_extractor, to_circuit
from . import binary  # noqa: E402,F401  (registers the binary-network extractors)
from .binary import fold_block, to_xnor_program

__all__ = ["to_circuit", "to_xnor_program", "fold_block", "register_extractor", "find_extractor", "CircuitBuilder", "ExtractionError", "EXTRACTORS"]

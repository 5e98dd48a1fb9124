"""Optimizers for quantized networks: ``AskewSGD`` (annealed interval-constrained SGD for binary weights)."""
from .askew_sgd import AskewSGD

__all__ = ["AskewSGD"]

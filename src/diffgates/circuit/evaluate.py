"""Reference evaluator of a Circuit in numpy: truth-table lookups, level by level, bit for bit.

This is the executable semantics of the IR: every engine (C, GPU, Verilog simulation) is tested
against ``evaluate_outputs`` / ``group_counts``. It favours obviousness over speed (it is still
vectorised over the batch and over all gates of one logic level).

``as_input_bits`` is the one input check every circuit backend uses: it accepts (N, n_inputs)
bool, integer or float data (numpy or torch) holding only 0 and 1, and raises a ValueError naming
the offending value and position otherwise.
"""
from __future__ import annotations

import numpy as np

from .. import gates
from .ir import Circuit


def as_input_bits(x, n_inputs: int) -> np.ndarray:
    """(N, n_inputs) array of 0/1 values (numpy or torch, any real dtype) -> contiguous bool array."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 1 and n_inputs == x.shape[0]:
        raise ValueError(f"expected a batch of shape (N, {n_inputs}), got a single row of shape {x.shape}; "
                         f"use x[None, :] for one sample")
    if x.ndim > 2:
        x = x.reshape(x.shape[0], -1)  # images (N, C, H, W) flatten row-major, like torch.nn.Flatten
    if x.ndim != 2 or x.shape[1] != n_inputs or x.shape[0] < 1:
        raise ValueError(f"expected input of shape (N >= 1, {n_inputs}), got shape {x.shape}")
    if x.dtype == np.bool_:
        return np.ascontiguousarray(x)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"expected bool, integer or float input bits, got dtype {x.dtype}")
    bad = (x != 0) & (x != 1)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"circuit inputs must be binary (0 or 1); got {x[r, c].item()!r} at sample {r}, input {c} "
                         f"({int(bad.sum())} non-binary values in total). Binarize first, e.g. with "
                         f"Dataset.encode(x, binary=True)")
    return np.ascontiguousarray(x == 1)


def evaluate_outputs(circuit: Circuit, x, chunk: int = 1024) -> np.ndarray:
    """(N, n_inputs) bits -> (N, n_outputs) bool values of the output nodes."""
    bits = as_input_bits(x, circuit.n_inputs)
    groups = circuit.level_groups()
    out = np.empty((bits.shape[0], circuit.n_outputs), dtype=bool)
    for start in range(0, bits.shape[0], chunk):  # chunks bound memory to chunk * n_nodes bytes
        rows = bits[start:start + chunk]
        nodes = np.empty((rows.shape[0], circuit.n_nodes), dtype=bool)
        nodes[:, :circuit.n_inputs] = rows
        for idx in groups:
            nodes[:, circuit.n_inputs + idx] = gates.evaluate_bits(
                circuit.ops[idx][None, :], nodes[:, circuit.a[idx]], nodes[:, circuit.b[idx]])
        out[start:start + chunk] = nodes[:, circuit.outputs]
    return out


def group_counts(circuit: Circuit, x) -> np.ndarray:
    """(N, n_inputs) bits -> (N, num_classes) int32: true outputs per class group."""
    values = evaluate_outputs(circuit, x)
    return values.reshape(values.shape[0], circuit.num_classes, circuit.group_size).sum(-1, dtype=np.int32)


def predict(circuit: Circuit, x) -> np.ndarray:
    """(N,) int64 class with the highest count (ties -> lowest class index, like torch.argmax)."""
    return group_counts(circuit, x).argmax(-1)

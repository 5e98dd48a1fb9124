"""Shared test fixtures for everything that consumes circuits: random models, random circuits, input bits.

Import from any test module (pytest puts ``tests/`` on ``sys.path``)::

    from circuit_cases import random_model, random_circuit, random_bits, all_bits, model_counts

* ``random_model(in_dim, widths, k, tau, seed, connections)``: an eval-mode ``Sequential`` (Flatten,
  LogicLayers with random logits, GroupSum) whose argmax gates include all 16 kinds once it has >= 16
  neurons; ``gate_weights`` skews the gate mix (e.g. towards constants and pass-throughs).
* ``random_circuit(n_inputs, n_gates, n_outputs, k, seed)``: a Circuit with arbitrary topology (long
  and short edges, self pairs, constant / pass-through / NOT gates, outputs on inputs and repeated).
* ``random_cell_circuit(...)``: the same with a share of threshold cells (popcount rows with negated
  and repeated literals, rows shared by several cells, thresholds below 1 and above the row length).
* ``random_bits(n, d, seed)`` / ``all_bits(d)``: (n, d) uint8 {0, 1} inputs, random or exhaustive.
* ``model_counts(model, x)``: the eval model's output times tau as exact int32 counts.

Everything is seeded and leaves torch's global RNG untouched.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from diffgates import gates
from diffgates.ir import Circuit
from diffgates.nn import GroupSum, LogicLayer

# Gates the simplification passes act on: constants, pass-throughs and NOTs.
SIMPLIFIABLE = (gates.FALSE, gates.TRUE, gates.A, gates.B, gates.NOT_A, gates.NOT_B)


def _gate_choices(rng: np.random.Generator, n: int, gate_weights) -> np.ndarray:
    p = None
    if gate_weights is not None:
        p = np.asarray(gate_weights, dtype=float)
        if p.shape != (gates.NUM_GATES,) or (p < 0).any() or p.sum() <= 0:
            raise ValueError(f"gate_weights must be 16 non-negative numbers, not all 0; got {gate_weights!r}")
        p = p / p.sum()
    ids = rng.choice(gates.NUM_GATES, size=n, p=p)
    if n >= gates.NUM_GATES:  # every gate kind at least once, at random positions
        ids[rng.choice(n, size=gates.NUM_GATES, replace=False)] = np.arange(gates.NUM_GATES)
    return ids


def simplifiable_weights(share: float = 0.75) -> np.ndarray:
    """Gate weights giving constant / pass-through / NOT gates ``share`` of the probability."""
    w = np.full(gates.NUM_GATES, (1 - share) / (gates.NUM_GATES - len(SIMPLIFIABLE)))
    w[list(SIMPLIFIABLE)] = share / len(SIMPLIFIABLE)
    return w


def random_model(in_dim: int, widths, k: int, tau: float = 1.0, seed: int = 0, connections: str = "random",
                 gate_weights=None, implementation: str | None = "reference") -> torch.nn.Sequential:
    """An eval-mode logic network with random wiring and random logits.

    Args:
        in_dim: input features (after Flatten).
        widths: out_dim of each LogicLayer; the last must be divisible by k.
        k: classes of the GroupSum head.
        tau: GroupSum temperature.
        seed: fixes connections and logits.
        connections: 'random' or 'unique' (see ``diffgates.nn.connections``).
        gate_weights: optional 16 relative probabilities of each neuron's argmax gate.
        implementation: LogicLayer implementation (default the plain-PyTorch reference).

    Returns:
        ``Sequential(Flatten, LogicLayer..., GroupSum)`` in eval mode, on the CPU.
    """
    widths = [int(w) for w in widths]
    rng = np.random.default_rng(seed)
    ids = _gate_choices(rng, sum(widths), gate_weights)
    layers, dim, start = [], int(in_dim), 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for width in widths:
            layer = LogicLayer(dim, width, connections=connections, implementation=implementation)
            # Random logits with the chosen gate 3 standard deviations ahead: argmax is that gate.
            logits = torch.randn(width, gates.NUM_GATES)
            chosen = torch.as_tensor(ids[start:start + width])
            logits[torch.arange(width), chosen] = logits.max(-1).values + 3.0
            with torch.no_grad():
                layer.weights.copy_(logits)
            layers.append(layer)
            dim, start = width, start + width
    return torch.nn.Sequential(torch.nn.Flatten(), *layers, GroupSum(k, tau)).eval()


def random_circuit(n_inputs: int, n_gates: int, n_outputs: int, k: int = 1, seed: int = 0,
                   tau: float = 1.0, gate_weights=None) -> Circuit:
    """A Circuit with arbitrary topology (not layered), for testing passes and backends.

    Each gate reads two earlier nodes, half the time a recent one (deep chains), otherwise any
    (long edges); 10% read one node twice. Gate kinds are skewed towards constants, pass-throughs and
    NOTs unless ``gate_weights`` is given; all 16 kinds appear once n_gates >= 16. Outputs are any
    nodes (input bits included), possibly repeated.

    Args:
        n_inputs: input bits (>= 1).
        n_gates: gates (>= 0).
        n_outputs: outputs, divisible by k.
        k: classes (equal contiguous output groups).
        seed: fixes everything.
        tau: stored temperature.
        gate_weights: optional 16 relative probabilities of the gate kinds.

    Returns:
        A valid Circuit.
    """
    if n_inputs < 1 or n_gates < 0 or n_outputs < 1 or n_outputs % k:
        raise ValueError(f"random_circuit needs n_inputs >= 1, n_gates >= 0 and n_outputs a positive multiple "
                         f"of k; got n_inputs={n_inputs}, n_gates={n_gates}, n_outputs={n_outputs}, k={k}")
    rng = np.random.default_rng(seed)
    own = n_inputs + np.arange(n_gates)
    recent = np.maximum(own - rng.integers(1, 9, size=(2, n_gates)), 0)
    anywhere = (rng.random((2, n_gates)) * own).astype(np.int64)
    src = np.where(rng.random((2, n_gates)) < 0.5, recent, anywhere)
    same = rng.random(n_gates) < 0.1
    src[1, same] = src[0, same]
    ops = _gate_choices(rng, n_gates, simplifiable_weights(0.5) if gate_weights is None else gate_weights)
    outputs = rng.integers(0, n_inputs + n_gates, size=n_outputs)
    # Bias outputs towards the last gates, as in a real network, without excluding anything.
    late = rng.random(n_outputs) < 0.6
    outputs[late] = n_inputs + n_gates - 1 - rng.integers(0, max(1, n_gates // 4), size=int(late.sum()))
    outputs = np.clip(outputs, 0, n_inputs + n_gates - 1)
    return Circuit(n_inputs=n_inputs, ops=ops, a=src[0], b=src[1], outputs=outputs, num_classes=k, tau=tau,
                   meta={"source": "random_circuit", "seed": seed})


def random_cell_circuit(n_inputs: int, n_gates: int, n_outputs: int, k: int = 1, seed: int = 0,
                        cells: float = 0.25, tau: float = 1.0) -> Circuit:
    """``random_circuit`` with about ``cells`` of its cells turned into threshold cells (see the docstring)."""
    base = random_circuit(n_inputs, n_gates, n_outputs, k=k, seed=seed, tau=tau)
    rng = np.random.default_rng(seed + 7919)
    ops, a, b = base.ops.copy(), base.a.copy(), base.b.copy()
    ptr, lits = [0], []
    for i in range(n_gates):  # a test fixture: per-cell Python is fine here
        if rng.random() >= cells:
            continue
        ops[i] = gates.NUM_GATES  # THRESHOLD
        if len(ptr) > 1 and rng.random() < 0.3:  # share the previous row: it only reads earlier nodes
            a[i], b[i] = len(ptr) - 2, rng.integers(0, 4)
            continue
        nodes = rng.integers(0, n_inputs + i, size=rng.integers(0, 9))
        row = 2 * nodes + rng.integers(0, 2, size=nodes.size)
        if row.size > 2:
            row[-1] = row[0]  # a repeated literal counts twice
        lits += row.tolist()
        ptr.append(len(lits))
        a[i], b[i] = len(ptr) - 2, rng.integers(-1, row.size + 2)
    return Circuit(n_inputs=n_inputs, ops=ops, a=a, b=b, outputs=base.outputs, num_classes=k, tau=tau,
                   popcount_ptr=ptr, popcount_lits=lits, meta={"source": "random_cell_circuit", "seed": seed})


def random_bits(n: int, d: int, seed: int = 0) -> np.ndarray:
    """(n, d) uint8 array of random {0, 1} bits."""
    return np.random.default_rng(seed).integers(0, 2, size=(n, d), dtype=np.uint8)


def all_bits(d: int) -> np.ndarray:
    """(2**d, d) uint8 array of every input vector (row i is i in binary, most significant bit first)."""
    rows = np.arange(2 ** d, dtype=np.int64)[:, None]
    return ((rows >> np.arange(d - 1, -1, -1)) & 1).astype(np.uint8)


def model_counts(model: torch.nn.Module, x) -> np.ndarray:
    """(N, k) int32 group counts of an eval-mode model: round(model(x) * tau), compared exactly."""
    head = [m for m in model.modules() if isinstance(m, GroupSum)][-1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # test models are tiny; on a loaded 2-core machine threads only spin
    try:
        with torch.no_grad():
            out = model(torch.as_tensor(np.asarray(x), dtype=torch.float32))
    finally:
        torch.set_num_threads(threads)
    return torch.round(out * head.tau).to(torch.int32).numpy()


def check_golden(text: str, golden: Path) -> None:
    """Assert ``text`` equals the file ``golden``; with DIFFGATES_UPDATE_GOLDEN=1 (re)write it first."""
    if os.environ.get("DIFFGATES_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"{golden} is missing: regenerate with DIFFGATES_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), (f"{golden.name} differs from {golden}; if intended, "
                                        f"regenerate with DIFFGATES_UPDATE_GOLDEN=1 and review")

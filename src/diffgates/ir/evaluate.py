"""Reference evaluator of a Circuit in numpy: the executable semantics of the IR.

Every engine (C, GPU, Verilog simulation, netlists) is tested against these functions. Each cell is
evaluated straight from its definition, level by level over whole levels at once:

* a gate from its truth table: ``out = OR over the four (a, b) combinations (u, v) with
  TRUTH_TABLES[op, 2u+v] of [a == u and b == v]`` (``diffgates.gates``);
* a threshold cell by counting its popcount row's true literals and comparing with its threshold.

Samples are packed 64 to a ``uint64`` word (sample ``s`` of a chunk is bit ``s % 64`` of word
``s // 64``), so memory stays ``n_nodes * 8`` bytes per 64 samples; the chunk of samples is sized to
keep that near ``MEMORY_BUDGET`` bytes, whatever the circuit's size.

``input_chunks`` (and ``as_input_bits``, the whole batch at once) is the one input check every circuit
backend uses: it accepts (N, n_inputs) bool, integer or float data (numpy or torch) holding only 0 and
1, in bounded memory, and raises a ValueError naming the offending value and position otherwise. Example::

    counts = group_counts(circuit, x_bits)      # (N, num_classes) int32
    bits = evaluate_outputs(circuit, x_bits)    # (N, n_outputs) bool
    result = head_outputs(circuit, x_bits)      # what the head means: counts, classes or bits
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .. import gates
from .analysis import segment_gather
from .circuit import THRESHOLD, Circuit

MEMORY_BUDGET = 256 << 20  # bytes of packed node values per chunk of samples
# MINTERMS[op, k]: all-ones word when gate op is true at (a, b) = k-th of 00, 01, 10, 11.
_MINTERMS = np.where(gates.TRUTH_TABLES, np.uint64(0xFFFFFFFFFFFFFFFF), np.uint64(0))


def _dtype_name(x) -> str:
    return str(x.dtype).removeprefix("torch.")


def _check_dtype(x) -> None:
    name = _dtype_name(x)
    if not (name == "bool" or name.startswith(("int", "uint", "float", "bfloat"))):
        raise ValueError(f"expected bool, integer or float input bits, got dtype {name}")


def input_matrix(x, n_inputs: int):
    """``x`` as an (N, n_inputs) numpy array or CPU torch tensor, checked for shape and dtype, not copied
    (a view where possible: images (N, C, H, W) flatten row-major, like torch.nn.Flatten)."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu()  # why: no copy for a CPU tensor
    else:
        x = np.asarray(x)
    if x.ndim == 1 and n_inputs == x.shape[0]:
        raise ValueError(f"expected a batch of shape (N, {n_inputs}), got a single row of shape {tuple(x.shape)}; "
                         f"use x[None, :] for one sample")
    if x.ndim > 2:
        x = x.reshape(x.shape[0], -1)
    if x.ndim != 2 or x.shape[1] != n_inputs or x.shape[0] < 1:
        raise ValueError(f"expected input of shape (N >= 1, {n_inputs}), got shape {tuple(x.shape)}")
    _check_dtype(x)
    return x


def _rows_as_numpy(rows) -> np.ndarray:
    if hasattr(rows, "detach"):
        if str(rows.dtype) == "torch.bfloat16":  # numpy has no bfloat16: widen (exactly), one chunk at a time
            rows = rows.float()
        rows = rows.numpy()
    return rows


def _non_binary(rows: np.ndarray) -> np.ndarray:
    """Mask of the values that are neither 0 nor 1."""
    if np.issubdtype(rows.dtype, np.unsignedinteger):
        return rows > 1
    bad = rows != 0
    bad &= rows != 1  # in place: one temporary mask less
    return bad


def input_chunks(x, n_inputs: int, rows: int = 1 << 16) -> Iterator[tuple[int, np.ndarray]]:
    """Check (N, n_inputs) 0/1 data and yield ``(start, bits)``: C-contiguous bool arrays of up to ``rows``
    rows each, in order. Temporaries stay within a chunk whatever N is, and bool or 1-byte integer
    input that is already C-contiguous is not copied at all (its bytes are viewed as bool).

    Raises:
        ValueError: a wrong shape or dtype, or a value other than 0 and 1 (named with its position and
        the count of such values in the whole input).
    """
    x = input_matrix(x, n_inputs)
    n = x.shape[0]
    for start in range(0, n, rows):
        chunk = _rows_as_numpy(x[start:start + rows])
        if chunk.dtype == np.bool_:
            yield start, np.ascontiguousarray(chunk)
            continue
        bad = _non_binary(chunk)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            total = int(bad.sum()) + sum(int(_non_binary(_rows_as_numpy(x[s:s + rows])).sum())
                                         for s in range(start + rows, n, rows))
            raise ValueError(f"circuit inputs must be binary (0 or 1); got {chunk[r, c].item()!r} at sample "
                             f"{start + r}, input {c} ({total} non-binary values in total). Binarize first, e.g. "
                             f"with Dataset.encode(x, binary=True)")
        if chunk.itemsize == 1 and chunk.flags.c_contiguous:
            yield start, chunk.view(np.bool_)  # why: 0/1 bytes are bools already: no copy
        else:
            bits = np.empty(chunk.shape, dtype=bool)  # C order, whatever the input's strides
            np.equal(chunk, 1, out=bits)
            yield start, bits


def as_input_bits(x, n_inputs: int) -> np.ndarray:
    """(N, n_inputs) array of 0/1 values (numpy or torch, any real dtype) -> contiguous bool array.

    Checked and converted in row chunks (``input_chunks``), so the temporaries stay bounded; bool input
    is returned as is when contiguous. Engines that can run chunk by chunk use ``input_chunks`` instead
    and never hold a whole bool copy.
    """
    x = input_matrix(x, n_inputs)
    if _dtype_name(x) == "bool" and not hasattr(x, "detach") and x.flags.c_contiguous:
        return x
    out = np.empty(tuple(x.shape), dtype=bool)
    for start, bits in input_chunks(x, n_inputs):
        out[start:start + bits.shape[0]] = bits
    return out


def pack_samples(bits: np.ndarray) -> np.ndarray:
    """(N, D) bool -> (D, ceil(N / 64)) uint64: bit s % 64 of word s // 64 of row d is ``bits[s, d]``."""
    n = bits.shape[0]
    words = -(-n // 64)
    packed = np.packbits(bits.T, axis=1, bitorder="little")
    buf = np.zeros((bits.shape[1], 8 * words), dtype=np.uint8)
    buf[:, :packed.shape[1]] = packed
    return buf.view("<u8").astype(np.uint64, copy=False)


def unpack_samples(words: np.ndarray, n: int) -> np.ndarray:
    """Inverse of ``pack_samples``: (D, W) uint64 -> (n, D) bool."""
    raw = np.ascontiguousarray(words.astype("<u8", copy=False)).view(np.uint8)
    return np.unpackbits(raw, axis=1, count=n, bitorder="little").T.astype(bool)


def _gate_words(op: np.ndarray, va: np.ndarray, vb: np.ndarray) -> np.ndarray:
    """Truth-table evaluation of gates ``op`` on packed operand words (rows: gates, columns: words)."""
    m = _MINTERMS[op]
    na, nb = ~va, ~vb
    return ((na & nb & m[:, 0, None]) | (na & vb & m[:, 1, None]) | (va & nb & m[:, 2, None])
            | (va & vb & m[:, 3, None]))


def _threshold_words(circuit: Circuit, cells: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Threshold cells ``cells`` on packed node values: popcount row >= threshold, per sample."""
    out = np.empty((cells.size, values.shape[1]), dtype=np.uint64)
    ptr, rows = circuit.popcount_ptr, circuit.a[cells]
    lengths = ptr[rows + 1] - ptr[rows]
    budget = max(1, (1 << 23) // max(n, 1))  # literals unpacked at a time: bounds the temporaries
    ends = np.cumsum(lengths)
    start = 0
    while start < cells.size:
        before = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, before + budget, side="right")))
        positions, sub_ptr = segment_gather(ptr, rows[start:stop])
        lits = circuit.popcount_lits[positions]
        bits = unpack_samples(values[lits >> 1], n) ^ (lits & 1).astype(bool)  # (n, literals)
        cum = np.zeros((n, lits.size + 1), dtype=np.int64)
        np.cumsum(bits, axis=1, out=cum[:, 1:])
        counts = cum[:, sub_ptr[1:]] - cum[:, sub_ptr[:-1]]  # (n, cells)
        out[start:stop] = pack_samples(counts >= circuit.b[cells[start:stop]][None, :])
        start = stop
    return out


def node_words(circuit: Circuit, bits: np.ndarray) -> np.ndarray:
    """(n_nodes, ceil(N / 64)) uint64: every node's value for the rows of ``bits`` (N, n_inputs) bool."""
    n = bits.shape[0]
    values = np.empty((circuit.n_nodes, -(-n // 64)), dtype=np.uint64)
    values[:circuit.n_inputs] = pack_samples(bits)
    n_in, ops, a, b = circuit.n_inputs, circuit.ops, circuit.a, circuit.b
    for idx in circuit.level_groups():
        op = ops[idx]
        cell = op == THRESHOLD
        gate_idx = idx[~cell]
        if gate_idx.size:
            values[n_in + gate_idx] = _gate_words(op[~cell], values[a[gate_idx]], values[b[gate_idx]])
        if cell.any():
            values[n_in + idx[cell]] = _threshold_words(circuit, idx[cell], values, n)
    return values


def _chunks(circuit: Circuit, bits: np.ndarray, chunk: int | None) -> Iterator[tuple[int, int, np.ndarray]]:
    """(first sample, samples, packed node values) per chunk of the validated ``bits``."""
    if chunk is None:
        words = max(1, MEMORY_BUDGET // (8 * max(circuit.n_nodes, 1)))
        chunk = 64 * min(words, 64)
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be a positive number of samples, got {chunk!r}")
    for start in range(0, bits.shape[0], chunk):
        rows = bits[start:start + chunk]
        yield start, rows.shape[0], node_words(circuit, rows)


def evaluate_outputs(circuit: Circuit, x, chunk: int | None = None) -> np.ndarray:
    """(N, n_inputs) bits -> (N, n_outputs) bool values of the output nodes.

    Args:
        circuit: the circuit.
        x: (N, n_inputs) 0/1 data (see ``as_input_bits``).
        chunk: samples per evaluation pass (default: sized to the circuit, see ``MEMORY_BUDGET``).
    """
    bits = as_input_bits(x, circuit.n_inputs)
    out = np.empty((bits.shape[0], circuit.n_outputs), dtype=bool)
    for start, n, values in _chunks(circuit, bits, chunk):
        out[start:start + n] = unpack_samples(values[circuit.outputs], n)
    return out


def _group_counts_of(circuit: Circuit, values: np.ndarray, n: int) -> np.ndarray:
    groups = circuit.output_groups()
    counts = np.zeros((n, circuit.num_classes), dtype=np.int32)
    step = max(1, (1 << 22) // max(n, 1))  # outputs unpacked at a time: bounds the bool temporary
    for c in range(circuit.num_classes):
        for s in range(0, groups.shape[1], step):
            counts[:, c] += unpack_samples(values[groups[c, s:s + step]], n).sum(1, dtype=np.int32)
    return counts


def group_counts(circuit: Circuit, x, chunk: int | None = None) -> np.ndarray:
    """(N, n_inputs) bits -> (N, num_classes) int32: true outputs per class group (grouped heads)."""
    circuit.output_groups()  # raises for a 'bits' head
    bits = as_input_bits(x, circuit.n_inputs)
    return np.concatenate([_group_counts_of(circuit, values, n) for _, n, values in _chunks(circuit, bits, chunk)])


def predict(circuit: Circuit, x) -> np.ndarray:
    """(N,) int64 class with the highest count (ties -> lowest class index, like torch.argmax)."""
    return group_counts(circuit, x).argmax(-1)


def head_outputs(circuit: Circuit, x) -> np.ndarray:
    """What the circuit's head computes: int32 counts ('group_sum'), int64 classes ('argmax') or bool bits."""
    kind = circuit.head.kind
    if kind == "group_sum":
        return group_counts(circuit, x)
    if kind == "argmax":
        return predict(circuit, x)
    return evaluate_outputs(circuit, x)

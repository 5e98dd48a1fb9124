"""The naive compiled engine: one C statement per gate in one function, 64-bit words, ``gcc -O1``.

This is the baseline the fast engine (``engine``) is measured against: a faithful proxy of the
original ``difflogic`` compiled model (one C statement per gate, 64-bit words, -O1): every gate is a ``const uint64_t`` local of one giant function, the batch is packed
64 samples per word bit by bit, and each class count is accumulated by rippling every output word
into a bit-sliced counter. It is kept honest by the same bit-exact tests as the fast engine, and
fixes what the original got wrong (one-layer nets, batches of any size).

Example::

    from diffgates.backends.c.naive import compile_naive
    engine = compile_naive(circuit)   # slow to build for big nets: that is the point
    counts = engine(x_bits)
"""
from __future__ import annotations

import ctypes
import time

import numpy as np

from ... import _native
from ...ir import Circuit, as_input_bits
from .._text import Choice, Masked, render
from .source import gate_pieces

NAIVE_FLAGS = ("-O1",)  # the original's default


def _operand(circuit: Circuit, nodes: np.ndarray, show: np.ndarray) -> list:
    """Fields naming nodes in the naive C: ``inp[i]`` for an input bit, ``vK`` for gate K."""
    is_input = nodes < circuit.n_inputs
    which = np.where(show, np.where(is_input, 1, 2), 0)
    number = np.where(is_input, nodes, nodes - circuit.n_inputs)
    return [Choice(which, [b"", b"inp[", b"v"]), Masked(number, show), Choice(which, [b"", b"]", b""])]


def naive_source(circuit: Circuit) -> str:
    """C source of the naive engine for ``circuit`` (entry point ``naive_counts``)."""
    if circuit.has_cells or not circuit.head.grouped:
        raise ValueError("the naive engine (a baseline) takes gate-only circuits with a group-sum head; lower "
                         "threshold cells with diffgates.ir.lower_cells first")
    pre, mid, post, reads_a, reads_b = gate_pieces(zero="(uint64_t)0", ones="~(uint64_t)0")
    ops = circuit.ops.astype(np.int64)
    g = circuit.n_gates
    text_a, text_b = reads_a[ops], reads_b[ops]
    body = render([b"\tconst uint64_t v", np.arange(g), b" = ", Choice(ops, pre), *_operand(circuit, circuit.a, text_a),
                   Choice(ops, mid), *_operand(circuit, circuit.b, text_b), Choice(ops, post), b";\n"], g)
    outs = circuit.outputs
    body += render([b"\tout[", np.arange(outs.size), b"] = ", *_operand(circuit, outs, np.ones(outs.size, bool)),
                    b";\n"], outs.size)
    lines = ["#include <stddef.h>", "#include <stdint.h>", "",
             "static void logic_gate_net(const uint64_t *inp, uint64_t *out) {" + "\n" + body.decode().rstrip("\n"),
             "\t(void)inp;", "}"]
    n_in = circuit.n_inputs
    nb, gs, k = circuit.count_bits(), circuit.group_size, circuit.num_classes
    lines.append(f"""
#define N_IN {n_in}
#define N_OUT {circuit.n_outputs}
#define N_CLASSES {k}
#define GROUP {gs}
#define NB {nb}

/* x: n rows of N_IN bytes (0/1) -> counts: n rows of N_CLASSES int32. */
int naive_counts(const unsigned char *x, int64_t n, int32_t *counts) {{
    static uint64_t inp[N_IN + 1], out[N_OUT];
    uint64_t acc[NB];
    int64_t s0;
    for (s0 = 0; s0 < n; s0 += 64) {{
        int valid = n - s0 < 64 ? (int)(n - s0) : 64;
        int d, j, c, o, bit;
        for (d = 0; d < N_IN; ++d) {{  /* pack: bit j of word d = input d of sample s0 + j */
            uint64_t res = 0;
            for (j = 0; j < valid; ++j) res |= (uint64_t)(x[(s0 + j) * N_IN + d] != 0) << j;
            inp[d] = res;
        }}
        logic_gate_net(inp, out);
        for (c = 0; c < N_CLASSES; ++c) {{  /* ripple every output word into a bit-sliced counter */
            for (bit = 0; bit < NB; ++bit) acc[bit] = 0;
            for (o = 0; o < GROUP; ++o) {{
                uint64_t carry = out[c * GROUP + o];
                for (bit = 0; bit < NB; ++bit) {{
                    uint64_t next = acc[bit] & carry;
                    acc[bit] ^= carry;
                    carry = next;
                }}
            }}
            for (j = 0; j < valid; ++j) {{
                int32_t v = 0;
                for (bit = 0; bit < NB; ++bit) v |= (int32_t)((acc[bit] >> j) & 1) << bit;
                counts[(s0 + j) * N_CLASSES + c] = v;
            }}
        }}
    }}
    return 0;
}}
""")
    return "\n".join(lines)


class NaiveCircuit:
    """The naive engine: ``engine(x)`` -> (N, num_classes) int32 counts, single-threaded.

    Attributes:
        circuit, source, flags, library_path, build_seconds (as ``CompiledCircuit``).
    """

    def __init__(self, circuit: Circuit, flags: tuple[str, ...] = NAIVE_FLAGS):
        start = time.perf_counter()
        self.circuit = circuit
        self.source = naive_source(circuit)
        self.flags = tuple(flags)
        self.library_path, self._lib = _native.open_library(self.source, "naive_circuit", self.flags)
        self._lib.naive_counts.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
        self._lib.naive_counts.restype = ctypes.c_int
        self.build_seconds = time.perf_counter() - start

    def __call__(self, x) -> np.ndarray:
        """(N, n_inputs) 0/1 data -> (N, num_classes) int32 counts (the same contract as the fast engine)."""
        bits = as_input_bits(x, self.circuit.n_inputs)
        out = np.empty((bits.shape[0], self.circuit.num_classes), dtype=np.int32)
        self._lib.naive_counts(bits.ctypes.data, bits.shape[0], out.ctypes.data)
        return out

    def predict(self, x) -> np.ndarray:
        return self(x).argmax(-1)


def compile_naive(circuit: Circuit, flags: tuple[str, ...] = NAIVE_FLAGS) -> NaiveCircuit:
    """Build the naive engine of ``circuit`` (see the module docstring)."""
    if not isinstance(circuit, Circuit):
        raise TypeError(f"compile_naive expects a diffgates Circuit, got {type(circuit).__name__}")
    return NaiveCircuit(circuit, flags)

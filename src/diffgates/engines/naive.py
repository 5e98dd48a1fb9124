"""The naive compiled engine: one C statement per gate in one function, 64-bit words, ``gcc -O1``.

This is the baseline the fast engine (``diffgates.engines.c``) is measured against: a faithful proxy
of the original ``difflogic`` compiled model (the ANCHORS.md row "one C statement per gate, 64-bit
words, -O1"): every gate is a ``const uint64_t`` local of one giant function, the batch is packed
64 samples per word bit by bit, and each class count is accumulated by rippling every output word
into a bit-sliced counter. It is kept honest by the same bit-exact tests as the fast engine, and
fixes what the original got wrong (one-layer nets, batches of any size).

Example::

    from diffgates.engines.naive import compile_naive
    engine = compile_naive(circuit)   # slow to build for big nets: that is the point
    counts = engine(x_bits)
"""
from __future__ import annotations

import ctypes
import time

import numpy as np

from .. import _native, gates
from ..circuit.evaluate import as_input_bits
from ..circuit.ir import Circuit

NAIVE_FLAGS = ("-O1",)  # the original's default


def naive_source(circuit: Circuit) -> str:
    """C source of the naive engine for ``circuit`` (entry point ``naive_counts``)."""
    n_in = circuit.n_inputs
    templates = [g.formula.format(a="{a}", b="{b}", zero="(uint64_t)0", ones="~(uint64_t)0") for g in gates.GATES]

    def name(node: int) -> str:
        return f"inp[{node}]" if node < n_in else f"v{node - n_in}"

    ops, a, b = circuit.ops.tolist(), circuit.a.tolist(), circuit.b.tolist()
    lines = ["#include <stddef.h>", "#include <stdint.h>", "",
             "static void logic_gate_net(const uint64_t *inp, uint64_t *out) {"]
    for i in range(circuit.n_gates):
        expr = templates[ops[i]].format(a=name(a[i]), b=name(b[i]))
        lines.append(f"\tconst uint64_t v{i} = {expr};")
    for j, node in enumerate(circuit.outputs.tolist()):
        lines.append(f"\tout[{j}] = {name(node)};")
    lines.append("\t(void)inp;")
    lines.append("}")
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
        self.library_path = _native.build_shared_library(self.source, "naive_circuit", self.flags)
        self._lib = _native.load_library(self.library_path)
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

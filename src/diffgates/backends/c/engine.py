"""The compiled CPU engine: a circuit as generated C, built once, called through ctypes.

``compile_circuit(circuit, threads=1, isa="auto", layout="auto")`` lowers the circuit (``program``),
generates C for the widest word type this machine runs (``source``: AVX-512, AVX2 or portable
64-bit words), builds it with the system C compiler through ``diffgates._native`` (cached on disk by
source and flags) and returns a ``CompiledCircuit``. Calling it on (N, n_inputs) 0/1 data returns
what the circuit's head means, bit-exact with ``diffgates.ir.head_outputs``: int32 class counts
('group_sum': the eval model's output * tau), int64 classes ('argmax') or bool output bits ('bits').
``diffgates.compile`` takes a trained model as well (it extracts and simplifies the circuit first).

Example::

    engine = compile_circuit(circuit, threads=2)
    counts = engine(x_bits)          # (N, num_classes) int32
    classes = engine.predict(x_bits) # (N,) int64, ties -> lowest class
    engine.threads = 1; engine.stats()

Batches are split into blocks of 64 * lanes samples (256 for AVX2); each block is packed to bits in C,
runs the whole network with its live words in a small scratch buffer (L2-sized for a 48K-gate net),
and is unpacked; threads take contiguous runs of blocks, so results never depend on the thread
count. Two layouts of the same program: straight-line C ("code", small nets) or a step table run by
one tight loop per step type ("table", big nets: builds in about a second, no matter the size).
"""
from __future__ import annotations

import ctypes
import os
import time
from functools import lru_cache
from typing import Any

import numpy as np

from ... import _native
from ...ir import Circuit
from ...ir.evaluate import input_chunks, input_matrix
from ..engine import CircuitEngine
from .program import LAYOUTS, Program, count_steps, encode_table, lower
from .source import ISAS, Isa, engine_source, get_isa

# Straight-line bitwise code runs as fast at -O1 as at -O2 and builds twice as fast; the runtime loops
# ask for -O2 themselves (source). GCC's memory optimisers walk all earlier stores for every access
# (quadratic in a chunk's size): these limits keep the build linear in the gate count.
OPT_FLAGS = ("-O1", "-std=gnu99")
GCC_LIMIT_FLAGS = ("-fno-tree-dse", "-fno-dse", "--param=sccvn-max-alias-queries-per-access=16",
                   "--param=max-cselib-memory-locations=32", "--param=max-cse-insns=64")
CHUNK_SIZE = 512
# layout="auto": straight-line code while it fits the caches and builds in seconds (up to ~1.3x faster
# than the table for small nets), the step table above (faster for big nets, builds at once).
AUTO_TABLE_MIN_STEPS = 8192
# Input bytes checked and run per C call: any batch runs in bounded extra memory (and uint8 0/1 input
# is never copied), while one call still spans enough blocks for every thread.
INPUT_CHUNK_BYTES = 16 << 20


@lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """Feature flags of this CPU from /proc/cpuinfo (empty where that file does not exist)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def best_isa() -> Isa:
    """The widest word type both this CPU and the C compiler support ('avx512' > 'avx2' > 'u64')."""
    flags = cpu_flags()
    for name in ("avx512", "avx2"):
        isa = ISAS[name]
        if all(f in flags for f in isa.cpu_features) and all(_native.compiler_supports(fl) for fl in isa.flags):
            return isa
    return ISAS["u64"]


def resolve_isa(isa: str) -> Isa:
    """'auto' -> ``best_isa()``; otherwise the named Isa (ValueError for unknown names)."""
    if not isinstance(isa, str):
        raise ValueError(f"isa must be a string ('auto', 'avx512', 'avx2' or 'u64'), got {isa!r}")
    return best_isa() if isa == "auto" else get_isa(isa)


def parallel_flags() -> tuple[str, ...]:
    """POSIX threads; OpenMP instead when ``DIFFGATES_OPENMP=1`` and the compiler has it.

    The generated code supports both. POSIX threads are the default because inside a Python process
    that imported torch, the engine's OpenMP calls run on torch's bundled libgomp (same soname): on a
    busy 2-core machine 2 OpenMP threads measured 3x slower than 1 while POSIX threads did not slow
    down (idle, both gave 1.3x); POSIX threads also start nothing that spins between calls.
    """
    if os.environ.get("DIFFGATES_OPENMP") == "1" and _native.compiler_supports("-fopenmp"):
        return ("-fopenmp",)
    return ("-pthread",)


def optimization_flags() -> tuple[str, ...]:
    """OPT_FLAGS, plus GCC_LIMIT_FLAGS when the compiler understands them (GCC does, clang does not)."""
    if all(_native.compiler_supports(f) for f in GCC_LIMIT_FLAGS):
        return (*OPT_FLAGS, *GCC_LIMIT_FLAGS)
    return OPT_FLAGS


def check_threads(threads) -> int:
    """``threads`` as a positive int; ValueError naming the value otherwise."""
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got threads={threads!r}")
    return int(threads)


class CompiledCircuit(CircuitEngine):
    """A circuit compiled to a native library; call it on 0/1 data to get what its head computes.

    Attributes:
        circuit: the Circuit it computes. program: its lowered form (``program.Program``).
        isa: word type name ('avx512', 'avx2' or 'u64'); block: samples per word (64 * lanes).
        layout: 'code' or 'table'; table: the step table ('table' layout; empty otherwise).
        source: the generated C. flags: compiler flags. library_path: the built shared library.
        openmp: whether threads run on OpenMP (``DIFFGATES_OPENMP=1``) rather than POSIX threads.
        build_seconds: lowering + code generation + compilation (near 0 when the cache had it).
        codegen_seconds: the lowering + code generation part.
        threads: worker threads per call (settable).
    """

    backend = "c"

    def __init__(self, circuit: Circuit, threads: int = 1, isa: str = "auto", layout: str = "auto",
                 chunk_size: int = CHUNK_SIZE):
        if not isinstance(circuit, Circuit):
            raise TypeError(f"the C engine compiles a diffgates Circuit, got {type(circuit).__name__} "
                            f"(diffgates.compile also takes a model)")
        self.threads = threads
        start = time.perf_counter()
        self._isa = resolve_isa(isa)
        self.circuit = circuit
        if layout == "auto":
            layout = "table" if count_steps(circuit) >= AUTO_TABLE_MIN_STEPS else "code"
        if layout not in LAYOUTS:
            raise ValueError(f"layout={layout!r} is not known; expected 'auto' or one of {LAYOUTS}")
        self.program: Program = lower(circuit, layout=layout, chunk_size=chunk_size)
        # The "table" layout's steps are data passed to every call; its C depends only on the shapes.
        self.table = (encode_table(self.program, 8 * self._isa.lanes) if layout == "table"
                      else np.zeros(0, dtype=np.int32))
        self.source = engine_source(self.program, self._isa)
        self.codegen_seconds = time.perf_counter() - start
        self.flags = (*optimization_flags(), *self._isa.flags, *parallel_flags())
        self.library_path, self._lib = _native.open_library(self.source, f"circuit_{self._isa.name}", self.flags)
        self.build_seconds = time.perf_counter() - start
        for name in ("dg_results", "dg_results_packed"):
            getattr(self._lib, name).argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                                                 ctypes.c_void_p, ctypes.c_int]
            getattr(self._lib, name).restype = ctypes.c_int
        self._lib.dg_pack.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
        self._lib.dg_pack.restype = ctypes.c_int
        if not self._lib.dg_cpu_supported():
            raise RuntimeError(f"isa={self._isa.name!r} needs CPU features {list(self._isa.cpu_features)}, which "
                               f"this CPU lacks; use isa='auto' (picks {best_isa().name!r} here)")
        self.openmp = bool(self._lib.dg_parallel_openmp())

    # ---- properties ----------------------------------------------------------------------
    @property
    def isa(self) -> str:
        return self._isa.name

    @property
    def layout(self) -> str:
        return self.program.layout

    @property
    def block(self) -> int:
        return self._isa.block

    @property
    def threads(self) -> int:
        return self._threads

    @threads.setter
    def threads(self, value: int) -> None:
        self._threads = check_threads(value)

    def stats(self) -> dict[str, Any]:
        """Sizes of the compiled form (for reports)."""
        p = self.program
        return {"backend": self.backend, "isa": self.isa, "layout": self.layout, "gates": self.circuit.n_gates,
                "steps": p.n_gates, "slots": p.n_slots, "scratch_bytes": 8 * self._isa.lanes * (p.n_words + 1),
                "table_bytes": int(self.table.nbytes), "threads": self.threads, "openmp": self.openmp,
                "build_seconds": self.build_seconds, "head": self.circuit.head.kind}

    def __repr__(self) -> str:
        p = self.program
        return (f"CompiledCircuit(inputs={p.n_inputs}, classes={p.num_classes}, gates={p.n_gates}, "
                f"slots={p.n_slots}, isa={self.isa!r}, layout={self.layout!r}, threads={self.threads})")

    # ---- running -------------------------------------------------------------------------
    def _check_status(self, status: int) -> None:
        if status != 0:
            raise MemoryError("the compiled circuit could not allocate its scratch buffers")

    def _results(self, n: int) -> np.ndarray:
        if self.circuit.head.grouped:
            return np.empty((n, self.num_classes), dtype=np.int32)
        return np.empty((n, self.circuit.n_outputs), dtype=np.uint8)

    def _finish(self, raw: np.ndarray) -> np.ndarray:
        kind = self.circuit.head.kind
        if kind == "argmax":
            return raw.argmax(-1)
        return raw.view(bool) if kind == "bits" else raw

    def _chunk_rows(self, x) -> int:
        """Samples per C call: about 16 MB of input, a whole number of blocks (so packed chunks line up)."""
        row_bytes = max(1, self.n_inputs * x.element_size() if hasattr(x, "element_size") else x[:1].nbytes)
        return max(1, (INPUT_CHUNK_BYTES // row_bytes) // self.block) * self.block

    def _raw(self, x) -> np.ndarray:
        x = input_matrix(x, self.n_inputs)
        out = self._results(x.shape[0])
        for start, bits in input_chunks(x, self.n_inputs, self._chunk_rows(x)):  # bounded memory for any dtype
            self._check_status(self._lib.dg_results(self.table.ctypes.data, self.table.size, bits.ctypes.data,
                                                    bits.shape[0], out[start:].ctypes.data, self._threads))
        return out

    def counts(self, x) -> np.ndarray:
        """(N, n_inputs) 0/1 data -> (N, num_classes) int32 class counts (grouped heads)."""
        self._require_grouped("class counts")
        return self._raw(x)

    def __call__(self, x) -> np.ndarray:
        """(N, n_inputs) 0/1 data (bool, integer or float; numpy or torch) -> what the head computes:
        (N, num_classes) int32 counts, (N,) int64 classes ('argmax') or (N, n_outputs) bool ('bits')."""
        return self._finish(self._raw(x))

    def pack(self, x) -> np.ndarray:
        """Input bits in the engine's word layout, for ``run_packed`` (benchmarks, repeated calls).

        Returns:
            (ceil(N / block), n_inputs, lanes) uint64: bit k of lane q of [b, f] is input f of sample
            b * block + 64 * q + k (zero past N).
        """
        x = input_matrix(x, self.n_inputs)
        packed = np.empty((-(-x.shape[0] // self.block), self.n_inputs, self._isa.lanes), dtype=np.uint64)
        for start, bits in input_chunks(x, self.n_inputs, self._chunk_rows(x)):
            self._check_status(self._lib.dg_pack(bits.ctypes.data, bits.shape[0],
                                                 packed[start // self.block:].ctypes.data, self._threads))
        return packed

    def run_packed(self, packed: np.ndarray, n: int) -> np.ndarray:
        """What ``engine(x)`` returns, for the first ``n`` samples of ``pack(x)`` (skips packing)."""
        shape = (-(-int(n) // self.block), self.n_inputs, self._isa.lanes)
        if not isinstance(packed, np.ndarray) or packed.dtype != np.uint64 or packed.shape != shape or n < 1:
            got = (getattr(packed, "dtype", type(packed).__name__), getattr(packed, "shape", None))
            raise ValueError(f"run_packed needs n >= 1 and a uint64 array of shape {shape} from pack(); "
                             f"got n={n}, array dtype/shape {got}")
        packed = np.ascontiguousarray(packed)
        out = self._results(int(n))
        self._check_status(self._lib.dg_results_packed(self.table.ctypes.data, self.table.size,
                                                       packed.ctypes.data, int(n), out.ctypes.data, self._threads))
        return self._finish(out)


def compile_circuit(circuit: Circuit, threads: int = 1, isa: str = "auto", layout: str = "auto",
                    chunk_size: int = CHUNK_SIZE) -> CompiledCircuit:
    """Compile a Circuit into a native engine.

    Args:
        circuit: the ``Circuit`` (``diffgates.compile`` also accepts a model).
        threads: worker threads per call (>= 1; settable later as ``engine.threads``).
        isa: 'auto' (widest supported), 'avx512', 'avx2' or 'u64' (alias 'portable').
        layout: 'code' (straight-line C), 'table' (a step table run by fixed loops: builds at once,
            faster for big nets) or 'auto' ('table' from AUTO_TABLE_MIN_STEPS gate steps up).
        chunk_size: steps per generated C function.

    Returns:
        A ``CompiledCircuit``. Raises ``diffgates._native.CompilationError`` (with the compiler log)
        when the build fails.
    """
    return CompiledCircuit(circuit, threads=threads, isa=isa, layout=layout, chunk_size=chunk_size)

"""The compiled CPU engine: a circuit as generated C, built once, called through ctypes.

``compile(model_or_circuit, threads=1, isa="auto", layout="auto")`` lowers the circuit
(``c_program``), generates C for the widest word type this machine runs (``c_source``: AVX-512, AVX2
or portable 64-bit words), builds it with the system C compiler through ``diffgates._native`` (cached
on disk by source and flags) and returns a ``CompiledCircuit``. Calling it on (N, n_inputs) 0/1 data
returns the int32 group counts, bit-exact with ``diffgates.circuit.evaluate.group_counts`` (= the eval
model's output * tau).

Example::

    engine = diffgates.compile(circuit, threads=2)
    counts = engine(x_bits)          # (N, num_classes) int32
    classes = engine.predict(x_bits) # (N,) int64, ties -> lowest class
    engine.threads = 1

Batches are split into blocks of 64 * lanes samples (256 for AVX2); each block is packed to bits in C,
runs the whole network with its live words in a small scratch buffer (L2-sized for a 48K-gate net),
and is unpacked to counts; threads take contiguous runs of blocks, so results never depend on the
thread count. Two layouts of the same program: straight-line C ("code", small nets) or a step table
run by one tight loop per gate type ("table", big nets: builds in about a second, no matter the size).
"""
from __future__ import annotations

import ctypes
import os
import time
from functools import lru_cache

import numpy as np

from .. import _native
from ..circuit.evaluate import as_input_bits
from ..circuit.ir import Circuit
from .c_program import LAYOUTS, Program, count_steps, encode_table, lower
from .c_source import ISAS, Isa, engine_source, get_isa

# Straight-line bitwise code runs as fast at -O1 as at -O2 and builds twice as fast; the runtime loops
# ask for -O2 themselves (c_source). GCC's memory optimisers walk all earlier stores for every access
# (quadratic in a chunk's size): these limits keep the build linear in the gate count.
OPT_FLAGS = ("-O1", "-std=gnu99")
GCC_LIMIT_FLAGS = ("-fno-tree-dse", "-fno-dse", "--param=sccvn-max-alias-queries-per-access=16",
                   "--param=max-cselib-memory-locations=32", "--param=max-cse-insns=64")
CHUNK_SIZE = 512
# layout="auto": straight-line code while it fits the caches and builds in seconds (up to ~1.3x faster
# than the table for small nets), the step table above (faster for big nets, builds at once).
AUTO_TABLE_MIN_STEPS = 8192


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


def _check_threads(threads) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got threads={threads!r}")
    return int(threads)


def as_circuit(model_or_circuit, simplify: bool | None = None) -> Circuit:
    """A Circuit as given, or extracted (and by default simplified) from a model.

    Args:
        model_or_circuit: a ``Circuit`` or a ``torch.nn.Module`` that ``diffgates.to_circuit`` accepts.
        simplify: run ``diffgates.circuit.passes.simplify``; default: yes for models, no for circuits.
    """
    if isinstance(model_or_circuit, Circuit):
        circuit = model_or_circuit
        if simplify:
            from ..circuit.passes import simplify as run_passes
            circuit = run_passes(circuit)
        return circuit
    if hasattr(model_or_circuit, "modules") and hasattr(model_or_circuit, "forward"):
        from ..circuit.extract import to_circuit
        circuit = to_circuit(model_or_circuit)
        if simplify is None or simplify:
            from ..circuit.passes import simplify as run_passes
            circuit = run_passes(circuit)
        return circuit
    raise TypeError(f"expected a diffgates Circuit or a torch model, got {type(model_or_circuit).__name__}")


class CompiledCircuit:
    """A circuit compiled to a native library; call it on 0/1 data to get int32 group counts.

    Attributes:
        circuit: the Circuit it computes. program: its lowered form (``c_program.Program``).
        isa: word type name ('avx512', 'avx2' or 'u64'); block: samples per word (64 * lanes).
        layout: 'code' or 'table'; table: the step table ('table' layout; empty otherwise).
        source: the generated C. flags: compiler flags. library_path: the built shared library.
        openmp: whether threads run on OpenMP (``DIFFGATES_OPENMP=1``) rather than POSIX threads.
        build_seconds: lowering + code generation + compilation (near 0 when the cache had it).
        codegen_seconds: the lowering + code generation part.
        threads: worker threads per call (settable).
    """

    def __init__(self, circuit: Circuit, threads: int = 1, isa: str = "auto", layout: str = "auto",
                 chunk_size: int = CHUNK_SIZE):
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
        self.library_path = _native.build_shared_library(self.source, f"circuit_{self._isa.name}", self.flags)
        self._lib = _native.load_library(self.library_path)
        self.build_seconds = time.perf_counter() - start
        for name in ("dg_counts", "dg_counts_packed"):
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
        self._threads = _check_threads(value)

    @property
    def n_inputs(self) -> int:
        return self.circuit.n_inputs

    @property
    def num_classes(self) -> int:
        return self.circuit.num_classes

    def __repr__(self) -> str:
        p = self.program
        return (f"CompiledCircuit(inputs={p.n_inputs}, classes={p.num_classes}, gates={p.n_gates}, "
                f"slots={p.n_slots}, isa={self.isa!r}, layout={self.layout!r}, threads={self.threads})")

    # ---- running -------------------------------------------------------------------------
    def _check_status(self, status: int) -> None:
        if status != 0:
            raise MemoryError("the compiled circuit could not allocate its scratch buffers")

    def __call__(self, x) -> np.ndarray:
        """(N, n_inputs) 0/1 data (bool, integer or float; numpy or torch) -> (N, num_classes) int32 counts."""
        bits = as_input_bits(x, self.n_inputs)
        n = bits.shape[0]
        out = np.empty((n, self.num_classes), dtype=np.int32)
        self._check_status(self._lib.dg_counts(self.table.ctypes.data, self.table.size, bits.ctypes.data, n,
                                               out.ctypes.data, self._threads))
        return out

    def predict(self, x) -> np.ndarray:
        """(N,) int64 class with the highest count (ties -> lowest class index, like argmax)."""
        return self(x).argmax(-1)

    def pack(self, x) -> np.ndarray:
        """Input bits in the engine's word layout, for ``run_packed`` (benchmarks, repeated calls).

        Returns:
            (ceil(N / block), n_inputs, lanes) uint64: bit k of lane q of [b, f] is input f of sample
            b * block + 64 * q + k (zero past N).
        """
        bits = as_input_bits(x, self.n_inputs)
        n = bits.shape[0]
        packed = np.empty((-(-n // self.block), self.n_inputs, self._isa.lanes), dtype=np.uint64)
        self._check_status(self._lib.dg_pack(bits.ctypes.data, n, packed.ctypes.data, self._threads))
        return packed

    def run_packed(self, packed: np.ndarray, n: int) -> np.ndarray:
        """Counts of the first ``n`` samples of ``pack(x)`` output (skips packing: the gate work only)."""
        shape = (-(-int(n) // self.block), self.n_inputs, self._isa.lanes)
        if not isinstance(packed, np.ndarray) or packed.dtype != np.uint64 or packed.shape != shape or n < 1:
            got = (getattr(packed, "dtype", type(packed).__name__), getattr(packed, "shape", None))
            raise ValueError(f"run_packed needs n >= 1 and a uint64 array of shape {shape} from pack(); "
                             f"got n={n}, array dtype/shape {got}")
        packed = np.ascontiguousarray(packed)
        out = np.empty((int(n), self.num_classes), dtype=np.int32)
        self._check_status(self._lib.dg_counts_packed(self.table.ctypes.data, self.table.size, packed.ctypes.data,
                                                      int(n), out.ctypes.data, self._threads))
        return out


def compile(model_or_circuit, threads: int = 1, isa: str = "auto", layout: str = "auto",
            simplify: bool | None = None, chunk_size: int = CHUNK_SIZE) -> CompiledCircuit:
    """Compile a Circuit or a trained model into a native engine.

    Args:
        model_or_circuit: a ``Circuit``, or a model (extracted with ``diffgates.to_circuit``).
        threads: worker threads per call (>= 1; settable later as ``engine.threads``).
        isa: 'auto' (widest supported), 'avx512', 'avx2' or 'u64' (alias 'portable').
        layout: 'code' (straight-line C), 'table' (a step table run by fixed loops: builds at once,
            faster for big nets) or 'auto' ('table' from AUTO_TABLE_MIN_STEPS gate steps up).
        simplify: run the simplification passes first; default: yes for models, no for circuits.
        chunk_size: steps per generated C function.

    Returns:
        A ``CompiledCircuit``. Raises ``diffgates._native.CompilationError`` (with the compiler log)
        when the build fails.
    """
    return CompiledCircuit(as_circuit(model_or_circuit, simplify), threads=threads, isa=isa, layout=layout,
                           chunk_size=chunk_size)

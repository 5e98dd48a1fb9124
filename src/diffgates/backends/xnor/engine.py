"""The compiled XNOR-popcount engine of an ``XnorProgram``: ``compile_xnor(program, threads, isa)``.

The C kernel (``xnor_kernel.c``) runs one image at a time with features packed into 64-bit words (see
its header); this module packs the weights into that layout once, packs input batches, and calls it
through ctypes on POSIX threads (images split across them). ISAs: 'avx512' (AVX-512 VPOPCNTDQ), 'avx2'
(AVX2 + the POPCNT instruction), 'portable' (any C compiler); 'auto' is the best this CPU and compiler
support. Results equal ``program.reference_scores`` exactly (tests/test_xnor_engine.py). Example::

    engine = compile_xnor(program, threads=2)
    scores = engine.scores(bits)            # (N, K) int32 agreements per class
    classes = engine.predict(bits)          # argmax, ties to the lowest class
"""
from __future__ import annotations

import ctypes
import time
from pathlib import Path

import numpy as np

from ... import _native
from ..c.engine import check_threads, cpu_flags
from .program import OrPool, XnorConv, XnorDense, XnorOutput, XnorProgram

_SOURCE = Path(__file__).with_name("xnor_kernel.c")
# name -> (compiler flags, /proc/cpuinfo features it needs), best first
ISAS = {"avx512": (("-DDG_AVX512", "-mavx512f", "-mavx512vpopcntdq"), ("avx512f", "avx512_vpopcntdq")),
        "avx2": (("-mavx2", "-mpopcnt"), ("avx2", "popcnt")),
        "portable": ((), ())}
DESC = 17  # int64 values per layer descriptor (the enum of xnor_kernel.c)
TYPES = {XnorConv: 0, OrPool: 1, XnorDense: 2, XnorOutput: 3}
CHUNK_IMAGES = 8192  # images packed and run per C call: bounded extra memory for any batch


def _words(bits: int) -> int:
    return (bits + 63) // 64


def _pack_rows(bits: np.ndarray) -> np.ndarray:
    """(R, B) 0/1 -> (R, ceil(B/64)) uint64, bit j of a row at word j // 64, bit j % 64 (zero padded)."""
    rows, width = bits.shape
    padded = np.zeros((rows, _words(width) * 64), dtype=np.uint8)
    padded[:, :width] = bits
    return np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64)


def _map_rows(bits: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, H*W*ceil(C/64)) position-major channel-packed words."""
    n, c, h, w = bits.shape
    return _pack_rows(bits.transpose(0, 2, 3, 1).reshape(n * h * w, c)).reshape(n, -1)


def resolve_isa(isa: str) -> str:
    """'auto' -> the best ISA this CPU and compiler support; else the name, checked."""
    if isa == "auto":
        for name, (flags, features) in ISAS.items():
            if all(f in cpu_flags() for f in features) and all(_native.compiler_supports(f) for f in flags):
                return name
        return "portable"
    if isa not in ISAS:
        raise ValueError(f"isa={isa!r} is not known; expected 'auto' or one of {list(ISAS)}")
    missing = [f for f in ISAS[isa][1] if f not in cpu_flags()]
    if missing:
        raise ValueError(f"isa={isa!r} needs the CPU features {missing}, which this CPU does not report")
    return isa


class XnorEngine:
    """A compiled XnorProgram. Attributes: program, isa, threads (settable), library_path, source, build_seconds."""

    backend = "xnor"

    def __init__(self, program: XnorProgram, threads: int = 1, isa: str = "auto"):
        if not isinstance(program, XnorProgram):
            raise ValueError(f"compile_xnor expects an XnorProgram, got {type(program).__name__}")
        self.program = program
        self.threads = check_threads(threads)
        self.isa = resolve_isa(isa)
        t0 = time.perf_counter()
        self._pack_program()
        self.source = _SOURCE.read_text()
        flags = ("-O2", "-std=gnu99", "-pthread", *ISAS[self.isa][0])
        self.library_path, self._lib = _native.open_library(self.source, f"xnor_{self.isa}", flags)
        fn = self._lib.dg_xnor_run
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                       ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
        self._run = fn
        self.build_seconds = time.perf_counter() - t0

    def _pack_program(self) -> None:
        program = self.program
        shape = program.input_shape
        desc, weights, thresholds = [], [], []
        w_off = t_off = 0
        buf = 0
        is_map = len(shape) == 3
        for layer, out_shape in zip(program.layers, program.shapes):
            d = np.zeros(DESC, dtype=np.int64)
            d[0] = TYPES[type(layer)]
            if is_map:
                c, h, w = shape
                d[1:5] = (h, w, c, _words(c))
                in_words = h * w * _words(c)
            else:
                d[3], d[4] = shape[0], _words(shape[0])
                in_words = _words(shape[0])
            if isinstance(layer, XnorConv):
                o, c, kh, kw = layer.weights.shape
                d[5:13] = (out_shape[1], out_shape[2], o, _words(o), kh, kw, *layer.stride)
                k = c * kh * kw
                packed = _pack_rows(layer.weights.transpose(0, 2, 3, 1).reshape(o, k))  # tap-major rows
                d[13], d[16] = packed.shape[1], k
            elif isinstance(layer, OrPool):
                d[5:13] = (out_shape[1], out_shape[2], out_shape[0], _words(out_shape[0]), *layer.kernel,
                           *layer.stride)
                packed = None
            else:
                o, f = layer.weights.shape
                if is_map:  # read the map's own words: columns reordered (C, H, W) -> (H, W, C), per-position padding
                    c, h, w = shape
                    packed = _map_rows(layer.weights.reshape(o, c, h, w))
                else:
                    packed = _pack_rows(layer.weights)
                d[7], d[8], d[13], d[16] = o, _words(o), packed.shape[1], f
            d[14], d[15] = w_off, t_off
            if packed is not None:
                weights.append(packed.reshape(-1))
                w_off += packed.size
            if isinstance(layer, (XnorConv, XnorDense)):
                thresholds.append(layer.thresholds.astype(np.int32))
                t_off += layer.thresholds.size
            out_words = (out_shape[1] * out_shape[2] * _words(out_shape[0]) if len(out_shape) == 3
                         else _words(out_shape[0]))
            buf = max(buf, in_words, out_words, int(d[13]) + 2)
            desc.append(d)
            shape, is_map = out_shape, len(out_shape) == 3
        self._desc = np.ascontiguousarray(np.concatenate(desc))
        self._weights = np.ascontiguousarray(np.concatenate(weights)) if weights else np.zeros(1, np.uint64)
        self._thresholds = np.ascontiguousarray(np.concatenate(thresholds)) if thresholds else np.zeros(1, np.int32)
        self._buf_words = buf
        first = program.input_shape
        self._in_words = first[1] * first[2] * _words(first[0]) if len(first) == 3 else _words(first[0])

    # -- interface --------------------------------------------------------------------------------
    @property
    def n_inputs(self) -> int:
        return self.program.n_inputs

    @property
    def num_classes(self) -> int:
        return self.program.num_classes

    def pack(self, bits) -> np.ndarray:
        """(N, in_words) uint64: the input in the kernel's layout (checked: shape and 0/1 values)."""
        return self._pack_checked(self.program.check_bits(bits))

    @staticmethod
    def _pack_checked(x: np.ndarray) -> np.ndarray:
        return _map_rows(x) if x.ndim == 4 else _pack_rows(x)

    def run_packed(self, packed: np.ndarray, n: int) -> np.ndarray:
        """(n, K) int32 scores of the first ``n`` rows of ``packed`` (from ``pack``)."""
        packed = np.ascontiguousarray(packed, dtype=np.uint64)
        if packed.ndim != 2 or packed.shape[1] != self._in_words or not 0 <= n <= packed.shape[0]:
            raise ValueError(f"packed input must be (N, {self._in_words}) uint64 from engine.pack with n <= N, got "
                             f"{packed.shape} and n={n}")
        scores = np.zeros((n, self.num_classes), dtype=np.int32)
        if n == 0:
            return scores
        status = self._run(self._desc.ctypes.data, len(self.program.layers), self._weights.ctypes.data,
                           self._thresholds.ctypes.data, packed.ctypes.data, self._in_words, n, scores.ctypes.data,
                           self.num_classes, self._buf_words, check_threads(self.threads))
        if status:
            raise MemoryError("the XNOR engine could not allocate its buffers or start its threads")
        return scores

    def scores(self, bits) -> np.ndarray:
        """(N, K) int32: each class's agreements, as ``reference_scores``."""
        x = self.program.check_bits(bits)
        parts = [self.run_packed(self._pack_checked(x[i:i + CHUNK_IMAGES]), len(x[i:i + CHUNK_IMAGES]))
                 for i in range(0, len(x), CHUNK_IMAGES)]
        return np.concatenate(parts) if parts else np.zeros((0, self.num_classes), np.int32)

    counts = scores  # the circuit engines' name for the same thing
    __call__ = scores

    def predict(self, bits) -> np.ndarray:
        """(N,) int64 class with the highest score (ties to the lowest class)."""
        return self.scores(bits).argmax(1).astype(np.int64)

    def stats(self) -> dict:
        return {"layers": [type(layer).__name__ for layer in self.program.layers], "isa": self.isa,
                "threads": self.threads, "weight_bytes": int(self._weights.nbytes),
                "buffer_words_per_thread": int(3 * self._buf_words)}


def compile_xnor(program: XnorProgram, threads: int = 1, isa: str = "auto") -> XnorEngine:
    """Build (or fetch from the cache) the engine of ``program``; see ``XnorEngine``."""
    return XnorEngine(program, threads=threads, isa=isa)

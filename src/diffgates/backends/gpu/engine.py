"""Bit-packed GPU inference of a Circuit: ``compile_gpu(circuit) -> GpuCircuit``.

The batch is packed into 32- or 64-bit words (bit s of word w is sample ``word_bits * w + s``), so one
word operation evaluates a gate for 32 or 64 samples. The whole circuit runs in one persistent Triton
kernel (``diffgates.backends.gpu.kernels``): each program takes a tile of words through every logic
level in a private, cache-resident scratch area and ends with the per-class counts (or the output
bits). Results are exact for every batch size (padding bits of the last word are never counted) and
equal the numpy reference ``diffgates.ir.head_outputs`` bit for bit.

``compile_gpu`` first lowers the circuit to a ``GpuPlan`` on the CPU (``plan_circuit``, numpy, no
per-gate Python loop):

* the kernel has no native threshold cells: a circuit with cells is first lowered to two-input
  gates by ``diffgates.ir.lower_cells`` (adder trees and comparators; ``engine.circuit`` stays the
  source circuit, ``engine.gates_circuit`` is what runs);
* gates no output depends on are dropped (``circuit.analysis.live``: inputs a gate ignores are not
  dependencies);
* the remaining gates run level by level in ALAP order (``circuit.analysis.alap``: a gate is
  computed in the last level before its first reader, so its value lives briefly); a level reads
  only earlier levels, so its gates run in parallel and one barrier separates levels;
* every live value gets a scratch *slot* by liveness: a slot is free again from the level after its
  value's last reader, and a level takes the most recently freed slots first (a stack, popped and
  pushed one level at a time with numpy slices). The scratch holds the widest live set (about two
  layer widths for a layered net), not every node;
* each gate becomes three int32s: its operand slots and its output slot; the gate's 4-bit algebraic
  normal form rides in the top bits of the operand words (c0, c1 in bits 31, 30 of ``gate_a``; c2, c3
  in those of ``gate_b``), where one arithmetic shift turns a bit into a word mask.

Packing and unpacking run on the device too (``pack_bits`` / ``unpack_bits``). Devices: CUDA, or CPU
tensors under Triton's interpreter (``TRITON_INTERPRET=1`` before the kernels are first imported;
slow, for tests). Results are torch tensors on the engine's device. The engine interface
(``diffgates.backends``)::

    from diffgates.backends.gpu import compile_gpu
    engine = compile_gpu(circuit, word_bits=32)
    result = engine(x_bits)             # what the head computes: counts, classes or output bits
    counts = engine.counts(x_bits)      # (N, k) int32 (grouped heads); engine.predict: (N,) int64
    words = engine.pack(x_bits)         # or pack once, then run on the packed words:
    result = engine.run_packed(words, n=x_bits.shape[0])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ... import _triton, gates
from ...ir import Circuit, as_input_bits, lower_cells
from ..engine import CircuitEngine

WORD_BITS = (32, 64)
KERNELS = "diffgates.backends.gpu.kernels"
_MAX_SLOTS = 1 << 28  # operand slots share an int32 with two normal-form bits (bits 30, 31)
_SLOT_MASK = _MAX_SLOTS - 1
_USES_A = np.array([g.uses_a for g in gates.GATES])
_USES_B = np.array([g.uses_b for g in gates.GATES])
# Launch tiles of the pack / unpack kernels: (words, rows) and (samples, rows) per program.
PACK_BLOCKS = {"cuda": (8, 32), "cpu": (4, 64)}
UNPACK_BLOCKS = {"cuda": (64, 32), "cpu": (64, 64)}


def gate_normal_forms() -> np.ndarray:
    """(16,) int: each gate's algebraic normal form ``c0 ^ c1 a ^ c2 b ^ c3 ab`` as bits c0 | c1<<1 | c2<<2 | c3<<3.

    From the truth table T (outputs at (a, b) = 00, 01, 10, 11): c0 = T00, c1 = T00^T10, c2 = T00^T01,
    c3 = T00^T01^T10^T11.
    """
    t = gates.TRUTH_TABLES.astype(np.int64)
    t00, t01, t10, t11 = t[:, 0], t[:, 1], t[:, 2], t[:, 3]
    c0, c1, c2, c3 = t00, t00 ^ t10, t00 ^ t01, t00 ^ t01 ^ t10 ^ t11
    return c0 | (c1 << 1) | (c2 << 2) | (c3 << 3)


_NF = gate_normal_forms()
# Per gate id, the normal-form bits of its two descriptor words (OR-ed onto the operand slots).
_HIGH_A = (((_NF & 1) << 31) | (((_NF >> 1) & 1) << 30)).astype(np.uint32)
_HIGH_B = ((((_NF >> 2) & 1) << 31) | (((_NF >> 3) & 1) << 30)).astype(np.uint32)


@dataclass(frozen=True)
class GpuPlan:
    """A circuit lowered for the packed kernel (all arrays int32, ready to upload).

    Attributes:
        n_inputs: input bits of the circuit.
        n_slots: scratch rows per program (the widest live set).
        input_index / input_slot: used input bits and the slot each is copied to.
        gate_a: operand-a slot | c0 << 31 | c1 << 30, per live gate in level order (int32 bit pattern).
        gate_b: operand-b slot | c2 << 31 | c3 << 30.
        gate_out: result slot per live gate.
        gate_node: node of each live gate in the planned (gates-only) circuit, for tests and debugging.
        level_start: (levels + 1,) gate ranges: level l is ``level_start[l]:level_start[l+1]``.
        output_slot: slot of every output, in the circuit's order (class groups for grouped heads).
        num_classes / group_size: the head's groups (1 / n_outputs for a 'bits' head).
        n_gates: gates of the planned circuit; ``n_live_gates`` of them are evaluated.
        n_cells_lowered: threshold cells of the source circuit lowered to gates first (0: none).
    """

    n_inputs: int
    n_slots: int
    input_index: np.ndarray
    input_slot: np.ndarray
    gate_a: np.ndarray
    gate_b: np.ndarray
    gate_out: np.ndarray
    gate_node: np.ndarray
    level_start: np.ndarray
    output_slot: np.ndarray
    num_classes: int
    group_size: int
    n_gates: int
    n_cells_lowered: int = 0

    @property
    def n_live_gates(self) -> int:
        return int(self.gate_out.shape[0])

    @property
    def n_levels(self) -> int:
        return int(self.level_start.shape[0]) - 1

    @property
    def n_outputs(self) -> int:
        return int(self.output_slot.shape[0])

    def operand_slots(self) -> tuple[np.ndarray, np.ndarray]:
        """(slot of a, slot of b) per live gate, without the normal-form bits."""
        return self.gate_a & _SLOT_MASK, self.gate_b & _SLOT_MASK

    def normal_forms(self) -> np.ndarray:
        """Per live gate, its normal form as in ``gate_normal_forms`` (c0 | c1<<1 | c2<<2 | c3<<3)."""
        ua, ub = self.gate_a.view(np.uint32).astype(np.int64), self.gate_b.view(np.uint32).astype(np.int64)
        return (ua >> 31) | (((ua >> 30) & 1) << 1) | ((ub >> 31) << 2) | (((ub >> 30) & 1) << 3)

    def device_arrays(self) -> dict[str, np.ndarray]:
        """The arrays the kernel reads, by name (what ``GpuCircuit`` uploads)."""
        return {name: getattr(self, name) for name in
                ("input_index", "input_slot", "gate_a", "gate_b", "gate_out", "level_start", "output_slot")}


def _is_sorted(keys: np.ndarray) -> bool:
    return bool(np.all(keys[1:] >= keys[:-1]))


def _stable_order(keys: np.ndarray, n_keys: int) -> np.ndarray:
    """Indices sorting ``keys`` (0 <= key < n_keys) stably; radix sort when the keys fit 16 bits."""
    dtype = np.uint16 if n_keys <= 1 << 16 else np.int64  # why: numpy radix-sorts 16-bit keys in O(n)
    return np.argsort(keys.astype(dtype, copy=False), kind="stable")


def assign_slots(alloc_level: np.ndarray, free_level: np.ndarray, n_levels: int) -> tuple[np.ndarray, int]:
    """Scratch slots of values allocated level by level and freed from a later level on.

    Value ``j`` is written at level ``alloc_level[j]`` (non-decreasing in j) and its slot is free
    again from level ``free_level[j]`` (> ``alloc_level[j]``; ``n_levels`` or more: never). Each
    level first pushes the slots freed at it (in value order) on a stack, then its values pop the most
    recently pushed ones in value order (the first value gets the top), and take new slots when
    the stack runs empty. One numpy slice per level and stack operation, no per-value loop.

    Returns:
        (slot per value as int32, number of slots).
    """
    n = alloc_level.shape[0]
    slot = np.empty(n, dtype=np.int32)
    if n == 0:
        return slot, 0
    levels = np.arange(n_levels + 1)
    alloc_bounds = np.searchsorted(alloc_level, levels)  # level l allocates values alloc_bounds[l]:[l+1]
    released = np.flatnonzero(free_level < n_levels).astype(np.int32)
    release_level = free_level[released]
    if not _is_sorted(release_level):  # (a layered net frees layer by layer: already in order)
        order = _stable_order(release_level, n_levels)
        released, release_level = released[order], release_level[order]
        del order
    free_bounds = np.searchsorted(release_level, levels)
    del release_level
    stack = np.empty(n, dtype=np.int32)
    top = n_slots = 0
    for lv in range(n_levels):
        freed = released[free_bounds[lv]:free_bounds[lv + 1]]
        if freed.size:
            stack[top:top + freed.size] = slot[freed]
            top += freed.size
        lo, hi = int(alloc_bounds[lv]), int(alloc_bounds[lv + 1])
        if hi == lo:
            continue
        take = min(top, hi - lo)
        slot[lo:lo + take] = stack[top - take:top][::-1]  # last pushed first
        top -= take
        fresh = hi - lo - take
        slot[lo + take:hi] = np.arange(n_slots, n_slots + fresh, dtype=np.int32)
        n_slots += fresh
    return slot, n_slots


def plan_circuit(circuit: Circuit) -> GpuPlan:
    """Lower ``circuit`` to a ``GpuPlan``: cells to gates, dead-gate removal, ALAP levels, liveness slots.

    Args:
        circuit: any valid Circuit (levelized or not, with or without threshold cells, any head).
            Threshold cells are lowered to gates first (``diffgates.ir.lower_cells``): the kernel has none.

    Returns:
        The plan; ``plan.n_slots`` is the scratch rows one program needs.

    Raises:
        ValueError: the live set needs more slots than the kernel's 28-bit slot fields hold.
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"plan_circuit expects a diffgates Circuit, got {type(circuit).__name__}")
    return _plan_gates(lower_cells(circuit), circuit.n_thresholds)


def _plan_gates(c: Circuit, n_cells_lowered: int) -> GpuPlan:
    """``plan_circuit`` of a gates-only circuit (``n_cells_lowered``: cells its source had)."""
    n_in, n_nodes = c.n_inputs, c.n_nodes
    if n_nodes >= 1 << 31:
        raise ValueError(f"circuit has {n_nodes} nodes; the GPU plan numbers nodes in int32 (fewer than 2**31)")
    live = c.analysis.live
    live_cells = np.flatnonzero(live[n_in:]).astype(np.int32)  # why int32: half the memory at 10M gates
    ops = c.ops[live_cells]
    # ALAP levels of the live gates, renumbered 1..depth (dead deeper gates may leave early levels empty).
    level = c.analysis.alap[live_cells].astype(np.int32)
    if level.size:
        level -= level.min() - 1
    depth = int(level.max()) if level.size else 0
    if not _is_sorted(level):  # not yet in level order (a layered net usually is)
        order = _stable_order(level, depth + 1)
        live_cells, ops, level = live_cells[order], ops[order], level[order]
        del order
    gate_node = live_cells + np.int32(n_in)
    uses_a, uses_b = _USES_A[ops], _USES_B[ops]
    a = c.a[live_cells].astype(np.int32)
    a[~uses_a] = -1  # -1: operand not read
    b = c.b[live_cells].astype(np.int32)
    b[~uses_b] = -1
    del live_cells

    # The last level reading each node (levels ascend, so a later level overwrites an earlier one);
    # outputs are read after the last level, by the group sums or the bit copy.
    end = depth + 1
    last_read = np.zeros(n_nodes + 1, dtype=np.int32)  # slot n_nodes absorbs the unread operands (-1)
    level_start = np.zeros(depth + 1, dtype=np.int64)
    level_start[1:] = np.cumsum(np.bincount(level, minlength=depth + 1)[1:])
    for lv in range(1, depth + 1):
        s, e = level_start[lv - 1], level_start[lv]
        last_read[a[s:e]] = lv
        last_read[b[s:e]] = lv
    last_read = last_read[:n_nodes]
    last_read[c.outputs] = end

    # Values in allocation order: the used inputs (level 0), then the gates level by level.
    used_inputs = np.flatnonzero(live[:n_in]).astype(np.int32)
    values = np.concatenate([used_inputs, gate_node])
    alloc_level = np.concatenate([np.zeros(used_inputs.size, dtype=np.int32), level])
    # A slot is free again from the level after its value's last reader: readers of one level run in
    # parallel with its writers, so a slot must never be rewritten within the level that reads it.
    value_slot, n_slots = assign_slots(alloc_level, last_read[values] + 1, end + 1)
    del alloc_level
    if n_slots >= _MAX_SLOTS:
        raise ValueError(f"circuit needs {n_slots} live slots; the packed kernel supports fewer than {_MAX_SLOTS}")
    slot = np.full(n_nodes, -1, dtype=np.int32)
    slot[values] = value_slot
    del values

    n_used = used_inputs.size
    out_slot = value_slot[n_used:]  # a view: the plan keeps copies (its arrays never share memory)
    # An ignored operand reads the used one (or the gate's own slot): always an allocated slot.
    sa = np.where(uses_a, slot[a], np.where(uses_b, slot[b], out_slot))
    sb = np.where(uses_b, slot[b], sa)
    del a, b
    gate_a = (sa.view(np.uint32) | _HIGH_A[ops]).view(np.int32)
    gate_b = (sb.view(np.uint32) | _HIGH_B[ops]).view(np.int32)
    return GpuPlan(n_inputs=n_in, n_slots=max(int(n_slots), 1),  # masked kernel lanes read slot 0
                   input_index=used_inputs, input_slot=value_slot[:n_used].copy(),
                   gate_a=gate_a, gate_b=gate_b, gate_out=out_slot.copy(),
                   gate_node=gate_node, level_start=level_start.astype(np.int32),
                   output_slot=slot[c.outputs], num_classes=c.num_classes, group_size=c.group_size,
                   n_gates=c.n_gates, n_cells_lowered=int(n_cells_lowered))


@dataclass(frozen=True)
class GpuEngineConfig:
    """Launch parameters of the packed kernel (powers of two), to be tuned on the GPU (``bench_gpu.py --sweep``).

    The defaults aim at keeping every program's scratch in the L2 cache: a program holds about two layer
    widths of rows (15.5K rows for the 48K-gate net), so 16-byte rows x one program per SM is ~33 MB.

    Attributes:
        block_words: words per tile (a tile is ``block_words * word_bits`` samples); None = 16-byte rows
            (4 x 32-bit or 2 x 64-bit words).
        block_gates: gates evaluated per step of a program.
        block_outputs: outputs added to the lane counters per step.
        count_lane_bits: 4 (nibble lanes: 4 shift-and-adds per output word, flushed every 15 steps) or
            8 (byte lanes: 8 per word, flushed every 255 steps).
        programs: persistent programs; None = ``programs_per_sm`` x the device's SM count.
        programs_per_sm: see ``programs``.
        num_warps: warps per program.
    """

    block_words: int | None = None
    block_gates: int = 256
    block_outputs: int = 64
    count_lane_bits: int = 4
    programs: int | None = None
    programs_per_sm: int = 1
    num_warps: int = 8

    def words_per_tile(self, word_bits: int) -> int:
        return self.block_words or max(1, 128 // word_bits)

    def validate(self) -> None:
        for name in ("block_words", "block_gates", "block_outputs", "programs", "programs_per_sm", "num_warps"):
            v = getattr(self, name)
            if v is None and name in ("block_words", "programs"):
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"GpuEngineConfig.{name} must be a positive integer, got {v!r}")
            if name.startswith("block") and v & (v - 1):
                raise ValueError(f"GpuEngineConfig.{name} must be a power of two, got {v}")
        if self.count_lane_bits not in (4, 8):
            raise ValueError(f"GpuEngineConfig.count_lane_bits must be 4 or 8, got {self.count_lane_bits!r}")


# The interpreter runs programs one after another in numpy: few small tiles, several per program
# (so the persistent loop and its barriers are exercised by the CPU tests).
INTERPRETER_CONFIG = GpuEngineConfig(block_words=2, block_gates=32, block_outputs=32, programs=2, num_warps=4)


def _kernels(device: torch.device):
    """The packed-kernel module, checked to suit ``device`` (same rules as the training kernels)."""
    return _triton.triton_module(KERNELS, device, "the diffgates GPU engine kernels")


def _default_device() -> torch.device:
    """CUDA when present, else the CPU under Triton's interpreter; otherwise an error saying why not."""
    reason = _triton.unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"the diffgates GPU engine cannot run: {reason}")
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _word_types(word_bits: int):
    """(Triton unsigned type, Triton signed type, torch storage dtype) of a word."""
    if word_bits not in WORD_BITS:
        raise ValueError(f"word_bits must be 32 or 64, got word_bits={word_bits!r}")
    import triton.language as tl
    return (tl.uint32, tl.int32, torch.int32) if word_bits == 32 else (tl.uint64, tl.int64, torch.int64)


def lane_ones(word_bits: int, lane_bits: int) -> int:
    """A word with the lowest bit of every lane set: 0x01010101 for byte lanes of 32-bit words."""
    return sum(1 << i for i in range(0, word_bits, lane_bits))


def circuit_kernel_constants(word_bits: int, config: GpuEngineConfig, write_counts: bool,
                             write_bits: bool) -> dict[str, Any]:
    """The compile-time arguments of ``_circuit_kernel`` for one launch (also what ``tools.gpu_aot`` compiles)."""
    word, signed, _ = _word_types(word_bits)
    return {"WORD": word, "SIGNED": signed, "WB": word_bits, "LANE_BITS": config.count_lane_bits,
            "LANES": lane_ones(word_bits, config.count_lane_bits), "BLOCK_W": config.words_per_tile(word_bits),
            "BLOCK_G": config.block_gates, "BLOCK_O": config.block_outputs, "WRITE_COUNTS": bool(write_counts),
            "WRITE_BITS": bool(write_bits)}


_TORCH_INTEGERS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32,
                   torch.uint64)


def _bits_on_device(x, n_inputs: int, device: torch.device) -> torch.Tensor:
    """(N, n_inputs) 0/1 data of any real dtype -> contiguous uint8 tensor on ``device``.

    numpy (and other array-like) input goes through ``diffgates.ir.as_input_bits``; torch tensors are
    checked on the device, in their own dtype (float16 / bfloat16 hold 0 and 1 exactly, so they pass
    when they hold nothing else). Non-binary values raise a ValueError naming the first bad value and
    its position.
    """
    if not isinstance(x, torch.Tensor):
        return torch.from_numpy(as_input_bits(x, n_inputs).view(np.uint8)).to(device)
    t = x.detach()
    if t.dim() == 1 and t.shape[0] == n_inputs:
        raise ValueError(f"expected a batch of shape (N, {n_inputs}), got a single row of shape "
                         f"{tuple(t.shape)}; use x[None, :] for one sample")
    if t.dim() > 2 and t.shape[0] >= 1:
        t = t.reshape(t.shape[0], -1)  # images flatten row-major, like torch.nn.Flatten
    if t.dim() != 2 or t.shape[1] != n_inputs or t.shape[0] < 1:
        raise ValueError(f"expected input of shape (N >= 1, {n_inputs}), got shape {tuple(x.shape)}")
    dtype = t.dtype
    if dtype != torch.bool and not dtype.is_floating_point and dtype not in _TORCH_INTEGERS:
        raise ValueError(f"expected bool, integer or float input bits, got dtype {dtype}")
    t = t.to(device)
    if dtype == torch.bool:
        return t.contiguous().view(torch.uint8)
    if dtype in (torch.uint16, torch.uint32, torch.uint64) or (dtype.is_floating_point and dtype.itemsize == 1):
        t = t.to(torch.float32 if dtype.is_floating_point else torch.int64)  # few ops take these dtypes: widen
    ones = t == 1
    bad = ~ones & (t != 0)
    if bool(bad.any()):
        r, c = (int(v) for v in bad.nonzero()[0])
        value = x.detach()[r].reshape(-1)[c].item()
        raise ValueError(f"circuit inputs must be binary (0 or 1); got {value!r} at sample {r}, input {c} "
                         f"({int(bad.sum())} non-binary values in total). Binarize first, e.g. with "
                         f"Dataset.encode(x, binary=True)")
    return ones.contiguous().view(torch.uint8)


def pack_bits(x: torch.Tensor, word_bits: int = 32) -> torch.Tensor:
    """(N, D) uint8/bool {0,1} tensor -> (D, ceil(N / word_bits)) int32/int64 words, on x's device.

    Bit s of word w of row d is ``x[word_bits * w + s, d]``; padding bits of the last word are 0.
    """
    word, signed, torch_word = _word_types(word_bits)
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"pack_bits expects an (N, D) tensor, got {type(x).__name__} of shape "
                         f"{tuple(getattr(x, 'shape', ()))}")
    if x.dtype == torch.bool:
        x = x.view(torch.uint8)
    if x.dtype != torch.uint8:
        raise ValueError(f"pack_bits expects bool or uint8 bits, got dtype {x.dtype}")
    x = x.contiguous()
    n, d = x.shape
    n_words = -(-n // word_bits)
    out = torch.empty((d, n_words), dtype=torch_word, device=x.device)
    if n and d:
        k = _kernels(x.device)
        block_w, block_d = PACK_BLOCKS["cuda" if x.device.type == "cuda" else "cpu"]
        grid = (-(-n_words // block_w), -(-d // block_d))
        k._pack_kernel[grid](x, out, n, d, n_words, WORD=word, SIGNED=signed, WB=word_bits,
                             BLOCK_W=block_w, BLOCK_D=block_d)
    return out


def unpack_bits(words: torch.Tensor, n: int, word_bits: int = 32) -> torch.Tensor:
    """(R, W) int32/int64 words -> (n, R) bool tensor on the words' device; inverse of ``pack_bits``."""
    word, _, torch_word = _word_types(word_bits)
    if not isinstance(words, torch.Tensor) or words.dim() != 2 or words.dtype != torch_word:
        raise ValueError(f"unpack_bits expects (R, W) {torch_word} words for word_bits={word_bits}, got "
                         f"shape {tuple(getattr(words, 'shape', ()))} dtype {getattr(words, 'dtype', None)}")
    if not 0 <= n <= words.shape[1] * word_bits:
        raise ValueError(f"n={n} samples do not fit in {words.shape[1]} words of {word_bits} bits")
    words = words.contiguous()
    r = words.shape[0]
    out = torch.empty((n, r), dtype=torch.uint8, device=words.device)
    if n and r:
        k = _kernels(words.device)
        block_s, block_r = UNPACK_BLOCKS["cuda" if words.device.type == "cuda" else "cpu"]
        grid = (-(-n // block_s), -(-r // block_r))
        k._unpack_kernel[grid](words, out, n, r, words.shape[1], WORD=word, WB=word_bits,
                               BLOCK_S=block_s, BLOCK_R=block_r)
    return out.view(torch.bool)


class GpuCircuit(CircuitEngine):
    """A circuit compiled for bit-packed evaluation on one device (build with ``compile_gpu``).

    Calling it returns what the circuit's head computes, as a torch tensor on the device: (N, k) int32
    class counts ('group_sum'), (N,) int64 classes ('argmax', ties to the lowest class) or (N, n_outputs)
    bool output bits ('bits'); each equals ``diffgates.ir.head_outputs`` bit for bit.

    Attributes:
        circuit: the source circuit. gates_circuit: what runs (``circuit`` with its cells lowered).
        plan: the lowering (slots, levels, gate descriptors).
        word_bits: 32 or 64. device: where the plan lives and the kernels run.
        config: launch parameters (settable; checked when set).
    """

    backend = "gpu"

    def __init__(self, circuit: Circuit, gates_circuit: Circuit, plan: GpuPlan, word_bits: int,
                 device: torch.device, config: GpuEngineConfig):
        self.circuit = circuit
        self.gates_circuit = gates_circuit
        self.plan = plan
        self.word_bits = int(word_bits)
        self.device = device
        self.config = config
        self._tensors = {name: torch.from_numpy(arr).to(device) for name, arr in plan.device_arrays().items()}

    @property
    def config(self) -> GpuEngineConfig:
        return self._config

    @config.setter
    def config(self, value: GpuEngineConfig) -> None:
        if not isinstance(value, GpuEngineConfig):
            raise TypeError(f"config must be a GpuEngineConfig, got {type(value).__name__}")
        value.validate()
        self._config = value

    def __repr__(self) -> str:
        p = self.plan
        return (f"GpuCircuit(inputs={p.n_inputs}, head={self.circuit.head.kind}, classes={self.num_classes}, "
                f"live_gates={p.n_live_gates}, levels={p.n_levels}, slots={p.n_slots}, "
                f"word_bits={self.word_bits}, device={str(self.device)!r})")

    # ---- input ---------------------------------------------------------------------------------------
    def pack(self, x) -> torch.Tensor:
        """(N, n_inputs) 0/1 data (numpy or torch, any device) -> (n_inputs, ceil(N / word_bits)) words on
        the device (int32 or int64), for ``run_packed``."""
        return pack_bits(_bits_on_device(x, self.n_inputs, self.device), self.word_bits)

    def _check_packed(self, words, n) -> tuple[torch.Tensor, int]:
        _, _, torch_word = _word_types(self.word_bits)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive number of samples, got n={n!r}")
        n = int(n)
        n_words = -(-n // self.word_bits)
        if not isinstance(words, torch.Tensor) or words.dim() != 2 or words.shape[0] != self.n_inputs \
                or words.dtype != torch_word:
            raise ValueError(f"expected packed input of shape ({self.n_inputs}, >= {n_words}) and dtype "
                             f"{torch_word} (word_bits={self.word_bits}, from engine.pack), got "
                             f"{type(words).__name__} of shape {tuple(getattr(words, 'shape', ()))} "
                             f"dtype {getattr(words, 'dtype', None)}")
        if words.shape[1] < n_words:
            raise ValueError(f"{words.shape[1]} words of {self.word_bits} bits hold fewer than n={n} samples")
        if words.device != self.device:
            raise ValueError(f"packed input is on {words.device}, the engine on {self.device}")
        if words.shape[1] != n_words:
            words = words[:, :n_words]  # the kernel's rows are n_words long (bits output included)
        return words.contiguous(), n

    # ---- running -------------------------------------------------------------------------------------
    def _run(self, words: torch.Tensor, n: int, counts: bool, bits: bool):
        """The kernel on checked packed input: (counts or None, packed output bits or None)."""
        k = _kernels(self.device)
        cfg, plan, t = self.config, self.plan, self._tensors
        _, _, torch_word = _word_types(self.word_bits)
        n_words = words.shape[1]
        block_w = cfg.words_per_tile(self.word_bits)
        n_tiles = -(-n_words // block_w)
        programs = cfg.programs
        if programs is None:
            cuda = self.device.type == "cuda"
            sms = torch.cuda.get_device_properties(self.device).multi_processor_count if cuda else 1
            programs = cfg.programs_per_sm * sms
        grid = max(1, min(programs, n_tiles))
        scratch = torch.empty((grid, plan.n_slots, block_w), dtype=torch_word, device=self.device)
        out_counts = torch.empty((n, plan.num_classes) if counts else (1,), dtype=torch.int32, device=self.device)
        out_bits = torch.empty((plan.n_outputs, n_words) if bits else (1,), dtype=torch_word, device=self.device)
        k._circuit_kernel[(grid,)](
            words, n_words, n, n_tiles,
            t["input_index"], t["input_slot"], int(plan.input_index.shape[0]),
            t["gate_a"], t["gate_b"], t["gate_out"], t["level_start"], plan.n_levels,
            t["output_slot"], plan.n_outputs, plan.group_size, plan.num_classes,
            scratch, plan.n_slots, out_counts, out_bits,
            **circuit_kernel_constants(self.word_bits, cfg, counts, bits), num_warps=cfg.num_warps)
        return out_counts if counts else None, out_bits if bits else None

    def _head(self, words: torch.Tensor, n: int) -> torch.Tensor:
        kind = self.circuit.head.kind
        if kind == "bits":
            return unpack_bits(self._run(words, n, counts=False, bits=True)[1], n, self.word_bits)
        counts = self._run(words, n, counts=True, bits=False)[0]
        return counts.argmax(-1) if kind == "argmax" else counts

    def __call__(self, x) -> torch.Tensor:
        """(N, n_inputs) 0/1 data (bool, integer or float; numpy or torch) -> what the head computes:
        (N, num_classes) int32 counts, (N,) int64 classes ('argmax') or (N, n_outputs) bool ('bits')."""
        bits = _bits_on_device(x, self.n_inputs, self.device)
        return self._head(pack_bits(bits, self.word_bits), bits.shape[0])

    def run_packed(self, words: torch.Tensor, n: int) -> torch.Tensor:
        """What ``engine(x)`` returns, for the first ``n`` samples of ``words = engine.pack(x)`` (or
        ``pack_bits``): (n_inputs, >= ceil(n / word_bits)) words on the engine's device."""
        words, n = self._check_packed(words, n)
        return self._head(words, n)

    def counts(self, x) -> torch.Tensor:
        """(N, n_inputs) 0/1 data -> (N, num_classes) int32 true outputs per class group (grouped heads)."""
        self._require_grouped("class counts")
        bits = _bits_on_device(x, self.n_inputs, self.device)
        return self._run(pack_bits(bits, self.word_bits), bits.shape[0], counts=True, bits=False)[0]

    def counts_packed(self, words: torch.Tensor, n: int) -> torch.Tensor:
        """``counts`` from packed input (as ``run_packed``), for any grouped head."""
        self._require_grouped("class counts")
        words, n = self._check_packed(words, n)
        return self._run(words, n, counts=True, bits=False)[0]

    def evaluate_outputs(self, x) -> torch.Tensor:
        """(N, n_inputs) 0/1 data -> (N, n_outputs) bool output bits, for any head (== ``ir.evaluate_outputs``)."""
        bits = _bits_on_device(x, self.n_inputs, self.device)
        n = bits.shape[0]
        _, out = self._run(pack_bits(bits, self.word_bits), n, counts=False, bits=True)
        return unpack_bits(out, n, self.word_bits)

    def stats(self) -> dict[str, Any]:
        """Sizes of the compiled form (for reports)."""
        p = self.plan
        block_w = self.config.words_per_tile(self.word_bits)
        return {"backend": self.backend, "head": self.circuit.head.kind, "gates": self.circuit.n_gates,
                "thresholds_lowered": p.n_cells_lowered, "planned_gates": p.n_gates,
                "live_gates": p.n_live_gates, "levels": p.n_levels, "slots": p.n_slots,
                "scratch_bytes_per_program": p.n_slots * block_w * self.word_bits // 8,
                "plan_bytes": int(sum(a.nbytes for a in p.device_arrays().values())),
                "word_bits": self.word_bits, "device": str(self.device)}


def compile_gpu(circuit: Circuit, word_bits: int = 32, device: str | torch.device | None = None,
                config: GpuEngineConfig | None = None) -> GpuCircuit:
    """Lower ``circuit`` for bit-packed evaluation on a GPU.

    Args:
        circuit: the Circuit to run (threshold cells are lowered to gates first: the kernel has none).
        word_bits: 32 or 64 samples per word.
        device: 'cuda' (default when available) or, under ``TRITON_INTERPRET=1``, 'cpu'.
        config: launch parameters (default: ``GpuEngineConfig()`` on CUDA, ``INTERPRETER_CONFIG`` on CPU).

    Returns:
        A ``GpuCircuit``; ``engine(x)`` equals ``diffgates.ir.head_outputs(circuit, x)``.
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"compile_gpu expects a diffgates Circuit, got {type(circuit).__name__} "
                        f"(diffgates.compile also takes a model)")
    if isinstance(word_bits, bool) or word_bits not in WORD_BITS:
        raise ValueError(f"word_bits must be 32 or 64, got word_bits={word_bits!r}")
    dev = torch.device(device) if device is not None else _default_device()
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={str(dev)!r}, but torch sees no CUDA device here; on a machine without one, "
                           f"set TRITON_INTERPRET=1 and use device='cpu' (Triton's interpreter: slow, for tests)")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    _kernels(dev)
    if config is None:
        config = INTERPRETER_CONFIG if dev.type == "cpu" else GpuEngineConfig()
    config.validate()
    gates_only = lower_cells(circuit)
    return GpuCircuit(circuit, gates_only, _plan_gates(gates_only, circuit.n_thresholds), int(word_bits), dev, config)

"""Bit-packed GPU inference of a Circuit: ``compile_gpu(circuit) -> GpuCircuit``.

The batch is packed into 32- or 64-bit words (bit s of word w is sample ``word_bits * w + s``), so one
word operation evaluates a gate for 32 or 64 samples. The whole circuit runs in one persistent Triton
kernel (``diffgates.kernels.gpu_packed``): each program takes a tile of words through every logic
level in a private, cache-resident scratch area and ends with the per-class counts. Results are exact
for every batch size (padding bits of the last word are never counted) and equal the numpy reference
``diffgates.circuit.group_counts`` bit for bit.

``compile_gpu`` first lowers the circuit to a ``GpuPlan`` on the CPU (numpy):

* gates no output depends on are dropped (and inputs a gate ignores are not dependencies);
* the remaining gates are ordered by logic level; a level only reads earlier levels, so its gates run
  in parallel and one barrier separates levels;
* every live value gets a scratch *slot* by liveness: a slot is reused from the level after its
  value's last reader, so the scratch holds the widest live set (about two layer widths for a layered
  net), not every node;
* each gate becomes three int32s: its operand slots and its output slot; the gate's 4-bit algebraic
  normal form rides in the top bits of the operand words (c0, c1 in bits 31, 30 of ``gate_a``; c2, c3
  in those of ``gate_b``), where one arithmetic shift turns a bit into a word mask.

Packing and unpacking run on the device too (``pack_bits`` / ``unpack_bits``). Devices: CUDA, or CPU
tensors under Triton's interpreter (``TRITON_INTERPRET=1``; slow, for tests). Example::

    from diffgates.engines.gpu import compile_gpu
    engine = compile_gpu(circuit, word_bits=32)
    counts = engine.group_counts(x_bits)          # (N, k) int32 on the device
    words = engine.pack(x_bits)                   # or pack once, then run on packed words:
    counts = engine.group_counts_packed(words, n=x_bits.shape[0])
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .. import gates
from ..circuit.evaluate import as_input_bits
from ..circuit.ir import Circuit
from ..kernels import gpu as _gpu_kernels

WORD_BITS = (32, 64)
_MAX_SLOTS = 1 << 28  # operand slots share an int32 with two normal-form bits (bits 30, 31)
_SLOT_MASK = _MAX_SLOTS - 1
_USES_A = np.array([g.uses_a for g in gates.GATES])
_USES_B = np.array([g.uses_b for g in gates.GATES])


def gate_normal_forms() -> np.ndarray:
    """(16,) int: each gate's algebraic normal form ``c0 ^ c1 a ^ c2 b ^ c3 ab`` as bits c0 | c1<<1 | c2<<2 | c3<<3.

    From the truth table T (outputs at (a, b) = 00, 01, 10, 11): c0 = T00, c1 = T00^T10, c2 = T00^T01,
    c3 = T00^T01^T10^T11.
    """
    t = gates.TRUTH_TABLES.astype(np.int64)
    t00, t01, t10, t11 = t[:, 0], t[:, 1], t[:, 2], t[:, 3]
    c0, c1, c2, c3 = t00, t00 ^ t10, t00 ^ t01, t00 ^ t01 ^ t10 ^ t11
    return c0 | (c1 << 1) | (c2 << 2) | (c3 << 3)


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
        level_start: (levels + 1,) gate ranges: level l is ``level_start[l]:level_start[l+1]``.
        output_slot: slot of every output, in the circuit's class-group order.
        num_classes / group_size: the group-sum head.
        n_gates: gates of the circuit; ``n_live_gates`` of them are evaluated.
    """

    n_inputs: int
    n_slots: int
    input_index: np.ndarray
    input_slot: np.ndarray
    gate_a: np.ndarray
    gate_b: np.ndarray
    gate_out: np.ndarray
    level_start: np.ndarray
    output_slot: np.ndarray
    num_classes: int
    group_size: int
    n_gates: int

    @property
    def n_live_gates(self) -> int:
        return int(self.gate_out.shape[0])

    @property
    def n_levels(self) -> int:
        return int(self.level_start.shape[0]) - 1

    def operand_slots(self) -> tuple[np.ndarray, np.ndarray]:
        """(slot of a, slot of b) per live gate, without the normal-form bits."""
        return self.gate_a & _SLOT_MASK, self.gate_b & _SLOT_MASK

    def normal_forms(self) -> np.ndarray:
        """Per live gate, its normal form as in ``gate_normal_forms`` (c0 | c1<<1 | c2<<2 | c3<<3)."""
        ua, ub = self.gate_a.view(np.uint32).astype(np.int64), self.gate_b.view(np.uint32).astype(np.int64)
        return (ua >> 31) | (((ua >> 30) & 1) << 1) | ((ub >> 31) << 2) | (((ub >> 30) & 1) << 3)


def plan_circuit(circuit: Circuit) -> GpuPlan:
    """Lower ``circuit`` to a ``GpuPlan``: dead-gate removal, level order, liveness slot assignment.

    Args:
        circuit: any valid Circuit (levelized or not).

    Returns:
        The plan; ``plan.n_slots`` is the scratch rows one program needs.
    """
    n_in, n_nodes = circuit.n_inputs, circuit.n_nodes
    ops, a, b = circuit.ops.astype(np.int64), circuit.a, circuit.b
    uses_a, uses_b = _USES_A[ops], _USES_B[ops]
    level = circuit.levels()  # inputs 0; a gate 1 + the deepest input it actually uses
    gate_level = level[n_in:]

    # Liveness of nodes: outputs, then (deepest level first) the inputs live gates use.
    live = np.zeros(n_nodes, dtype=bool)
    live[circuit.outputs] = True
    depth = int(gate_level.max()) if circuit.n_gates else 0
    by_gate_level = np.argsort(gate_level, kind="stable")
    bounds = np.searchsorted(gate_level[by_gate_level], np.arange(depth + 2))
    by_level = [by_gate_level[bounds[lv]:bounds[lv + 1]] for lv in range(depth + 1)]
    for lv in range(depth, 0, -1):
        g = by_level[lv][live[n_in + by_level[lv]]]
        live[a[g[uses_a[g]]]] = True
        live[b[g[uses_b[g]]]] = True

    # Last level reading each node; outputs are read after the last level (by the group sums).
    end = depth + 1
    last_use = np.full(n_nodes, -1, dtype=np.int64)
    live_gates = [g[live[n_in + g]] for g in by_level]
    for lv in range(1, depth + 1):
        g = live_gates[lv]
        np.maximum.at(last_use, a[g[uses_a[g]]], lv)
        np.maximum.at(last_use, b[g[uses_b[g]]], lv)
    last_use[circuit.outputs] = end

    # Slots: a value's slot is free again from the level after its last reader (level-parallel
    # reads must never see a slot rewritten within the same level). Most recently freed first.
    slot = np.full(n_nodes, -1, dtype=np.int64)
    free: list[int] = []
    n_slots = 0
    releases: list[list[np.ndarray]] = [[] for _ in range(end + 1)]

    def allocate(nodes: np.ndarray) -> None:
        nonlocal n_slots
        take = min(len(free), len(nodes))
        got = [free.pop() for _ in range(take)]
        fresh = list(range(n_slots, n_slots + len(nodes) - take))
        n_slots += len(fresh)
        slot[nodes] = np.asarray(got + fresh, dtype=np.int64)
        for lu in np.unique(last_use[nodes]):
            releases[lu].append(nodes[last_use[nodes] == lu])

    used_inputs = np.flatnonzero(live[:n_in])
    allocate(used_inputs)
    for lv in range(1, depth + 1):
        for nodes in releases[lv - 1]:
            free.extend(slot[nodes].tolist())
        allocate(n_in + live_gates[lv])
    if n_slots >= _MAX_SLOTS:
        raise ValueError(f"circuit needs {n_slots} live slots; the packed kernel supports fewer than {_MAX_SLOTS}")
    n_slots = max(n_slots, 1)  # masked kernel lanes read slot 0

    order = np.concatenate(live_gates[1:]) if depth else np.zeros(0, dtype=np.int64)
    out_slot = slot[n_in + order]
    ua, ub = uses_a[order], uses_b[order]
    # An ignored operand reads the used one (or the gate's own slot): always an allocated slot.
    sa = np.where(ua, slot[a[order]], np.where(ub, slot[b[order]], out_slot))
    sb = np.where(ub, slot[b[order]], np.where(ua, slot[a[order]], out_slot))
    level_start = np.concatenate([[0], np.cumsum([len(live_gates[lv]) for lv in range(1, depth + 1)])])
    nf = gate_normal_forms()[ops[order]]

    def i32(v) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(v, dtype=np.int64).astype(np.uint32).view(np.int32))

    gate_a = sa | ((nf & 1) << 31) | (((nf >> 1) & 1) << 30)
    gate_b = sb | (((nf >> 2) & 1) << 31) | (((nf >> 3) & 1) << 30)
    return GpuPlan(n_inputs=n_in, n_slots=int(n_slots), input_index=i32(used_inputs),
                   input_slot=i32(slot[used_inputs]), gate_a=i32(gate_a), gate_b=i32(gate_b),
                   gate_out=i32(out_slot), level_start=i32(level_start), output_slot=i32(slot[circuit.outputs]),
                   num_classes=circuit.num_classes, group_size=circuit.group_size, n_gates=circuit.n_gates)


@dataclass(frozen=True)
class GpuEngineConfig:
    """Launch parameters of the packed kernel (powers of two), to be tuned on the GPU (``bench_gpu.py --sweep``).

    The defaults aim at keeping every program's scratch in the L2 cache: a program holds about two layer
    widths of rows (16.8K rows for the 48K-gate net), so 16-byte rows x one program per SM is ~35 MB.

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
    return _gpu_kernels.triton_module("gpu_packed", device, "the diffgates GPU engine kernels")


def _default_device() -> torch.device:
    """CUDA when present, else the CPU under Triton's interpreter; otherwise an error saying why not."""
    reason = _gpu_kernels.unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"the diffgates GPU engine cannot run: {reason}")
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _word_types(word_bits: int):
    """(Triton unsigned type, Triton signed type, torch storage dtype) of a word."""
    if word_bits not in WORD_BITS:
        raise ValueError(f"word_bits must be 32 or 64, got word_bits={word_bits!r}")
    import triton.language as tl
    return (tl.uint32, tl.int32, torch.int32) if word_bits == 32 else (tl.uint64, tl.int64, torch.int64)


def _lane_ones(word_bits: int, lane_bits: int) -> int:
    """A word with the lowest bit of every lane set: 0x01010101 for byte lanes of 32-bit words."""
    return sum(1 << i for i in range(0, word_bits, lane_bits))


def _bits_on_device(x, n_inputs: int, device: torch.device) -> torch.Tensor:
    """(N, n_inputs) 0/1 data of any real dtype -> contiguous uint8 tensor on ``device``.

    Non-binary values raise the ``as_input_bits`` error, naming the first bad value and its position.
    """
    if not isinstance(x, torch.Tensor):
        return torch.from_numpy(as_input_bits(x, n_inputs).view(np.uint8)).to(device)
    t = x.detach()
    if t.dim() == 1 and t.shape[0] == n_inputs:
        raise ValueError(f"expected a batch of shape (N, {n_inputs}), got a single row of shape "
                         f"{tuple(t.shape)}; use x[None, :] for one sample")
    if t.dim() > 2:
        t = t.reshape(t.shape[0], -1)  # images flatten row-major, like torch.nn.Flatten
    if t.dim() != 2 or t.shape[1] != n_inputs or t.shape[0] < 1:
        raise ValueError(f"expected input of shape (N >= 1, {n_inputs}), got shape {tuple(x.shape)}")
    if t.is_complex():
        raise ValueError(f"expected bool, integer or float input bits, got dtype {t.dtype}")
    t = t.to(device)
    if t.dtype != torch.bool:
        bad = (t != 0) & (t != 1)
        if bool(bad.any()):
            r, c = (int(v) for v in bad.nonzero()[0])
            raise ValueError(f"circuit inputs must be binary (0 or 1); got {t[r, c].item()!r} at sample {r}, "
                             f"input {c} ({int(bad.sum())} non-binary values in total). Binarize first, e.g. "
                             f"with Dataset.encode(x, binary=True)")
        t = t != 0
    return t.contiguous().view(torch.uint8)


def pack_bits(x: torch.Tensor, word_bits: int = 32) -> torch.Tensor:
    """(N, D) uint8/bool {0,1} tensor -> (D, ceil(N / word_bits)) int32/int64 words, on x's device.

    Bit s of word w of row d is ``x[word_bits * w + s, d]``; padding bits of the last word are 0.
    """
    word, signed, torch_word = _word_types(word_bits)
    if x.dim() != 2:
        raise ValueError(f"pack_bits expects an (N, D) tensor, got shape {tuple(x.shape)}")
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
        block_w, block_d = (8, 32) if x.device.type == "cuda" else (4, 64)
        grid = (-(-n_words // block_w), -(-d // block_d))
        k._pack_kernel[grid](x, out, n, d, n_words, WORD=word, SIGNED=signed, WB=word_bits,
                             BLOCK_W=block_w, BLOCK_D=block_d)
    return out


def unpack_bits(words: torch.Tensor, n: int, word_bits: int = 32) -> torch.Tensor:
    """(R, W) int32/int64 words -> (n, R) bool tensor on the words' device; inverse of ``pack_bits``."""
    word, _, torch_word = _word_types(word_bits)
    if words.dim() != 2 or words.dtype != torch_word:
        raise ValueError(f"unpack_bits expects (R, W) {torch_word} words for word_bits={word_bits}, got "
                         f"shape {tuple(words.shape)} dtype {words.dtype}")
    if not 0 <= n <= words.shape[1] * word_bits:
        raise ValueError(f"n={n} samples do not fit in {words.shape[1]} words of {word_bits} bits")
    words = words.contiguous()
    r = words.shape[0]
    out = torch.empty((n, r), dtype=torch.uint8, device=words.device)
    if n and r:
        k = _kernels(words.device)
        block_s, block_r = (64, 32) if words.device.type == "cuda" else (64, 64)
        grid = (-(-n // block_s), -(-r // block_r))
        k._unpack_kernel[grid](words, out, n, r, words.shape[1], WORD=word, WB=word_bits,
                               BLOCK_S=block_s, BLOCK_R=block_r)
    return out.view(torch.bool)


@dataclass
class GpuCircuit:
    """A circuit compiled for bit-packed evaluation on one device (build with ``compile_gpu``).

    Attributes:
        circuit: the source circuit.
        plan: its lowering (slots, levels, gate descriptors).
        word_bits: 32 or 64.
        device: where the plan lives and the kernels run.
        config: launch parameters.
    """

    circuit: Circuit
    plan: GpuPlan
    word_bits: int
    device: torch.device
    config: GpuEngineConfig
    _tensors: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name in ("input_index", "input_slot", "gate_a", "gate_b", "gate_out", "level_start", "output_slot"):
            self._tensors[name] = torch.from_numpy(getattr(self.plan, name)).to(self.device)

    @property
    def n_inputs(self) -> int:
        return self.circuit.n_inputs

    @property
    def num_classes(self) -> int:
        return self.circuit.num_classes

    def pack(self, x) -> torch.Tensor:
        """(N, n_inputs) 0/1 data (numpy or torch, any device) -> (n_inputs, W) packed words on the device."""
        return pack_bits(_bits_on_device(x, self.n_inputs, self.device), self.word_bits)

    def _run(self, words: torch.Tensor, n: int, counts: bool, bits: bool):
        word, signed, torch_word = _word_types(self.word_bits)
        if n < 1:
            raise ValueError(f"need at least one sample, got n={n}")
        n_words = -(-n // self.word_bits)
        if words.dim() != 2 or words.shape[0] != self.n_inputs or words.dtype != torch_word:
            raise ValueError(f"expected packed input of shape ({self.n_inputs}, >= {n_words}) and dtype "
                             f"{torch_word} (word_bits={self.word_bits}), got shape {tuple(words.shape)} "
                             f"dtype {words.dtype}")
        if words.shape[1] < n_words:
            raise ValueError(f"{words.shape[1]} words of {self.word_bits} bits hold fewer than n={n} samples")
        if words.device != self.device:
            raise ValueError(f"packed input is on {words.device}, the engine on {self.device}")
        k = _kernels(self.device)
        cfg, plan, t = self.config, self.plan, self._tensors
        block_w = cfg.words_per_tile(self.word_bits)
        n_tiles = -(-n_words // block_w)
        programs = cfg.programs
        if programs is None:
            cuda = self.device.type == "cuda"
            sms = torch.cuda.get_device_properties(self.device).multi_processor_count if cuda else 1
            programs = cfg.programs_per_sm * sms
        grid = max(1, min(programs, n_tiles))
        words = words.contiguous()
        scratch = torch.empty((grid, plan.n_slots, block_w), dtype=torch_word, device=self.device)
        out_counts = torch.empty((n, plan.num_classes) if counts else (1,), dtype=torch.int32, device=self.device)
        out_bits = torch.empty((self.circuit.n_outputs, n_words) if bits else (1,), dtype=torch_word,
                               device=self.device)
        k._circuit_kernel[(grid,)](
            words, words.shape[1], n, n_tiles,
            t["input_index"], t["input_slot"], int(plan.input_index.shape[0]),
            t["gate_a"], t["gate_b"], t["gate_out"], t["level_start"], plan.n_levels,
            t["output_slot"], self.circuit.n_outputs, plan.group_size, plan.num_classes,
            scratch, plan.n_slots, out_counts, out_bits,
            WORD=word, SIGNED=signed, WB=self.word_bits, LANE_BITS=cfg.count_lane_bits,
            LANES=_lane_ones(self.word_bits, cfg.count_lane_bits), BLOCK_W=block_w, BLOCK_G=cfg.block_gates,
            BLOCK_O=cfg.block_outputs, WRITE_COUNTS=counts, WRITE_BITS=bits, num_warps=cfg.num_warps)
        return out_counts if counts else None, out_bits if bits else None

    def group_counts_packed(self, words: torch.Tensor, n: int) -> torch.Tensor:
        """Counts from packed input: ``words`` from ``pack`` (or ``pack_bits``), ``n`` samples.

        Returns:
            (n, num_classes) int32 tensor on the device: true outputs per class group.
        """
        return self._run(words, int(n), counts=True, bits=False)[0]

    def group_counts(self, x) -> torch.Tensor:
        """(N, n_inputs) 0/1 data -> (N, num_classes) int32 counts on the device (== numpy ``group_counts``)."""
        bits = _bits_on_device(x, self.n_inputs, self.device)
        return self._run(pack_bits(bits, self.word_bits), bits.shape[0], counts=True, bits=False)[0]

    def evaluate_outputs(self, x) -> torch.Tensor:
        """(N, n_inputs) 0/1 data -> (N, n_outputs) bool output values on the device (== numpy ``evaluate_outputs``)."""
        bits = _bits_on_device(x, self.n_inputs, self.device)
        n = bits.shape[0]
        _, out = self._run(pack_bits(bits, self.word_bits), n, counts=False, bits=True)
        return unpack_bits(out, n, self.word_bits)

    def predict(self, x) -> torch.Tensor:
        """(N,) int64 class with the highest count (ties -> lowest class index, like the numpy ``predict``)."""
        return self.group_counts(x).argmax(-1)

    __call__ = group_counts

    def stats(self) -> dict:
        """Sizes of the compiled form (for reports)."""
        return {"gates": self.plan.n_gates, "live_gates": self.plan.n_live_gates, "levels": self.plan.n_levels,
                "slots": self.plan.n_slots, "word_bits": self.word_bits, "device": str(self.device)}


def compile_gpu(circuit: Circuit, word_bits: int = 32, device: str | torch.device | None = None,
                config: GpuEngineConfig | None = None) -> GpuCircuit:
    """Lower ``circuit`` for bit-packed evaluation on a GPU.

    Args:
        circuit: the Circuit to run.
        word_bits: 32 or 64 samples per word.
        device: 'cuda' (default when available) or, under ``TRITON_INTERPRET=1``, 'cpu'.
        config: launch parameters (default: tuned for the device; see ``GpuEngineConfig``).

    Returns:
        A ``GpuCircuit``; ``engine.group_counts(x)`` equals ``diffgates.circuit.group_counts(circuit, x)``.
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"compile_gpu expects a diffgates Circuit, got {type(circuit).__name__}")
    if word_bits not in WORD_BITS:
        raise ValueError(f"word_bits must be 32 or 64, got word_bits={word_bits!r}")
    dev = torch.device(device) if device is not None else _default_device()
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    _kernels(dev)
    if config is None:
        config = INTERPRETER_CONFIG if dev.type == "cpu" else GpuEngineConfig()
    config.validate()
    return GpuCircuit(circuit=circuit, plan=plan_circuit(circuit), word_bits=int(word_bits), device=dev,
                      config=config)

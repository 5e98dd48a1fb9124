"""Triton kernels of bit-packed circuit inference (used through ``diffgates.backends.gpu.engine``).

Word layout everywhere: row r of a packed array holds one bit per sample, bit s of word w belongs to
sample ``word_bits * w + s``; words are stored in int32/int64 tensors and reinterpreted as unsigned
where a shift needs it. Bits of the last word past the batch are zero on input and ignored on output.

* ``_pack_kernel``: (N, D) uint8 {0,1} -> (D, W) words (bits of one word are OR-ed as a sum of
  disjoint powers of two).
* ``_unpack_kernel``: (R, W) words -> (N, R) uint8.
* ``_circuit_kernel``: the whole circuit in one persistent kernel. Each program owns a tile of
  ``BLOCK_W`` words (``BLOCK_W * word_bits`` samples) at a time and a private scratch area of
  ``n_slots`` rows of ``BLOCK_W`` words; it copies the used input rows into their slots, evaluates the
  gates level by level, ``BLOCK_G`` gates per step (a barrier between levels: a level only reads slots
  written before it), and finishes with the group sums. Steps work on flattened 1-D tiles with
  constancy/contiguity hints, so per-gate data and per-word data share one register layout (no
  shared-memory shuffles inside the gate loop) and row accesses become 16-byte vector loads. Slots
  are assigned by liveness at compile time (``engine.plan_circuit``), so a program's scratch is the
  widest live set of the circuit, not all its nodes, and stays in cache. The batch is embarrassingly
  parallel, so programs never synchronise with each other, and all levels run in one launch. The
  kernel has no threshold cells: the engine lowers them to gates first (``diffgates.ir.lower_cells``).

Gates are table-driven and branch-free: each gate carries its algebraic normal form over GF(2),
``f(a, b) = c0 ^ c1 a ^ c2 b ^ c3 ab`` (4 bits from its truth table) in the top bits of its operand
descriptors (c0, c1 in bits 31, 30 of the a-slot word; c2, c3 of the b-slot word); an arithmetic shift
turns each into an all-ones/zero mask, so any of the 16 gates costs the same 7 word operations.

Group sums per sample, with lane counters: ``(word >> s) & 0x0101...`` (byte lanes; nibble lanes with
``0x1111...``) moves bit ``8k + s`` to the low bit of lane k, for s = 0..7. Adding such values for up to
255 (15) output words cannot overflow a lane, so one integer add counts 4 (8) bit positions of a 32-bit
word at once; only then are the lanes split out and summed into int32 counts. Counts are written only
for samples < N: padding bits never reach the result, whatever the gates made of them.
"""
from __future__ import annotations

import triton
import triton.language as tl


def interpreted() -> bool:
    """Whether these kernels were decorated for Triton's CPU interpreter (TRITON_INTERPRET=1 at import)."""
    return not isinstance(_circuit_kernel, triton.runtime.JITFunction)


@triton.jit
def _pack_kernel(x_ptr, out_ptr, N, D, W_TOTAL, WORD: tl.constexpr, SIGNED: tl.constexpr, WB: tl.constexpr,
                 BLOCK_W: tl.constexpr, BLOCK_D: tl.constexpr):
    w = tl.program_id(0) * BLOCK_W + tl.arange(0, BLOCK_W)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    s = tl.arange(0, WB)
    sample = w.to(tl.int64)[:, None] * WB + s[None, :]  # (BLOCK_W, WB)
    m = (sample < N)[:, :, None] & (d < D)[None, None, :]
    v = tl.load(x_ptr + sample[:, :, None] * D + d[None, None, :], mask=m, other=0)  # rows coalesced along d
    bits = (v != 0).to(WORD) << s.to(WORD)[None, :, None]
    word = tl.sum(bits, axis=1)  # disjoint bits: the sum is their OR
    dst = out_ptr + d.to(tl.int64)[None, :] * W_TOTAL + w[:, None]
    tl.store(dst, word.to(SIGNED, bitcast=True), mask=(w < W_TOTAL)[:, None] & (d < D)[None, :])


@triton.jit
def _unpack_kernel(words_ptr, out_ptr, N, R, W_TOTAL, WORD: tl.constexpr, WB: tl.constexpr,
                   BLOCK_S: tl.constexpr, BLOCK_R: tl.constexpr):
    s = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    r = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)
    m = (s < N)[:, None] & (r < R)[None, :]
    v = tl.load(words_ptr + r.to(tl.int64)[None, :] * W_TOTAL + (s // WB)[:, None], mask=m, other=0)
    bit = (v.to(WORD, bitcast=True) >> (s % WB).to(WORD)[:, None]) & 1
    tl.store(out_ptr + s.to(tl.int64)[:, None] * R + r[None, :], bit.to(tl.uint8), mask=m)


@triton.jit
def _lane_flush(count, acc, S: tl.constexpr, LANE_BITS: tl.constexpr, NL: tl.constexpr,
                BLOCK_O: tl.constexpr, BLOCK_W: tl.constexpr):
    """Add the lane counters of shift S to ``count[k, S, :]`` (bit LANE_BITS*k + S of the tile's words)."""
    rows = tl.reshape(acc, (BLOCK_O, BLOCK_W))
    lane_shift = (tl.arange(0, NL) * LANE_BITS).to(acc.dtype)
    lanes = (rows[:, None, :] >> lane_shift[None, :, None]) & ((1 << LANE_BITS) - 1)  # (BLOCK_O, NL, BLOCK_W)
    part = tl.sum(lanes, axis=0).to(tl.int32)  # lanes split out first: the sum over rows cannot overflow
    s = tl.arange(0, LANE_BITS)
    return count + tl.where(s[None, :, None] == S, part[:, None, :], 0)


@triton.jit
def _circuit_kernel(in_ptr, W_TOTAL, N, n_tiles,
                    in_index_ptr, in_slot_ptr, n_in_used,
                    gate_a_ptr, gate_b_ptr, gate_out_ptr, level_ptr, n_levels,
                    out_slot_ptr, n_outputs, group_size, K,
                    scratch_ptr, n_slots, counts_ptr, bits_ptr,
                    WORD: tl.constexpr, SIGNED: tl.constexpr, WB: tl.constexpr, LANE_BITS: tl.constexpr,
                    LANES: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_O: tl.constexpr,
                    WRITE_COUNTS: tl.constexpr, WRITE_BITS: tl.constexpr):
    # Tiles are flattened to 1-D (element e = row e // BLOCK_W, word e % BLOCK_W): per-row data (gate
    # descriptors) and per-word data then share one layout, so no step needs a shared-memory shuffle.
    pid = tl.program_id(0)
    mine = scratch_ptr + pid.to(tl.int64) * n_slots * BLOCK_W
    e = tl.arange(0, BLOCK_G * BLOCK_W)
    e_row = e // BLOCK_W
    e_col = e % BLOCK_W
    SLOT: tl.constexpr = 0x0FFFFFFF  # descriptor bits 28..29 are 0, 30..31 hold normal-form bits
    for tile in range(pid, n_tiles, tl.num_programs(0)):
        w = tile * BLOCK_W + e_col
        wm = w < W_TOTAL
        tl.debug_barrier()  # the previous tile's group sums have read their slots
        for r0 in range(0, n_in_used, BLOCK_G):
            r = r0 + e_row
            rm = r < n_in_used
            src = tl.max_constancy(tl.load(in_index_ptr + r, mask=rm, other=0), BLOCK_W).to(tl.int64)
            dst = tl.max_constancy(tl.load(in_slot_ptr + r, mask=rm, other=0), BLOCK_W)
            v = tl.load(in_ptr + src * W_TOTAL + w, mask=rm & wm, other=0)
            od = tl.max_contiguous(tl.multiple_of(dst * BLOCK_W + e_col, BLOCK_W), BLOCK_W)
            tl.store(mine + od, v, mask=rm)
        tl.debug_barrier()
        for lev in range(0, n_levels):
            g_lo = tl.load(level_ptr + lev)
            g_hi = tl.load(level_ptr + lev + 1)
            for g0 in range(g_lo, g_hi, BLOCK_G):
                g = g0 + e_row
                gm = g < g_hi
                da = tl.max_constancy(tl.load(gate_a_ptr + g, mask=gm, other=0), BLOCK_W)
                db = tl.max_constancy(tl.load(gate_b_ptr + g, mask=gm, other=0), BLOCK_W)
                do = tl.max_constancy(tl.load(gate_out_ptr + g, mask=gm, other=0), BLOCK_W)
                oa = tl.max_contiguous(tl.multiple_of((da & SLOT) * BLOCK_W + e_col, BLOCK_W), BLOCK_W)
                ob = tl.max_contiguous(tl.multiple_of((db & SLOT) * BLOCK_W + e_col, BLOCK_W), BLOCK_W)
                oo = tl.max_contiguous(tl.multiple_of(do * BLOCK_W + e_col, BLOCK_W), BLOCK_W)
                xa = tl.load(mine + oa)
                xb = tl.load(mine + ob)
                # Normal-form bits c0, c1 (bits 31, 30 of da) and c2, c3 (of db) as 0 / all-ones masks:
                # an arithmetic shift copies the sign bit everywhere.
                m0 = (da >> 31).to(SIGNED)
                m1 = ((da << 1) >> 31).to(SIGNED)
                m2 = (db >> 31).to(SIGNED)
                m3 = ((db << 1) >> 31).to(SIGNED)
                y = m0 ^ (m1 & xa) ^ (m2 & xb) ^ (m3 & (xa & xb))
                tl.store(mine + oo, y, mask=gm)
            tl.debug_barrier()
        if WRITE_BITS:
            for o0 in range(0, n_outputs, BLOCK_G):
                o = o0 + e_row
                om = o < n_outputs
                so = tl.max_constancy(tl.load(out_slot_ptr + o, mask=om, other=0), BLOCK_W)
                v = tl.load(mine + tl.max_contiguous(tl.multiple_of(so * BLOCK_W + e_col, BLOCK_W), BLOCK_W),
                            mask=om, other=0)
                tl.store(bits_ptr + o.to(tl.int64) * W_TOTAL + w, v, mask=om & wm)
        if WRITE_COUNTS:
            # Lane counters: accumulator S gets (word >> S) & LANES, so lane k of it counts bit
            # LANE_BITS*k + S. Chunks add elementwise (no cross-thread traffic); every CAP chunks, before a
            # lane can overflow, the lanes are split out and summed over the chunk rows (_lane_flush).
            CAP: tl.constexpr = (1 << LANE_BITS) - 1
            NL: tl.constexpr = WB // LANE_BITS
            f = tl.arange(0, BLOCK_O * BLOCK_W)
            f_row = f // BLOCK_W
            f_col = f % BLOCK_W
            wc = tile * BLOCK_W + tl.arange(0, BLOCK_W)
            sample = (wc.to(tl.int64)[None, None, :] * WB + (tl.arange(0, NL) * LANE_BITS)[:, None, None]
                      + tl.arange(0, LANE_BITS)[None, :, None])  # (NL, LANE_BITS, BLOCK_W): bit k*LB + s
            for c in range(0, K):
                count = tl.zeros((NL, LANE_BITS, BLOCK_W), tl.int32)
                for s0 in range(0, group_size, CAP * BLOCK_O):
                    a0 = tl.zeros((BLOCK_O * BLOCK_W,), WORD)
                    a1 = tl.zeros((BLOCK_O * BLOCK_W,), WORD)
                    a2 = tl.zeros((BLOCK_O * BLOCK_W,), WORD)
                    a3 = tl.zeros((BLOCK_O * BLOCK_W,), WORD)
                    a4 = tl.zeros((BLOCK_O * BLOCK_W,), WORD)
                    a5 = tl.zeros((BLOCK_O * BLOCK_W,), WORD)
                    a6 = tl.zeros((BLOCK_O * BLOCK_W,), WORD)
                    a7 = tl.zeros((BLOCK_O * BLOCK_W,), WORD)
                    for o0 in range(s0, tl.minimum(s0 + CAP * BLOCK_O, group_size), BLOCK_O):
                        o = o0 + f_row
                        om = o < group_size
                        so = tl.max_constancy(tl.load(out_slot_ptr + c * group_size + o, mask=om, other=0), BLOCK_W)
                        of = tl.max_contiguous(tl.multiple_of(so * BLOCK_W + f_col, BLOCK_W), BLOCK_W)
                        v = tl.load(mine + of, mask=om, other=0).to(WORD, bitcast=True)
                        a0 += v & LANES
                        a1 += (v >> 1) & LANES
                        a2 += (v >> 2) & LANES
                        a3 += (v >> 3) & LANES
                        if LANE_BITS == 8:
                            a4 += (v >> 4) & LANES
                            a5 += (v >> 5) & LANES
                            a6 += (v >> 6) & LANES
                            a7 += (v >> 7) & LANES
                    count = _lane_flush(count, a0, 0, LANE_BITS, NL, BLOCK_O, BLOCK_W)
                    count = _lane_flush(count, a1, 1, LANE_BITS, NL, BLOCK_O, BLOCK_W)
                    count = _lane_flush(count, a2, 2, LANE_BITS, NL, BLOCK_O, BLOCK_W)
                    count = _lane_flush(count, a3, 3, LANE_BITS, NL, BLOCK_O, BLOCK_W)
                    if LANE_BITS == 8:
                        count = _lane_flush(count, a4, 4, LANE_BITS, NL, BLOCK_O, BLOCK_W)
                        count = _lane_flush(count, a5, 5, LANE_BITS, NL, BLOCK_O, BLOCK_W)
                        count = _lane_flush(count, a6, 6, LANE_BITS, NL, BLOCK_O, BLOCK_W)
                        count = _lane_flush(count, a7, 7, LANE_BITS, NL, BLOCK_O, BLOCK_W)
                tl.store(counts_ptr + sample * K + c, count, mask=sample < N)

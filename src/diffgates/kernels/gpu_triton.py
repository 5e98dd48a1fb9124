"""Triton kernels of the LogicLayer training ops (run through ``diffgates.kernels.gpu``, never directly).

Importing this module decorates the kernels with ``triton.jit``; Triton decides at that moment whether
they are compiled for the GPU or run by its interpreter (``TRITON_INTERPRET=1``, numpy on the CPU), so
``diffgates.kernels.gpu`` imports it lazily, on first use, and checks which of the two it got.

Kernels (all read row-major (N, in) activations and (N, out) gradients, int32 (2, out) connections and
coefficients ``c0 + c1 a + c2 b + c3 ab``: (out, 4), or (rows, 4) read through an int32 (out,)
coefficient index when ``HAS_INDEX``, so that many neurons share one row):

* ``_forward_kernel``: one program per (neurons tile, rows tile); gathers a and b, writes y.
* ``_coeff_grad_kernel``: per neurons tile, a loop over a slice of the batch accumulating
  ``sum_n g * (1, a, b, ab)`` in registers (deterministic; slices are summed afterwards in a fixed order);
  with ``ATOMIC_X`` it also scatter-adds the input gradient with atomics (fast, not deterministic), and
  with ``ATOMIC_COEFFS`` it adds its sums straight into the shared coefficient rows with atomics.
* ``_segment_sum_kernel``: the deterministic gradient of shared coefficient rows: one program per row
  sums, in a fixed order, the per-(slice, neuron) sums of the neurons mapped to it (a CSR of the
  coefficient index, built once per index tensor like the fan-out index below).
* ``_input_grad_csr_kernel``: the deterministic input gradient. Connections never change, so each
  layer gets a CSR "fan-out" index once (for input i, the list of (neuron, slot) pairs reading it); a
  program owns a tile of (rows, inputs) and gathers-and-sums its consumers' contributions
  ``g * (c_slot + c3 * partner)`` in a fixed order, with no atomics and no extra (N, 2*out) buffer.
* ``_coeffs_forward_kernel`` / ``_coeffs_backward_kernel``: softmax over 16 logits -> 4 coefficients and
  its gradient, fused into one kernel each (the reference takes 2 launches forward and 3 backward).

Launch parameters live in ``TUNING`` (block sizes, warps, how many programs to aim for) so a GPU
run can tune them without touching the kernels (``benchmarks/bench_gpu.py --sweep-training``
searches them through ``set_tuning``); ``interpreter_tuning`` holds the CPU-test values.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import triton
import triton.language as tl

from .. import gates


@dataclass(frozen=True)
class Tuning:
    """Launch parameters of the training kernels (powers of two; see module docstring)."""

    fwd_block_n: int = 16  # rows per forward program
    fwd_block_j: int = 128  # neurons per forward program
    fwd_warps: int = 4
    grad_block_n: int = 32  # rows per iteration of the coefficient-gradient loop
    grad_block_j: int = 64  # neurons per coefficient-gradient program
    grad_warps: int = 4
    target_programs: int = 1024  # split the batch reduction until about this many programs run
    csr_block_n: int = 32  # rows per input-gradient program
    csr_block_i: int = 64  # inputs per input-gradient program
    csr_warps: int = 4
    coeff_block_j: int = 64  # neurons per softmax->coefficients program
    coeff_warps: int = 4
    seg_block_k: int = 128  # neurons per step of the shared-row (coefficient index) segment sum
    seg_warps: int = 4


TUNING = Tuning()
# The interpreter runs each program as numpy code: fewer, larger programs are much faster there.
interpreter_tuning = Tuning(fwd_block_n=64, fwd_block_j=64, grad_block_n=64, grad_block_j=64,
                            target_programs=1, csr_block_n=64, csr_block_i=64, coeff_block_j=64, seg_block_k=64)


def interpreted() -> bool:
    """Whether these kernels were decorated for Triton's CPU interpreter (TRITON_INTERPRET=1 at import)."""
    return not isinstance(_forward_kernel, triton.runtime.JITFunction)


_override: Tuning | None = None  # set_tuning's choice, for benchmarks/bench_gpu.py --sweep-training


def tuning() -> Tuning:
    """The launch parameters in effect: ``set_tuning``'s, else the defaults of this mode."""
    if _override is not None:
        return _override
    return interpreter_tuning if interpreted() else TUNING


def set_tuning(t: Tuning | None) -> None:
    """Launch later kernels with ``t`` (None: back to the defaults); for tuning sweeps."""
    global _override
    _override = t


def _acc_type(dtype: torch.dtype):
    """Accumulate in float64 for float64 data, float32 otherwise (half types included)."""
    return tl.float64 if dtype == torch.float64 else tl.float32


# ---- kernels ---------------------------------------------------------------------------------------

@triton.jit
def _coeff_rows(index_ptr, j, jm, HAS_INDEX: tl.constexpr):
    """The coefficient row of each neuron ``j``: ``index[j]`` with a coefficient index, else ``j``."""
    if HAS_INDEX:
        r = tl.load(index_ptr + j, mask=jm, other=0)
    else:
        r = j
    return r


@triton.jit
def _forward_kernel(x_ptr, coeff_ptr, conn_ptr, index_ptr, y_ptr, N, IN, OUT,
                    BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr, ACC: tl.constexpr, HAS_INDEX: tl.constexpr):
    j = tl.program_id(0) * BLOCK_J + tl.arange(0, BLOCK_J)
    jm = j < OUT
    ia = tl.load(conn_ptr + j, mask=jm, other=0)
    ib = tl.load(conn_ptr + OUT + j, mask=jm, other=0)
    r = _coeff_rows(index_ptr, j, jm, HAS_INDEX)
    c0 = tl.load(coeff_ptr + 4 * r, mask=jm, other=0).to(ACC)
    c1 = tl.load(coeff_ptr + 4 * r + 1, mask=jm, other=0).to(ACC)
    c2 = tl.load(coeff_ptr + 4 * r + 2, mask=jm, other=0).to(ACC)
    c3 = tl.load(coeff_ptr + 4 * r + 3, mask=jm, other=0).to(ACC)
    n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    n64 = n.to(tl.int64)  # N * IN can exceed 2**31 at large batch
    m = (n < N)[:, None] & jm[None, :]
    a = tl.load(x_ptr + n64[:, None] * IN + ia[None, :], mask=m, other=0).to(ACC)
    b = tl.load(x_ptr + n64[:, None] * IN + ib[None, :], mask=m, other=0).to(ACC)
    y = c0[None, :] + c1[None, :] * a + c2[None, :] * b + c3[None, :] * (a * b)
    tl.store(y_ptr + n64[:, None] * OUT + j[None, :], y.to(y_ptr.dtype.element_ty), mask=m)


@triton.jit
def _coeff_grad_kernel(x_ptr, coeff_ptr, conn_ptr, index_ptr, gy_ptr, gcoeff_ptr, gx_ptr, N, IN, OUT,
                       ROWS_PER_SPLIT, BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr, ACC: tl.constexpr,
                       NEED_COEFFS: tl.constexpr, ATOMIC_X: tl.constexpr, HAS_INDEX: tl.constexpr,
                       ATOMIC_COEFFS: tl.constexpr):
    j = tl.program_id(0) * BLOCK_J + tl.arange(0, BLOCK_J)
    jm = j < OUT
    ia = tl.load(conn_ptr + j, mask=jm, other=0)
    ib = tl.load(conn_ptr + OUT + j, mask=jm, other=0)
    r = _coeff_rows(index_ptr, j, jm, HAS_INDEX)
    c1 = tl.load(coeff_ptr + 4 * r + 1, mask=jm, other=0).to(ACC)
    c2 = tl.load(coeff_ptr + 4 * r + 2, mask=jm, other=0).to(ACC)
    c3 = tl.load(coeff_ptr + 4 * r + 3, mask=jm, other=0).to(ACC)
    split = tl.program_id(1)
    row_lo = split * ROWS_PER_SPLIT
    row_hi = tl.minimum(row_lo + ROWS_PER_SPLIT, N)
    s0 = tl.zeros((BLOCK_J,), ACC)
    s1 = tl.zeros((BLOCK_J,), ACC)
    s2 = tl.zeros((BLOCK_J,), ACC)
    s3 = tl.zeros((BLOCK_J,), ACC)
    for n0 in range(row_lo, row_hi, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n64 = n.to(tl.int64)
        m = (n < row_hi)[:, None] & jm[None, :]
        a = tl.load(x_ptr + n64[:, None] * IN + ia[None, :], mask=m, other=0).to(ACC)
        b = tl.load(x_ptr + n64[:, None] * IN + ib[None, :], mask=m, other=0).to(ACC)
        g = tl.load(gy_ptr + n64[:, None] * OUT + j[None, :], mask=m, other=0).to(ACC)
        if NEED_COEFFS:
            s0 += tl.sum(g, axis=0)
            s1 += tl.sum(g * a, axis=0)
            s2 += tl.sum(g * b, axis=0)
            s3 += tl.sum(g * (a * b), axis=0)
        if ATOMIC_X:
            # d/da = c1 + c3 b, d/db = c2 + c3 a; a self pair (ia == ib) receives both terms.
            tl.atomic_add(gx_ptr + n64[:, None] * IN + ia[None, :], g * (c1[None, :] + c3[None, :] * b), mask=m)
            tl.atomic_add(gx_ptr + n64[:, None] * IN + ib[None, :], g * (c2[None, :] + c3[None, :] * a), mask=m)
    if NEED_COEFFS and ATOMIC_COEFFS:
        # Shared rows, atomic mode: add into the (rows, 4) gradient directly (order varies per run).
        tl.atomic_add(gcoeff_ptr + 4 * r, s0, mask=jm)
        tl.atomic_add(gcoeff_ptr + 4 * r + 1, s1, mask=jm)
        tl.atomic_add(gcoeff_ptr + 4 * r + 2, s2, mask=jm)
        tl.atomic_add(gcoeff_ptr + 4 * r + 3, s3, mask=jm)
    elif NEED_COEFFS:
        base = gcoeff_ptr + split.to(tl.int64) * OUT * 4 + 4 * j
        tl.store(base, s0, mask=jm)
        tl.store(base + 1, s1, mask=jm)
        tl.store(base + 2, s2, mask=jm)
        tl.store(base + 3, s3, mask=jm)


@triton.jit
def _segment_sum_kernel(partial_ptr, row_offsets_ptr, row_entries_ptr, gcoeff_ptr, SPLITS, OUT,
                        BLOCK_K: tl.constexpr, ACC: tl.constexpr):
    # Row r's neurons are row_entries[row_offsets[r]:row_offsets[r + 1]] (increasing); partial holds
    # (SPLITS, OUT, 4) per-slice sums. Fixed tile and loop order: the same bits on every run.
    r = tl.program_id(0)
    start = tl.load(row_offsets_ptr + r)
    end = tl.load(row_offsets_ptr + r + 1)
    k = tl.arange(0, BLOCK_K)
    c = tl.arange(0, 4)
    acc = tl.zeros((BLOCK_K, 4), ACC)
    for k0 in range(start, end, BLOCK_K):
        km = k0 + k < end
        neuron = tl.load(row_entries_ptr + k0 + k, mask=km, other=0)
        p = partial_ptr + 4 * neuron[:, None] + c[None, :]
        for _ in range(0, SPLITS):
            acc += tl.load(p, mask=km[:, None], other=0).to(ACC)
            p += OUT * 4  # the next slice's sums (64-bit pointer arithmetic)
    tl.store(gcoeff_ptr + 4 * r + c, tl.sum(acc, axis=0).to(gcoeff_ptr.dtype.element_ty))


@triton.jit
def _input_grad_csr_kernel(x_ptr, coeff_ptr, conn_ptr, index_ptr, gy_ptr, fan_offsets_ptr, fan_entries_ptr,
                           gx_ptr, N, IN, OUT, BLOCK_N: tl.constexpr, BLOCK_I: tl.constexpr, ACC: tl.constexpr,
                           HAS_INDEX: tl.constexpr):
    i = tl.program_id(0) * BLOCK_I + tl.arange(0, BLOCK_I)
    im = i < IN
    start = tl.load(fan_offsets_ptr + i, mask=im, other=0)
    degree = tl.load(fan_offsets_ptr + i + 1, mask=im, other=0) - start
    n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    n64 = n.to(tl.int64)
    nm = n < N
    acc = tl.zeros((BLOCK_N, BLOCK_I), ACC)
    for k in range(0, tl.max(degree, axis=0)):
        em = im & (k < degree)
        # Entry e = slot * OUT + neuron: input i is operand `slot` (0 = a, 1 = b) of that neuron.
        e = tl.load(fan_entries_ptr + start + k, mask=em, other=0)
        is_b = e >= OUT
        neuron = tl.where(is_b, e - OUT, e)
        partner = tl.load(conn_ptr + tl.where(is_b, neuron, neuron + OUT), mask=em, other=0)
        row = _coeff_rows(index_ptr, neuron, em, HAS_INDEX)
        c_own = tl.load(coeff_ptr + 4 * row + 1 + is_b.to(tl.int32), mask=em, other=0).to(ACC)
        c3 = tl.load(coeff_ptr + 4 * row + 3, mask=em, other=0).to(ACC)
        m = nm[:, None] & em[None, :]
        g = tl.load(gy_ptr + n64[:, None] * OUT + neuron[None, :], mask=m, other=0).to(ACC)
        p = tl.load(x_ptr + n64[:, None] * IN + partner[None, :], mask=m, other=0).to(ACC)
        acc += g * (c_own[None, :] + c3[None, :] * p)
    m = nm[:, None] & im[None, :]
    tl.store(gx_ptr + n64[:, None] * IN + i[None, :], acc.to(gx_ptr.dtype.element_ty), mask=m)


@triton.jit
def _gate_probabilities(w_ptr, j, jm, ACC: tl.constexpr):
    """(BLOCK_J, 16) softmax of the gate logits of neurons ``j`` (masked rows read logits 0)."""
    g = tl.arange(0, 16)
    logits = tl.load(w_ptr + j[:, None] * 16 + g[None, :], mask=jm[:, None], other=0).to(ACC)
    e = tl.exp(logits - tl.max(logits, axis=1)[:, None])
    return e / tl.sum(e, axis=1)[:, None]


@triton.jit
def _coeffs_forward_kernel(w_ptr, table_ptr, c_ptr, OUT, BLOCK_J: tl.constexpr, ACC: tl.constexpr):
    j = tl.program_id(0) * BLOCK_J + tl.arange(0, BLOCK_J)
    jm = j < OUT
    g = tl.arange(0, 16)
    k = tl.arange(0, 4)
    p = _gate_probabilities(w_ptr, j, jm, ACC)
    table = tl.load(table_ptr + g[:, None] * 4 + k[None, :]).to(ACC)  # gates.COEFFS, (16, 4)
    c = tl.sum(p[:, :, None] * table[None, :, :], axis=1)
    tl.store(c_ptr + j[:, None] * 4 + k[None, :], c.to(c_ptr.dtype.element_ty), mask=jm[:, None])


@triton.jit
def _coeffs_backward_kernel(w_ptr, table_ptr, gc_ptr, gw_ptr, OUT, BLOCK_J: tl.constexpr, ACC: tl.constexpr):
    j = tl.program_id(0) * BLOCK_J + tl.arange(0, BLOCK_J)
    jm = j < OUT
    g = tl.arange(0, 16)
    k = tl.arange(0, 4)
    p = _gate_probabilities(w_ptr, j, jm, ACC)  # recomputed: cheaper than saving (out, 16) probabilities
    table = tl.load(table_ptr + g[:, None] * 4 + k[None, :]).to(ACC)
    gc = tl.load(gc_ptr + j[:, None] * 4 + k[None, :], mask=jm[:, None], other=0).to(ACC)
    gp = tl.sum(gc[:, None, :] * table[None, :, :], axis=2)  # d loss / d probabilities, (BLOCK_J, 16)
    gw = p * (gp - tl.sum(p * gp, axis=1)[:, None])  # softmax backward
    tl.store(gw_ptr + j[:, None] * 16 + g[None, :], gw.to(gw_ptr.dtype.element_ty), mask=jm[:, None])


# ---- launchers (inputs already validated and contiguous) -------------------------------------------

def forward(x: torch.Tensor, coeffs: torch.Tensor, conn: torch.Tensor,
            coeff_index: torch.Tensor | None = None) -> torch.Tensor:
    """(N, in) x, (out, 4) coeffs (or (rows, 4) with an (out,) coeff_index), int32 (2, out) conn -> (N, out) y."""
    n, in_dim = x.shape
    out = conn.shape[1]
    y = x.new_empty((n, out))
    if n == 0 or out == 0:
        return y
    t = tuning()
    grid = (triton.cdiv(out, t.fwd_block_j), triton.cdiv(n, t.fwd_block_n))
    has_index = coeff_index is not None
    _forward_kernel[grid](x, coeffs, conn, coeff_index if has_index else conn, y, n, in_dim, out,
                          BLOCK_N=t.fwd_block_n, BLOCK_J=t.fwd_block_j, ACC=_acc_type(x.dtype), HAS_INDEX=has_index,
                          num_warps=t.fwd_warps)
    return y


def coeff_splits(n: int, out: int, t: Tuning) -> int:
    """How many batch slices the coefficient reduction uses: enough programs to fill the GPU."""
    blocks = triton.cdiv(out, t.grad_block_j)
    wanted = max(1, t.target_programs // max(blocks, 1))
    return max(1, min(wanted, triton.cdiv(n, t.grad_block_n)))


def backward(grad_y: torch.Tensor, x: torch.Tensor, coeffs: torch.Tensor, conn: torch.Tensor,
             fan_offsets: torch.Tensor, fan_entries: torch.Tensor, deterministic: bool, need_x: bool,
             need_coeffs: bool, splits: int | None = None, *, coeff_index: torch.Tensor | None = None,
             row_offsets: torch.Tensor | None = None,
             row_entries: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients (grad_x, grad_coeffs) of y = c0 + c1 a + c2 b + c3 ab; None where not needed.

    Args:
        deterministic: input gradient by the CSR gather kernel and shared coefficient rows by the
            segment sum (else both with atomics).
        splits: batch slices of the coefficient reduction (None: ``coeff_splits``).
        coeff_index: int32 (out,) row of coeffs per neuron, or None (row j for neuron j).
        row_offsets, row_entries: the CSR of coeff_index (``gpu.CoeffIndex``), needed with
            coeff_index when deterministic.
    """
    n, in_dim = x.shape
    out = conn.shape[1]
    t = tuning()
    acc = _acc_type(x.dtype)
    acc_dtype = torch.float64 if acc == tl.float64 else torch.float32
    has_index = coeff_index is not None
    atomic_coeffs = need_coeffs and has_index and not deterministic
    atomic_x = need_x and not deterministic
    grad_x = grad_coeffs = None
    if need_x:
        # Atomics accumulate in float32/float64; half-precision inputs get converted afterwards.
        atomic_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        grad_x = (torch.zeros((n, in_dim), dtype=atomic_dtype, device=x.device) if atomic_x
                  else x.new_empty((n, in_dim)))
    if n == 0 or out == 0:
        if grad_x is not None:
            grad_x = grad_x.zero_().to(x.dtype)
        return grad_x, (coeffs.new_zeros(coeffs.shape) if need_coeffs else None)
    index = coeff_index if has_index else conn  # a placeholder pointer the kernels never read without it
    if need_coeffs or atomic_x:
        s = splits or coeff_splits(n, out, t)
        rows = triton.cdiv(triton.cdiv(n, s), t.grad_block_n) * t.grad_block_n
        s = triton.cdiv(n, rows)
        if atomic_coeffs:
            partial = torch.zeros((coeffs.shape[0], 4), dtype=acc_dtype, device=x.device)
        else:
            partial = torch.empty((s, out, 4) if need_coeffs else (1,), dtype=acc_dtype, device=x.device)
        grid = (triton.cdiv(out, t.grad_block_j), s)
        _coeff_grad_kernel[grid](x, coeffs, conn, index, grad_y, partial, grad_x if atomic_x else partial,
                                 n, in_dim, out, rows, BLOCK_N=t.grad_block_n, BLOCK_J=t.grad_block_j, ACC=acc,
                                 NEED_COEFFS=need_coeffs, ATOMIC_X=atomic_x, HAS_INDEX=has_index,
                                 ATOMIC_COEFFS=atomic_coeffs, num_warps=t.grad_warps)
        if atomic_coeffs:
            grad_coeffs = partial.to(coeffs.dtype)
        elif need_coeffs and has_index:
            grad_coeffs = coeffs.new_empty((coeffs.shape[0], 4))
            if coeffs.shape[0]:
                _segment_sum_kernel[(coeffs.shape[0],)](partial, row_offsets, row_entries, grad_coeffs, s, out,
                                                        BLOCK_K=t.seg_block_k, ACC=acc, num_warps=t.seg_warps)
        elif need_coeffs:
            # Slices summed in index order: the result does not depend on scheduling.
            grad_coeffs = (partial[0] if s == 1 else partial.sum(0)).to(coeffs.dtype)
    if need_x and deterministic:
        grid = (triton.cdiv(in_dim, t.csr_block_i), triton.cdiv(n, t.csr_block_n))
        _input_grad_csr_kernel[grid](x, coeffs, conn, index, grad_y, fan_offsets, fan_entries, grad_x, n, in_dim,
                                     out, BLOCK_N=t.csr_block_n, BLOCK_I=t.csr_block_i, ACC=acc,
                                     HAS_INDEX=has_index, num_warps=t.csr_warps)
    elif atomic_x:
        grad_x = grad_x.to(x.dtype)
    return grad_x, grad_coeffs


@lru_cache(maxsize=None)
def _coeff_table(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``gates.COEFFS`` on the device, made once (a copy per call would break CUDA-graph capture)."""
    return torch.as_tensor(gates.COEFFS, dtype=dtype).to(device).contiguous()


def coefficients_forward(weights: torch.Tensor) -> torch.Tensor:
    """(out, 16) logits -> (out, 4) coefficients of the softmax mixture (training mode)."""
    out = weights.shape[0]
    c = weights.new_empty((out, 4))
    if out:
        t = tuning()
        _coeffs_forward_kernel[(triton.cdiv(out, t.coeff_block_j),)](
            weights, _coeff_table(weights.dtype, weights.device), c, out, BLOCK_J=t.coeff_block_j,
            ACC=_acc_type(weights.dtype), num_warps=t.coeff_warps)
    return c


def coefficients_backward(weights: torch.Tensor, grad_c: torch.Tensor) -> torch.Tensor:
    """Gradient of ``coefficients_forward`` with respect to the logits."""
    out = weights.shape[0]
    gw = torch.empty_like(weights)
    if out:
        t = tuning()
        _coeffs_backward_kernel[(triton.cdiv(out, t.coeff_block_j),)](
            weights, _coeff_table(weights.dtype, weights.device), grad_c, gw, out, BLOCK_J=t.coeff_block_j,
            ACC=_acc_type(weights.dtype), num_warps=t.coeff_warps)
    return gw

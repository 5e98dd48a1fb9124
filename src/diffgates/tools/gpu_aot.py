"""Compile every Triton kernel of diffgates for a CUDA GPU without one: a CPU-side check of compiled mode.

The kernels: training (``diffgates.kernels.gpu_triton``) and the GPU engine's bit-packed inference
(``diffgates.backends.gpu.kernels``), each in the specialisations its wrapper launches.

Triton's interpreter (``TRITON_INTERPRET=1``) runs the kernels' semantics on the CPU, but it does not
run the compiler: layouts, type rules of the lowering, register/shared-memory limits and PTX assembly
are only exercised by a real compilation. Triton can compile ahead of time for a named target with its
bundled ``ptxas``, no GPU or driver needed; this module does that for each kernel in the
specialisations the wrappers launch (dtypes, word sizes, flags, default launch parameters).

Each compiled kernel's resource usage is read back from its cubin with the ``cuobjdump`` Triton bundles:
registers per thread, the occupancy they allow (resident warps per SM), and per-thread local memory
(stack frame and local arrays: register spills live there). Kernels that use local memory are listed
with a ``SPILL`` mark: still correct, but spills turn register-resident tiles into memory traffic.

Run (must not run under the interpreter; exits 1 if any kernel fails to compile)::

    python -m diffgates.tools.gpu_aot --arch 90        # sm_90 (H100/H200), the default
    python -m diffgates.tools.gpu_aot --arch 80 --quick
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace

# Occupancy limits of one SM: a 64K-register file on sm_75..sm_90, warp slots per architecture
# (CUDA programming guide, compute capabilities table).
REGISTERS_PER_SM = 65536
MAX_WARPS_PER_SM = {75: 32, 80: 64, 86: 48, 87: 48, 89: 48, 90: 64}
_USAGE = re.compile(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")


@dataclass
class Result:
    name: str
    ok: bool  # compiled
    detail: str  # error text, or size/resource summary
    spills: bool = False  # uses per-thread local memory (stack frame or local arrays)


@dataclass(frozen=True)
class Usage:
    """Per-thread registers, stack and local memory, per-block static shared memory (bytes)."""

    registers: int
    stack: int
    shared: int
    local: int

    def warps_per_sm(self, num_warps: int, max_warps: int = 64) -> int:
        """Resident warps per SM that the register file allows (registers are granted per warp in 256s),
        capped by the SM's ``max_warps`` slots; blocks are whole, so this is a multiple of ``num_warps``."""
        per_warp = -(-self.registers * 32 // 256) * 256
        blocks = min(REGISTERS_PER_SM // (per_warp * num_warps) if per_warp else max_warps, max_warps // num_warps)
        return blocks * num_warps


def cuobjdump_path() -> str | None:
    """The ``cuobjdump`` shipped in Triton's NVIDIA backend, or None when this Triton has none."""
    import triton.backends.nvidia as nvidia
    path = os.path.join(os.path.dirname(nvidia.__file__), "bin", "cuobjdump")
    return path if os.access(path, os.X_OK) else None


def resource_usage(cubin: bytes) -> Usage | None:
    """Resource usage of the (single) kernel in ``cubin``; None when cuobjdump is unavailable."""
    tool = cuobjdump_path()
    if tool is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        out = subprocess.run([tool, "--dump-resource-usage", path], capture_output=True, text=True, timeout=60)
    m = _USAGE.search(out.stdout)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"cuobjdump could not read the cubin: {(out.stdout + out.stderr).strip()[-500:]}")
    return Usage(*(int(v) for v in m.groups()))


# Kernel modules are imported directly, not through diffgates._triton: that loader refuses to run
# kernels without a GPU or the interpreter, and compiling needs neither.

def _kernel_specs(quick: bool):
    """(name, kernel, signature, constexprs, num_warps) for every launched specialisation."""
    yield from _training_specs(quick)
    yield from _inference_specs(quick)


def _training_specs(quick: bool):
    """The training kernels (``diffgates.kernels.gpu_triton``) as ``diffgates.kernels.gpu`` launches them."""
    import triton.language as tl

    train = importlib.import_module("diffgates.kernels.gpu_triton")
    t = train.TUNING
    dtypes = [("fp32", tl.float32), ("fp64", tl.float64), ("fp16", tl.float32), ("bf16", tl.float32)]
    # HAS_INDEX: shared coefficient rows (a coeff_index); the quick run compiles the plain layer only.
    indexed = (False,) if quick else (False, True)
    for dt, acc in dtypes[:1] if quick else dtypes:
        part = "fp64" if dt == "fp64" else "fp32"
        for has_index in indexed:
            tag = " coeff_index" if has_index else ""
            yield (f"forward {dt}{tag}", train._forward_kernel,
                   {"x_ptr": f"*{dt}", "coeff_ptr": f"*{dt}", "conn_ptr": "*i32", "index_ptr": "*i32",
                    "y_ptr": f"*{dt}", "N": "i32", "IN": "i32", "OUT": "i32"},
                   {"BLOCK_N": t.fwd_block_n, "BLOCK_J": t.fwd_block_j, "ACC": acc, "HAS_INDEX": has_index},
                   t.fwd_warps)
        # (need_coeffs, atomic_x, has_index, atomic_coeffs) as gpu_triton.backward launches them.
        flags = [(True, False, False, False)] if quick else [
            (True, False, False, False), (True, True, False, False), (False, True, False, False),
            (True, False, True, False), (True, True, True, True)]
        for need, atomic, has_index, atomic_coeffs in flags:
            yield (f"coefficient gradient {dt} need_coeffs={need} atomic_x={atomic}"
                   + (f" coeff_index atomic_coeffs={atomic_coeffs}" if has_index else ""), train._coeff_grad_kernel,
                   {"x_ptr": f"*{dt}", "coeff_ptr": f"*{dt}", "conn_ptr": "*i32", "index_ptr": "*i32",
                    "gy_ptr": f"*{dt}", "gcoeff_ptr": f"*{part}", "gx_ptr": f"*{part}", "N": "i32", "IN": "i32",
                    "OUT": "i32", "ROWS_PER_SPLIT": "i32"},
                   {"BLOCK_N": t.grad_block_n, "BLOCK_J": t.grad_block_j, "ACC": acc, "NEED_COEFFS": need,
                    "ATOMIC_X": atomic, "HAS_INDEX": has_index, "ATOMIC_COEFFS": atomic_coeffs}, t.grad_warps)
        if not quick:
            yield (f"coefficient segment sum {dt}", train._segment_sum_kernel,
                   {"partial_ptr": f"*{part}", "row_offsets_ptr": "*i32", "row_entries_ptr": "*i32",
                    "gcoeff_ptr": f"*{dt}", "SPLITS": "i32", "OUT": "i32"},
                   {"BLOCK_K": t.seg_block_k, "ACC": acc}, t.seg_warps)
        for has_index in indexed:
            yield (f"input gradient (csr) {dt}" + (" coeff_index" if has_index else ""), train._input_grad_csr_kernel,
                   {"x_ptr": f"*{dt}", "coeff_ptr": f"*{dt}", "conn_ptr": "*i32", "index_ptr": "*i32",
                    "gy_ptr": f"*{dt}", "fan_offsets_ptr": "*i32", "fan_entries_ptr": "*i32", "gx_ptr": f"*{dt}",
                    "N": "i32", "IN": "i32", "OUT": "i32"},
                   {"BLOCK_N": t.csr_block_n, "BLOCK_I": t.csr_block_i, "ACC": acc, "HAS_INDEX": has_index},
                   t.csr_warps)
        yield (f"coefficients forward {dt}", train._coeffs_forward_kernel,
               {"w_ptr": f"*{dt}", "table_ptr": f"*{dt}", "c_ptr": f"*{dt}", "OUT": "i32"},
               {"BLOCK_J": t.coeff_block_j, "ACC": acc}, t.coeff_warps)
        yield (f"coefficients backward {dt}", train._coeffs_backward_kernel,
               {"w_ptr": f"*{dt}", "table_ptr": f"*{dt}", "gc_ptr": f"*{dt}", "gw_ptr": f"*{dt}", "OUT": "i32"},
               {"BLOCK_J": t.coeff_block_j, "ACC": acc}, t.coeff_warps)


def _inference_specs(quick: bool):
    """The GPU engine's kernels (``diffgates.backends.gpu.kernels``) as ``backends.gpu.engine`` launches them."""
    import triton.language as tl

    from diffgates.backends.gpu import engine

    packed = importlib.import_module(engine.KERNELS)
    cfg = engine.GpuEngineConfig()  # the launch parameters compile_gpu uses on CUDA
    for wb in (32,) if quick else (32, 64):
        word, signed, store = (tl.uint32, tl.int32, "i32") if wb == 32 else (tl.uint64, tl.int64, "i64")
        block_w, block_d = engine.PACK_BLOCKS["cuda"]
        yield (f"pack {wb}", packed._pack_kernel,
               {"x_ptr": "*u8", "out_ptr": f"*{store}", "N": "i32", "D": "i32", "W_TOTAL": "i32"},
               {"WORD": word, "SIGNED": signed, "WB": wb, "BLOCK_W": block_w, "BLOCK_D": block_d}, 4)
        block_s, block_r = engine.UNPACK_BLOCKS["cuda"]
        yield (f"unpack {wb}", packed._unpack_kernel,
               {"words_ptr": f"*{store}", "out_ptr": "*u8", "N": "i32", "R": "i32", "W_TOTAL": "i32"},
               {"WORD": word, "WB": wb, "BLOCK_S": block_s, "BLOCK_R": block_r}, 4)
        sig = {"in_ptr": f"*{store}", "W_TOTAL": "i32", "N": "i32", "n_tiles": "i32", "in_index_ptr": "*i32",
               "in_slot_ptr": "*i32", "n_in_used": "i32", "gate_a_ptr": "*i32", "gate_b_ptr": "*i32",
               "gate_out_ptr": "*i32", "level_ptr": "*i32", "n_levels": "i32", "out_slot_ptr": "*i32",
               "n_outputs": "i32", "group_size": "i32", "K": "i32", "scratch_ptr": f"*{store}", "n_slots": "i32",
               "counts_ptr": "*i32", "bits_ptr": f"*{store}"}
        modes = [(True, False, 4)] if quick else [(True, False, 4), (True, False, 8), (False, True, 4)]
        for counts, bits, lane_bits in modes:
            launch = replace(cfg, count_lane_bits=lane_bits)
            yield (f"circuit {wb}-bit counts={counts} bits={bits} lanes={lane_bits}", packed._circuit_kernel, sig,
                   engine.circuit_kernel_constants(wb, launch, counts, bits), launch.num_warps)


def compile_all(arch: int = 90, quick: bool = False, verbose: bool = False) -> list[Result]:
    """Compile the kernels for ``sm_<arch>``; one Result per specialisation.

    Args:
        arch: CUDA compute capability as an integer (90 = H100/H200, 80 = A100).
        quick: one specialisation per kernel (float32, 32-bit words) instead of all.
        verbose: print each result as it completes.
    """
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise RuntimeError("gpu_aot compiles real kernels: unset TRITON_INTERPRET (the kernels were decorated "
                           "for the interpreter)")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", arch, 32)
    results = []
    for name, fn, signature, constexprs, warps in _kernel_specs(quick):
        sig = dict(signature)
        sig.update({k: "constexpr" for k in constexprs})
        # Pointers are 16-byte aligned at launch (torch allocations), as the JIT specialises them.
        attrs = {(i,): [["tt.divisibility", 16]] for i, v in enumerate(sig.values()) if v.startswith("*")}
        start = time.perf_counter()
        try:
            compiled = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs=attrs),
                                      target=target, options={"num_warps": warps})
            detail = (f"{time.perf_counter() - start:.1f} s, cubin {len(compiled.asm['cubin'])} bytes, "
                      f"shared {compiled.metadata.shared} bytes")
            usage = resource_usage(compiled.asm["cubin"])
            if usage is None:
                results.append(Result(name, True, detail + ", resource usage unknown (no cuobjdump in Triton)"))
            else:
                slots = MAX_WARPS_PER_SM.get(arch, 64)
                detail += (f", {usage.registers} registers x {warps} warps -> at most "
                           f"{usage.warps_per_sm(warps, slots)}/{slots} warps per SM, local memory "
                           f"{usage.stack + usage.local} bytes per thread")
                results.append(Result(name, True, detail, spills=usage.stack + usage.local > 0))
        except Exception as exc:  # report every failing kernel, not only the first
            results.append(Result(name, False, f"{type(exc).__name__}: {exc}"))
        if verbose:
            r = results[-1]
            print(f"{'FAIL ' if not r.ok else 'SPILL' if r.spills else 'ok   '} {r.name}: {r.detail}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compile diffgates' Triton kernels for a CUDA GPU, without one.")
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90 (H100), 80 (A100)")
    parser.add_argument("--quick", action="store_true", help="one specialisation per kernel")
    args = parser.parse_args(argv)
    results = compile_all(args.arch, args.quick, verbose=True)
    failed = [r for r in results if not r.ok]
    spilled = [r for r in results if r.spills]
    print(f"{len(results) - len(failed)}/{len(results)} kernels compiled for sm_{args.arch}; "
          f"{len(spilled)} use local memory (spills)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""GPU benchmark: Triton training step vs the reference mixture, and bit-packed inference.

Part 1, training step (forward + cross-entropy + backward + Adam(lr=0.01)) of 784 -> width x 6 ->
GroupSum(10), float32, for widths 8000 and 64000 at batch 100 and 1000, on one GPU:
  * ``reference``        LogicLayer(implementation='reference'): the plain 16-op PyTorch mixture, eager;
  * ``reference graph``  the same captured in a CUDA graph (``--reference-graph``; when capturable);
  * ``triton dispatch``  LogicLayer(implementation='gpu'): whatever ``diffgates.kernels`` runs for CUDA;
  * ``triton csr|atomic`` the kernels called directly (fused softmax->coefficients + fused layer), eager,
    with the deterministic CSR or the atomic input gradient;
  * ``... graph``        the same step captured once in a CUDA graph and replayed (no launch overhead).
Before timing, every variant's logits and all parameter gradients are checked against the reference
on the same model and batch (relative to each tensor's largest reference magnitude: ``CHECK_RTOL``).
Times are CUDA-event medians. The speed-up column is reference-eager time / variant time.
``--sweep-training`` first tunes the kernels' launch parameters (``gpu_triton.Tuning``) per width by
coordinate descent on the CUDA-graph step at the smallest batch size, checking every candidate against
the reference before timing it; the timed rows then use the tuned parameters, and a table compares
them with the defaults (paste the winner into ``gpu_triton.TUNING``).

Part 2, packed inference of the 48K-gate net (784 -> 8000 x 6, 10 classes, random gates) extracted
with ``to_circuit`` and compiled by ``diffgates.backends.gpu.compile_gpu``: first checked bit-exact
against the numpy evaluator (``diffgates.ir.group_counts``) on a batch that is no multiple of the word
size (``engine.counts``), and on slices of the big timed batch; then images/s of ``engine.run_packed``
(the class counts of the group-sum head) on pre-packed random words (1M..16M images), and of packing
itself; after timing, the timed configuration is checked again on both ends and the middle of the batch.
``--sweep`` first tunes the launch configuration (coordinate descent) on the first batch size.
``--sweep-seconds S`` caps each sweep (training or inference) at S seconds: the best point so far wins.
``--json`` also records the device and versions, each sweep's points and whether it completed.

Run (repository root, a CUDA machine with Triton):
    PYTHONPATH=src python benchmarks/bench_gpu.py                 # everything (a few minutes)
    PYTHONPATH=src python benchmarks/bench_gpu.py --skip-inference --widths 8000 --batches 100
    PYTHONPATH=src python benchmarks/bench_gpu.py --skip-training --sweep
    PYTHONPATH=src python benchmarks/bench_gpu.py --skip-inference --sweep-training --batches 100
    PYTHONPATH=src python benchmarks/bench_gpu.py --dry-run-cpu   # check this script without a GPU
``--dry-run-cpu`` runs tiny sizes on the CPU under Triton's interpreter: it exercises the code
paths, and its timings mean nothing.

Targets (H100/H200): training step >= 20x the reference (both widths, batch 100); packed
inference of the 48K-gate net > 200M images/s, bit-exact.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time

if "--dry-run-cpu" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before the kernels are first imported

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import format_table, print_header  # noqa: E402

IN_DIM, CLASSES, DEPTH = 784, 10, 6
CHECK_RTOL = 1e-4  # float32, relative to the largest reference magnitude (see bench_train.py)


# ---- setup -----------------------------------------------------------------------------------------

def require_device(dry_run: bool) -> torch.device:
    """The CUDA device, or a clear exit when there is none (or Triton is missing)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        sys.exit("bench_gpu.py needs Triton: pip install triton (it does not touch torch)")
    if dry_run:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA device: torch.cuda.is_available() is False on this machine "
                 "(torch " + torch.__version__ + "). Run it on a GPU machine, or pass --dry-run-cpu to "
                 "check the script under Triton's interpreter.")
    return torch.device("cuda", torch.cuda.current_device())


def device_header(device: torch.device) -> None:
    import triton
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        print(f"gpu: {p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB, "
              f"CUDA {torch.version.cuda}, triton {triton.__version__}")
    else:
        print(f"gpu: none (--dry-run-cpu: Triton interpreter on the CPU, triton {triton.__version__}; "
              f"timings are meaningless)")
    print()


def device_info(device: torch.device) -> dict:
    """The device and library versions, for the JSON file."""
    import triton
    info = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "triton": triton.__version__, "interpreter": device.type != "cuda"}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(name=p.name, capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count,
                    memory_gib=round(p.total_memory / 2**30, 1))
    return info


class Timer:
    """Median seconds per call: CUDA events on a GPU, perf_counter on the CPU (dry runs)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn, steps: int, warmup: int) -> float:
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        for _ in range(steps):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        return statistics.median(times)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def coordinate_descent(start, space: dict[str, list], measure, passes: int = 2,
                       seconds: float | None = None, report: dict | None = None):
    """Tune a frozen dataclass: try each value of each field in turn, keep any that lowers ``measure``.

    Returns (best, its measure, start's measure); ``measure`` returns seconds (inf for a failed point).
    Each configuration is measured once: a later pass that comes back to one reuses its time, so noise
    cannot pick a configuration over itself. With ``seconds``, no new configuration is measured once
    that many seconds have passed (the best so far is returned). ``report``, when given, receives
    ``points`` (configurations measured), ``complete`` (False when ``seconds`` cut it short) and
    ``seconds`` (time spent).
    """
    from dataclasses import replace
    times: dict = {}
    t0 = time.monotonic()
    complete = True

    def timed(config):
        if config not in times:
            times[config] = measure(config)
        return times[config]

    best = start
    timed(start)  # the baseline first
    for _ in range(passes):
        for name, values in space.items():
            for value in values:
                candidate = replace(best, **{name: value})
                if candidate not in times and seconds is not None and time.monotonic() - t0 >= seconds:
                    complete = False
                    break
                if timed(candidate) < timed(best):
                    best = candidate
            if not complete:
                break
        if not complete:
            break
    if report is not None:
        report.update(points=len(times), complete=complete, seconds=round(time.monotonic() - t0, 2))
    if not complete:
        print(f"  sweep stopped at its {seconds:g} s budget after {len(times)} points; keeping the best so far",
              file=sys.stderr, flush=True)
    return best, timed(best), timed(start)


# ---- part 1: training step -------------------------------------------------------------------------

class FusedLayer(torch.nn.Module):
    """A LogicLayer's parameters run through the Triton kernels directly (not via the dispatcher)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        from diffgates.kernels import gpu
        return gpu.logic_layer(x, gpu.gate_coefficients(self.layer.weights, self.training),
                               self.layer.connections)


def build_model(width: int, depth: int, device: torch.device, seed: int = 0) -> torch.nn.Sequential:
    from diffgates import GroupSum, LogicLayer
    torch.manual_seed(seed)
    layers = [LogicLayer(IN_DIM if i == 0 else width, width, device=device, implementation="reference")
              for i in range(depth)]
    return torch.nn.Sequential(torch.nn.Flatten(), *layers, GroupSum(CLASSES, tau=10 if width == 8000 else 30))


def variant(model: torch.nn.Sequential, kind: str) -> torch.nn.Sequential:
    """A copy of ``model`` (same parameters) that runs the given implementation."""
    from diffgates.nn import LogicLayer
    m = copy.deepcopy(model)
    if kind == "reference":
        return m
    if kind == "dispatch":
        for mod in m.modules():
            if isinstance(mod, LogicLayer):
                mod.implementation = "gpu"
        return m
    return torch.nn.Sequential(*[FusedLayer(mod) if isinstance(mod, LogicLayer) else mod for mod in m])


def make_batch(n: int, device: torch.device, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=gen)  # MNIST-shaped grey levels; the cost ignores the values
    return x.to(device), torch.randint(0, CLASSES, (n,), generator=gen).to(device)


def step_fn(model, opt, x, y):
    def step():
        opt.zero_grad(set_to_none=False)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def graphed(step, device):
    """Capture ``step`` in a CUDA graph after a side-stream warm-up; returns the replay function."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):  # builds fan-out indices, compiles kernels, creates optimizer state
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def outputs(model, x, y) -> list[torch.Tensor]:
    """Logits and every parameter gradient of one cross-entropy forward/backward (grads cleared after)."""
    model.zero_grad(set_to_none=True)
    logits = model(x)
    torch.nn.functional.cross_entropy(logits, y).backward()
    result = [logits.detach()] + [p.grad.detach().clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return result


def check_gradients(expected: list[torch.Tensor], model, x, y, label: str) -> float:
    """Max over logits and parameter gradients of |diff| / max|reference|; raises above CHECK_RTOL.

    ``expected`` is ``outputs(reference_model, x, y)`` of a reference model with the same parameters.
    """
    worst = 0.0
    names = ["logits"] + [f"grad {i}" for i in range(len(expected) - 1)]
    for name, a, b in zip(names, expected, outputs(model, x, y), strict=True):
        scale = float(a.abs().max()) or 1.0
        err = float((a - b).abs().max()) / scale
        worst = max(worst, err)
        if not err <= CHECK_RTOL:
            raise AssertionError(f"{label}: {name} differs from the reference by {err:.2e} of its max magnitude "
                                 f"(allowed {CHECK_RTOL:.0e}); refusing to time a wrong kernel")
    return worst


def training_sweep_space(dry_run: bool) -> dict[str, list]:
    """Values ``--sweep-training`` tries for each field of ``gpu_triton.Tuning`` (powers of two)."""
    if dry_run:  # the interpreter is slow: a few points, enough to run every code path
        return {"fwd_block_n": [16, 64], "csr_block_i": [16, 64]}
    return {"fwd_block_n": [8, 16, 32, 64], "fwd_block_j": [64, 128, 256], "fwd_warps": [2, 4, 8],
            "grad_block_n": [16, 32, 64], "grad_block_j": [32, 64, 128], "grad_warps": [2, 4, 8],
            "target_programs": [256, 512, 1024, 2048, 4096],
            "csr_block_n": [8, 16, 32, 64], "csr_block_i": [16, 32, 64, 128], "csr_warps": [2, 4, 8],
            "coeff_block_j": [16, 32, 64, 128], "coeff_warps": [1, 2, 4]}


def sweep_training(base, x, y, expected, device, timer, dry_run: bool, seconds: float | None = None,
                   report: dict | None = None):
    """``coordinate_descent`` over ``training_sweep_space`` on the deterministic-mode step.

    Returns (best Tuning, its seconds/step, the defaults' seconds/step). Every candidate is checked
    against ``expected`` (the reference's outputs on ``x``, ``y``) before it is timed. ``seconds`` and
    ``report``: as for ``coordinate_descent``.
    """
    from diffgates.kernels import gpu, gpu_triton
    gpu.set_backward_mode("csr")

    def measure(t):
        gpu_triton.set_tuning(t)
        try:
            model = variant(base, "csr")
            check_gradients(expected, model, x, y, f"tuning {t}")
            opt = torch.optim.Adam(model.parameters(), lr=0.01, capturable=device.type == "cuda",
                                   foreach=None if device.type == "cuda" else False)
            step = step_fn(model, opt, x, y)
            seconds = timer(graphed(step, device) if device.type == "cuda" else step, steps=5, warmup=2)
        except AssertionError:
            raise  # a wrong result is a bug, not a slow configuration
        except Exception as exc:  # e.g. out of resources at this size: report and go on
            print(f"  sweep {t} failed: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
            return float("inf")
        finally:
            gpu_triton.set_tuning(None)
            model = opt = step = None  # drop this candidate's tensors before freeing the cache
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print(f"  sweep {t}: {seconds * 1e3:.3f} ms/step", file=sys.stderr, flush=True)
        return seconds

    return coordinate_descent(gpu_triton.tuning(), training_sweep_space(dry_run), measure,
                              seconds=seconds, report=report)


def bench_training(args, device, timer) -> tuple[list[list[str]], list[list[str]]]:
    """(rows of the timing table, rows of the tuning table; empty without --sweep-training)."""
    from dataclasses import asdict

    from diffgates.kernels import gpu, gpu_triton
    rows, tuning_rows = [], []
    for width in args.widths:
        base = build_model(width, args.depth, device)
        xc, yc = make_batch(min(args.batches), device, seed=7)
        expected = outputs(variant(base, "reference"), xc, yc)
        if args.sweep_training:  # on the check batch: its reference outputs are already computed
            default = asdict(gpu_triton.tuning())
            report = {"what": f"training {IN_DIM}->{width}x{args.depth}, batch {len(yc)}"}
            tuned, tuned_t, default_t = sweep_training(base, xc, yc, expected, device, timer, args.dry_run_cpu,
                                                       args.sweep_seconds, report)
            args.sweep_reports.append(report)
            changed = ", ".join(f"{k}={v}" for k, v in asdict(tuned).items() if default[k] != v) or "(defaults)"
            tuning_rows.append([f"{IN_DIM}->{width}x{args.depth}", len(yc), f"{default_t * 1e3:.3f}",
                                f"{tuned_t * 1e3:.3f}", f"{default_t / tuned_t:.2f}x", changed])
            print(f"width {width}: tuned {tuned}", file=sys.stderr, flush=True)
            gpu_triton.set_tuning(tuned)
        # The dispatcher sends only CUDA tensors to the Triton kernels: no dispatch variant in a CPU dry run.
        kinds = ["dispatch", "csr", "atomic"] if device.type == "cuda" else ["csr", "atomic"]
        errors = {}
        for kind in kinds:
            gpu.set_backward_mode("atomic" if kind == "atomic" else "csr")
            errors[kind] = check_gradients(expected, variant(base, kind), xc, yc, f"width {width} {kind}")
        gpu.set_backward_mode("csr")
        del expected
        for n in args.batches:
            x, y = make_batch(n, device)
            results: dict[str, float | str] = {}
            plan = [("reference", "reference", False), ("triton dispatch", "dispatch", False),
                    ("triton csr", "csr", False), ("triton atomic", "atomic", False),
                    ("triton csr graph", "csr", True), ("triton atomic graph", "atomic", True)]
            if args.reference_graph:  # last: a failed capture must not disturb the other rows
                plan.append(("reference graph", "reference", True))
            for label, kind, use_graph in plan:
                if (use_graph or kind == "dispatch") and device.type != "cuda":
                    continue
                gpu.set_backward_mode("atomic" if kind == "atomic" else "csr")
                steps = args.ref_steps if kind == "reference" else args.steps
                try:
                    model = variant(base, kind)
                    opt = torch.optim.Adam(model.parameters(), lr=0.01, capturable=use_graph,
                                           foreach=None if device.type == "cuda" else False)
                    step = step_fn(model, opt, x, y)
                    fn = graphed(step, device) if use_graph else step
                    results[label] = timer(fn, steps=steps, warmup=args.warmup)
                except torch.cuda.OutOfMemoryError:
                    results[label] = "out of memory"
                except Exception as exc:  # e.g. a path that cannot be captured in a graph: report, go on
                    results[label] = f"n/a ({type(exc).__name__}: {str(exc).splitlines()[0][:60]})"
                finally:
                    model = opt = step = fn = None
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
            gpu.set_backward_mode("csr")
            ref = results.get("reference")
            for label, value in results.items():
                if isinstance(value, float):
                    speedup = f"{ref / value:.1f}x" if isinstance(ref, float) else "-"
                    kind = next(k for lab, k, _ in plan if lab == label)
                    err = f"{errors[kind]:.1e}" if kind in errors else "(spec)"
                    rows.append([f"{IN_DIM}->{width}x{args.depth}", n, label, f"{value * 1e3:.3f}", speedup, err])
                else:
                    rows.append([f"{IN_DIM}->{width}x{args.depth}", n, label, value, "-", "-"])
            print(f"width {width} batch {n} done", file=sys.stderr, flush=True)
        gpu_triton.set_tuning(None)
    return rows, tuning_rows


# ---- part 2: packed inference ----------------------------------------------------------------------

def random_circuit_48k(width: int, depth: int, seed: int = 0):
    """The 48K-gate benchmark net: random wiring and random argmax gates, extracted to a Circuit."""
    from diffgates import GroupSum, LogicLayer
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), *[LogicLayer(IN_DIM if i == 0 else width, width)
                                                      for i in range(depth)], GroupSum(CLASSES, tau=10))
    try:
        from diffgates.frontend import to_circuit
    except ImportError:  # extraction not available: the same circuit built by hand
        from diffgates.ir import Circuit
        ops, a, b, offset = [], [], [], 0
        for layer in [m for m in model if isinstance(m, LogicLayer)]:
            base = 0 if offset == 0 else IN_DIM + offset - layer.in_dim
            ops.append(layer.gate_ids().numpy())
            a.append(layer.connections[0].numpy() + base)
            b.append(layer.connections[1].numpy() + base)
            offset += layer.out_dim
        n_nodes = IN_DIM + offset
        return Circuit(IN_DIM, np.concatenate(ops), np.concatenate(a), np.concatenate(b),
                       np.arange(n_nodes - width, n_nodes), CLASSES, 10.0)
    return to_circuit(model.eval())


def check_exact(engine, circuit, words: torch.Tensor, n: int, rows: slice, word_bits: int) -> None:
    """Counts of the packed run equal the numpy evaluator on ``rows`` of the (packed) batch."""
    from diffgates.backends.gpu.engine import unpack_bits
    from diffgates.ir import group_counts
    lo, hi = rows.start, min(rows.stop, n)
    w0, w1 = lo // word_bits, -(-hi // word_bits)
    bits = unpack_bits(words[:, w0:w1].contiguous(), (w1 - w0) * word_bits, word_bits)
    x = bits[lo - w0 * word_bits: hi - w0 * word_bits].cpu().numpy()
    got = engine.run_packed(words, n)[lo:hi].cpu().numpy()
    expected = group_counts(circuit, x)
    if not np.array_equal(got, expected):
        bad = np.argwhere(got != expected)[0]
        raise AssertionError(f"packed counts differ from numpy at sample {lo + bad[0]}, class {bad[1]}: "
                             f"{got[tuple(bad)]} vs {expected[tuple(bad)]}")


# What "bit-exact: yes" in the inference table rests on (any mismatch raises, and no row is written).
INFERENCE_CHECKS = [
    "before timing: engine.counts (packing included) equals the numpy evaluator on an odd batch (--check-batch)",
    "before timing: run_packed counts equal numpy on the first and last 2048 rows of the timed batch "
    "(default config, and again with the swept config when it differs)",
    "after timing: the same on the first, middle and last rows of the timed batch, with the timed config",
]


def sweep_space(word_bits: int, dry_run: bool) -> dict[str, list]:
    """Values ``--sweep`` tries for each launch parameter of ``GpuEngineConfig``."""
    if dry_run:  # the interpreter is slow: a few points, enough to run every code path
        return {"block_gates": [16, 32], "count_lane_bits": [4, 8]}
    words = [2, 4, 8, 16] if word_bits == 32 else [1, 2, 4, 8]  # 8..64-byte rows
    return {"block_words": words, "block_gates": [64, 128, 256, 512], "num_warps": [4, 8, 16],
            "programs_per_sm": [1, 2, 4], "block_outputs": [32, 64, 128], "count_lane_bits": [4, 8]}


def sweep(engine, words, n, timer, start, dry_run: bool, seconds: float | None = None,
          report: dict | None = None):
    """``coordinate_descent`` over ``sweep_space`` (5 timed runs per point): the fastest config.

    ``seconds`` and ``report``: as for ``coordinate_descent``.
    """
    from dataclasses import replace

    def measure(cfg):
        engine.config = cfg
        try:
            t = timer(lambda: engine.run_packed(words, n), steps=5, warmup=1)
        except Exception as exc:  # a configuration that does not compile or fit: report and go on
            print(f"  sweep {cfg} failed: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
            return float("inf")
        print(f"  sweep {cfg}: {n / t / 1e6:.1f} M images/s", file=sys.stderr, flush=True)
        return t

    start = replace(start, block_words=start.words_per_tile(engine.word_bits))
    return coordinate_descent(start, sweep_space(engine.word_bits, dry_run), measure,
                              seconds=seconds, report=report)[0]


def bench_inference(args, device, timer) -> list[list[str]]:
    from diffgates.backends.gpu.engine import INTERPRETER_CONFIG, GpuEngineConfig, compile_gpu, pack_bits
    from diffgates.ir import group_counts
    circuit = random_circuit_48k(args.width_inference, args.depth)
    rows = []
    for word_bits in args.word_bits:
        default = GpuEngineConfig() if device.type == "cuda" else INTERPRETER_CONFIG
        engine = compile_gpu(circuit, word_bits=word_bits, device=device, config=default)
        # Exactness first: an odd batch through the full API (packing included).
        n_check = args.check_batch
        x = np.random.default_rng(3).integers(0, 2, size=(n_check, IN_DIM), dtype=np.uint8)
        got = engine.counts(x).cpu().numpy()
        if not np.array_equal(got, group_counts(circuit, x)):
            raise AssertionError(f"word_bits={word_bits}: packed counts differ from numpy on {n_check} samples")
        stats = engine.stats()
        chosen = default
        for i, n in enumerate(args.inference_batches):
            n_words = -(-n // word_bits)
            gen = torch.Generator(device=device).manual_seed(n)
            dtype = torch.int32 if word_bits == 32 else torch.int64
            info = torch.iinfo(dtype)
            words = torch.randint(info.min, info.max, (IN_DIM, n_words), generator=gen, device=device, dtype=dtype)
            ends = (slice(0, 2048), slice(max(0, n - 2048), n))  # both ends of the big batch
            for part in ends:
                check_exact(engine, circuit, words, n, part, word_bits)
            if i == 0 and args.sweep:
                report = {"what": f"inference word_bits {word_bits}, batch {n}"}
                chosen = sweep(engine, words, n, timer, default, args.dry_run_cpu, args.sweep_seconds, report)
                args.sweep_reports.append(report)
            engine.config = chosen
            if chosen != default:  # the configuration about to be timed, checked before timing too
                for part in ends:
                    check_exact(engine, circuit, words, n, part, word_bits)
            t = timer(lambda e=engine, x=words, m=n: e.run_packed(x, m), steps=args.steps, warmup=2)
            # After timing: the same engine state that was timed, on both ends and the middle.
            for part in (*ends, slice(n // 2, n // 2 + 1024)):
                check_exact(engine, circuit, words, n, part, word_bits)
            bits = torch.randint(0, 2, (min(n, args.pack_batch), IN_DIM), dtype=torch.uint8, device=device)
            t_pack = timer(lambda x=bits, wb=word_bits: pack_bits(x, wb), steps=args.steps, warmup=1)
            rows.append([f"{stats['gates']} ({stats['live_gates']} live, {stats['levels']} levels, "
                         f"{stats['slots']} slots)", word_bits, n, f"{t * 1e3:.3f}", f"{n / t / 1e6:.1f}",
                         f"{bits.shape[0] / t_pack / 1e6:.0f}",
                         f"bw={chosen.words_per_tile(word_bits)} bg={chosen.block_gates} "
                         f"bo={chosen.block_outputs} lanes={chosen.count_lane_bits} warps={chosen.num_warps} "
                         f"p/sm={chosen.programs_per_sm}", "yes"])
            words = bits = None  # free the big batch before the next one
            print(f"inference word_bits {word_bits} batch {n} done", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[8000, 64000])
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--depth", type=int, default=DEPTH)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant (median reported)")
    parser.add_argument("--ref-steps", type=int, default=10, help="timed steps of the slow reference")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--reference-graph", action="store_true",
                        help="also try the reference in a CUDA graph (fails while reference.coefficient_matrix "
                             "copies from the host on every call)")
    parser.add_argument("--skip-inference", action="store_true")
    parser.add_argument("--width-inference", type=int, default=8000)
    parser.add_argument("--word-bits", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--inference-batches", type=int, nargs="+", default=[1 << 20, 1 << 24])
    parser.add_argument("--check-batch", type=int, default=4099, help="odd batch checked against numpy first")
    parser.add_argument("--pack-batch", type=int, default=1 << 20, help="images packed when timing packing")
    parser.add_argument("--sweep", action="store_true", help="tune the launch configuration first (about 30 points)")
    parser.add_argument("--sweep-training", action="store_true",
                        help="tune the training kernels' launch parameters per width first (about 80 points)")
    parser.add_argument("--sweep-seconds", type=float, default=None,
                        help="time budget of each sweep: after this many seconds no new point is tried and the "
                             "best so far is used (default: no limit)")
    parser.add_argument("--json", help="also write the tables to this JSON file")
    parser.add_argument("--dry-run-cpu", action="store_true",
                        help="tiny sizes on the CPU under Triton's interpreter, to check the script without a GPU")
    args = parser.parse_args()
    if args.dry_run_cpu:
        args.widths, args.batches, args.depth = [20], [3], 2
        args.steps = args.ref_steps = 1
        args.warmup = 0
        args.width_inference, args.inference_batches, args.check_batch, args.pack_batch = 20, [97], 33, 64
    args.sweep_reports = []
    device = require_device(args.dry_run_cpu)
    print_header("diffgates GPU benchmark")
    device_header(device)
    timer = Timer(device)
    out = {"device": device_info(device), "sweeps": args.sweep_reports}
    if not args.skip_training:
        rows, tuning_rows = bench_training(args, device, timer)
        if tuning_rows:
            headers = ["model", "batch", "default ms/step", "tuned ms/step", "speed-up", "tuned parameters"]
            print("## Launch-parameter sweep (deterministic step" + (", CUDA graph" if device.type == "cuda" else "")
                  + "); the timed rows below use the tuned parameters\n")
            print(format_table(headers, tuning_rows))
            print()
            out["training_sweep"] = {"headers": headers, "rows": tuning_rows}
        headers = ["model", "batch", "variant", "ms/step (median)", "vs reference", "max rel. diff"]
        print("## Training step: forward + backward + Adam, float32\n")
        print(format_table(headers, rows))
        print()
        out["training"] = {"headers": headers, "rows": rows}
    if not args.skip_inference:
        rows = bench_inference(args, device, timer)
        headers = ["circuit gates", "word bits", "batch", "ms (median)", "M images/s", "pack M images/s",
                   "launch config", "bit-exact"]
        print("## Bit-packed inference of the 48K-gate net (pre-packed input; packing timed apart)\n")
        print(format_table(headers, rows))
        out["inference"] = {"headers": headers, "rows": rows, "checks": INFERENCE_CHECKS}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()

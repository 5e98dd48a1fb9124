"""Inference benchmark: the compiled CPU engine vs the naive one-C-statement-per-gate engine.

Network: a random model 784 -> width x depth LogicLayers -> GroupSum(10) (random logits, 'random'
connections, seeded), its circuit as extracted (``raw``: the headline, so both engines get the very same
gates) and after ``diffgates.ir.simplify`` (``simplified``). Input: random {0, 1} bool
images. Both engines take the same (N, 784) bool array and return int32 counts, packing included; one
extra row times the diffgates engine on pre-packed words (``engine.run_packed``), without packing.

For each network the script first checks, before any timing, that every engine's counts equal the
numpy reference (``group_counts``) on a slice of the batch and equal each other on the whole batch;
then it times ``engine(x)`` on one thread and on all cores in rounds (each round calls every engine
once, after a warm-up round, so the load of a shared machine hits all of them alike) and reports the
median images/s (wall clock, and on one thread also from the thread's CPU time), the median over
rounds of the ratio to the naive engine, and the build time from a cold cache (code generation + C
compiler; a fresh ``DIFFGATES_CACHE`` is used).

The naive engine (``diffgates.backends.c.naive``: the original package's design, gcc -O1, one function)
needs minutes to build at width 8000 and far longer at 64000: it is built for widths up to 8000 only,
unless ``--naive-big`` is given; ``--skip-naive`` skips it everywhere. Skips are shown in the table.

Run (from the repository root):
    PYTHONPATH=src python benchmarks/bench_infer.py                      # 8000 and 64000
    PYTHONPATH=src python benchmarks/bench_infer.py --sizes 8000 --repeats 7
    PYTHONPATH=src python benchmarks/bench_infer.py --skip-naive         # fast engine only
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import format_table, print_header  # noqa: E402

IN_DIM, CLASSES = 784, 10
NAIVE_MAX_WIDTH = 8000  # the naive engine's -O1 build of one giant function grows much faster than linearly


def random_model(width: int, depth: int, seed: int = 0):
    import torch
    from diffgates import GroupSum, LogicLayer
    torch.manual_seed(seed)
    layers = [LogicLayer(IN_DIM if i == 0 else width, width) for i in range(depth)]
    return torch.nn.Sequential(torch.nn.Flatten(), *layers, GroupSum(CLASSES, tau=10 if width == 8000 else 30)).eval()


def compiler_version() -> str:
    from diffgates._native import compiler
    try:
        out = subprocess.run([compiler(), "--version"], capture_output=True, text=True).stdout
        return f"{compiler()}: {out.splitlines()[0]}" if out else compiler()
    except OSError as exc:
        return f"{compiler()} ({exc})"


@dataclass
class Run:
    """One timed configuration: an engine called on a batch (bits, or pre-packed words)."""

    label: str
    circuit_label: str
    circuit: object
    engine: object
    threaded: bool  # False: the naive engine, one thread only
    packed: bool = False  # time run_packed on pre-packed input (no packing in the timed call)

    def prepare(self, x: np.ndarray, naive_batch: int) -> tuple:
        """(callable, images per call) for this run."""
        if not self.threaded:
            batch = x[:naive_batch]
            return (lambda: self.engine(batch)), len(batch)
        if self.packed:
            words = self.engine.pack(x)
            return (lambda: self.engine.run_packed(words, len(x))), len(x)
        return (lambda: self.engine(x)), len(x)


def bench_width(width: int, args, x: np.ndarray, rows: list, all_threads: int) -> None:
    from diffgates.backends.c.engine import AUTO_TABLE_MIN_STEPS
    from diffgates.backends.c.engine import compile_circuit as compile_fast
    from diffgates.backends.c.naive import compile_naive
    from diffgates.backends.c.program import count_steps
    from diffgates.frontend import to_circuit
    from diffgates.ir import group_counts, simplify

    net = f"784-{width}x{args.depth}-10"
    start = time.perf_counter()
    raw = to_circuit(random_model(width, args.depth, seed=args.seed))
    simplified = simplify(raw)
    print(f"[{net}] model + circuit: {raw.n_gates} gates raw, {simplified.n_gates} simplified "
          f"({time.perf_counter() - start:.1f} s)", flush=True)
    check = x[: args.check]
    want = group_counts(raw, check)

    runs: list[Run] = []
    naive_note = None
    if args.skip_naive:
        naive_note = "skipped (--skip-naive)"
    elif width > NAIVE_MAX_WIDTH and not args.naive_big:
        naive_note = f"skipped: width > {NAIVE_MAX_WIDTH} (--naive-big builds it)"
    else:
        print(f"[{net}] building the naive engine (gcc -O1, one function)...", flush=True)
        naive = compile_naive(raw)
        print(f"[{net}]   built in {naive.build_seconds:.1f} s", flush=True)
        runs.append(Run("naive (1 statement/gate, u64, -O1)", "raw", raw, naive, threaded=False))
    for circuit_label, circuit in (("raw", raw), ("simplified", simplified)):
        layouts = ["auto"]
        if circuit_label == "raw" and width <= args.code_max_width and count_steps(circuit) >= AUTO_TABLE_MIN_STEPS:
            layouts.append("code")  # auto picked the table: show the straight-line code beside it
        for layout in layouts:
            engine = compile_fast(circuit, layout=layout)
            print(f"[{net}] diffgates engine on {circuit_label} circuit: {engine!r}, built in "
                  f"{engine.build_seconds:.1f} s", flush=True)
            runs.append(Run(f"diffgates ({engine.isa}, {engine.layout})", circuit_label, circuit, engine, True))
            if circuit_label == "raw" and layout == "auto":  # the same engine without its packing
                runs.append(Run(f"diffgates ({engine.isa}, {engine.layout}), pre-packed input", circuit_label,
                                circuit, engine, True, packed=True))

    # Verify before timing: every engine against the reference, and all engines agree on the whole batch.
    batch_counts = None
    for run in runs:
        assert np.array_equal(run.engine(check), want), f"{run.label} ({run.circuit_label}) differs from group_counts"
        call, n = run.prepare(x, args.naive_batch)
        got = call()
        batch_counts = got if batch_counts is None or len(got) > len(batch_counts) else batch_counts
    for run in runs:
        call, n = run.prepare(x, args.naive_batch)
        assert np.array_equal(call(), batch_counts[:n]), f"{run.label} ({run.circuit_label}) disagrees on the batch"
    print(f"[{net}] all engines equal the numpy reference on {len(check)} images and each other on the batch",
          flush=True)

    naive_per_image = None  # the naive engine's median seconds per image on one thread
    for threads in sorted({1, all_threads}):
        active = [r for r in runs if r.threaded or threads == 1]
        for run in active:
            if run.threaded:
                run.engine.threads = threads
        prepared = [run.prepare(x, args.naive_batch) for run in active]
        wall, cpu = round_robin([call for call, _ in prepared], args.repeats)
        sizes = [n for _, n in prepared]
        naive_i = next((i for i, r in enumerate(active) if not r.threaded), None)
        for i, run in enumerate(active):
            per_image = wall[i] / sizes[i]
            rate = 1.0 / np.median(per_image)
            # CPU time of the calling thread: what one core did, whatever else the machine ran
            cpu_rate = f"{1e-6 / np.median(cpu[i] / sizes[i]):.3f}" if threads == 1 else "-"
            ratio = "n/a"
            if naive_i is not None:  # per round, so both sides of each ratio saw the same load
                naive_per_image = float(np.median(wall[naive_i] / sizes[naive_i]))
                ratio = f"{np.median((wall[naive_i] / sizes[naive_i]) / per_image):.1f}x"
                ratio += f" (cpu {np.median((cpu[naive_i] / sizes[naive_i]) / (cpu[i] / sizes[i])):.1f}x)"
            elif naive_per_image is not None:  # all cores vs the naive engine's single thread
                ratio = f"{naive_per_image * rate:.1f}x vs 1-thread naive"
            rows.append([net, run.circuit_label, f"{run.circuit.n_gates}", f"{count_steps(run.circuit)}", run.label,
                         str(threads), f"{run.engine.build_seconds:.1f}", f"{rate / 1e6:.3f}", cpu_rate, ratio])
            print(f"[{net}] {run.label}, {run.circuit_label}, threads={threads}: {rate / 1e6:.3f} M images/s "
                  f"(median of {args.repeats} rounds; vs naive: {ratio})", flush=True)
    if naive_note:
        rows.append([net, "raw", f"{raw.n_gates}", f"{count_steps(raw)}", "naive", "1", "-", naive_note, "-", "-"])


def round_robin(calls, rounds: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Time every call once per round, after one warm-up round; a shared machine's load changes then
    hit all of them alike. Returns per call the wall and the calling thread's CPU seconds per round."""
    wall = [[] for _ in calls]
    cpu = [[] for _ in calls]
    for r in range(rounds + 1):
        for i, call in enumerate(calls):
            w0, c0 = time.perf_counter(), time.thread_time()
            call()
            if r:
                wall[i].append(time.perf_counter() - w0)
                cpu[i].append(time.thread_time() - c0)
    return [np.array(v) for v in wall], [np.array(v) for v in cpu]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="8000,64000", help="comma-separated layer widths (default 8000,64000)")
    parser.add_argument("--depth", type=int, default=6, help="number of LogicLayers (default 6)")
    parser.add_argument("--batch", type=int, default=16384, help="images per timed call, diffgates engine")
    parser.add_argument("--naive-batch", type=int, default=4096, help="images per timed call, naive engine")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per configuration (median)")
    parser.add_argument("--check", type=int, default=256, help="images checked against the numpy reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-naive", action="store_true", help="do not build the naive engine")
    parser.add_argument("--naive-big", action="store_true",
                        help=f"also build the naive engine for widths > {NAIVE_MAX_WIDTH} (a very long build)")
    parser.add_argument("--code-max-width", type=int, default=8000,
                        help="also time the straight-line 'code' layout up to this width (default 8000)")
    parser.add_argument("--keep-cache", action="store_true",
                        help="use the normal build cache (build times then show cache hits)")
    args = parser.parse_args()
    if not args.keep_cache:  # cold builds: the reported build times include the C compiler
        os.environ["DIFFGATES_CACHE"] = tempfile.mkdtemp(prefix="diffgates-bench-")

    print_header("diffgates inference: compiled CPU engine vs naive one-statement-per-gate engine")
    print(f"compiler: {compiler_version()}")
    from diffgates.backends.c.engine import best_isa
    print(f"engine word type: {best_isa().name}; build cache: {os.environ.get('DIFFGATES_CACHE', 'default')}\n")
    all_threads = os.cpu_count() or 1
    x = np.random.default_rng(args.seed + 1).integers(0, 2, size=(args.batch, IN_DIM)).astype(bool)
    rows: list = []
    for width in (int(s) for s in args.sizes.split(",")):
        bench_width(width, args, x, rows, all_threads)
    print()
    print(format_table(["network", "circuit", "gates", "steps run", "engine", "threads", "build s",
                        "M images/s (median)", "M images/s (1-thread CPU time)", "vs naive (same rounds)"], rows))
    print("\n'steps run': gate operations left after the folding every compiler does (constants, copies, dead "
          "gates; gcc -O1 does the same to the naive engine's single function). Ratios compare rows of the same run.")


if __name__ == "__main__":
    main()

"""Training-step benchmark: fused CPU kernel vs the reference 16-op mixture.

Model: 784 -> width x depth LogicLayers -> GroupSum(10) (tau 10 for width 8000 as in the published
MNIST 20x20 run, 30 otherwise), batch 100, float32, Adam(lr=0.01). The fused kernel runs with each of ``--parametrizations`` (default softmax16 and iwp:
16 logits vs 4 entry logits per gate); the reference is the plain 16-op softmax mixture, the
original formulation, in the same run. A step is forward + cross-entropy + backward + Adam. Each (width, implementation) runs in fresh processes, so its peak RSS (VmHWM) is
the whole process's own high-water mark; the implementations alternate over ``--rounds`` rounds and
the step times of all rounds are pooled, so a load change on a shared machine hits both. Before any
timing, a separate process checks on the same model that the kernel's logits and every parameter
gradient match the reference.

Run (from the repository root):
    PYTHONPATH=src python benchmarks/bench_train.py                       # 8000 and 64000, 2 threads
    PYTHONPATH=src python benchmarks/bench_train.py --sizes 8000 --steps 10 --warmup 2
    PYTHONPATH=src python benchmarks/bench_train.py --sizes 8000 --parametrizations softmax16,iwp,walsh
    PYTHONPATH=src python benchmarks/bench_train.py --skip-reference-large  # no reference at >= 20000

The reference at width 64000 needs about 17 GB (measured); it runs one round of
``--reference-steps-large`` steps, and is skipped (with a note) when the machine's available memory
is below 1.2x an estimate scaled linearly from the measured width-8000 reference.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import format_table, peak_rss_mb, print_header, run_worker, summarize, worker_main  # noqa: E402

IN_DIM, CLASSES = 784, 10
LARGE_WIDTH = 20_000  # widths from here on count as "large" for --skip-reference-large
# Reference peak RSS per unit of width, used for the memory guard until a smaller width has been
# measured in the same run: 784 -> 8000x6 at batch 100 measured 2.5 GB here (2.5e3 MB / 8000).
REF_MB_PER_WIDTH_DEFAULT = 0.31
# float32 check tolerance, relative to the largest reference magnitude of each tensor: the kernel
# mixes 4 coefficients where the reference sums 16 weighted relaxations (~1e-7 relative per neuron),
# and six layers plus group sums of up to 6400 terms amplify that to ~1e-6; 1e-4 leaves a margin.
CHECK_RTOL = 1e-4


def build_model(width: int, depth: int, implementation: str, seed: int = 0, parametrization: str = "softmax16"):
    import torch
    from diffgates import GroupSum, LogicLayer
    torch.manual_seed(seed)
    # Gaussian init for every parametrization: the check compares non-trivial gradients.
    layers = [LogicLayer(IN_DIM if i == 0 else width, width, implementation=implementation,
                         parametrization=parametrization, init="gaussian") for i in range(depth)]
    return torch.nn.Sequential(torch.nn.Flatten(), *layers, GroupSum(CLASSES, tau=10 if width == 8000 else 30))


def batch(n: int, seed: int = 1):
    import torch
    gen = torch.Generator().manual_seed(seed)
    # MNIST-shaped grey levels in [0, 1] and labels; the step's cost does not depend on the values.
    return torch.rand(n, 1, 28, 28, generator=gen), torch.randint(0, CLASSES, (n,), generator=gen)


def check_worker(cfg: dict) -> dict:
    """Kernel vs reference on the benchmark model (one parametrization): logits and all parameter gradients."""
    import torch
    torch.set_num_threads(cfg["threads"])
    x, y = batch(cfg["check_batch"])
    results = {}
    for impl in ("cpu", "reference"):
        model = build_model(cfg["width"], cfg["depth"], impl, parametrization=cfg["parametrization"])
        logits = model(x)
        torch.nn.functional.cross_entropy(logits, y).backward()
        results[impl] = [logits.detach()] + [p.grad for p in model.parameters()]
        del model, logits
    worst = 0.0
    for fast, ref in zip(results["cpu"], results["reference"]):
        worst = max(worst, float((fast - ref).abs().max() / ref.abs().max().clamp_min(1e-30)))
    return {"max_rel_err": worst, "ok": worst <= CHECK_RTOL, "tensors": len(results["cpu"])}


def time_worker(cfg: dict) -> dict:
    """Median step time (and its phases) and the process's peak RSS for one configuration."""
    import torch
    torch.set_num_threads(cfg["threads"])
    model = build_model(cfg["width"], cfg["depth"], cfg["implementation"], parametrization=cfg["parametrization"])
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = batch(cfg["batch"])
    phases: dict[str, list[float]] = {"step": [], "forward": [], "backward": [], "optimizer": []}

    def step(record: bool) -> None:
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if record:
            for key, value in zip(phases, (t3 - t0, t1 - t0, t2 - t1, t3 - t2)):
                phases[key].append(value)

    for _ in range(cfg["warmup"]):
        step(False)
    for _ in range(cfg["steps"]):
        step(True)
    return {"threads": torch.get_num_threads(), "peak_rss_mb": peak_rss_mb(), "times": phases}


def mem_available_mb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="8000,64000", help="comma-separated layer widths (default 8000,64000)")
    parser.add_argument("--depth", type=int, default=6, help="number of LogicLayers (default 6)")
    parser.add_argument("--batch", type=int, default=100, help="batch size (default 100)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate the implementations this many times, fresh processes each (default 3)")
    parser.add_argument("--parametrizations", default="softmax16,iwp",
                        help="comma-separated parametrizations for the fused kernel (default softmax16,iwp)")
    parser.add_argument("--check-batch", type=int, default=16, help="batch of the kernel-vs-reference check")
    parser.add_argument("--reference-steps-large", type=int, default=2,
                        help=f"timed reference steps at widths >= {LARGE_WIDTH} (default 2; 1 warm-up)")
    parser.add_argument("--skip-reference-large", action="store_true",
                        help=f"do not run the reference at widths >= {LARGE_WIDTH}")
    args = parser.parse_args()
    widths = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not widths or min(widths) < 1:
        parser.error(f"--sizes must list positive widths, got {args.sizes!r}")
    kinds = [s.strip() for s in args.parametrizations.split(",") if s.strip()]
    from diffgates.kernels.parametrizations import PARAMETRIZATIONS
    if not kinds or set(kinds) - set(PARAMETRIZATIONS):
        parser.error(f"--parametrizations must list some of {PARAMETRIZATIONS}, got {args.parametrizations!r}")
    if min(args.steps, args.rounds, args.threads, args.batch, args.depth) < 1 or args.warmup < 0:
        parser.error("--steps, --rounds, --threads, --batch and --depth must be >= 1, --warmup >= 0")

    print_header("diffgates training step: fused CPU kernel vs reference 16-op mixture")
    print(f"model: {IN_DIM} -> width x {args.depth} -> GroupSum({CLASSES}); batch {args.batch}; float32; "
          f"Adam(lr=0.01); {args.threads} threads; median of {args.steps} steps in {args.rounds} alternating rounds "
          f"(fresh process each, {args.warmup} warm-up steps each)\n")
    env = {"OMP_NUM_THREADS": str(args.threads)}
    script = os.path.abspath(__file__)
    rows, ref_rss_per_width = [], None
    for width in widths:
        base = {"width": width, "depth": args.depth, "threads": args.threads}
        for kind in kinds:
            check = run_worker(script, {**base, "mode": "check", "check_batch": args.check_batch,
                                        "parametrization": kind}, env=env)
            if "error" in check or not check["ok"]:
                raise SystemExit(f"kernel and reference disagree on {IN_DIM}->{width}x{args.depth} {kind}: {check}")
            print(f"check {IN_DIM}->{width}x{args.depth} {kind} (batch {args.check_batch}): logits and "
                  f"{check['tensors'] - 1} parameter gradients agree, max |kernel - reference| / max |reference| = "
                  f"{check['max_rel_err']:.1e} (tolerance {CHECK_RTOL:.0e})")
        # Rounds alternate the implementations, each in a fresh process, so that a load change on a
        # shared machine hits all of them rather than whichever happened to run last.
        runs: dict[tuple[str, str], list[dict]] = {("cpu", kind): [] for kind in kinds}
        runs[("reference", "softmax16")] = []
        large_ref = width >= LARGE_WIDTH
        for rnd in range(args.rounds):
            for impl, kind in runs:
                steps = -(-args.steps // args.rounds)
                cfg = {**base, "mode": "time", "implementation": impl, "parametrization": kind, "batch": args.batch,
                       "steps": steps, "warmup": args.warmup}
                if impl == "reference" and large_ref:
                    if rnd > 0 or args.skip_reference_large:
                        if rnd == 0:
                            print(f"reference at width {width}: skipped (--skip-reference-large)")
                        continue
                    need = (ref_rss_per_width or REF_MB_PER_WIDTH_DEFAULT) * width
                    have = mem_available_mb()
                    if have and need * 1.2 > have:
                        print(f"reference at width {width}: skipped, needs ~{need / 1024:.1f} GB (scaled from "
                              f"a smaller width), {have / 1024:.1f} GB available")
                        continue
                    cfg.update(steps=args.reference_steps_large, warmup=1)  # one round of a few steps
                res = run_worker(script, cfg, env=env)
                if "error" in res:
                    print(f"{impl} at width {width}, round {rnd + 1}: failed ({res['error']})")
                    continue
                runs[(impl, kind)].append(res)
        if runs[("reference", "softmax16")] and ref_rss_per_width is None:
            ref_rss_per_width = max(r["peak_rss_mb"] for r in runs[("reference", "softmax16")]) / width
        results = {}
        for impl, rlist in runs.items():
            if rlist:
                pooled = {key: summarize([t for r in rlist for t in r["times"][key]]) for key in rlist[0]["times"]}
                results[impl] = {**pooled, "peak_rss_mb": max(r["peak_rss_mb"] for r in rlist)}
        ref = results.get(("reference", "softmax16"))
        for (impl, kind), res in results.items():
            speedup = f"{ref['step']['median'] / res['step']['median']:.1f}x" if ref else "n/a"
            rows.append([f"{IN_DIM}->{width}x{args.depth}", impl, kind, f"{res['step']['median']:.4f}",
                         f"{res['step']['min']:.4f}", f"{res['forward']['median'] * 1e3:.1f}",
                         f"{res['backward']['median'] * 1e3:.1f}", f"{res['optimizer']['median'] * 1e3:.1f}",
                         f"{res['peak_rss_mb']:.0f}", res["step"]["n"], speedup])
    print()
    print(format_table(["model", "implementation", "parametrization", "median s/step", "min s/step", "forward ms", "backward ms",
                        "Adam ms", "peak RSS MB", "steps", "speedup vs reference"], rows))


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker_main(lambda cfg: check_worker(cfg) if cfg["mode"] == "check" else time_worker(cfg))
    else:
        main()

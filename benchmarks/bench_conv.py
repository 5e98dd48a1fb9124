"""Conv logic nets (LogicTreeNet): training step of the fused kernels vs the plain reference, and
compiled inference.

Models: MNIST LogicTreeNet-S (k=16, batch 512) and -M (k=64, batch 256) as ``diffgates.models.logic_tree_net``
builds them (three conv blocks of logic trees with OR pools, dense logic layers, GroupSum), float32,
Adam(lr=0.01), random {0, 1} images (a step's cost does not depend on the values). A step is forward
+ cross-entropy + backward + Adam. Every configuration runs in a fresh process (its peak RSS is its
own); the fused rounds alternate with the reference. Before any timing, a separate process checks on
the same model (Gaussian gates, so that no gradient is trivially zero) that the fused logits and
every parameter gradient match the reference's - in float64: in float32 the two round differently,
and where two values of an OR-pool window are within rounding of each other the maximum (and so the
whole gradient path below it) can flip, a property of max pooling, not a disagreement of the kernels.

Inference: the S net with Gaussian-initialised gates (a trained net simplifies further; this is the
structure's cost with random gates) extracted, simplified and compiled to C; its class counts must
equal the eval-mode model's on 1,000 random images before the images/s (one thread) is printed.

Run (from the repository root):
    PYTHONPATH=src python benchmarks/bench_conv.py                        # S and M, 2 threads
    PYTHONPATH=src python benchmarks/bench_conv.py --sizes S --steps 5 --reference-steps 1
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import format_table, peak_rss_mb, print_header, run_worker, summarize, worker_main  # noqa: E402

BATCH = {"S": 512, "M": 256, "L": 128}
CHECK_RTOL = 1e-10  # float64, relative to each tensor's largest reference magnitude


def build(size: str, implementation: str, init: str = "residual", seed: int = 0):
    import torch
    from diffgates.models import logic_tree_net
    torch.manual_seed(seed)
    return logic_tree_net(size, implementation=implementation, init=init)


def images(n: int, seed: int = 1):
    import torch
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=gen) > 0.5).float(), torch.randint(0, 10, (n,), generator=gen)


def check_worker(cfg: dict) -> dict:
    import torch
    torch.set_num_threads(cfg["threads"])
    x, y = images(cfg["check_batch"])
    results = {}
    for impl in ("cpu", "reference"):
        model = build(cfg["size"], impl, init="gaussian").double()
        logits = model(x.double())
        torch.nn.functional.cross_entropy(logits, y).backward()
        results[impl] = [logits.detach()] + [p.grad for p in model.parameters()]
        del model, logits
    worst = max(float((f - r).abs().max() / r.abs().max().clamp_min(1e-30))
                for f, r in zip(results["cpu"], results["reference"]))
    return {"max_rel_err": worst, "ok": worst <= CHECK_RTOL, "tensors": len(results["cpu"])}


def time_worker(cfg: dict) -> dict:
    import torch
    torch.set_num_threads(cfg["threads"])
    model = build(cfg["size"], cfg["implementation"])
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = images(cfg["batch"])
    phases: dict[str, list[float]] = {"step": [], "forward": [], "backward": [], "optimizer": []}
    for i in range(cfg["warmup"] + cfg["steps"]):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if i >= cfg["warmup"]:
            for key, value in zip(phases, (t3 - t0, t1 - t0, t2 - t1, t3 - t2)):
                phases[key].append(value)
    return {"threads": torch.get_num_threads(), "peak_rss_mb": peak_rss_mb(), "times": phases}


def infer_worker(cfg: dict) -> dict:
    import numpy as np
    import torch
    import diffgates
    from diffgates.ir import simplify
    torch.set_num_threads(1)
    model = build("S", "cpu", init="gaussian").eval()
    x, _ = images(1000, seed=2)
    raw = diffgates.to_circuit(model)
    circuit = simplify(raw)
    engine = diffgates.compile(circuit, threads=1)
    bits = x.flatten(1).numpy() == 1
    with torch.no_grad():
        expected = torch.round(model(x) * circuit.tau).to(torch.int64).numpy()
    if not np.array_equal(engine.counts(bits), expected):
        return {"error": "the compiled engine's class counts differ from the eval-mode model's"}
    many = np.tile(bits, (cfg["repeat"], 1))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        engine.counts(many)
        times.append(time.perf_counter() - t0)
    return {"gates_before": raw.n_gates, "gates_after": circuit.n_gates, "isa": engine.isa,
            "images_per_s": len(many) / summarize(times)["median"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="S,M", help="comma-separated LogicTreeNet sizes (default S,M)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--steps", type=int, default=6, help="timed fused steps per size, over all rounds (default 6)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first, per process (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds, fresh processes (default 2)")
    parser.add_argument("--reference-steps", type=int, default=2,
                        help="timed reference steps per round (default 2; one warm-up step)")
    parser.add_argument("--check-batch", type=int, default=8, help="batch of the fused-vs-reference check")
    args = parser.parse_args()
    sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    if not sizes or set(sizes) - set(BATCH):
        parser.error(f"--sizes must list some of {sorted(BATCH)}, got {args.sizes!r}")
    if min(args.steps, args.rounds, args.threads, args.reference_steps, args.check_batch) < 1 or args.warmup < 0:
        parser.error("--steps, --rounds, --threads, --reference-steps, --check-batch must be >= 1, --warmup >= 0")

    print_header("diffgates LogicTreeNet training step: fused kernels vs the plain reference")
    print(f"models: MNIST LogicTreeNet {', '.join(sizes)} (batch {', '.join(str(BATCH[s]) for s in sizes)}), "
          f"float32, Adam(lr=0.01), {args.threads} threads; fused: median of {args.steps} steps, reference: "
          f"{args.reference_steps * args.rounds} steps, in {args.rounds} alternating rounds (fresh processes)\n")
    env = {"OMP_NUM_THREADS": str(args.threads)}
    script = os.path.abspath(__file__)
    rows = []
    for size in sizes:
        check = run_worker(script, {"mode": "check", "size": size, "threads": args.threads,
                                    "check_batch": args.check_batch}, env=env)
        if "error" in check or not check["ok"]:
            raise SystemExit(f"fused kernels and reference disagree on LogicTreeNet-{size}: {check}")
        print(f"check LogicTreeNet-{size} (batch {args.check_batch}, Gaussian gates): logits and "
              f"{check['tensors'] - 1} parameter gradients agree, max |fused - reference| / max |reference| = "
              f"{check['max_rel_err']:.1e} (tolerance {CHECK_RTOL:.0e})")
        runs: dict[str, list[dict]] = {"cpu": [], "reference": []}
        for _ in range(args.rounds):
            for impl in runs:
                steps = args.reference_steps if impl == "reference" else -(-args.steps // args.rounds)
                res = run_worker(script, {"mode": "time", "size": size, "implementation": impl, "batch": BATCH[size],
                                          "threads": args.threads, "steps": steps,
                                          "warmup": 1 if impl == "reference" else args.warmup}, env=env)
                if "error" in res:
                    print(f"{impl} LogicTreeNet-{size}: failed ({res['error']})")
                    continue
                runs[impl].append(res)
        results = {impl: {**{key: summarize([t for r in rl for t in r["times"][key]]) for key in rl[0]["times"]},
                          "peak_rss_mb": max(r["peak_rss_mb"] for r in rl)} for impl, rl in runs.items() if rl}
        ref = results.get("reference")
        for impl, res in results.items():
            speedup = f"{ref['step']['median'] / res['step']['median']:.1f}x" if ref else "n/a"
            rows.append([f"LogicTreeNet-{size}", BATCH[size], impl, f"{res['step']['median']:.3f}",
                         f"{res['forward']['median']:.3f}", f"{res['backward']['median']:.3f}",
                         f"{res['optimizer']['median'] * 1e3:.1f}", f"{res['peak_rss_mb']:.0f}", res["step"]["n"],
                         speedup])
    print()
    print(format_table(["model", "batch", "implementation", "median s/step", "forward s", "backward s", "Adam ms",
                        "peak RSS MB", "steps", "speedup vs reference"], rows))
    inf = run_worker(script, {"mode": "infer", "repeat": 20})
    print()
    if "error" in inf:
        raise SystemExit(f"compiled inference: {inf['error']}")
    print(f"compiled LogicTreeNet-S (Gaussian gates): {inf['gates_before']} gates -> {inf['gates_after']} after "
          f"simplification; class counts equal the eval-mode model's on 1000 images; "
          f"{inf['images_per_s']:,.0f} images/s on 1 thread ({inf['isa']} words)")


if __name__ == "__main__":
    if "--worker" in sys.argv:
        modes = {"check": check_worker, "time": time_worker, "infer": infer_worker}
        worker_main(lambda cfg: modes[cfg["mode"]](cfg))
    else:
        main()

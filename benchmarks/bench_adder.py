"""AdderNet training step: the fused adder kernel vs the unfold reference (the paper's code path).

Model: the adder family's LeNet-5-BN (``--preset adder_lenet_mnist``'s architecture: conv 20 5x5 multiply,
adder conv 50 5x5, adder dense 800 -> 500, classifier), random weights from a fixed seed, a batch of
random 28x28 images in [0, 1] and random labels. One training step = forward, cross-entropy, backward.

First the script builds the model twice with the same weights, one per implementation, runs one step
on each and checks that the loss, every parameter gradient and the input gradient agree within float
tolerance (the sums run in another order; the reference defines the numbers). Then, in rounds (each
round times both implementations, after a warm-up round, so machine load hits them alike) it prints
the median step time of each, the median per-round ratio, and the peak memory of the reference's
(M, O, K) temporary. Threads: ``--threads`` (default 1).

Run (from the repository root):
    PYTHONPATH=src python benchmarks/bench_adder.py
    PYTHONPATH=src python benchmarks/bench_adder.py --batch 128 --repeats 7 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from _common import format_table, print_header


def _models(implementations):
    from diffgates.families import build_model
    from diffgates.families.base import spec_header
    from diffgates.nn.adder import ADDER_LAYERS

    spec = {**spec_header("adder", 784, 10, [1, 28, 28]), "conv": [[20, 5, 2], [50, 5, 2]], "hidden": [500],
            "multiply_ends": True}
    torch.manual_seed(0)
    first = build_model(spec)
    models = {}
    for impl in implementations:
        model = build_model(spec)
        model.load_state_dict(first.state_dict())
        for m in model.modules():
            if isinstance(m, ADDER_LAYERS):
                m.implementation = impl
        models[impl] = model.train()
    return models


def _step(model, x, y):
    model.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss.detach(), x.grad, {n: p.grad for n, p in model.named_parameters()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64, help="images per step (the reference's temporary grows with it)")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print_header("AdderNet LeNet-5-BN training step: fused adder kernel vs unfold reference")

    g = torch.Generator().manual_seed(1)
    x = torch.rand(args.batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    models = _models(["reference", "cpu"])

    ref, fused = _step(models["reference"], x, y), _step(models["cpu"], x, y)
    torch.testing.assert_close(fused[0], ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused[1], ref[1], rtol=1e-3, atol=1e-6)
    for name, grad in ref[2].items():  # why norms: a bias before BatchNorm has a gradient of pure rounding noise
        error = (fused[2][name] - grad).norm().item()
        assert error <= 1e-3 * grad.norm().item() + 1e-6, f"{name}: gradients differ by {error:.3g} (norm {grad.norm():.3g})"
    print(f"check: loss, input gradient and all {len(ref[2])} parameter gradients of the fused step equal the "
          f"reference's within float tolerance (batch {args.batch})\n")

    times = {impl: [] for impl in models}
    for round_ in range(args.repeats + 1):
        for impl, model in models.items():
            start = time.perf_counter()
            _step(model, x, y)
            if round_:  # round 0 warms up
                times[impl].append(time.perf_counter() - start)
    ratios = [r / f for r, f in zip(times["reference"], times["cpu"])]
    ref_temp_mb = args.batch * 64 * 50 * 500 * 4 / 2**20  # the adder conv's (M, O, K) float32 broadcast
    rows = [["reference (unfold, (M, O, K) broadcast)", f"{statistics.median(times['reference']) * 1e3:.1f}",
             "1.00x", f"{ref_temp_mb:.0f} MiB"],
            ["fused adder kernel", f"{statistics.median(times['cpu']) * 1e3:.1f}",
             f"{statistics.median(ratios):.1f}x", "none"]]
    print(format_table(["implementation", "step ms (median)", "speed-up (median per round)",
                        "adder conv temporary"], rows))
    print(f"\nbatch {args.batch}, {args.threads} thread(s), {args.repeats} rounds")


if __name__ == "__main__":
    main()

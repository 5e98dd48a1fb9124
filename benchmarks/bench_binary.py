"""Binary network inference: the XNOR-popcount engine and the bit-sliced circuit engine vs float PyTorch eval.

Network: a BNN 784 -> width x depth -> 10 of the binary family (FINN's LFC shape by default), its weights
random and its BatchNorm statistics drawn at random (so thresholds differ per neuron) from a fixed seed;
or a trained run's model with ``--run DIR``. Input: random {0, 1} images (N, 784).

Before any timing the script checks that both engines' class scores equal the eval-mode model's
(``BINARY.deployed_counts``) on the whole batch. Then, in rounds (each round calls every engine once,
after a warm-up round, so a noisy machine's load hits them alike), it times on one thread and on all
cores: the float PyTorch eval of the same network (torch threads set to match), the XNOR-popcount
engine (``diffgates.backends.xnor``: packing included), the circuit engine (``diffgates.compile``:
threshold cells, 64*lanes images per word, packing included) and, as the multiplication baseline, a
float ReLU MLP of the same shape. It prints the median images/s and the median per-round ratio to the
BNN's float eval.

Run (from the repository root):
    PYTHONPATH=src python benchmarks/bench_binary.py
    PYTHONPATH=src python benchmarks/bench_binary.py --width 4096 --images 4096 --repeats 5
    PYTHONPATH=src python benchmarks/bench_binary.py --run runs/binary/bnn_mlp_mnist
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from _common import format_table, print_header


def _model(args):
    from diffgates.families import binary_spec, build_model
    from diffgates.modelfiles import load_model

    if args.run:
        return load_model(args.run).eval()
    torch.manual_seed(0)
    model = build_model(binary_spec(784, 10, [args.width] * args.depth, input_shape=[1, 28, 28]))
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "running_mean") and module.running_mean is not None:
                module.running_mean.uniform_(-30, 30)
                module.running_var.uniform_(50, 500)
                module.weight.normal_(0, 1)
                module.bias.normal_(0, 0.3)
    return model.eval()


def _float_mlp(width: int, depth: int) -> torch.nn.Module:
    layers, n = [], 784
    for _ in range(depth):
        layers += [torch.nn.Linear(n, width), torch.nn.ReLU()]
        n = width
    return torch.nn.Sequential(*layers, torch.nn.Linear(n, 10)).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--run", help="a trained binary-family run folder instead of the random network")
    args = parser.parse_args()
    print_header("bench_binary: XNOR-popcount and circuit engines vs float PyTorch eval")

    import diffgates
    from diffgates.backends.xnor import compile_xnor
    from diffgates.families.binary import BINARY

    model = _model(args)
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2, (args.images, 784)).astype(np.bool_)
    x = torch.from_numpy(bits).float().reshape(-1, *model.diffgates_input_shape)
    xnor = compile_xnor(BINARY.xnor_program(model))
    circuit = BINARY.deploy(model)
    engine = diffgates.compile(circuit, simplify=True)
    expected = BINARY.deployed_counts(model, x, circuit).numpy()
    assert np.array_equal(xnor.scores(bits), expected), "XNOR engine differs from the eval model"
    assert np.array_equal(engine.counts(bits), expected), "circuit engine differs from the eval model"
    print(f"check: both engines' class scores equal the eval model's on all {args.images} images")
    mlp = _float_mlp(args.width if not args.run else max(model.spec["hidden"]), len(model.spec["hidden"]))
    flat = x.reshape(len(x), -1)

    def torch_eval(net, inp):
        with torch.no_grad():
            return net(inp)

    cores = os.cpu_count() or 1
    rows = []
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        xnor.threads = threads
        engine.threads = threads
        runs = {"BNN, float PyTorch eval": lambda: torch_eval(model, x),
                "BNN, XNOR-popcount engine": lambda: xnor.scores(bits),
                "BNN, circuit engine (threshold cells)": lambda: engine.counts(bits),
                "float ReLU MLP, same shape (PyTorch)": lambda: torch_eval(mlp, flat)}
        times = {name: [] for name in runs}
        for round_ in range(args.repeats + 1):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                if round_:
                    times[name].append(time.perf_counter() - t0)
        base = times["BNN, float PyTorch eval"]
        for name, ts in times.items():
            ratio = statistics.median(b / t for b, t in zip(base, ts))
            rows.append([threads, name, f"{args.images / statistics.median(ts):,.0f}", f"{ratio:.1f}x"])
    print(format_table(["threads", "network / engine", "images/s (median)", "vs BNN float eval"], rows))
    print(f"XNOR engine ISA: {xnor.isa}; circuit engine ISA: {engine.isa}")


if __name__ == "__main__":
    main()

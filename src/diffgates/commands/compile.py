"""``diffgates compile DIR``: turn a trained model into a compiled C circuit, prove it equal, time it.

Steps: load the run's model (``--which last|best``), extract and simplify its circuit (gates before and
after are printed), build the C engine, run it on the run's whole test set in its exact input bits,
and check that every class count equals the eval-mode PyTorch model's (``family.deployed_counts``: a
logic net's output times tau, a binary net's XNOR agreements per class). Then it reports images/s on
1 thread and on ``--threads`` threads (median of ``--repeats`` timed passes over the test set) and writes the figures to ``DIR/compiled.json`` (or ``--json``). A
binary network (a family with ``xnor_program``) is also run, checked and timed on the feature-packed
XNOR-popcount engine (``diffgates.backends.xnor``), reported under ``xnor_engine``.

Example::

    diffgates compile runs/mnist --data-dir ../shared/data --threads 2
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

HELP = "compile a trained model to C, check it bit-exact against the model on the test set, report images/s"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="DIR", help="run directory of `diffgates train` (or a model .safetensors)")
    parser.add_argument("--which", choices=("last", "best"), default="last", help="which saved model (default last)")
    parser.add_argument("--data-dir", metavar="DIR", help="folder with the dataset files")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for the multi-threaded timing (default: all cores)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per setting; the median is reported")
    parser.add_argument("--json", metavar="OUT", help="where to write the report (default DIR/compiled.json)")


def _images_per_second(engine, x, repeats: int) -> float:
    engine(x[:64])  # warm-up: page in the library and the buffers
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        engine(x)
        times.append(time.perf_counter() - t0)
    return len(x) / statistics.median(times)  # includes packing the bits, in C


def _rates(engine, x, threads: int, repeats: int) -> dict[int, float]:
    """{threads: images/s}: on 1 thread, and on ``threads`` when more (the engine is left at that count)."""
    rates = {1: _images_per_second(engine, x, repeats)}
    if threads > 1:
        engine.threads = threads
        rates[threads] = _images_per_second(engine, x, repeats)
    return rates


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..backends.c.engine import compile_circuit
    from ..families import get_family
    from ..ir import simplify
    from ..modelfiles import write_json_atomic
    from .evaluate import load_saved_run

    if args.threads < 1 or args.repeats < 1:
        raise ValueError(f"--threads and --repeats must be >= 1, got {args.threads}, {args.repeats}")
    path, model, cfg, ds = load_saved_run(args.model, args.which, args.data_dir)
    family = get_family(model.diffgates_spec["kind"])
    raw = family.deploy(model, input_layout=model.diffgates_input_layout)
    if raw is None:
        raise ValueError(f"{path} is a {family.name!r} model ({family.description}): it has no circuit to compile")
    t0 = time.perf_counter()
    circuit = simplify(raw)
    simplify_s = time.perf_counter() - t0
    print(f"circuit: {raw.n_gates} gates (depth {raw.depth()}) -> {circuit.n_gates} after simplification "
          f"(depth {circuit.depth()}, {simplify_s:.2f} s)")
    engine = compile_circuit(circuit, threads=1)
    print(f"engine: {engine.isa} words, built in {engine.build_seconds:.2f} s")

    x = ds.encode(ds.x_test, binary=True)  # the model's input shape (images for conv nets)
    bits = x.flatten(1).numpy() == 1  # bool: the engine takes it without a per-value check, so timing is the engine's
    counts = engine(bits)
    # The eval-mode model is the spec the circuit must equal (the family says how it counts); batched.
    model_counts = np.concatenate([family.deployed_counts(model, x[i:i + 1000], circuit).numpy()
                                   for i in range(0, len(x), 1000)])
    same_counts = bool(np.array_equal(counts, model_counts))
    labels = ds.y_test.numpy()
    compiled_acc = float((counts.argmax(1) == labels).mean())
    model_acc = float((model_counts.argmax(1) == labels).mean())
    print(f"test set: {len(labels)} images; compiled accuracy {100 * compiled_acc:.2f}%, eval-model accuracy "
          f"{100 * model_acc:.2f}%; class counts identical on every image: {same_counts}")

    rates = _rates(engine, bits, args.threads, args.repeats)
    for threads, rate in rates.items():
        print(f"throughput: {rate:,.0f} images/s on {threads} thread{'s' if threads > 1 else ''}")

    xnor = None
    if hasattr(family, "xnor_program"):  # binary nets also run on the feature-packed XNOR-popcount engine
        from ..backends.xnor import compile_xnor

        xnor_engine = compile_xnor(family.xnor_program(model), threads=1)
        xnor_counts = xnor_engine.scores(bits)
        xnor_same = bool(np.array_equal(xnor_counts, model_counts))
        xnor_rates = _rates(xnor_engine, bits, args.threads, args.repeats)
        print(f"XNOR-popcount engine ({xnor_engine.isa}): scores identical on every image: {xnor_same}; "
              + ", ".join(f"{r:,.0f} images/s on {t} thread{'s' if t > 1 else ''}" for t, r in xnor_rates.items()))
        xnor = {"isa": xnor_engine.isa, "bit_exact_with_model": xnor_same,
                "images_per_second": {str(t): r for t, r in xnor_rates.items()}}
    report = {"model": str(path), "dataset": cfg.dataset, "gates_before": raw.n_gates,
              "gates_after": circuit.n_gates, "depth_before": raw.depth(), "depth_after": circuit.depth(),
              "isa": engine.isa, "build_seconds": engine.build_seconds, "test_images": int(len(labels)),
              "compiled_test_acc": compiled_acc, "model_test_acc_eval_mode": model_acc,
              "bit_exact_with_model": same_counts,
              "images_per_second": {str(t): r for t, r in rates.items()}}
    if xnor is not None:
        report["xnor_engine"] = xnor
    out = args.json or (os.path.join(args.model, "compiled.json") if os.path.isdir(args.model) else None)
    if out:
        write_json_atomic(out, report)
        print(f"wrote {out}")
    return 0 if same_counts and (xnor is None or xnor["bit_exact_with_model"]) else 1

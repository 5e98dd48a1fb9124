"""Scale benchmark of the circuit path: a random 10,000,000-gate layered circuit through the IR and backends.

The circuit: 784 inputs; ``--layers`` layers of ``--width`` gates (default 10 x 1,000,000); every gate
one of the ten two-input gates (no constant folds away: the hardest case for every stage; only
duplicate first-layer gates merge, about 1.5%); each layer's 2 x width operand slots are a random
permutation of range(2 x width) modulo the previous layer's width, so every node of a layer is read
(twice, on average); the outputs are the last layer, in 10 classes (a group-sum head).
``--gates uniform`` draws all 16 gates instead (constants, wires and NOTs then simplify away about
four fifths of it).

Stages, each timed in its own fresh process (so its peak RSS, VmHWM, is its own), checked first:

1. ``build``: IR -> ``ir.simplify`` -> the C engine (``backends.c.compile_circuit``, layout chosen
   automatically: the step table); then, outside the timing, every class count of the engine on
   ``--check`` random inputs is compared with the numpy reference evaluator (``ir.group_counts``);
2. ``save`` / ``load``: the safetensors container (``Circuit.save`` / ``Circuit.load``), round trip
   checked structurally;
3. ``verilog`` / ``aiger``: ``export_verilog`` (combinational) and ``export_aiger`` (binary ``.aig``).

Run (from the repository root; about 3 minutes on 2 cores at the default size):

    python benchmarks/bench_ir_scale.py
    python benchmarks/bench_ir_scale.py --width 100000          # a 1M-gate circuit, quick
    python benchmarks/bench_ir_scale.py --stages build --check 1000
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import format_table, peak_rss_mb, print_header  # noqa: E402

TWO_INPUT_GATES = (1, 2, 4, 6, 7, 8, 9, 11, 13, 14)
STAGES = ("build", "save", "load", "verilog", "aiger")
TARGETS = {"build": 30.0, "save": 5.0, "load": 5.0, "verilog": 60.0, "aiger": 60.0}  # seconds
RSS_TARGET_MB = {"build": 3072}


def layered_circuit(n_inputs: int, width: int, layers: int, classes: int, gates: str, seed: int):
    import numpy as np

    from diffgates.ir import Circuit, Head

    rng = np.random.default_rng(seed)
    choices = np.array(TWO_INPUT_GATES if gates == "two-input" else range(16), dtype=np.uint8)
    ops, a, b = [], [], []
    prev_start, prev_width, node = 0, n_inputs, n_inputs
    for _ in range(layers):
        ops.append(choices[rng.integers(0, choices.size, width)])
        slots = rng.permutation(2 * width) % prev_width
        a.append(prev_start + slots[:width])
        b.append(prev_start + slots[width:])
        prev_start, prev_width, node = node, width, node + width
    return Circuit(n_inputs=n_inputs, ops=np.concatenate(ops), a=np.concatenate(a), b=np.concatenate(b),
                   outputs=np.arange(prev_start, prev_start + width), head=Head.group_sum(classes, 1.0))


def worker(args) -> dict:
    """One stage in this process; prints one JSON line."""
    import numpy as np

    from diffgates.ir import Circuit, group_counts, simplify

    workdir = args.workdir
    binary = os.path.join(workdir, "circuit.safetensors")
    result: dict = {"stage": args.stage}
    if args.stage in ("build", "save"):
        circuit = layered_circuit(784, args.width, args.layers, 10, args.gates, args.seed)
        result["gates"] = circuit.n_gates
    if args.stage == "build":
        from diffgates.backends.c.engine import compile_circuit

        t0 = time.perf_counter()
        small = simplify(circuit)
        t1 = time.perf_counter()
        engine = compile_circuit(small)
        t2 = time.perf_counter()
        result.update(seconds=t2 - t0, simplify_s=t1 - t0, engine_s=t2 - t1, gates_after=small.n_gates,
                      layout=engine.layout, isa=engine.isa, slots=engine.program.n_slots)
        result["peak_rss_mb"] = peak_rss_mb()  # the timed part's peak, before the check below
        x = np.random.default_rng(args.seed + 1).integers(0, 2, (args.check, 784), dtype=np.uint8)
        t3 = time.perf_counter()
        result["bit_exact"] = bool(np.array_equal(engine(x), group_counts(circuit, x)))
        result["check_s"] = time.perf_counter() - t3
        small.save(binary)  # the later stages read the simplified circuit
        return result
    if args.stage == "save":
        small = simplify(circuit)
        t0 = time.perf_counter()
        small.save(binary)
        result.update(seconds=time.perf_counter() - t0, bytes=os.path.getsize(binary), gates_after=small.n_gates)
        result["peak_rss_mb"] = peak_rss_mb()
        result["round_trip"] = bool(Circuit.load(binary).structurally_equal(small))
        return result
    t0 = time.perf_counter()
    small = Circuit.load(binary)
    loaded = time.perf_counter() - t0
    if args.stage == "load":
        result.update(seconds=loaded, gates_after=small.n_gates)
    elif args.stage == "verilog":
        from diffgates.backends.verilog.emit import export_verilog

        path = os.path.join(workdir, "net.v")
        t0 = time.perf_counter()
        export_verilog(small, path)
        result.update(seconds=time.perf_counter() - t0, bytes=os.path.getsize(path))
    elif args.stage == "aiger":
        from diffgates.backends.netlist.aiger import export_aiger

        path = os.path.join(workdir, "net.aig")
        t0 = time.perf_counter()
        info = export_aiger(small, path)
        result.update(seconds=time.perf_counter() - t0, bytes=os.path.getsize(path), ands=info.nodes)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1_000_000, help="gates per layer (default 1,000,000)")
    parser.add_argument("--layers", type=int, default=10, help="layers (default 10)")
    parser.add_argument("--gates", choices=("two-input", "uniform"), default="two-input")
    parser.add_argument("--check", type=int, default=1000, help="random inputs checked against numpy (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # worker mode
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(worker(args)), flush=True)
        return
    print_header("diffgates circuit path at scale: IR -> simplify -> C engine, files, exports")
    print(f"circuit: 784 inputs, {args.layers} layers x {args.width} gates = {args.layers * args.width:,} gates "
          f"({args.gates}), 10 classes; check: {args.check} random inputs\n")
    rows = []
    stages = list(args.stages)
    if "build" not in stages and any(s in stages for s in ("load", "verilog", "aiger")):
        stages.insert(0, "build")  # the later stages read the circuit file the build stage writes
    with tempfile.TemporaryDirectory(prefix="diffgates-scale-") as workdir:
        for stage in stages:
            cmd = [sys.executable, __file__, "--stage", stage, "--workdir", workdir, "--width", str(args.width),
                   "--layers", str(args.layers), "--gates", args.gates, "--check", str(args.check),
                   "--seed", str(args.seed)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"stage {stage} failed:\n{out.stdout}\n{out.stderr}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(r)
            check = ("bit-exact" if r.get("bit_exact") else "MISMATCH") if "bit_exact" in r else \
                ("round trip equal" if r.get("round_trip") else "MISMATCH") if "round_trip" in r else ""
            detail = {"build": lambda r: f"simplify {r['simplify_s']:.1f} s + engine {r['engine_s']:.1f} s "
                                         f"({r['gates_after']:,} gates, {r['layout']}, {r['isa']}); check "
                                         f"{r['check_s']:.0f} s",
                      "save": lambda r: f"{r['bytes'] / 1e6:.0f} MB", "load": lambda r: "",
                      "verilog": lambda r: f"{r['bytes'] / 1e6:.0f} MB",
                      "aiger": lambda r: f"{r['ands']:,} ANDs, {r['bytes'] / 1e6:.0f} MB"}[stage](r)
            rows[-1]["table"] = [stage, f"{r['seconds']:.1f}", f"<= {TARGETS[stage]:.0f}",
                                 f"{r['peak_rss_mb']:.0f}", check, detail]
            if not (r.get("bit_exact", True) and r.get("round_trip", True)):
                print(format_table(["stage", "seconds", "target s", "peak RSS MB", "check", "detail"],
                                   [row["table"] for row in rows]))
                sys.exit(f"stage {stage}: the result is not equal to the reference")
    print(format_table(["stage", "seconds", "target s", "peak RSS MB", "check", "detail"], [r["table"] for r in rows]))
    print(f"\npeak RSS target of the build stage: <= {RSS_TARGET_MB['build']} MB (the process's whole high-water "
          f"mark up to the built engine, before the reference check)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: v for k, v in r.items() if k != "table"} for r in rows], f, indent=1)


if __name__ == "__main__":
    main()

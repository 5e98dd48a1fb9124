"""``diffgates circuit MODEL``: extract a trained model's circuit, simplify it, report and save it.

MODEL is a run directory written by ``diffgates train``, its ``model.safetensors``, or a circuit file.
Prints a table of gates by type, depth and inputs used, before and after simplification, and writes
the circuit (``--out``, default ``circuit.json``; a ``.safetensors`` name writes the binary container
that suits large circuits) that ``diffgates export`` and the engines read.

    diffgates circuit runs/mnist --out mnist.circuit.json
    diffgates circuit runs/mnist --no-simplify --json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "extract a model's logic circuit, simplify it, print gate statistics and save it as JSON"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="run directory of diffgates train, its model.safetensors, or a circuit JSON")
    parser.add_argument("--out", default="circuit.json", metavar="PATH",
                        help="where to write the circuit JSON (default: %(default)s)")
    parser.add_argument("--no-simplify", action="store_true",
                        help="keep one gate per neuron (skip constant folding, NOT absorption, merging, ...)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from ..ir.passes import format_report, simplify, simplify_report
    from ..modelfiles import load_circuit

    source, out = Path(args.model), Path(args.out)
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise ValueError(f"--out {out} is the input file; choose another path")
    original = load_circuit(source, simplify=False)
    result = original if args.no_simplify else simplify(original)
    report = simplify_report(original, None if args.no_simplify else result)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.save(out)
    report["out"] = str(out)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        print(f"wrote {out}")
    return 0

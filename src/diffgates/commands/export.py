"""``diffgates export FORMAT MODEL OUT``: write a trained model or circuit as C, Verilog, AIGER or BLIF.

MODEL is a run directory written by ``diffgates train``, one of its model files, or a circuit file
(``diffgates circuit``); it is loaded with ``diffgates.modelfiles.load_circuit`` (simplified unless
``--no-simplify``). Each format is one entry of ``FORMATS``: its help line, a function adding its
arguments, and a function that exports (with a backend of ``diffgates.backends``) and prints what was
written. Examples::

    diffgates export c runs/mnist out/c --name mnist_net
    diffgates export verilog circuit.json net.v --pipeline 2 --argmax --report
    diffgates export aiger circuit.json net.aig --counts
    diffgates export blif circuit.json net.blif --style aig
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HELP = "export a trained model or circuit (c, verilog, aiger, blif)"


@dataclass(frozen=True)
class Format:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    export: Callable[[object, argparse.Namespace], None]  # (circuit, args): write args.out, print a summary


def _c_arguments(p: argparse.ArgumentParser) -> None:
    from ..backends.c.export import EXPORT_ISAS
    from ..backends.c.program import LAYOUTS

    p.add_argument("--name", default="logic_net", help="C name of the files and functions (default logic_net)")
    p.add_argument("--isa", choices=EXPORT_ISAS, default="portable",
                   help="word type: portable uint64_t C99 (default) or avx2 vectors (compile with -mavx2)")
    p.add_argument("--layout", choices=("auto", *LAYOUTS), default="auto",
                   help="straight-line code, a step table, or auto (code for small nets; default)")


def _c_export(circuit, args) -> None:
    from ..backends.c.export import export_c

    paths = export_c(circuit, args.out, name=args.name, isa=args.isa, layout=args.layout)
    print(f"exported {circuit.n_gates} gates, {circuit.n_inputs} inputs, {circuit.num_classes} classes "
          f"({args.isa}) to:")
    for path in paths:
        print(f"  {path}")
    print(f"build: cd {args.out} && make && ./example samples.txt")


def _verilog_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", type=int, default=0, metavar="N",
                   help="a register stage every N logic levels (default 0: combinational)")
    p.add_argument("--argmax", action="store_true", help="add the class_idx output (ties -> lowest index)")
    p.add_argument("--module", default="logic_net", help="module name (default logic_net)")
    p.add_argument("--no-reset", action="store_true", help="pipelined: no rst input")
    p.add_argument("--report", action="store_true",
                   help="also optimise and map the design with ABC and print LUT-6 and 2-input gate counts and "
                        "depths (needs berkeley-abc or yosys-abc)")


def _verilog_export(circuit, args) -> None:
    from .._atomic import atomic_write
    from ..backends.verilog.emit import export_verilog

    info = export_verilog(circuit, args.out, module=args.module, pipeline=args.pipeline, argmax=args.argmax,
                          reset=not args.no_reset)
    if args.report:
        from ..backends.netlist.abc import synth_report

        info.synthesis = synth_report(circuit, argmax=args.argmax)
        with atomic_write(info.sidecar, "w") as f:
            f.write(json.dumps(info.to_dict(), indent=1, sort_keys=True) + "\n")
    print(info.summary())
    print(f"  sidecar: {info.sidecar}")


def _aiger_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--counts", action="store_true",
                   help="also output each class's count (balanced adder tree) after the raw output bits")
    p.add_argument("--argmax", action="store_true",
                   help="also output the winning class index (ties to the lowest class), last")
    # Not "--format": the command keeps the format name in args.format.
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--binary", dest="aiger_binary", action="store_const", const=True, default=None,
                      help="write binary AIGER whatever OUT's suffix (default: .aig binary, .aag ASCII)")
    kind.add_argument("--ascii", dest="aiger_binary", action="store_const", const=False,
                      help="write ASCII AIGER whatever OUT's suffix")


def _aiger_export(circuit, args) -> None:
    from ..backends.netlist.aiger import export_aiger

    print(export_aiger(circuit, args.out, counts=args.counts, binary=args.aiger_binary, argmax=args.argmax).summary())


def _blif_arguments(p: argparse.ArgumentParser) -> None:
    from ..backends.netlist.blif import STYLES

    p.add_argument("--style", choices=STYLES, default="gates",
                   help="'gates': one .names table per gate (default); 'aig': AND-inverter lowering")
    p.add_argument("--counts", action="store_true",
                   help="also output each class's count (balanced adder tree) after the raw output bits")
    p.add_argument("--model-name", default="logic_net", help="the .model name (default logic_net)")


def _blif_export(circuit, args) -> None:
    from ..backends.netlist.blif import export_blif

    print(export_blif(circuit, args.out, style=args.style, counts=args.counts, model=args.model_name).summary())


FORMATS = {
    "c": Format("write standalone C99 (NAME.c/NAME.h, example program, Makefile) with a documented ABI",
                _c_arguments, _c_export),
    "verilog": Format("write Verilog RTL (combinational or pipelined) with a documented port contract",
                      _verilog_arguments, _verilog_export),
    "aiger": Format("write an AIGER netlist (.aag ASCII or .aig binary): raw output bits, optionally class counts",
                    _aiger_arguments, _aiger_export),
    "blif": Format("write a BLIF netlist (one .names per gate, or the AIG lowering), optionally with class counts",
                   _blif_arguments, _blif_export),
}


def configure(parser: argparse.ArgumentParser) -> None:
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for name, fmt in FORMATS.items():
        p = formats.add_parser(name, help=fmt.help, description=fmt.help)
        p.add_argument("model", metavar="MODEL", help="run directory, model file or circuit file")
        p.add_argument("out", metavar="OUTDIR" if name == "c" else "OUT",
                       help="output folder" if name == "c" else "output file")
        p.add_argument("--no-simplify", action="store_true",
                       help="export the circuit as extracted, without the simplification passes")
        fmt.configure(p)


def run(args: argparse.Namespace) -> int:
    from ..modelfiles import load_circuit

    if Path(args.model).exists() and Path(args.out).exists() and Path(args.out).resolve() == Path(args.model).resolve():
        raise ValueError(f"OUT {args.out} is the MODEL file; choose another path")
    circuit = load_circuit(args.model, simplify=not args.no_simplify)
    FORMATS[args.format].export(circuit, args)
    return 0

"""``diffgates export FORMAT MODEL OUT``: write a trained model or circuit as C, Verilog, AIGER or BLIF.

MODEL is a run directory written by ``diffgates train``, a ``model.safetensors`` file beside its JSON
config, or a circuit JSON file (``diffgates circuit``). Each format's module under ``diffgates.export``
exposes ``configure_cli(parser)`` and ``run_cli(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

HELP = "export a trained model or circuit (c, verilog, aiger, blif)"

EXPORTERS = {
    "c": "diffgates.export.c",
    "verilog": "diffgates.export.verilog",
    "aiger": "diffgates.export.aiger",
    "blif": "diffgates.export.blif",
}


def configure(parser: argparse.ArgumentParser) -> None:
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for name, module_name in EXPORTERS.items():
        module = importlib.import_module(module_name)
        module.configure_cli(formats.add_parser(name, help=module.CLI_HELP, description=module.CLI_HELP))


def run(args: argparse.Namespace) -> int:
    from .._native import CompilationError

    try:
        return int(importlib.import_module(EXPORTERS[args.format]).run_cli(args) or 0)
    except (ValueError, FileNotFoundError, CompilationError) as exc:  # bad input: a message, not a traceback
        print(f"diffgates export {args.format}: error: {exc}", file=sys.stderr)
        return 2

"""The ``diffgates`` command line: ``diffgates <command> ...`` or ``python -m diffgates <command> ...``.

Each command lives in its own module under ``diffgates.commands`` and exposes ``HELP`` (one line),
``configure(parser)`` (adds its arguments) and ``run(args) -> int`` (exit status). Modules are imported
only when their command runs, so ``diffgates --help`` is fast and one broken backend cannot break the rest.
Commands raise their errors; ``main`` reports them as one line with one exit code per kind
(``diffgates.commands.errors``).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from ._malloc import keep_freed_memory
from .commands.errors import EXIT_CODES_HELP, USAGE, report

COMMANDS = {
    "train": "diffgates.commands.train",
    "eval": "diffgates.commands.evaluate",
    "circuit": "diffgates.commands.circuit",
    "compile": "diffgates.commands.compile",
    "export": "diffgates.commands.export",
    "verify-verilog": "diffgates.commands.verify_verilog",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffgates", description="Train logic gate networks and ship "
                                     "them as bit-exact circuits.", epilog=EXIT_CODES_HELP)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"diffgates {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, module_name in COMMANDS.items():
        if name != chosen:  # only the command that runs is imported; the others list by name
            sub.add_parser(name, help=f"(see: diffgates {name} --help)")
            continue
        module = importlib.import_module(module_name)
        module.configure(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings of the command line as one line each, like its errors (not Python's two-line form)."""
    text = str(message).removeprefix("diffgates: ")
    return f"diffgates: warning: {text} ({category.__name__})\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # OpenMP threads that spin while waiting steal the core from whatever else runs on a small machine
    # (a 2-thread training step measured 5-20x slower next to one busy process); torch is not imported
    # yet, so its OpenMP runtime still reads this. A user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    keep_freed_memory()  # why: training steps otherwise page-fault their activations back in every step
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return USAGE
    name = " ".join(filter(None, (args.command, getattr(args, "format", None))))
    previous_format, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        return int(importlib.import_module(COMMANDS[args.command]).run(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:  # one line and an exit code per kind (commands/errors.py)
        return report(name, exc)
    finally:
        warnings.formatwarning = previous_format  # why: a caller's own process keeps its warning format


if __name__ == "__main__":
    sys.exit(main())

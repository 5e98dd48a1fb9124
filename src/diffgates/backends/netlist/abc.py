"""Synthesis report through ABC: gate and LUT counts and logic depth after optimisation.

``synth_report(circuit)`` lowers the design - gate network + group-sum adder trees (grouped heads),
optionally the argmax - to the AND-inverter graph of the AIGER export (``aig.lower_to_aig``) and runs
one ABC script on it:

1. ``strash; dc2`` (AIG rewriting): ``aig_ands`` / ``aig_depth``;
2. ``if -K k``: ``luts`` k-input LUTs and their depth ``lut_depth``;
3. ``map -a`` onto a library of 2-input gates (AND, NAND, OR, NOR, XOR, XNOR, ANDNOT, ORNOT) and
   NOT, each of area 1: ``gates_after_opt`` (2-input gates + NOTs), ``gates_by_type`` (also the
   buffers and constants that drive outputs), ``gate_depth``.

ABC reads the AIG directly, so the report takes seconds where Yosys' generic ``synth`` on the
exported Verilog takes many minutes for a 48K-gate network with its wide adder trees. The AIG and
the gate library go to files in a private temporary folder, deleted afterwards.

Example::

    from diffgates.backends.netlist.abc import synth_report
    rep = synth_report(circuit)     # needs ABC: apt-get install -y berkeley-abc (or yosys: yosys-abc)
    print(rep["luts"], rep["lut_depth"])

Raises ``SynthesisToolNotFound`` when ABC is missing, ``SynthesisError`` (with the log) when it fails.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ..._atomic import atomic_write
from ...ir import Circuit
from .aig import lower_to_aig
from .aiger import write_aiger

ABC_PROGRAMS = ("berkeley-abc", "yosys-abc", "abc")  # Debian's names first; yosys ships its own copy

# genlib cell library for ``map``: every 2-input gate and NOT cost 1, so area = gate count.
_PIN = "PIN * {} 1 999 1 0 1 0"
GATE_LIBRARY = "\n".join([
    "GATE ZERO 0 O=CONST0;", "GATE ONE 0 O=CONST1;",
    f"GATE BUF 1 O=a; {_PIN.format('NONINV')}", f"GATE NOT 1 O=!a; {_PIN.format('INV')}",
    f"GATE AND 1 O=a*b; {_PIN.format('NONINV')}", f"GATE NAND 1 O=!(a*b); {_PIN.format('INV')}",
    f"GATE OR 1 O=a+b; {_PIN.format('NONINV')}", f"GATE NOR 1 O=!(a+b); {_PIN.format('INV')}",
    f"GATE XOR 1 O=a*!b+!a*b; {_PIN.format('UNKNOWN')}", f"GATE XNOR 1 O=a*b+!a*!b; {_PIN.format('UNKNOWN')}",
    f"GATE ANDNOT 1 O=a*!b; {_PIN.format('UNKNOWN')}", f"GATE ORNOT 1 O=a+!b; {_PIN.format('UNKNOWN')}",
]) + "\n"
_NOT_LOGIC = ("BUF", "ZERO", "ONE")  # wires and constants, not counted as gates


class SynthesisToolNotFound(RuntimeError):
    """ABC is not installed."""


class SynthesisError(RuntimeError):
    """ABC failed or printed something unexpected; the message carries the end of its log."""


def find_abc() -> str:
    """Path of an ABC executable; SynthesisToolNotFound naming the packages otherwise."""
    for name in ABC_PROGRAMS:
        path = shutil.which(name)
        if path:
            return path
    raise SynthesisToolNotFound(f"ABC is not on PATH (looked for {', '.join(ABC_PROGRAMS)}), needed for the "
                                "synthesis report; install it (Debian/Ubuntu: apt-get install -y berkeley-abc, "
                                "or yosys, which ships yosys-abc)")


def _stats(log: str, what: str) -> list[dict[str, float]]:
    """Every ``print_stats`` line of the log as {field: value} (i/o, and, nd, lev, ...)."""
    rows = []
    for line in log.splitlines():
        if "i/o =" in line:
            rows.append({k: float(v) for k, v in re.findall(r"([a-z]+)\s*=\s*([0-9.]+)", line.split(":", 1)[1])})
    if len(rows) != 3:
        raise SynthesisError(f"expected 3 print_stats lines from ABC ({what}), found {len(rows)}:\n{log[-6000:]}")
    return rows


def _gates(log: str) -> dict[str, int]:
    """``print_gates`` table: cell name -> instances."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+Fanin\s*=\s*\d+\s+Instance\s*=\s*(\d+)",
                                                              log, re.MULTILINE)}


def synth_report(circuit: Circuit, lut_size: int = 6, argmax: bool = False,
                 timeout: float | None = None) -> dict[str, Any]:
    """Optimise and map the combinational design with ABC and report its size and depth.

    Args:
        circuit: the circuit.
        lut_size: K of the LUT mapping (``if -K K``), 2..8.
        argmax: include the argmax (winning class index) in the design (grouped heads only).
        timeout: seconds allowed for ABC (None: no limit).

    Returns:
        dict with ``tool`` (ABC version), ``includes``, ``gates_in`` (circuit gates), ``aig_ands`` and
        ``aig_depth`` (after ``dc2``), ``lut_size``, ``luts``, ``lut_depth``, ``gates_after_opt`` and
        ``gates_by_type`` (2-input gates and NOTs after ``map``), ``gate_depth`` and ``seconds``.

    Raises:
        ValueError: a bad ``lut_size``, or the argmax of a 'bits' head.
        SynthesisToolNotFound: ABC is not installed.
        SynthesisError: ABC failed or timed out (the message ends with its log).
    """
    if isinstance(lut_size, bool) or not isinstance(lut_size, int) or not 2 <= lut_size <= 8:
        raise ValueError(f"lut_size={lut_size!r}: expected an integer from 2 to 8")
    abc = find_abc()
    start = time.perf_counter()
    grouped = circuit.head.grouped  # a 'bits' head has no classes to count: its raw outputs are the design
    aig = lower_to_aig(circuit, counts=grouped, argmax=argmax)
    # ABC resets its network on `read`, so the dc2 result is saved once and re-read for each mapping.
    script = "; ".join(["version", "read net.aig", "strash", "dc2", "print_stats", "write_aiger opt.aig",
                        f"if -K {lut_size}", "print_stats",
                        "read opt.aig", "read_library gates.genlib", "map -a", "print_stats", "print_gates"])
    with tempfile.TemporaryDirectory(prefix="diffgates_synth_") as tmp:
        wd = Path(tmp)
        write_aiger(aig, wd / "net.aig", binary=True)
        with atomic_write(wd / "gates.genlib", "w") as f:
            f.write(GATE_LIBRARY)
        try:
            proc = subprocess.run([abc, "-c", script], cwd=wd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise SynthesisError(f"ABC did not finish within {timeout} s") from exc
    log = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)  # ABC colours its stats lines
    if proc.returncode != 0 or "Error" in log:
        raise SynthesisError(f"ABC failed (exit {proc.returncode}):\n{log[-6000:]}")
    opt, luts, mapped = _stats(log, script)
    cells = _gates(log)
    version = re.search(r"^(UC Berkeley, ABC [^\n]*)", log, re.MULTILINE)
    return {
        "tool": version.group(1) if version else Path(abc).name,
        "includes": "gate network" + (" + group-sum adder trees" if grouped else "") + (" + argmax" if argmax else ""),
        "gates_in": circuit.n_gates,
        "aig_ands": int(opt["and"]),
        "aig_depth": int(opt["lev"]),
        "lut_size": lut_size,
        "luts": int(luts["nd"]),
        "lut_depth": int(luts["lev"]),
        "gates_after_opt": sum(n for name, n in cells.items() if name not in _NOT_LOGIC),
        "gates_by_type": cells,
        "gate_depth": int(mapped["lev"]),
        "seconds": time.perf_counter() - start,
    }

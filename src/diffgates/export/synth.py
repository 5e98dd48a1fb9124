"""Synthesis report through Yosys (with its built-in ABC): gate and LUT counts and logic depth.

``synth_report(circuit)`` exports the combinational Verilog (gate network + group-sum adder trees,
optionally the argmax) and runs one Yosys script:

1. ``synth -flatten -top <module>`` (generic optimisation), then
   ``abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT``: the design as 2-input gates (+ inverters);
   ``stat`` gives ``gates_after_opt``, ``ltp -noff`` the longest path ``gate_depth`` in cells;
2. ``abc -lut K`` on that netlist: ``luts`` K-input LUTs and their depth ``lut_depth``.

Example::

    from diffgates.export.synth import synth_report
    rep = synth_report(circuit)            # needs `yosys` (Debian/Ubuntu: apt-get install -y yosys)
    print(rep["luts"], rep["lut_depth"])

Raises ``SynthesisToolNotFound`` when yosys is missing, ``SynthesisError`` (with the log) when it fails.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ..circuit.ir import Circuit
from .verilog import generate_verilog

GATE_LIBRARY = "AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT"


class SynthesisToolNotFound(RuntimeError):
    """Yosys is not installed."""


class SynthesisError(RuntimeError):
    """Yosys failed; the message carries the end of its log."""


def _cells(stat_path: Path, module: str) -> dict[str, int]:
    stat = json.loads(stat_path.read_text())
    mod = stat["modules"].get("\\" + module) or next(iter(stat["modules"].values()))
    return {k.strip("$_"): int(v) for k, v in mod["num_cells_by_type"].items()}


def _longest_path(ltp_path: Path) -> int:
    m = re.search(r"Longest topological path in \S+ \(length=(\d+)\)", ltp_path.read_text())
    return int(m.group(1)) if m else 0  # no path printed: no cells between ports


def synth_report(circuit: Circuit, lut_size: int = 6, argmax: bool = False, module: str = "logic_net",
                 timeout: float | None = None) -> dict[str, Any]:
    """Synthesise the combinational design with Yosys + ABC and report its size and depth.

    Args:
        circuit: the circuit.
        lut_size: K of the LUT mapping (``abc -lut K``), 2..8.
        argmax: include the argmax comparators in the design.
        module: module name used for the export.
        timeout: seconds allowed for Yosys (None: no limit).

    Returns:
        dict with ``tool`` (Yosys version), ``gates_in`` (circuit gates), ``gates_after_opt`` and
        ``gates_by_type`` (2-input gates and NOTs after optimisation), ``gate_depth`` (cells on the
        longest path), ``lut_size``, ``luts``, ``lut_depth``, ``includes`` and ``seconds``.
    """
    if isinstance(lut_size, bool) or not isinstance(lut_size, int) or not 2 <= lut_size <= 8:
        raise ValueError(f"lut_size={lut_size!r}: expected an integer from 2 to 8")
    yosys = shutil.which("yosys")
    if yosys is None:
        raise SynthesisToolNotFound("yosys is not on PATH, needed for the synthesis report; install it "
                                    "(Debian/Ubuntu: apt-get install -y yosys)")
    text, _ = generate_verilog(circuit, module=module, pipeline=0, argmax=argmax)
    script = "; ".join([
        f"read_verilog {module}.v", f"synth -flatten -top {module}", f"abc -g {GATE_LIBRARY}", "opt_clean",
        "tee -q -o gates_stat.json stat -json", "tee -q -o gates_ltp.txt ltp -noff",
        f"abc -lut {lut_size}", "opt_clean",
        "tee -q -o lut_stat.json stat -json", "tee -q -o lut_ltp.txt ltp -noff"])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="diffgates_synth_") as tmp:
        wd = Path(tmp)
        (wd / f"{module}.v").write_text(text)
        try:
            proc = subprocess.run([yosys, "-q", "-p", script], cwd=wd, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise SynthesisError(f"yosys did not finish within {timeout} s") from exc
        if proc.returncode != 0:
            raise SynthesisError(f"yosys failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-6000:]}")
        gate_cells = _cells(wd / "gates_stat.json", module)
        lut_cells = _cells(wd / "lut_stat.json", module)
        version = json.loads((wd / "lut_stat.json").read_text()).get("creator", "yosys")
        report = {
            "tool": version,
            "includes": "gate network + group-sum adder trees" + (" + argmax" if argmax else ""),
            "gates_in": circuit.n_gates,
            "gates_after_opt": sum(gate_cells.values()),
            "gates_by_type": gate_cells,
            "gate_depth": _longest_path(wd / "gates_ltp.txt"),
            "lut_size": lut_size,
            "luts": lut_cells.get("lut", 0),
            "lut_depth": _longest_path(wd / "lut_ltp.txt"),
        }
    report["seconds"] = time.perf_counter() - start
    return report

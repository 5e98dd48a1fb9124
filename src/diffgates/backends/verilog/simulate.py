"""Bit-exact check of the exported Verilog: a generated testbench run by Icarus Verilog or Verilator.

``verify_verilog(circuit, vectors)`` exports the circuit (``emit.generate_verilog``), computes the
expected results with the numpy reference evaluator of ``diffgates.ir`` (``group_counts`` for the
grouped heads, the argmax of those for ``class_idx``, ``evaluate_outputs`` for a 'bits' head), writes
them to ``$readmemh`` files (vectorised: one numpy pass per file, no Python int per row), and
simulates every vector in ONE simulator run: the testbench applies one vector per clock cycle
(pipelined designs: streamed with ``in_valid``, with a bubble every 5th cycle, each result checked
on ``out_valid`` against the vector sent exactly ``latency`` cycles before), and prints one
machine-readable line::

    DIFFGATES_TB PASS 400/400
    DIFFGATES_TB FAIL 398/400          (after up to 5 lines "DIFFGATES_TB MISMATCH vector=..")

The testbench core (``tb_core``, clocked by its ``clk`` input) is plain Verilog-2005, so the same
file runs under ``iverilog -g2012`` (a wrapper module makes the clock) and under Verilator (a small
C++ main toggles the clock). It checks the ports the head has: ``y`` (counts or bits) and
``class_idx``. Example::

    from diffgates.backends.verilog.simulate import verify_verilog
    result = verify_verilog(circuit, 400, pipeline=1, simulator="iverilog")
    assert result.passed, result.failures

Missing simulators raise ``SimulatorNotFound`` with the install command; a failed build or run
raises ``SimulationError`` with the tool's log. The command line is ``diffgates verify-verilog``.

Speed, measured on a random 784 -> 8000x6 -> GroupSum(10) circuit (48K gates), 2000 vectors, 2 shared
cores: Icarus combinational 3 s to compile + 80 s to simulate (230 s on a busier machine); Icarus
pipeline=2 200 s + 70 s (its compile time grows quadratically with the register count); Verilator
78-151 s to build, < 1 s to simulate. Small circuits take well under a second with Icarus, ~12 s with
Verilator (the C++ build).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..._atomic import atomic_write
from ...ir import Circuit, as_input_bits, evaluate_outputs, group_counts
from .emit import ExportInfo, generate_verilog

SIMULATORS = ("iverilog", "verilator")
_INSTALL = {"iverilog": "apt-get install -y iverilog", "verilator": "apt-get install -y verilator"}
# Verilator options, each for a measured reason:
# -fno-const-bit-op-tree: Verilator 5.006 (Debian 12) mis-optimises large trees of 1-bit & | ^ ~
#   (wrong outputs on a random 48K-gate net; upstream issue verilator/verilator#4059), so it is off;
# -O0 C++ and small C functions: a 48K-gate net builds in 1.3-2.5 min on 2 cores (21 min measured
#   with the default -Os), and simulating 2000 vectors still takes under a second.
VERILATOR_FLAGS = ("-fno-const-bit-op-tree", "--output-split-cfuncs", "2000",
                   "-MAKEFLAGS", "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0")
_MAX_REPORTED = 5  # mismatching vectors printed by the testbench
_BUBBLE_EVERY = 5  # pipelined testbench: in_valid is low one cycle in 5, to exercise the valid chain


class SimulatorNotFound(RuntimeError):
    """The requested simulator is not installed."""


class SimulationError(RuntimeError):
    """The simulator failed to build or run the design; the message carries its log."""


@dataclass
class VerifyResult:
    """Outcome of one testbench run.

    Attributes:
        passed: every vector matched (counts, class index and latency) and all results arrived.
        total: vectors applied.
        matched: vectors whose result matched.
        mismatches: total - matched (missing results count as mismatches).
        failures: up to 5 failing vectors as dicts (vector, y, expected_y, ...), from the testbench.
        simulator, pipeline, latency: what ran.
        export_s, compile_s, sim_s: seconds spent generating, compiling and simulating.
        workdir: the directory with the design, testbench and vectors (kept only if asked).
        log: the simulator's output (the last 4000 characters).
    """
    passed: bool
    total: int
    matched: int
    mismatches: int
    failures: list[dict[str, Any]]
    simulator: str
    pipeline: int
    latency: int
    export_s: float
    compile_s: float
    sim_s: float
    workdir: str | None = None
    log: str = ""
    info: ExportInfo | None = field(default=None, repr=False)

    def summary(self) -> str:
        status = "bit-exact" if self.passed else "MISMATCH"
        return (f"{status}: {self.matched}/{self.total} vectors match ({self.simulator}, "
                f"{'combinational' if not self.pipeline else f'pipeline={self.pipeline}, latency {self.latency}'}); "
                f"export {self.export_s:.2f} s, compile {self.compile_s:.2f} s, simulate {self.sim_s:.2f} s")


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_lines(bits: np.ndarray) -> bytes:
    """(N, B) 0/1 rows -> one hex number per line (column i = bit i), ceil(B / 4) digits, for $readmemh."""
    n, width = bits.shape
    digits = max(1, -(-width // 4))
    padded = np.zeros((n, 4 * digits), dtype=np.uint8)
    padded[:, :width] = bits
    nibbles = (padded.reshape(n, digits, 4) << np.arange(4, dtype=np.uint8)).sum(axis=2, dtype=np.uint8)
    text = np.empty((n, digits + 1), dtype=np.uint8)
    text[:, :digits] = _HEX_DIGITS[nibbles[:, ::-1]]  # most significant digit first
    text[:, digits] = ord("\n")
    return text.tobytes()


def _value_bits(values: np.ndarray, width: int) -> np.ndarray:
    """(N, ...) non-negative integers -> (N, ... * width) bits: value j's bit k at column j * width + k."""
    values = np.asarray(values, dtype=np.int64).reshape(values.shape[0], -1)
    return ((values[:, :, None] >> np.arange(width)) & 1).reshape(values.shape[0], -1).astype(np.uint8)


def _write(path: Path, data: str | bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not timeout > 0):
        raise ValueError(f"timeout={timeout!r}: expected a number of seconds > 0, or None for no limit")


def make_testbench(info: ExportInfo, n_vectors: int) -> str:
    """The self-checking ``tb_core`` module for a design described by ``info``.

    It reads ``x.hex``, ``y.hex`` (when the design has ``y``) and ``c.hex`` (when it has ``class_idx``)
    from the working directory.

    Args:
        info: the design's ``ExportInfo`` (module name, ports, latency, widths).
        n_vectors: vectors in the hex files.

    Returns:
        The Verilog text of ``tb_core``.
    """
    n_in, cb, has_y, has_c = info.inputs, info.class_index_bits, info.y_width > 0, info.argmax
    yw = max(1, info.y_width)
    lat, piped = info.latency, bool(info.pipeline)
    limit = n_vectors * 2 + lat + 20
    conns = ([".clk(clk)"] if piped else []) + ([".rst(rst)"] if info.reset else []) + (
        [".in_valid(in_valid)"] if piped else []) + [".x(x)"] + ([".y(y)"] if has_y else []) + (
        [".class_idx(class_idx)"] if has_c else []) + ([".out_valid(out_valid)"] if piped else [])
    bad_if = " || ".join((["y !== ymem[got]"] if has_y else []) + (["class_idx !== cmem[got]"] if has_c else [])
                         + ["cyc - sent_at[got] != LAT + 1"])
    fmt = (" y=%h expected_y=%h" if has_y else "") + (" class_idx=%0d expected_class_idx=%0d" if has_c else "")
    args = (", y, ymem[got]" if has_y else "") + (", class_idx, cmem[got]" if has_c else "")
    lines = [
        "// Self-checking testbench generated by diffgates.backends.verilog.simulate (one vector per cycle).",
        "module tb_core(input wire clk);",
        f"    localparam integer N = {n_vectors};",
        f"    localparam integer LAT = {lat};",
        f"    reg [{n_in - 1}:0] xmem [0:N-1];",
        f"    reg [{yw - 1}:0] ymem [0:N-1];",
        f"    reg [{cb - 1}:0] cmem [0:N-1];",
        "    integer sent_at [0:N-1];",
        "    initial begin",
        '        $readmemh("x.hex", xmem);',
        '        $readmemh("y.hex", ymem);' if has_y else "        ymem[0] = 0;",
        '        $readmemh("c.hex", cmem);' if has_c else "        cmem[0] = 0;",
        "    end",
        f"    reg [{n_in - 1}:0] x = 0;",
        "    reg in_valid = 1'b0;",
        "    reg rst = 1'b1;",
        "    reg pend = 1'b0;",
        f"    wire [{yw - 1}:0] y;",
        f"    wire [{cb - 1}:0] class_idx;",
        "    wire out_valid;",
        f"    {info.module} dut ({', '.join(conns)});",
        "    integer cyc = 0, sent = 0, got = 0, bad = 0;",
        # Comb designs: the testbench's own pend flag marks a result to check (1 cycle after applying).
        "    wire result_here = " + ("out_valid === 1'b1;" if piped else "pend;"),
        "    always @(posedge clk) begin",
        "        cyc <= cyc + 1;",
        "        if (cyc >= 2) begin",  # two cycles of reset first
        "            rst <= 1'b0;",
        "            if (result_here) begin",
        "                if (got >= N) begin",
        "                    bad <= bad + 1;",
        '                    $display("DIFFGATES_TB MISMATCH vector=%0d extra_output=1", got);',
        "                end else begin",
        f"                    if ({bad_if}) begin",
        "                        bad <= bad + 1;",
        f"                        if (bad < {_MAX_REPORTED})",
        f'                            $display("DIFFGATES_TB MISMATCH vector=%0d{fmt} '
        f'latency=%0d expected_latency=%0d", got{args}, cyc - sent_at[got] - 1, LAT);',
        "                    end",
        "                    got <= got + 1;",
        "                end",
        "            end",
        f"            if (sent < N{f' && cyc % {_BUBBLE_EVERY} != {_BUBBLE_EVERY - 1}' if piped else ''}) begin",
        "                x <= xmem[sent];",
        "                in_valid <= 1'b1;",
        "                pend <= 1'b1;",
        "                sent_at[sent] <= cyc;",
        "                sent <= sent + 1;",
        "            end else begin",
        "                in_valid <= 1'b0;",
        "                pend <= 1'b0;",
        "            end",
        f"            if (got == N || cyc > {limit}) begin",
        "                if (bad == 0 && got == N)",
        '                    $display("DIFFGATES_TB PASS %0d/%0d", got, N);',
        "                else",
        '                    $display("DIFFGATES_TB FAIL %0d/%0d missing=%0d", got - bad, N, N - got);',
        "                $finish;",
        "            end",
        "        end",
        "    end",
        "endmodule",
        "",
    ]
    return "\n".join(lines)


_ICARUS_TOP = """// Clock for tb_core under Icarus Verilog.
module tb_top;
    reg clk = 1'b0;
    always #5 clk = ~clk;
    tb_core core (.clk(clk));
endmodule
"""

_VERILATOR_MAIN = """// Clock for tb_core under Verilator: toggle clk until the testbench calls $finish.
#include "Vtb_core.h"
#include "verilated.h"

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    Vtb_core* top = new Vtb_core;
    top->clk = 0;
    top->eval();
    while (!Verilated::gotFinish()) {
        top->clk = !top->clk;
        top->eval();
    }
    top->final();
    delete top;
    return 0;
}
"""


def _which(simulator: str) -> None:
    tools = ("iverilog", "vvp") if simulator == "iverilog" else ("verilator", "make")
    for tool in tools:
        if shutil.which(tool) is None:
            raise SimulatorNotFound(f"{tool} is not on PATH, needed to simulate with {simulator!r}; install it "
                                    f"(Debian/Ubuntu: {_INSTALL[simulator]}) or choose another simulator")


def _run(cmd: list[str], cwd: Path, what: str, timeout: float | None) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SimulationError(f"{what} did not finish within {timeout} s: {' '.join(cmd)}") from exc
    log = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0:
        raise SimulationError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{log[-6000:]}")
    return log


def _parse(log: str, total: int) -> tuple[int, list[dict[str, Any]]]:
    """(matched, failures) from the testbench's DIFFGATES_TB lines."""
    failures = []
    for m in re.finditer(r"^DIFFGATES_TB MISMATCH (.*)$", log, re.M):
        failures.append({k: (int(v) if k in ("vector", "latency", "expected_latency", "class_idx",
                                                  "expected_class_idx", "extra_output") else v)
                         for k, v in (item.split("=", 1) for item in m.group(1).split())})
    m = re.search(r"^DIFFGATES_TB (PASS|FAIL) (-?\d+)/(\d+)", log, re.M)
    if m is None or int(m.group(3)) != total:
        raise SimulationError(f"the testbench printed no DIFFGATES_TB summary for {total} vectors; "
                              f"simulator output:\n{log[-4000:]}")
    return int(m.group(2)), failures


def verify_verilog(circuit: Circuit, vectors, pipeline: int = 0, simulator: str = "iverilog",
                   argmax: bool | None = None, reset: bool = True, module: str = "logic_net", seed: int = 0,
                   workdir: str | os.PathLike | None = None, timeout: float | None = None) -> VerifyResult:
    """Export ``circuit`` to Verilog and check it against the numpy reference (``diffgates.ir``) in a simulator.

    Args:
        circuit: the circuit (any head: 'group_sum' checks the counts on ``y``, 'argmax' the class on
            ``class_idx``, 'bits' the output bits on ``y``).
        vectors: (N, n_inputs) 0/1 input rows, or an int N for N uniformly random rows (``seed``).
        pipeline: 0 = combinational module; n >= 1 = register stage every n levels (streamed).
        simulator: 'iverilog' (Icarus, ``iverilog -g2012`` + ``vvp``) or 'verilator'.
        argmax: also export and check ``class_idx`` ('group_sum' heads). None (default): whenever the
            head has classes; True on a 'bits' head is a ValueError (there are no classes).
        reset: pipelined: export with the ``rst`` input (the testbench resets for 2 cycles).
        module: module name of the design.
        seed: random vectors' seed when ``vectors`` is an int.
        workdir: keep the generated files there (created if missing); default: a temporary dir.
        timeout: seconds allowed for each of compile and simulation (None: no limit; else > 0).

    Returns:
        a ``VerifyResult``; ``passed`` is True only if every vector matched bit for bit.

    Raises:
        SimulatorNotFound: the simulator is not installed.
        SimulationError: compilation or simulation failed, or the testbench printed no summary.
        ValueError: a bad argument (simulator, vectors, timeout, argmax on a 'bits' head, ...).
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator {simulator!r} is not supported; expected one of {SIMULATORS}")
    _check_timeout(timeout)
    _which(simulator)
    if isinstance(vectors, (int, np.integer)) and not isinstance(vectors, bool):
        if vectors < 1:
            raise ValueError(f"vectors={vectors}: expected at least 1 vector")
        bits = np.random.default_rng(seed).random((int(vectors), circuit.n_inputs)) < 0.5
    else:
        bits = as_input_bits(vectors, circuit.n_inputs)
    if argmax is None:
        argmax = circuit.head.grouped

    t0 = time.perf_counter()
    text, info = generate_verilog(circuit, module=module, pipeline=pipeline, argmax=argmax, reset=reset)
    expected = group_counts(circuit, bits) if circuit.head.grouped else evaluate_outputs(circuit, bits)
    result = run_testbench(text, info, bits, expected, simulator=simulator, workdir=workdir, timeout=timeout)
    # Export time = everything but compiling and simulating (generation, reference evaluation, files).
    result.export_s = time.perf_counter() - t0 - result.compile_s - result.sim_s
    return result


def _expected_files(info: ExportInfo, expected: np.ndarray, n: int) -> dict[str, bytes]:
    """The $readmemh files of the expected results: y.hex (counts or bits) and c.hex (class index)."""
    expected = np.asarray(expected)
    files = {}
    if info.head == "bits":
        if expected.shape != (n, info.outputs):
            raise ValueError(f"expected has shape {expected.shape}; a 'bits' head needs the output bits, "
                             f"({n}, {info.outputs})")
        files["y.hex"] = _hex_lines(as_input_bits(expected, info.outputs))
        return files
    if expected.shape == (n,) and info.head == "argmax":
        classes = expected.astype(np.int64)
    elif expected.shape == (n, info.classes):
        counts = expected.astype(np.int64)
        classes = counts.argmax(1)  # ties -> lowest class, as the RTL's tournament
        if info.y_width:
            files["y.hex"] = _hex_lines(_value_bits(counts, info.count_bits))
    else:
        what = f"({n}, {info.classes}) counts" + (f" or ({n},) classes" if info.head == "argmax" else "")
        raise ValueError(f"expected has shape {expected.shape}, expected {what}")
    if info.argmax:
        files["c.hex"] = _hex_lines(_value_bits(classes, info.class_index_bits))
    return files


def run_testbench(verilog_text: str, info: ExportInfo, bits: np.ndarray, expected: np.ndarray,
                  simulator: str = "iverilog", workdir: str | os.PathLike | None = None,
                  timeout: float | None = None) -> VerifyResult:
    """Simulate ``verilog_text`` (a design described by ``info``) against given expected results.

    ``verify_verilog`` is this with the design and the expectations generated from one circuit; tests
    call it directly with a deliberately wrong design to show that mismatches are caught.

    Args:
        verilog_text: the design's source.
        info: its ``ExportInfo`` (ports, latency, widths, head).
        bits: (N, inputs) 0/1 input rows (checked by ``as_input_bits``).
        expected: grouped heads: (N, classes) counts (the expected class index is their argmax; an
            'argmax' head also takes (N,) classes); 'bits' head: (N, outputs) output bits.
        simulator, workdir, timeout: as for ``verify_verilog``.

    Returns:
        a ``VerifyResult``.
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator {simulator!r} is not supported; expected one of {SIMULATORS}")
    _check_timeout(timeout)
    _which(simulator)
    bits = as_input_bits(bits, info.inputs)
    module, n = info.module, bits.shape[0]
    t0 = time.perf_counter()
    files = _expected_files(info, expected, n)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="diffgates_sim_")
        wd = Path(tmp.name)
    else:
        wd = Path(workdir)
        wd.mkdir(parents=True, exist_ok=True)
    try:
        _write(wd / f"{module}.v", verilog_text)
        _write(wd / "tb_core.v", make_testbench(info, n))
        _write(wd / "x.hex", _hex_lines(bits))
        for name, data in files.items():
            _write(wd / name, data)
        export_s = time.perf_counter() - t0

        t1 = time.perf_counter()
        if simulator == "iverilog":
            _write(wd / "tb_top.v", _ICARUS_TOP)
            _run(["iverilog", "-g2012", "-o", "sim.vvp", "-s", "tb_top", "tb_top.v", "tb_core.v", f"{module}.v"],
                 wd, "iverilog", timeout)
            run_cmd = ["vvp", "-n", "sim.vvp"]
        else:
            _write(wd / "main.cpp", _VERILATOR_MAIN)
            jobs = str(max(1, min(4, os.cpu_count() or 1)))
            _run(["verilator", "--cc", "--exe", "--build", "-j", jobs, "--top-module", "tb_core",
                  "-Wno-fatal", "-Wno-lint", "-Wno-style", *VERILATOR_FLAGS,
                  "-o", "sim", "tb_core.v", f"{module}.v", "main.cpp"], wd, "verilator", timeout)
            run_cmd = [str(wd / "obj_dir" / "sim")]
        compile_s = time.perf_counter() - t1

        t2 = time.perf_counter()
        log = _run(run_cmd, wd, f"{simulator} simulation", timeout)
        sim_s = time.perf_counter() - t2
        matched, failures = _parse(log, n)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return VerifyResult(passed=matched == n and not failures, total=n, matched=matched, mismatches=n - matched,
                        failures=failures, simulator=simulator, pipeline=info.pipeline, latency=info.latency,
                        export_s=export_s, compile_s=compile_s, sim_s=sim_s,
                        workdir=None if tmp is not None else str(wd), log=log[-4000:], info=info)


__all__ = ["SIMULATORS", "VERILATOR_FLAGS", "SimulatorNotFound", "SimulationError", "VerifyResult", "verify_verilog",
           "run_testbench", "make_testbench"]

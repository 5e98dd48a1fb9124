"""Shared helpers for the benchmark scripts: timing, peak memory, machine description, tables, workers.

Benchmarks import this as ``from _common import ...`` (scripts run as ``python benchmarks/x.py``, so
their folder is on sys.path). What it gives them:

- ``time_calls(fn, steps, warmup)``: per-call wall times; ``summarize`` -> median/min/max.
- ``peak_rss_mb()``: peak resident memory of the *whole* current process (VmHWM, else ru_maxrss).
- ``run_worker(script, config)``: run ``script --worker '<json>'`` in a fresh Python process and return
  the JSON it prints, so each configuration's peak RSS is its own (a process's high-water mark never
  goes down). ``worker_main(fn)`` is the other side.
- ``machine_info()`` / ``print_header()``: the exact command, CPU model, cores, torch/numpy versions.
- ``format_table(headers, rows)``: a Markdown table, ready to paste into the README.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

_RESULT_MARK = "@@BENCH_RESULT@@ "


def time_calls(fn: Callable[[], Any], steps: int, warmup: int = 2) -> list[float]:
    """Seconds per call of ``fn`` for ``steps`` calls after ``warmup`` untimed ones.

    Args:
        fn: the work to time (must finish its work before returning; CPU code always does).
        steps: timed calls (>= 1).
        warmup: untimed calls first (builds, allocator warm-up, lazy init).

    Returns:
        list of ``steps`` wall-clock durations in seconds (``time.perf_counter``).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def summarize(times: Sequence[float]) -> dict[str, float]:
    """Median (the reported number: robust to a noisy shared machine), min, max and count."""
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "n": len(times)}


def peak_rss_mb() -> float:
    """Peak resident set size of this whole process in MiB (Linux VmHWM; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # reported in kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB on Linux


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, str]:
    """What a reader needs to compare numbers: CPU, cores, vector ISA, library versions."""
    import numpy
    import torch
    return {
        "cpu": cpu_model(),
        "logical cores": str(os.cpu_count()),
        "torch cpu capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def print_header(title: str) -> None:
    """Print the benchmark title, the exact command line and the machine."""
    print(f"# {title}")
    print(f"command: {shlex.join(['python', *sys.argv])}")
    for key, value in machine_info().items():
        print(f"{key}: {value}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load:
        print(f"load average at start: {load[0]:.2f} (shared machines: compare rows of the same run)")
    print()


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; cells are str()-ed, numbers should be pre-formatted by the caller."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def run_worker(script: str, config: dict, timeout: float | None = None, env: dict | None = None) -> dict:
    """Run ``python script --worker '<json config>'`` in a fresh process; return the dict it reports.

    Args:
        script: path of the benchmark script (it must call ``worker_main`` on ``--worker``).
        config: JSON-serialisable configuration passed to the worker.
        timeout: seconds before the worker is killed (None: no limit).
        env: extra environment variables for the worker (e.g. OMP_NUM_THREADS).

    Returns:
        the worker's result dict, or ``{"error": "..."}`` with the tail of its output if it failed
        (e.g. killed for memory), so one failed configuration does not lose the whole table.
    """
    cmd = [sys.executable, script, "--worker", json.dumps(config)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_MARK):
            return json.loads(line[len(_RESULT_MARK):])
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-8:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def worker_main(fn: Callable[[dict], dict]) -> None:
    """Worker side of ``run_worker``: read the JSON config from argv, print fn(config) as JSON."""
    config = json.loads(sys.argv[sys.argv.index("--worker") + 1])
    result = fn(config)
    print(_RESULT_MARK + json.dumps(result), flush=True)

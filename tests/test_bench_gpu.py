"""Smoke test of ``benchmarks/bench_gpu.py``: its ``--dry-run-cpu`` mode runs every code path (the
reference check, the training-parameter sweep, the bit-exactness checks, both tables) at tiny sizes under
Triton's interpreter, so the script a GPU run depends on cannot rot unseen. Timings are not checked.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

# Not imported here: importing triton before another test module sets TRITON_INTERPRET=1 breaks the
# interpreter for the rest of the session.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_gpu_dry_run(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_gpu.py"), "--dry-run-cpu",
                           "--sweep-training", "--json", str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for title in ("## Launch-parameter sweep", "## Training step", "## Bit-packed inference"):
        assert title in proc.stdout
    tables = json.loads(out.read_text())
    variants = {row[2] for row in tables["training"]["rows"]}
    assert {"reference", "triton csr", "triton atomic"} <= variants
    assert [row[1] for row in tables["inference"]["rows"]] == [32, 64]
    assert all(row[-1] == "yes" for row in tables["inference"]["rows"])
    assert len(tables["training_sweep"]["rows"]) == 1

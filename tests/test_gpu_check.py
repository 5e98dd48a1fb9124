"""Tests of ``scripts/gpu_check.sh``, the prepared GPU check, through its CPU dry run.

``DIFFGATES_GPU_DRY_RUN=1`` runs every step of the script on a machine without a GPU (Triton's
interpreter, tiny sizes; pytest skips the gpu-marked tests), so the script a short GPU loan depends on
cannot rot unseen. Checked here: the JSON and summary it writes (steps in order, statuses, versions,
every benchmark table), its time limits (the full run fits in 8 minutes by its own limits), that a
failing and a timed-out step are recorded while the script goes on, and that the MNIST chunk stopped
at its limit is resumed by the next call. Timings are not checked. About 55 s on 2 cores.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import torch

# Not imported here: importing triton before another test module sets TRITON_INTERPRET=1 breaks the
# interpreter for the rest of the test run.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None or shutil.which("bash") is None
                                or shutil.which("timeout") is None, reason="needs triton, bash and timeout")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")
STEPS = ["environment", "gpu_tests", "train_w8000", "train_w64000", "inference", "mnist_large_chunk"]
OUT_FILES = {"gpu_check.json", "summary.txt", "gpu_check.log"}


def run_script(*args: str, python: str = sys.executable, dry: bool = True, timeout: float = 300):
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "TRITON_INTERPRET", "DIFFGATES_GPU_DRY_RUN")}
    env["PYTHON"] = python
    if dry:
        env["DIFFGATES_GPU_DRY_RUN"] = "1"
    return subprocess.run(["bash", SCRIPT, *args], env=env, capture_output=True, text=True, timeout=timeout)


def limits(*args: str, dry: bool = False) -> dict[str, int]:
    proc = run_script("--plan", *args, dry=dry)
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("limits:"))
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def test_help_plan_and_bad_arguments():
    proc = run_script("--help", dry=False)
    assert proc.returncode == 0
    for word in ("--quick", "--out", "--resume-from", "DIFFGATES_GPU_DRY_RUN", "pytest -q -m gpu", "mnist_large"):
        assert word in proc.stdout
    for bad in (["--bogus"], ["--only", "nothing"], ["--limit", "nothing=3"], ["--limit", "total=x"], ["--out"]):
        assert run_script(*bad, dry=False).returncode == 2, bad


def test_time_limits_fit_the_loan():
    """By its own limits the full run takes <= 8 minutes, leaving the MNIST chunk >= 60 s; quick <= 4."""
    full = limits()
    fixed = sum(full[k] for k in STEPS[:-1])
    assert full["total"] <= 480
    assert fixed + full["mnist_large_chunk_min"] + full["reserve"] <= full["total"]
    assert full["mnist_large_chunk_min"] >= 60
    quick = limits("--quick")
    assert quick["total"] <= 240
    assert sum(quick[k] for k in STEPS[:-1]) + quick["reserve"] <= quick["total"]
    proc = run_script("--plan", dry=False)  # the commands the steps run, in order
    order = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert order == STEPS
    assert "--sweep-training" in proc.stdout and "--sweep " in proc.stdout and "--preset mnist_large" in proc.stdout
    assert "--resume" in proc.stdout and "--device cuda" in proc.stdout and "--dry-run-cpu" not in proc.stdout


def test_coordinate_descent_time_budget():
    spec = importlib.util.spec_from_file_location("bench_gpu_for_test", os.path.join(ROOT, "benchmarks", "bench_gpu.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    @dataclass(frozen=True)
    class Point:
        a: int = 0
        b: int = 0

    def measure(p):
        time.sleep(0.03)
        return 10.0 - p.a - p.b  # larger is faster: the full descent ends at a=3, b=3

    space = {"a": [1, 2, 3], "b": [1, 2, 3]}
    report: dict = {}
    best, best_t, start_t = bench.coordinate_descent(Point(), space, measure, report=report)
    assert best == Point(3, 3) and best_t == 4.0 and start_t == 10.0 and report["complete"]
    report = {}
    best, best_t, _ = bench.coordinate_descent(Point(), space, measure, seconds=0.05, report=report)
    assert not report["complete"] and report["points"] < 7 and best_t == measure(best)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One full dry run; returns (process, its output folder, its MNIST run folder, seconds)."""
    base = tmp_path_factory.mktemp("gpu_check")
    out, run_dir = base / "out", base / "run"
    t0 = time.monotonic()
    proc = run_script("--out", str(out), "--run-dir", str(run_dir))
    return proc, out, run_dir, time.monotonic() - t0


@pytest.mark.slow
def test_dry_run_report(dry_run):
    proc, out, run_dir, seconds = dry_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert {p.name for p in out.iterdir()} == OUT_FILES  # few flat files: what comes back from a loan
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["format"] == "diffgates.gpu_check" and report["dry_run"] and report["mode"] == "full"
    assert report["complete"] and report["passed"] and report["exit_status"] == 0 and report["failed_steps"] == []
    assert report["time_limit_s"] <= 480 and report["wall_s"] <= seconds + 1
    steps = {s["name"]: s for s in report["steps"]}
    assert [s["name"] for s in report["steps"]] == STEPS
    for s in report["steps"]:
        assert s["status"] == "passed", s
        assert s["rc"] is not None and s["command"] and s["seconds"] <= s["limit_s"], s

    # Versions: the GPU fields are there (empty without one), the libraries are the ones installed.
    gpu = report["gpu"]
    assert {"name", "driver", "compute_capability", "torch", "cuda", "triton", "python"} <= gpu.keys()
    assert gpu["torch"] == torch.__version__ and gpu["cuda"] == torch.version.cuda
    assert gpu["triton"] == importlib.metadata.version("triton")
    env = steps["environment"]["results"]
    assert "nvidia_smi" in env and env["cuda_available"] is False and env["env"]["TRITON_INTERPRET"] == "1"

    # 1. pytest ran and skipped every gpu-marked test (no CUDA here); the script says so.
    tests = steps["gpu_tests"]["results"]
    assert tests["tests"] > 0 and tests["skipped"] == tests["tests"] and tests["failures"] == tests["errors"] == 0
    assert "skipped" in steps["gpu_tests"]["note"]

    # 2. Both training runs: the reference and the Triton variants, the checked errors, the sweep.
    for name in ("train_w8000", "train_w64000"):
        res = steps[name]["results"]
        variants = {row[2] for row in res["training"]["rows"]}
        assert {"reference", "triton csr", "triton atomic"} <= variants
        assert len(res["training_sweep"]["rows"]) == 1 and res["sweeps"][0]["points"] >= 1
        assert "--widths" in steps[name]["command"] and "--sweep-training" in steps[name]["command"]
    assert len(report["measured"]["training"]) == 2 and len(report["measured"]["training_tuning"]) == 2
    assert all(h["reference_ms"] and h["best_ms"] for h in report["measured"]["training"])

    # 3. Inference: both word sizes, bit-exact, the checks before and after timing described.
    inf = steps["inference"]["results"]
    assert [row[1] for row in inf["inference"]["rows"]] == [32, 64]
    assert all(h["bit_exact"] for h in report["measured"]["inference"])
    assert any(c.startswith("after timing") for c in inf["inference"]["checks"])
    assert len(inf["sweeps"]) == 2

    # 4. The MNIST chunk was stopped at its limit after a checkpoint.
    mnist = report["measured"]["mnist_large_chunk"]
    assert mnist["status"] == "interrupted" and mnist["step"] > 0 and mnist["checkpoint_step"] == mnist["step"]
    assert mnist["results_written_this_call"] and (run_dir / "checkpoint.safetensors").exists()
    assert mnist["implementation"] == "gpu" and mnist["start_step"] == 0

    summary = (out / "summary.txt").read_text()
    assert "DRY RUN" in summary and summary.rstrip().endswith("PASSED")
    for name in STEPS:
        assert name in summary
    log = (out / "gpu_check.log").read_text()
    assert all(f"==== {name}: passed" in log for name in STEPS)


@pytest.mark.slow
def test_failed_and_timed_out_steps_are_recorded_and_the_chunk_resumes(dry_run, tmp_path):
    _, _, first_run, _ = dry_run
    first_step = json.loads((first_run / "results.json").read_text())["step"]
    fake = tmp_path / "python"  # fails the 8000 run, hangs the 64000 run, else the real Python
    fake.write_text("#!/usr/bin/env bash\n"
                    "case \" $* \" in\n"
                    "  *' --widths 8000 '*) echo 'simulated failure' >&2; exit 3 ;;\n"
                    "  *' --widths 64000 '*) exec sleep 300 ;;\n"
                    "esac\n"
                    f"exec {sys.executable} \"$@\"\n")
    fake.chmod(0o755)
    out, run_dir = tmp_path / "out", tmp_path / "run"
    proc = run_script("--out", str(out), "--only", "train,mnist", "--limit", "train_w64000=10",
                      "--run-dir", str(run_dir), "--resume-from", str(first_run), python=str(fake))
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    steps = {s["name"]: s for s in report["steps"]}
    assert [s["name"] for s in report["steps"]] == STEPS
    assert report["complete"] and not report["passed"] and report["failed_steps"] == ["train_w8000", "train_w64000"]
    assert steps["train_w8000"]["status"] == "failed" and "simulated failure" in steps["train_w8000"]["note"]
    assert steps["train_w64000"]["status"] == "timed_out" and steps["train_w64000"]["seconds"] <= 10
    assert steps["gpu_tests"]["status"] == steps["inference"]["status"] == "not_selected"
    mnist = steps["mnist_large_chunk"]
    assert mnist["status"] == "passed", mnist
    assert mnist["results"]["start_step"] == first_step and mnist["results"]["step"] > first_step
    assert "continued from a copy" in mnist["results"]["notes"]
    assert "FAILED: train_w8000, train_w64000" in (out / "summary.txt").read_text()

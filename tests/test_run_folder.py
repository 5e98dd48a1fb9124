"""Tests of the run folder of ``diffgates train``: one writer at a time, --resume overrides, a full disk.

* A run locks its ``--out`` folder (``diffgates.train.runlock``): a second fresh ``train`` into it or a
  second ``--resume`` exits 5 naming the holder's pid, and a lock left by a kill -9 is taken over.
* ``--resume`` continues the saved config: typed flags are checked overrides, defaults never count.
* A full disk while saving stops the run (exit 4) with the last checkpoint intact; ``--resume``
  then ends exactly where an uninterrupted run ends.
* ``--out`` under a file is one error line; a run that fails early leaves no folder behind.

Run: PYTHONPATH=src pytest tests/test_run_folder.py
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffgates.cli import main as cli_main
from diffgates.train import trainer as trainer_mod
from diffgates.train.checkpoint import read_checkpoint_info

from test_train import TINY, _env, _metrics, driver, fake  # noqa: F401  (fixtures shared with the trainer tests)


def _start(script: Path, log: Path, *args: str) -> subprocess.Popen:
    """``diffgates ARGS`` on the synthetic data (``script``: the driver) in a subprocess, output into ``log``."""
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, str(script), *args], env=_env(), stdout=f, stderr=subprocess.STDOUT)


def _wait_for(proc: subprocess.Popen, log: Path, text: str, timeout: float = 120) -> None:
    """Wait until ``text`` is in ``log`` (the subprocess prints it once its run is set up)."""
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, f"the run ended early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{log.read_text()}"
        time.sleep(0.02)


def _stop(proc: subprocess.Popen, sig: int) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=120)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffgates train: error: "), err
    return err[0]


# ------------------------------------------------------------------------------------------------
# One writer per run folder
# ------------------------------------------------------------------------------------------------

def test_a_second_writer_is_refused_and_a_killed_holder_is_taken_over(tmp_path, driver, fake, capsys):  # noqa: F811
    out = tmp_path / "run"
    # It evaluates and checkpoints only when stopped: the folder holds no run file while it trains.
    args = [*TINY, "-ni", "100000", "-ef", "100000", "--checkpoint-minutes", "60", "--seed", "1"]
    first = _start(driver, tmp_path / "first.log", "train", *args, "--out", str(out))
    try:
        _wait_for(first, tmp_path / "first.log", "model: ")  # set up and training
        # A fresh run into the same folder, before the first one wrote anything: refused, not mixed in.
        assert cli_main(["train", *TINY, "-ni", "20", "-ef", "10", "--out", str(out)]) == 5
        assert f"{out} is in use by pid {first.pid} (started " in _error_line(capsys)
        assert cli_main(["train", "--resume", "--out", str(out)]) == 5
        assert f"in use by pid {first.pid}" in _error_line(capsys)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing of the refused runs
    finally:
        assert _stop(first, signal.SIGTERM) == 130  # checkpoint and results of its last step
    step = read_checkpoint_info(out)["step"]
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "interrupted" and results["step"] == step and results["config"]["seed"] == 1
    assert results["timings"]["sessions"] == [{"start_step": 0}]

    # A second --resume while a first one trains is refused too (its -ni would end it soon on its own).
    resumed = _start(driver, tmp_path / "resumed.log", "train", "--resume", "--out", str(out))
    try:
        _wait_for(resumed, tmp_path / "resumed.log", "model: ")
        assert cli_main(["train", "--resume", "-ni", str(step + 20), "--out", str(out)]) == 5
        assert f"in use by pid {resumed.pid}" in _error_line(capsys)
    finally:
        assert _stop(resumed, signal.SIGKILL) == -signal.SIGKILL
    # kill -9 left its lock file behind; the kernel released the lock itself, so the next run takes it over.
    assert json.loads((out / ".lock").read_text())["pid"] == resumed.pid
    assert cli_main(["train", "--resume", "-ni", str(step + 20), "--out", str(out)]) == 0
    final = json.loads((out / "results.json").read_text())
    assert final["status"] == "finished" and [e["step"] for e in final["evaluations"]] == [step + 20]
    assert final["timings"]["sessions"] == [{"start_step": 0}, {"start_step": step}]  # no other writer's
    assert not (out / ".lock").exists()


# ------------------------------------------------------------------------------------------------
# --resume: the saved config, with the flags typed as checked overrides
# ------------------------------------------------------------------------------------------------

def test_resume_starts_from_the_saved_config_and_checks_the_flags_given(tmp_path, fake, capsys):  # noqa: F811
    out = tmp_path / "run"
    started = [*TINY, "-ef", "10", "-lr", "0.05", "--connections", "random", "--seed", "3"]  # non-defaults
    assert cli_main(["train", *started, "-ni", "20", "--out", str(out)]) == 0
    capsys.readouterr()

    def overrides(printed: str) -> list[str]:
        return [line for line in printed.splitlines() if line.startswith("flags overriding")]

    # --dataset (as saved) and a longer -ni: the saved model and optimiser settings, -ni applied and shown.
    assert cli_main(["train", "--resume", "--dataset", "fake", "-ni", "30", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert overrides(printed) == ["flags overriding the saved config: num_iterations 20 -> 30"]
    assert "  num_neurons: 32\n" in printed and '  connections: "random"\n' in printed
    assert "  learning_rate: 0.05\n" in printed and "  eval_freq: 10\n" in printed

    # The size flags again (same values) plus -ni: only -ni is an override; the defaults of the
    # flags not typed now (-ef 2000, -lr 0.01, --connections unique, --seed 0) are no conflict.
    assert cli_main(["train", "--resume", *TINY, "-ni", "40", "--out", str(out)]) == 0
    assert overrides(capsys.readouterr().out) == ["flags overriding the saved config: num_iterations 30 -> 40"]
    results = json.loads((out / "results.json").read_text())
    assert [e["step"] for e in results["evaluations"]] == [10, 20, 30, 40]
    assert results["config"]["learning_rate"] == 0.05 and results["config"]["seed"] == 3

    # A flag that changes the model is refused, naming it with both values (and only the differing ones).
    assert cli_main(["train", "--resume", "--dataset", "fake", "-k", "64", "-t", "4", "-ni", "50",
                     "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert "-k/--num-neurons: saved 32, given 64" in line and "--tau" not in line and "--num-iterations:" not in line
    assert cli_main(["train", "--resume", "--preset", "monk1", "--out", str(out)]) == 2  # a preset's values too
    assert "-k/--num-neurons (from --preset monk1): saved 32, given 128" in _error_line(capsys)
    assert json.loads((out / "results.json").read_text())["step"] == 40  # refused before training


# ------------------------------------------------------------------------------------------------
# A full disk while saving
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stays_full", [False, True], ids=["disk-freed", "disk-stays-full"])
def test_a_full_disk_stops_the_run_and_resume_ends_like_an_uninterrupted_run(tmp_path, fake, monkeypatch,
                                                                                capsys, stays_full):  # noqa: F811
    args = [*TINY, "-ni", "60", "-ef", "20", "--checkpoint-every", "10", "--seed", "2"]
    assert cli_main(["train", *args, "--out", str(tmp_path / "reference")]) == 0
    expected = json.loads((tmp_path / "reference" / "results.json").read_text())
    capsys.readouterr()

    out = tmp_path / "run"
    full = {"now": False, "checkpoints": 0}
    real_fsync, real_save = os.fsync, trainer_mod.ckpt_io.save_training_checkpoint

    def fsync(fd):  # where a write meets a full disk (the data goes out at the latest here)
        if full["now"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    def save_training_checkpoint(*a, **kw):  # the disk fills during the 3rd checkpoint (step 30)
        full["checkpoints"] += 1
        full["now"] = full["now"] or full["checkpoints"] == 3
        try:
            return real_save(*a, **kw)
        finally:
            full["now"] = full["now"] and stays_full

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", fsync)
        m.setattr(trainer_mod.ckpt_io, "save_training_checkpoint", save_training_checkpoint)
        assert cli_main(["train", *args, "--out", str(out)]) == 4
    assert "No space left on device" in _error_line(capsys)
    assert read_checkpoint_info(out)["step"] == 20  # the previous checkpoint, intact
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp file, no lock
    results = json.loads((out / "results.json").read_text())
    if stays_full:  # results.json could not be written either: it keeps its last complete content
        assert results["status"] == "running" and results["step"] == 20
    else:
        assert results["status"] == "failed" and results["step"] == 30
        assert "No space left on device" in results["error"]

    assert cli_main(["train", *args, "--out", str(out), "--resume"]) == 0
    got = json.loads((out / "results.json").read_text())
    assert got["status"] == "finished" and "error" not in got
    assert _metrics(got) == _metrics(expected)  # exact: same losses and accuracies at every evaluation
    assert got["timings"]["sessions"] == [{"start_step": 0}, {"start_step": 20}]


# ------------------------------------------------------------------------------------------------
# --out under a file; early failures
# ------------------------------------------------------------------------------------------------

def test_out_under_a_file_is_one_error_line_and_early_failures_leave_no_folder(tmp_path, fake, monkeypatch,
                                                                                capsys):  # noqa: F811
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    for out in (a_file / "run", a_file):
        assert cli_main(["train", *TINY, "-ni", "10", "--out", str(out)]) == 4
        assert f"{a_file}: a file, not a folder" in _error_line(capsys)
    assert a_file.read_text() == "not a folder"

    # Failures after the folder was made (the model does not fit the data; the data is missing):
    # the folders this run created are gone, one that was there before stays.
    fresh, existing = tmp_path / "new" / "a" / "b", tmp_path / "existing"
    existing.mkdir()
    for out in (fresh, existing):
        assert cli_main(["train", *TINY, "-k", "30", "--out", str(out)]) == 2  # 30 gates, 4 classes
        assert "not divisible by the 4 classes" in _error_line(capsys)
    from diffgates.data.errors import DatasetNotFoundError

    def missing(name, *args):
        raise DatasetNotFoundError(f"dataset {name!r}: files not found")

    monkeypatch.setattr(trainer_mod, "load_dataset_fn", missing)
    assert cli_main(["train", *TINY, "--out", str(fresh)]) == 3
    assert "files not found" in _error_line(capsys)
    assert not (tmp_path / "new").exists()
    assert existing.is_dir() and not list(existing.iterdir())

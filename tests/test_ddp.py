"""Distributed training test: ``diffgates train`` under ``torch.distributed.run`` with 2 CPU processes (gloo).

Checks that the 2-process run finishes, writes its files from rank 0 only, that both ranks end with
identical parameters (the trainer all-gathers a parameter checksum into results.json), and that the
2-process run with global batch B follows the 1-process run with batch B (same data order; gradients
of two half-batches averaged by DDP equal the full-batch gradient up to float rounding), also with
``--augment-shift`` (each row's shift is drawn over the global batch, so it does not depend on the ranks).

Run: PYTHONPATH=src pytest tests/test_ddp.py
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import fake_data
from diffgates.cli import main as cli_main
from diffgates.modelfiles import load_model
from diffgates.train import trainer as trainer_mod

from test_train import TINY, _env, driver, fake  # noqa: F401  (fixtures shared with the trainer tests)

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _two_process_run(driver, args: list[str], out, env: dict) -> dict:
    """results.json of ``diffgates train ARGS --out OUT`` under 2 gloo processes (the fake dataset)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(driver), "train", *args, "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.stdout.count("config (defaults + flags):") == 1  # only rank 0 prints
    return json.loads((out / "results.json").read_text())


def _assert_same_model(a_dir, b_dir) -> None:
    a_model, b_model = load_model(a_dir), load_model(b_dir)
    for (name, a), b in zip(a_model.state_dict().items(), b_model.state_dict().values()):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=name)
        else:
            assert torch.equal(a, b), name  # connections: the same seed draws the same wiring


def test_two_process_run_matches_one_process_run(tmp_path, driver, fake):  # noqa: F811
    args = [*TINY, "-ni", "40", "-ef", "20", "-lr", "0.02", "--seed", "3"]
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    results = _two_process_run(driver, args, ddp_out, _env())
    dist = results["distributed"]
    assert dist["world_size"] == 2 and dist["backend"] == "gloo"
    assert dist["params_identical_across_ranks"] is True and len(dist["param_checksums"]) == 2
    assert results["status"] == "finished" and [e["step"] for e in results["evaluations"]] == [20, 40]
    assert results["dataset"]["n_val"] == 61  # uneven shards (31 + 30 rows) are all counted

    assert cli_main(["train", *args, "--out", str(single_out)]) == 0
    single = json.loads((single_out / "results.json").read_text())
    for a, b in zip(results["evaluations"], single["evaluations"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    _assert_same_model(ddp_out, single_out)


def test_two_process_augmented_run_matches_one_process_run(tmp_path, driver, monkeypatch):
    monkeypatch.setattr(trainer_mod, "load_dataset_fn", lambda name, *args: fake_data.make_fake(image_rows=True))
    args = [*TINY, "-ni", "40", "-ef", "20", "-lr", "0.02", "--seed", "3", "--augment-shift", "1"]
    ddp_out, single_out, plain_out = tmp_path / "ddp", tmp_path / "single", tmp_path / "plain"
    results = _two_process_run(driver, args, ddp_out, {**_env(), "DIFFGATES_FAKE_IMAGES": "1"})
    assert results["config"]["augment_shift"] == 1 and results["distributed"]["params_identical_across_ranks"]
    assert cli_main(["train", *args, "--out", str(single_out)]) == 0
    assert cli_main(["train", *args[:-2], "--out", str(plain_out)]) == 0
    single, plain = (json.loads((d / "results.json").read_text()) for d in (single_out, plain_out))
    for a, b in zip(results["evaluations"], single["evaluations"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    assert [e["train_loss"] for e in single["evaluations"]] != [e["train_loss"] for e in plain["evaluations"]]
    _assert_same_model(ddp_out, single_out)

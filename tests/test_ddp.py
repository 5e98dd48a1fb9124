"""Distributed training test: ``diffgates train`` under ``torch.distributed.run`` with 2 CPU processes (gloo).

Checks that the 2-process run finishes, writes its files from rank 0 only, that both ranks end with
identical parameters (the trainer all-gathers a parameter checksum into results.json), and that the
2-process run with global batch B follows the 1-process run with batch B (same data order; gradients
of two half-batches averaged by DDP equal the full-batch gradient up to float rounding).

Run: PYTHONPATH=src pytest tests/test_ddp.py
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from diffgates.cli import main as cli_main
from diffgates.modelfiles import load_model

from test_train import TINY, _env, driver, fake  # noqa: F401  (fixtures shared with the trainer tests)

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def test_two_process_run_matches_one_process_run(tmp_path, driver, fake):  # noqa: F811
    args = [*TINY, "-ni", "40", "-ef", "20", "-lr", "0.02", "--seed", "3"]
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(driver), "train", *args, "--out", str(ddp_out)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.stdout.count("config (defaults + flags):") == 1  # only rank 0 prints
    results = json.loads((ddp_out / "results.json").read_text())
    dist = results["distributed"]
    assert dist["world_size"] == 2 and dist["backend"] == "gloo"
    assert dist["params_identical_across_ranks"] is True and len(dist["param_checksums"]) == 2
    assert results["status"] == "finished" and [e["step"] for e in results["evaluations"]] == [20, 40]
    assert results["dataset"]["n_val"] == 61  # uneven shards (31 + 30 rows) are all counted

    assert cli_main(["train", *args, "--out", str(single_out)]) == 0
    single = json.loads((single_out / "results.json").read_text())
    for a, b in zip(results["evaluations"], single["evaluations"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    ddp_model, single_model = load_model(ddp_out), load_model(single_out)
    for (name, a), b in zip(ddp_model.state_dict().items(), single_model.state_dict().values()):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=name)
        else:
            assert torch.equal(a, b), name  # connections: the same seed draws the same wiring

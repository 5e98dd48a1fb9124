"""Tests of the trainer, presets, config, CLI (``diffgates train`` / ``diffgates eval``) and exact resume.

Most tests train a tiny logic net on a synthetic dataset (``DRIVER`` below, installed in place of
``diffgates.data.load_dataset``) so they take seconds; one test uses the real MONK-1 files from
../shared/data when present. The kill -9 test runs ``diffgates train`` in a subprocess with
``--threads 1`` (fixed float reduction order), kills it after its first checkpoint and resumes.

Run: PYTHONPATH=src pytest tests/test_train.py
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import fake_data
from diffgates.cli import main as cli_main
from diffgates.modelfiles import load_model
from diffgates.train import PRESETS, TrainConfig, resolve_preset
from diffgates.train import trainer as trainer_mod
from diffgates.train.checkpoint import read_checkpoint_info
from diffgates.train.config import config_differences
from diffgates.train.trainer import DataOrder

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# The synthetic dataset (tests/fake_data.py) and a CLI entry point that trains on it.
DRIVER = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
import runpy
runpy.run_path({str(Path(__file__).resolve().parent / "fake_data.py")!r}, run_name="__main__")
"""

TINY = ["--dataset", "fake", "-k", "32", "-l", "3", "-t", "4", "-bs", "20", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("driver") / "fake_driver.py"
    path.write_text(DRIVER)
    return path


@pytest.fixture()
def fake(fake_dataset):
    return fake_data


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _metrics(results: dict) -> list[dict]:
    """Evaluation records without wall-clock times (those legitimately differ between runs)."""
    return [{k: v for k, v in e.items() if k != "elapsed_s"} for e in results["evaluations"]]


# ------------------------------------------------------------------------------------------------
# Config and presets
# ------------------------------------------------------------------------------------------------

def test_presets_hold_the_published_configurations():
    expect = {
        "mnist20x20_small": dict(dataset="mnist20x20", batch_size=100, tau=10, num_neurons=8000, num_layers=6,
                                 num_iterations=200_000),
        "mnist_large": dict(dataset="mnist", batch_size=100, tau=30, num_neurons=64_000, num_layers=6),
        "cifar10_3_small": dict(dataset="cifar10_3", tau=100, num_neurons=12_000, num_layers=4),
        "cifar10_3_large": dict(dataset="cifar10_3", tau=100, num_neurons=128_000, num_layers=4),
        "cifar10_31_small": dict(dataset="cifar10_31", num_neurons=256_000, num_layers=5),
        "cifar10_31_medium": dict(dataset="cifar10_31", num_neurons=512_000, num_layers=5),
        "cifar10_31_large": dict(dataset="cifar10_31", num_neurons=1_024_000, num_layers=5),
        "adult": dict(dataset="adult", tau=20, num_neurons=256, num_layers=5, num_iterations=100_000),
        "breast_cancer": dict(dataset="breast_cancer", learning_rate=0.001, tau=20, num_neurons=128, num_layers=5),
        "mlp_small": dict(architecture="mlp", num_neurons=128, num_layers=3),
        "mlp_large": dict(architecture="mlp", num_neurons=2048, num_layers=7),
    }
    for name, values in expect.items():
        cfg = resolve_preset(name).validate()
        for key, value in values.items():
            assert getattr(cfg, key) == value, (name, key)
        assert cfg.preset == name
    for name in ("monk1", "monk2", "monk3"):
        assert resolve_preset(name).validate().dataset == name
    for name, preset in PRESETS.items():
        cfg = resolve_preset(name).validate()
        if cfg.architecture == "logic":
            assert cfg.num_neurons % 2 == 0 and cfg.connections == "unique", name
        if cfg.architecture == "logic_tree":  # the conv paper picks its model by a validation split
            assert cfg.val_fraction > 0, name
        else:
            assert cfg.val_fraction == 0.0, name  # the original's experiments train on the whole training set


def test_flags_override_presets_and_bad_values_are_named():
    cfg = resolve_preset("adult", {"num_iterations": 10, "dataset": "cifar-10-3-thresholds"})
    assert cfg.num_iterations == 10 and cfg.num_neurons == 256 and cfg.dataset == "cifar10_3"
    with pytest.raises(ValueError, match="unknown preset 'nope'.*adult"):
        resolve_preset("nope")
    with pytest.raises(ValueError, match="unknown TrainConfig keys \\['colour'\\]"):
        TrainConfig.from_dict({"colour": 1})
    for changes, match in (({"batch_size": 0}, "batch_size"), ({"architecture": "cnn"}, "architecture 'cnn' is not known"),
                           ({"num_neurons": None}, "model size is not set"), ({"tau": -1.0}, "tau"),
                           ({"val_fraction": 1.0}, "val_fraction"), ({"connections": "full"}, "connections"),
                           ({"dataset": None}, "no dataset")):
        base = TrainConfig(dataset="mnist", num_neurons=10, num_layers=2)
        with pytest.raises(ValueError, match=match):
            base.replace(**changes).validate()
    a = TrainConfig(dataset="mnist", num_neurons=10, num_layers=2)
    diffs = config_differences(a, a.replace(tau=3.0, threads=4, num_iterations=5, seed=1))
    assert diffs == {"tau": (10.0, 3.0), "seed": (0, 1)}


def test_data_order_is_a_function_of_the_step():
    order = DataOrder(n=7, seed=3)
    stream = torch.cat([order.batch_indices(s, 3) for s in range(7)])  # 21 rows = 3 epochs, batches cross epochs
    for epoch in range(3):
        assert sorted(stream[7 * epoch:7 * (epoch + 1)].tolist()) == list(range(7))
    assert not torch.equal(stream[:7], stream[7:14])  # a fresh permutation every epoch
    fresh = DataOrder(n=7, seed=3)  # a resumed process: no history, same batch
    assert torch.equal(fresh.batch_indices(5, 3), order.batch_indices(5, 3))
    assert not torch.equal(DataOrder(7, seed=4).batch_indices(0, 7), order.batch_indices(0, 7))


def test_progress_bar_on_a_terminal_and_plain_lines_otherwise():
    import io

    from diffgates.train.metrics import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    bar = Progress(100, 0, stream=tty, redraw_interval_s=0.0)
    bar.update(40, lambda: (0.25, 0.5))
    bar.clear()
    assert tty.getvalue().startswith("\r[#########") and "40/100" in tty.getvalue()
    assert "loss 0.2500 acc 50.00%" in tty.getvalue() and tty.getvalue().endswith("\r\033[K")
    plain = io.StringIO()
    lines = Progress(100, 0, stream=plain, plain_interval_s=0.0)
    lines.update(7, lambda: (None, None))
    assert plain.getvalue().startswith("step 7/100 (7%)") and plain.getvalue().endswith("\n")
    no_bar = Terminal()  # --no-progress on a terminal: plain lines too
    Progress(100, 0, stream=no_bar, bar=False, plain_interval_s=0.0).update(1, lambda: (1.0, 1.0))
    assert no_bar.getvalue().startswith("step 1/100") and "\r" not in no_bar.getvalue()
    off = io.StringIO()
    quiet = Progress(100, 0, stream=off, plain_interval_s=3600)
    quiet.update(1, lambda: (1.0, 1.0))
    assert off.getvalue() == ""  # plain lines are periodic, not per step


def test_learning_curves_png(tmp_path):
    pytest.importorskip("matplotlib")
    from diffgates.train.metrics import plot_learning_curves
    evals = [{"step": s, "train_loss": 1.0 / s, "train_acc_train_mode": 0.5, "val_acc_train_mode": 0.6,
              "val_acc_eval_mode": None, "test_acc_train_mode": 0.7, "test_acc_eval_mode": 0.65} for s in (1, 2, 3)]
    assert plot_learning_curves({"evaluations": evals, "config": {"dataset": "x"}}, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")


# ------------------------------------------------------------------------------------------------
# Training end to end (in process)
# ------------------------------------------------------------------------------------------------

def test_without_a_validation_split_the_last_model_is_reported(tmp_path, fake, monkeypatch, capsys):
    d = fake.make_fake()
    no_val = dataclasses.replace(d, x_train=torch.cat([d.x_train, d.x_val]), y_train=torch.cat([d.y_train, d.y_val]),
                                 x_val=d.x_val[:0], y_val=d.y_val[:0])
    monkeypatch.setattr(trainer_mod, "load_dataset_fn", lambda name, *args: no_val)
    assert cli_main(["train", *TINY, "-ni", "40", "-ef", "20", "--out", str(tmp_path / "r")]) == 0
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["dataset"]["n_val"] == 0 and results["dataset"]["n_train"] == 561
    assert results["best_selection"].startswith("latest evaluation") and results["best_step"] == 40
    assert all(e["val_acc_eval_mode"] is None for e in results["evaluations"])
    done = [line for line in capsys.readouterr().out.splitlines() if line.startswith("done:")]
    assert len(done) == 1 and "(last);" in done[0] and "best by validation" not in done[0]


def test_train_writes_results_models_and_checkpoint(tmp_path, fake, capsys):
    out = tmp_path / "run"
    status = cli_main(["train", *TINY, "-ni", "120", "-ef", "40", "-lr", "0.05", "--out", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert '  num_neurons: 32' in printed and '  dataset: "fake"' in printed
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "finished" and results["step"] == 120
    assert [e["step"] for e in results["evaluations"]] == [40, 80, 120]
    last = results["evaluations"][-1]
    assert results["test_acc_eval_mode"] == last["test_acc_eval_mode"]
    for key in ("train_loss", "train_acc_train_mode", "val_acc_train_mode", "val_acc_eval_mode",
                "test_acc_train_mode", "test_acc_eval_mode"):
        assert 0 <= last[key] <= (10 if key == "train_loss" else 1), key
    assert results["model"]["gates_total"] == 96 and results["model"]["gates_per_layer"] == [32, 32, 32]
    best = results["best"]
    assert best["val_acc_eval_mode"] == max(e["val_acc_eval_mode"] for e in results["evaluations"])
    assert results["best_test_acc_eval_mode"] == best["test_acc_eval_mode"]
    assert results["timings"]["s_per_step"] > 0 and results["machine"]["torch_version"] == torch.__version__
    # it learned something: a random 4-class guesser is at 25%
    # It learns (chance is 0.25): the discrete net beats chance and the training accuracy rises.
    assert last["test_acc_eval_mode"] > 0.4
    assert last["train_acc_train_mode"] > results["evaluations"][0]["train_acc_train_mode"]

    model = load_model(out)
    assert not model.training and model.diffgates_input_layout["kind"] == "synthetic"
    assert model.diffgates_config["num_neurons"] == 32 and model.diffgates_info["step"] == 120
    ds = fake.make_fake()
    with torch.no_grad():
        pred = model(ds.encode(ds.x_test, binary=True)).argmax(-1)
    assert int((pred == ds.y_test).sum()) / len(ds.y_test) == last["test_acc_eval_mode"]
    best_model = load_model(out / "best.json")
    assert best_model.diffgates_info["step"] == best["step"]
    ckpt = json.loads((out / "checkpoint.json").read_text())
    assert ckpt["step"] == 120 and ckpt["state"]["status"] == "finished"

    # diffgates eval reproduces the recorded accuracies and writes JSON
    assert cli_main(["eval", str(out), "--which", "best", "--json", str(tmp_path / "e.json")]) == 0
    evaluated = json.loads((tmp_path / "e.json").read_text())
    assert evaluated["matches_saved"] and evaluated["test_acc_eval_mode"] == best["test_acc_eval_mode"]
    assert evaluated["val_acc_train_mode"] == best["val_acc_train_mode"]


def test_existing_run_dir_mismatched_resume_and_finished_resume(tmp_path, fake, capsys):
    out = tmp_path / "run"
    assert cli_main(["train", *TINY, "-ni", "20", "-ef", "10", "--out", str(out)]) == 0
    first = json.loads((out / "results.json").read_text())
    capsys.readouterr()
    # a second run into the same folder without --resume is refused
    assert cli_main(["train", *TINY, "-ni", "20", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    # --resume with different hyperparameters names each differing flag
    assert cli_main(["train", *TINY, "-ni", "20", "-ef", "10", "-t", "8", "--seed", "5", "--out", str(out),
                     "--resume"]) == 2
    err = capsys.readouterr().err
    assert "-t/--tau: saved 4.0, given 8.0" in err and "-s/--seed: saved 0, given 5" in err
    # --resume on a finished run (config from the checkpoint) trains nothing and keeps the metrics
    assert cli_main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert "already finished" in capsys.readouterr().out
    again = json.loads((out / "results.json").read_text())
    assert _metrics(again) == _metrics(first)
    # ... and -ni may grow to extend it
    assert cli_main(["train", "--out", str(out), "--resume", "-ni", "30", "--no-progress"]) == 0
    extended = json.loads((out / "results.json").read_text())
    assert [e["step"] for e in extended["evaluations"]] == [10, 20, 30]


def test_cli_reports_bad_input(tmp_path, fake, capsys):
    assert cli_main(["train", "--preset", "nope", "--out", str(tmp_path / "a")]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert cli_main(["train", *TINY, "-k", "30", "--out", str(tmp_path / "b")]) == 2  # 30 gates, 4 classes
    assert "not divisible by the 4 classes" in capsys.readouterr().err
    assert cli_main(["train", "--dataset", "fake", "--out", str(tmp_path / "c")]) == 2
    assert "model size is not set" in capsys.readouterr().err
    assert cli_main(["train", *TINY]) == 2
    assert "--out DIR is required" in capsys.readouterr().err
    assert cli_main(["train", "--resume", "--out", str(tmp_path / "none")]) == 3  # a missing file
    assert "no checkpoint.safetensors" in capsys.readouterr().err
    assert cli_main(["eval", str(tmp_path / "missing")]) == 3
    assert "no such file or folder" in capsys.readouterr().err


def test_preset_overrides_are_printed(tmp_path, fake, capsys):
    out = tmp_path / "p"
    # the monk1 preset trained on the synthetic data (4 classes need -k divisible by 4: 48 is)
    assert cli_main(["train", "--preset", "monk1", "--dataset", "fake", "-ni", "10", "-ef", "10", "--threads", "1",
                     "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "flags overriding the preset: dataset \"monk1\" -> \"fake\", num_iterations 5000 -> 10, " \
           "eval_freq 500 -> 10" in printed
    assert '  preset: "monk1"' in printed


def test_mlp_baseline_is_flagged_not_a_logic_net(tmp_path, fake):
    out = tmp_path / "mlp"
    assert cli_main(["train", *TINY, "-a", "mlp", "-k", "16", "-l", "2", "-lr", "0.01", "-ni", "30", "-ef", "30",
                     "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["is_logic_net"] is False and "not a logic net" in results["model"]["note"]
    last = results["evaluations"][-1]
    assert last["test_acc_eval_mode"] == last["test_acc_train_mode"]
    model = load_model(out)
    assert isinstance(model[1], torch.nn.Linear) and model.diffgates_spec["hidden"] == [16, 16]


# ------------------------------------------------------------------------------------------------
# Kill -9 and --resume reproduce the uninterrupted run exactly
# ------------------------------------------------------------------------------------------------

def test_kill_9_then_resume_reproduces_the_uninterrupted_run(tmp_path, driver, fake):
    args = [*TINY, "-ni", "150", "-ef", "50", "--checkpoint-every", "10", "--seed", "7"]
    reference = tmp_path / "reference"
    assert cli_main(["train", *args, "--out", str(reference)]) == 0
    expected = json.loads((reference / "results.json").read_text())

    out = tmp_path / "killed"
    cmd = [sys.executable, str(driver), "train", *args, "--out", str(out)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    try:
        while not (out / "checkpoint.json").exists():
            assert proc.poll() is None, f"training exited before its first checkpoint:\n{proc.stdout.read().decode()}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    # The checkpoint is its safetensors file (checkpoint.json is a readable copy, written after it).
    killed_at = read_checkpoint_info(out)["step"]
    assert 0 < killed_at < 150, f"the run was not killed mid-way (checkpoint at step {killed_at})"

    # Resume in this process (same --threads 1): it must end exactly where the uninterrupted run ended.
    assert cli_main(["train", *args, "--out", str(out), "--resume"]) == 0
    got = json.loads((out / "results.json").read_text())
    assert got["status"] == "finished"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp file of the killed run left
    assert _metrics(got) == _metrics(expected)  # exact: same losses, same accuracies at every evaluation
    assert got["test_acc_eval_mode"] == expected["test_acc_eval_mode"]
    assert got["best"]["step"] == expected["best"]["step"]
    assert got["timings"]["sessions"] == [{"start_step": 0}, {"start_step": killed_at}]
    ref_model, new_model = load_model(reference), load_model(out)
    for (name, a), b in zip(ref_model.state_dict().items(), new_model.state_dict().values()):
        assert torch.equal(a, b), name


def test_sigterm_writes_a_checkpoint_and_resume_finishes(tmp_path, fake):
    out = tmp_path / "term"
    cfg = resolve_preset(None, {"dataset": "fake", "num_neurons": 32, "num_layers": 3, "batch_size": 20,
                                "num_iterations": 100_000, "eval_freq": 20, "threads": 1, "progress": False})
    lines = []

    def log(text):  # at the first evaluation, deliver SIGTERM to ourselves (the trainer's handler is installed)
        lines.append(text)
        if text.startswith("step ") and len(lines) < 10:
            os.kill(os.getpid(), signal.SIGTERM)

    handler_before = signal.getsignal(signal.SIGTERM)
    results = trainer_mod.Trainer(cfg, out, log=log).run()
    assert results["status"] == "interrupted"
    assert any("SIGTERM: stopping at step 20" in line for line in lines)
    info = json.loads((out / "checkpoint.json").read_text())
    assert info["state"]["status"] == "interrupted" and info["step"] == 20
    assert json.loads((out / "results.json").read_text())["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) == handler_before  # the trainer's handler was removed again
    finished = trainer_mod.Trainer(cfg.replace(num_iterations=40), out, resume=True, log=lines.append).run()
    assert finished["status"] == "finished" and [e["step"] for e in finished["evaluations"]] == [20, 40]


# ------------------------------------------------------------------------------------------------
# Real data (skipped when ../shared/data is not beside the repository)
# ------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not (SHARED_DATA / "uci").is_dir(), reason="../shared/data not present")
def test_monk1_preset_runs_on_the_real_files(tmp_path):
    out = tmp_path / "monk1"
    assert cli_main(["train", "--preset", "monk1", "-ni", "60", "-ef", "30", "--threads", "1", "--no-progress",
                     "--data-dir", str(SHARED_DATA), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["n_inputs"] == 17 and results["dataset"]["n_test"] == 432
    assert 0.3 < results["test_acc_eval_mode"] <= 1
    model = load_model(out)
    assert model.diffgates_input_layout and model.diffgates_config["dataset"] == "monk1"


@pytest.mark.parametrize("variant", [["--parametrization", "iwp", "--sampling", "gumbel_hard", "--gumbel-tau", "0.5"],
                                     ["--parametrization", "walsh", "--residual-logit", "1", "--sampling", "hard"]],
                         ids=["iwp-gumbel_hard", "walsh-hard"])
def test_gate_variants_are_stored_and_resume_exactly(tmp_path, fake, variant):
    """The parametrization flags reach every layer, the saved model and config; a stopped Gumbel run
    resumes to the same numbers as an uninterrupted one (the noise comes from the checkpointed RNG)."""
    args = [*TINY, *variant, "-ef", "30", "--seed", "3"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert cli_main(["train", *args, "-ni", "60", "--out", str(whole)]) == 0
    assert cli_main(["train", *args, "-ni", "30", "--out", str(split)]) == 0
    assert cli_main(["train", *args, "-ni", "60", "--out", str(split), "--resume"]) == 0
    expected, got = (json.loads((d / "results.json").read_text()) for d in (whole, split))
    assert _metrics(got) == _metrics(expected)
    model = load_model(whole)
    layers = [m for m in model.modules() if hasattr(m, "parametrization")]
    assert len(layers) == 3 and {m.parametrization for m in layers} == {variant[1]}
    assert {m.sampling for m in layers} == {variant[variant.index("--sampling") + 1]}
    assert model.diffgates_config["parametrization"] == variant[1]
    assert model.diffgates_spec["layers"][0]["init"] == "residual"  # the resolved default, recorded
    # A different sampling on --resume continues another run: refused, naming the field.
    assert cli_main(["train", *args, "-ni", "90", "--out", str(split), "--resume", "--sampling", "soft"]) != 0


def test_a_family_flag_changes_one_option_of_the_preset():
    cfg = resolve_preset("bnn_conv_mnist", {"model_options": {"conv_width": 32}})
    assert cfg.model_options == {"topology": "conv", "conv_width": 32}
    assert resolve_preset("bnn_conv_mnist", {"model_options": {"topology": "mlp"}}).model_options == {"topology": "mlp"}

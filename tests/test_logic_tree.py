"""The logic-tree family (conv logic nets): specs, the paper's gate counts, presets, and a run through
the trainer, resume and the compiled engine on a small synthetic image dataset.

Run: python -m pytest tests/test_logic_tree.py -q
"""
from __future__ import annotations

import json

import pytest
import torch

import fake_data
from diffgates.cli import main as cli_main
from diffgates.data import Dataset
from diffgates.families import LOGIC_TREE, build_model, logic_tree_spec, validate_spec
from diffgates.modelfiles import load_model
from diffgates.train.presets import resolve_preset


def test_gate_counts_follow_the_paper():
    # MNIST LogicTreeNet-L (k = 256): the paper's training gate count, 3,216,128.
    large = logic_tree_spec((1, 28, 28), 10, k=256, num_dense=3, tau=35)
    assert sum(LOGIC_TREE.gate_counts(large)) == 3_216_128
    small = logic_tree_spec((1, 28, 28), 10, k=16, num_dense=3, tau=6.5, output_factor=2)
    assert LOGIC_TREE.gate_counts(small) == [64512, 6912, 48384, 5184, 36288, 3888, 20480, 10240, 10240]
    cifar = logic_tree_spec((9, 32, 32), 10, k=32, num_dense=3, tau=20)
    assert [b["out_channels"] for b in cifar["blocks"]] == [32, 128, 512, 1024]
    assert cifar["layers"][0]["in_dim"] == 1024 * 2 * 2


def test_spec_round_trip_and_every_gate_residual_by_default():
    spec = logic_tree_spec((1, 28, 28), 10, k=2, num_dense=2, tau=4, parametrization="walsh", sampling="hard")
    model = build_model(spec)
    assert LOGIC_TREE.spec_of(model) == spec
    assert {b["init"] for b in spec["blocks"]} | {layer["init"] for layer in spec["layers"]} == {"residual"}
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_bad_specs_are_named():
    spec = logic_tree_spec((1, 28, 28), 10, k=2, num_dense=1, tau=4)
    bad = json.loads(json.dumps(spec))
    bad["blocks"][1]["in_channels"] = 5
    with pytest.raises(ValueError, match=r"blocks\[1\]\.in_channels is 5 but the input or the block before it has 2"):
        validate_spec(bad)
    bad = json.loads(json.dumps(spec))
    bad["layers"][0]["in_dim"] = 100
    with pytest.raises(ValueError, match=r"layers\[0\]\.in_dim is 100 but the conv blocks output 162 features"):
        validate_spec(bad)
    with pytest.raises(ValueError, match=r"no LogicTreeNet layout for 20 x 20 images"):
        logic_tree_spec((1, 20, 20), 10, k=2)
    with pytest.raises(ValueError, match=r"needs image inputs \(C, H, W\), got input_shape=\[784\]"):
        logic_tree_spec((784,), 10, k=2)


def test_presets_hold_the_published_sizes():
    s = resolve_preset("mnist_conv_s")
    assert (s.architecture, s.num_neurons, s.tau, s.batch_size, s.learning_rate) == ("logic_tree", 16, 6.5, 512, 0.01)
    assert s.model_options == {"output_factor": 2} and round(s.val_fraction * 60000) == 10000
    c = resolve_preset("cifar10_conv_m")
    assert (c.num_neurons, c.tau, c.learning_rate, c.weight_decay, c.dataset) == (256, 40.0, 0.02, 0.002, "cifar10_3")


def _fake_images(n: int = 300) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    bright = (x[:, 0, :14].float().mean((1, 2)) > x[:, 0, 14:].float().mean((1, 2))).long()
    y = bright * 2 + (x[:, 0, 5, 5] > 127).long()
    return Dataset(name="fakeimg", n_inputs=784, n_classes=4, class_names=["a", "b", "c", "d"],
                   input_shape=(1, 28, 28), raw_shape=(1, 28, 28), x_train=x[:200], y_train=y[:200],
                   x_val=x[200:240], y_val=y[200:240], x_test=x[240:], y_test=y[240:],
                   input_layout={"kind": "synthetic"}, encoder=fake_data._encode)


@pytest.mark.slow
def test_trains_resumes_exactly_and_compiles_bit_exactly(tmp_path, monkeypatch, capsys):
    from diffgates.train import trainer
    monkeypatch.setattr(trainer, "load_dataset_fn", lambda name, *args: _fake_images())
    args = ["--architecture", "logic_tree", "--dataset", "fakeimg", "-k", "2", "-l", "1", "-t", "4", "-bs", "16",
            "--threads", "1", "--no-progress", "-ef", "3", "--output-factor", "2", "--weight-decay", "0.01"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert cli_main(["train", *args, "-ni", "6", "--out", str(whole)]) == 0
    assert cli_main(["train", *args, "-ni", "3", "--out", str(split)]) == 0
    assert cli_main(["train", *args, "-ni", "6", "--out", str(split), "--resume"]) == 0
    expected, got = (json.loads((d / "results.json").read_text()) for d in (whole, split))
    strip = lambda r: [{k: v for k, v in e.items() if k != "elapsed_s"} for e in r["evaluations"]]  # noqa: E731
    assert strip(got) == strip(expected)
    assert expected["model"]["gates_total"] == sum(LOGIC_TREE.gate_counts(load_model(whole).diffgates_spec))
    capsys.readouterr()
    assert cli_main(["compile", str(whole), "--repeats", "1"]) == 0  # exit 0 only when bit-exact
    out = capsys.readouterr().out
    assert "class counts identical on every image: True" in out
    report = json.loads((whole / "compiled.json").read_text())
    assert report["bit_exact_with_model"] and report["gates_after"] < report["gates_before"]

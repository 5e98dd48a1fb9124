"""Tests of model specs (diffgates.families), saved models (diffgates.modelfiles) and resumable training
checkpoints (diffgates.train.checkpoint): exact round trips, and clear errors for corrupt or foreign files.

Run: python -m pytest tests/test_modelfiles.py -q
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from diffgates import modelfiles
from diffgates.families import FAMILIES, build_model, get_family, logic_spec, mlp_spec, model_spec, validate_spec
from diffgates.modelfiles import ModelFileError, read_tensors, write_tensors
from diffgates.train import checkpoint
from diffgates.train.checkpoint import CheckpointError

LAYOUT = {"kind": "test", "bits": 12}
CONFIG = {"dataset": "test", "num_neurons": 16, "num_layers": 3}


def _logic(seed: int = 0):
    torch.manual_seed(seed)
    spec = logic_spec(in_dim=12, n_classes=4, num_neurons=16, num_layers=3, tau=2.5, connections="unique",
                      grad_factor=2.0, input_shape=[3, 4])
    return spec, build_model(spec, implementation="reference")


def _save(tmp_path: Path, model, spec, stem: str = "model", step: int = 5) -> Path:
    return modelfiles.save_model(model, tmp_path / stem, spec=spec, config=CONFIG, input_layout=LAYOUT, step=step,
                                 metrics={"test_acc_eval_mode": 0.5})


def test_specs_round_trip_through_models():
    spec, model = _logic()
    assert model_spec(model, input_shape=[3, 4]) == spec
    assert [type(m).__name__ for m in model] == ["Flatten", "LogicLayer", "LogicLayer", "LogicLayer", "GroupSum"]
    assert model[1].grad_factor == 2.0 and model[-1].tau == 2.5 and get_family("logic").layer_widths(spec) == [16, 16, 16]
    mspec = mlp_spec(in_dim=12, n_classes=4, num_neurons=8, num_layers=2)
    mlp = build_model(mspec)
    assert model_spec(mlp) == mspec and mlp(torch.rand(5, 12)).shape == (5, 4)
    assert json.loads(json.dumps(spec)) == spec  # JSON-able


@pytest.mark.parametrize("change, match", [
    ({"format": "other"}, "not a diffgates model spec"),
    ({"kind": "cnn"}, "kind='cnn'"),
    ({"version": 2}, "version 2 is not supported"),
    ({"n_classes": 5}, "not divisible into n_classes=5"),
    ({"input_shape": [5, 5]}, "holds 25 values but in_dim is 12"),
    ({"layers": []}, "non-empty list"),
    ({"tau": 0}, "tau must be"),
])
def test_bad_specs_are_named(change, match):
    spec, _ = _logic()
    with pytest.raises(ValueError, match=match):
        validate_spec({**spec, **change})
    bad_layer = json.loads(json.dumps(spec))
    bad_layer["layers"][1]["in_dim"] = 7
    with pytest.raises(ValueError, match=r"layers\[1\].in_dim is 7 but the previous layer outputs 16"):
        validate_spec(bad_layer)


def test_model_spec_rejects_other_structures():
    with pytest.raises(ValueError, match="unsupported model structure"):
        model_spec(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Conv2d(1, 1, 3)))


def test_saved_model_loads_identically_from_every_path_form(tmp_path):
    spec, model = _logic()
    # train mode outputs differ between random models; make the weights non-trivial first
    with torch.no_grad():
        model[2].weights.normal_(0, 3)
    target = _save(tmp_path, model, spec)
    assert target == tmp_path / "model.safetensors" and (tmp_path / "model.json").exists()
    x = (torch.rand(64, 3, 4) > 0.5).float()
    model.eval()
    expected = model(x)
    state = torch.get_rng_state()
    for path in (tmp_path, tmp_path / "model.json", target):
        loaded = modelfiles.load_model(path, implementation="reference")
        assert not loaded.training
        assert torch.equal(loaded(x), expected)  # exact: the discrete network is the same circuit
        for layer, original in zip(loaded[1:4], model[1:4]):
            assert torch.equal(layer.connections, original.connections)  # wiring is saved, not redrawn
        assert loaded.diffgates_input_layout == LAYOUT and loaded.diffgates_config == CONFIG
        assert loaded.diffgates_info["step"] == 5 and loaded.diffgates_spec == spec
    assert torch.equal(torch.get_rng_state(), state)  # loading does not disturb the caller's RNG
    _save(tmp_path, model, spec, stem="best", step=3)
    assert modelfiles.load_model(tmp_path, which="best").diffgates_info["step"] == 3
    with pytest.raises(ModelFileError, match="which='worst'"):
        modelfiles.load_model(tmp_path, which="worst")


def test_mlp_model_round_trip(tmp_path):
    torch.manual_seed(0)
    spec = mlp_spec(in_dim=12, n_classes=4, num_neurons=8, num_layers=2)
    model = build_model(spec)
    _save(tmp_path, model, spec)
    x = torch.rand(7, 12)
    assert torch.equal(modelfiles.load_model(tmp_path)(x), model(x))


def test_foreign_and_corrupt_model_files_are_reported(tmp_path):
    spec, model = _logic()
    with pytest.raises(ModelFileError, match="has no model.safetensors"):
        modelfiles.load_model(tmp_path)
    foreign = tmp_path / "foreign.safetensors"
    write_tensors(foreign, {"w": torch.zeros(3)}, {"format": "pt"})
    with pytest.raises(ModelFileError, match="without diffgates metadata"):
        modelfiles.load_model(foreign)
    target = _save(tmp_path, model, spec)
    data = target.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[:-10])
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        modelfiles.load_model(tmp_path / "trunc.safetensors")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something.else"}))
    with pytest.raises(ModelFileError, match="format is 'something.else'"):
        modelfiles.load_model(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{nope")
    with pytest.raises(ModelFileError, match="invalid JSON"):
        modelfiles.load_model(tmp_path / "broken.json")
    (tmp_path / "lonely.json").write_text((tmp_path / "model.json").read_text())
    with pytest.raises(ModelFileError, match="weights lonely.safetensors are missing"):
        modelfiles.load_model(tmp_path / "lonely.json")
    # a checkpoint of the training state is not a model
    opt = torch.optim.Adam(model.parameters())
    checkpoint.save_training_checkpoint(tmp_path, model, opt, step=1, config=CONFIG, state={})
    with pytest.raises(ModelFileError, match="'diffgates.train_checkpoint' file, expected 'diffgates.model'"):
        modelfiles.load_model(tmp_path / "checkpoint.safetensors")


def _rewrite(target: Path, tensors: dict, metadata: dict) -> None:
    write_tensors(target, tensors, metadata)


def test_weights_that_do_not_fit_the_architecture_are_reported(tmp_path):
    spec, model = _logic()
    target = _save(tmp_path, model, spec)
    tensors, metadata = read_tensors(target)

    wrong_shape = dict(tensors, **{"2.weights": torch.zeros(8, 16)})
    _rewrite(target, wrong_shape, metadata)
    with pytest.raises(ModelFileError, match=r"'2.weights' is torch.float32 \(8, 16\), the architecture expects"):
        modelfiles.load_model(target)

    bad_conn = dict(tensors, **{"1.connections": torch.full((2, 16), 99, dtype=torch.int64)})
    _rewrite(target, bad_conn, metadata)
    with pytest.raises(ModelFileError, match=r"input indices in \[99, 99\]"):
        modelfiles.load_model(target)

    missing = {k: v for k, v in tensors.items() if k != "3.weights"}
    _rewrite(target, missing, metadata)
    with pytest.raises(ModelFileError, match=r"missing \['3.weights'\]"):
        modelfiles.load_model(target)

    info = json.loads(metadata["diffgates"])
    info["architecture"]["layers"][0]["out_dim"] = 7
    _rewrite(target, tensors, {"diffgates": json.dumps(info)})
    with pytest.raises(ModelFileError, match="architecture"):
        modelfiles.load_model(target)

    info["format_version"] = 99
    _rewrite(target, tensors, {"diffgates": json.dumps(info)})
    with pytest.raises(ModelFileError, match="format_version 99"):
        modelfiles.load_model(target)


def test_training_checkpoint_restores_model_adam_and_rng_exactly(tmp_path):
    spec, model = _logic()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = torch.rand(32, 12), torch.randint(0, 4, (32,))
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(9)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    checkpoint.save_training_checkpoint(tmp_path, model, opt, step=3, config=CONFIG, state={"running": [1.5, 2.0, 3.0]})
    expect = (torch.rand(4), np.random.rand(3), np.random.standard_normal(), random.random())

    _, fresh = _logic(seed=1)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.05)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    ckpt = checkpoint.load_training_checkpoint(tmp_path)
    assert ckpt.step == 3 and ckpt.state == {"running": [1.5, 2.0, 3.0]} and ckpt.config == CONFIG
    checkpoint.restore_training_checkpoint(ckpt, fresh, fresh_opt)
    got = (torch.rand(4), np.random.rand(3), np.random.standard_normal(), random.random())
    assert torch.equal(got[0], expect[0]) and np.array_equal(got[1], expect[1])
    assert got[2] == expect[2] and got[3] == expect[3]
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    sa, sb = opt.state_dict(), fresh_opt.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for pid in sa["state"]:
        for key in sa["state"][pid]:
            assert torch.equal(sa["state"][pid][key], sb["state"][pid][key]), (pid, key)
    # the next step is identical
    for m, o in ((model, opt), (fresh, fresh_opt)):
        o.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        o.step()
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)


def test_missing_and_corrupt_training_checkpoints(tmp_path):
    assert checkpoint.load_training_checkpoint(tmp_path) is None
    spec, model = _logic()
    opt = torch.optim.Adam(model.parameters())
    target = checkpoint.save_training_checkpoint(tmp_path, model, opt, step=0, config=CONFIG, state={})
    tensors, metadata = read_tensors(target)
    _rewrite(target, {k: v for k, v in tensors.items() if k != "rng.torch"}, metadata)
    with pytest.raises(CheckpointError, match="incomplete or corrupt training checkpoint.*rng.torch"):
        checkpoint.load_training_checkpoint(tmp_path)
    target.write_bytes(b"\0" * 3)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        checkpoint.load_training_checkpoint(tmp_path)


def test_no_pickle_loading_anywhere_in_the_package():
    root = Path(__file__).resolve().parents[1] / "src" / "diffgates"
    files = sorted(root.rglob("*.py"))
    for path in files:
        text = path.read_text()
        for forbidden in ("torch.load", "pickle.load(", "pickle.loads", "allow_pickle=True"):
            assert forbidden not in text, f"{path.name} uses {forbidden}"


def test_families_are_a_registry():
    assert {"logic", "mlp"} <= set(FAMILIES)
    with pytest.raises(ValueError, match="architecture 'cnn' is not known"):
        get_family("cnn")
    spec, model = _logic()
    assert get_family("logic").deploy(model).n_gates == 48
    assert get_family("mlp").deploy(build_model(mlp_spec(12, 4, 8, 1))) is None

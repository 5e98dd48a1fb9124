"""Model families and datasets are registries: a new one is one module plus one registration line.

A toy family (a linear classifier with its own option) is registered here, trained, resumed,
evaluated and saved through the unchanged trainer and CLI; a toy dataset is registered and loaded.
Run: python -m pytest tests/test_families.py -q
"""
from __future__ import annotations

import json

import pytest
import torch

from diffgates import data
from diffgates.cli import main
from diffgates.families import FAMILIES, ModelFamily, Option, build_model, get_family, model_spec, register_family
from diffgates.families.base import accuracy_counts, check_int, spec_header
from diffgates.modelfiles import load_model
from diffgates.train import TrainConfig


class ToyFamily(ModelFamily):
    """A linear classifier whose input is scaled by an option: the smallest family there can be."""

    name = "toy_linear"
    description = "a linear classifier (a test family)"
    options = (Option("toy_scale", float, 1.0, "input scale of the toy family"),)

    def spec_from_config(self, config, dataset):
        scale = self.check_options(config.model_options)["toy_scale"]
        return {**spec_header(self.name, dataset.n_inputs, dataset.n_classes, list(dataset.input_shape)),
                "scale": scale}

    def validate(self, spec, where):
        check_int(where, "in_dim", spec["in_dim"])
        return spec

    def build(self, spec, device="cpu", implementation=None):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(spec["in_dim"], spec["n_classes"]))
        model.toy_scale = spec["scale"]
        return model

    def spec_of(self, model, input_shape=None):
        if not hasattr(model, "toy_scale"):
            return None
        linear = model[1]
        return {**spec_header(self.name, linear.in_features, linear.out_features, input_shape), "scale": model.toy_scale}

    def layer_widths(self, spec):
        return [spec["n_classes"]]

    def describe(self, spec, model):
        return f"toy linear classifier, scale {spec['scale']}"

    def size(self, spec, model):
        return {"kind": self.name, "is_logic_net": False, "parameters": sum(p.numel() for p in model.parameters())}

    def deployed_accuracy(self, model, x_raw, y, encode, *, batch_size=2000, device="cpu", shard=(0, 1)):
        return accuracy_counts(model, x_raw, y, encode, binary=False, batch_size=batch_size, device=device,
                               shard=shard)


@pytest.fixture()
def toy_family():
    family = register_family(ToyFamily())
    yield family
    del FAMILIES[family.name]


def test_registry_lookups_and_errors(toy_family):
    assert get_family("toy_linear") is toy_family
    with pytest.raises(ValueError, match="needs a new name"):
        register_family(ToyFamily())
    spec = {**spec_header("toy_linear", 6, 2, None), "scale": 2.0}
    model = build_model(spec)
    assert model_spec(model) == spec
    with pytest.raises(ValueError, match="toy_scale='big' is not a float"):
        TrainConfig(dataset="x", architecture="toy_linear", num_neurons=1, num_layers=1,
                    model_options={"toy_scale": "big"}).validate()
    with pytest.raises(ValueError, match=r"\['colour'\] are not options"):
        TrainConfig(dataset="x", architecture="toy_linear", num_neurons=1, num_layers=1,
                    model_options={"colour": 1}).validate()


def test_a_new_family_trains_resumes_and_evaluates_through_the_cli(toy_family, fake_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--dataset", "fake", "--architecture", "toy_linear", "--toy-scale", "0.5", "-k", "1", "-l", "1",
            "-bs", "20", "-ef", "15", "-lr", "0.05", "--threads", "1", "--no-progress", "--out", str(out)]
    assert main(args + ["-ni", "15"]) == 0
    assert main(args + ["-ni", "30", "--resume"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "finished" and results["step"] == 30
    assert results["config"]["model_options"] == {"toy_scale": 0.5}
    assert results["model"] == {"kind": "toy_linear", "is_logic_net": False, "parameters": 24 * 4 + 4}
    model = load_model(out)
    assert model.toy_scale == 0.5 and model.diffgates_spec["kind"] == "toy_linear"
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    assert "toy_linear: a linear classifier (a test family)" in capsys.readouterr().out
    assert main(["compile", str(out)]) == 2  # no circuit form
    assert "has no circuit" in capsys.readouterr().err


def test_a_new_dataset_is_one_registration(tmp_path, monkeypatch):
    import sys
    import types

    module = types.ModuleType("diffgates_test_toy_dataset")

    def load_toy(name, data_dir, download, val_fraction, split_seed):
        import numpy as np

        from diffgates.data.dataset import make_dataset

        x = np.arange(40, dtype=np.uint8).reshape(20, 2) % 2
        y = x[:, 0].astype(np.int64)
        return make_dataset(name, class_names=["a", "b"], input_shape=(2,), raw_shape=(2,), train=(x, y),
                            test=(x, y), val_fraction=val_fraction, split_seed=split_seed,
                            input_layout={"kind": "toy"}, encoder=lambda raw, binary, dtype: raw.to(dtype))

    module.load_toy = load_toy
    monkeypatch.setitem(sys.modules, module.__name__, module)
    data.register_dataset("toy-set", module.__name__, "load_toy")
    try:
        ds = data.load_dataset("Toy-Set", val_fraction=0.25)
        assert ds.name == "toy_set" and len(ds.y_val) == 5 and "toy_set" in data.dataset_names()
        with pytest.raises(ValueError, match="registered already"):
            data.register_dataset("toy_set", module.__name__, "load_toy")
    finally:
        del data._LOADERS["toy_set"]
    with pytest.raises(ValueError, match="unknown dataset 'toy_set'"):
        data.load_dataset("toy_set")

"""Tests of model -> Circuit extraction, JSON round trips, ``load_circuit`` and ``diffgates circuit``.

The central property: for {0,1} inputs, ``group_counts(to_circuit(model), x)`` equals the eval model's
output times tau, exactly. Run: ``PYTHONPATH=src python -m pytest tests/test_frontend.py -q``.
"""
from __future__ import annotations

import json
import numpy as np
import pytest
import torch

import diffgates
from circuit_cases import all_bits, model_counts, random_bits, random_circuit, random_model, simplifiable_weights
from diffgates import GroupSum, LogicLayer
from diffgates.ir import Circuit, CircuitFormatError, Head, group_counts, head_outputs
from diffgates.frontend import EXTRACTORS, ExtractionError, register_extractor, to_circuit
from diffgates.modelfiles import load_circuit
from diffgates.cli import main

# (in_dim, widths, k, connections): one-layer nets, in_dim=1, widths not divisible by 64.
MODEL_CASES = [
    (1, [3], 1, "random"),
    (1, [5, 10], 2, "random"),
    (20, [65], 5, "unique"),
    (17, [63, 157], 1, "random"),
    (30, [100, 65, 70], 5, "unique"),
    (64, [64, 128, 130], 10, "random"),
]


@pytest.mark.parametrize("in_dim,widths,k,connections", MODEL_CASES)
@pytest.mark.parametrize("n", [1, 63, 65, 1000])
def test_extraction_matches_eval_model(in_dim, widths, k, connections, n):
    model = random_model(in_dim, widths, k, tau=3.0, seed=in_dim + n, connections=connections)
    circuit = to_circuit(model)
    x = random_bits(n, in_dim, seed=n)
    assert (circuit.n_inputs, circuit.num_classes, circuit.tau, circuit.n_outputs) == (in_dim, k, 3.0, widths[-1])
    assert np.array_equal(group_counts(circuit, x), model_counts(model, x))


def test_extraction_exhaustive_small_inputs():
    model = random_model(10, [40, 33, 30], 3, tau=7.0, seed=5, gate_weights=simplifiable_weights())
    x = all_bits(10)
    assert np.array_equal(group_counts(to_circuit(model), x), model_counts(model, x))


def test_node_numbering_follows_layers():
    model = random_model(12, [20, 30], 3, seed=1)
    circuit = to_circuit(model)
    l1, l2 = model[1], model[2]
    assert circuit.n_inputs == 12 and circuit.n_gates == 50 and circuit.num_classes == 3 and circuit.tau == 1.0
    assert np.array_equal(circuit.ops[:20], l1.gate_ids().numpy())
    assert np.array_equal(circuit.ops[20:], l2.gate_ids().numpy())
    assert np.array_equal(circuit.a[:20], l1.connections[0].numpy())
    assert np.array_equal(circuit.b[20:], 12 + l2.connections[1].numpy())
    assert np.array_equal(circuit.outputs, 12 + 20 + np.arange(30))
    assert circuit.meta["layer_widths"] == [20, 30] and circuit.meta["source"] == "model"
    assert set(np.unique(circuit.ops)) == set(range(16))  # the fixture covers every gate kind


def test_training_mode_nested_sequential_and_lazy_api():
    model = random_model(16, [40, 20], 4, tau=2.0, seed=3)
    nested = torch.nn.Sequential(torch.nn.Sequential(model[0], model[1]), torch.nn.Sequential(model[2]), model[3])
    nested.train()  # extraction uses the argmax gates whatever the mode
    circuit = diffgates.to_circuit(nested, input_layout={"kind": "test"})
    assert circuit.structurally_equal(to_circuit(model))
    assert circuit.input_layout == {"kind": "test"}
    x = random_bits(65, 16, seed=2)
    assert np.array_equal(group_counts(circuit, x), model_counts(model.eval(), x))


def test_image_shaped_input_flattens_like_torch():
    model = random_model(2 * 3 * 4, [30], 3, seed=9)
    x = random_bits(63, 24, seed=4).reshape(63, 2, 3, 4)
    assert np.array_equal(group_counts(to_circuit(model), x), model_counts(model, x))


def test_unsupported_module_is_named():
    model = torch.nn.Sequential(torch.nn.Flatten(), LogicLayer(8, 8), torch.nn.ReLU(), GroupSum(2))
    with pytest.raises(ExtractionError, match=r"ReLU at 2.*supported module types are Sequential, Flatten, "
                                              r"LogicLayer, LogicConv2d, OrPool2d, GroupSum"):
        to_circuit(model)
    with pytest.raises(ExtractionError, match="torch.nn.Module"):
        to_circuit([LogicLayer(4, 4)])


def test_dimension_mismatch_is_named():
    model = torch.nn.Sequential(LogicLayer(8, 10), LogicLayer(12, 6), GroupSum(2))
    with pytest.raises(ExtractionError, match=r"LogicLayer at 1 expects in_dim=12 features, but the module "
                                              r"before it produces 10"):
        to_circuit(model)


def test_heads_follow_the_model():
    layer = LogicLayer(4, 6, implementation="reference").eval()
    bare = to_circuit(layer)  # no GroupSum: the outputs are the bits themselves
    assert bare.head.kind == "bits" and bare.n_outputs == 6
    x = all_bits(4)
    with torch.no_grad():
        assert np.array_equal(head_outputs(bare, x), layer(torch.as_tensor(x, dtype=torch.float32)).numpy() == 1)
    model = random_model(8, [12], 3, tau=2.0, seed=3)
    assert to_circuit(model, head="argmax").head == Head.argmax(3)
    assert to_circuit(model, head="bits").head.kind == "bits"
    with pytest.raises(ExtractionError, match="needs the class groups"):
        to_circuit(layer, head="argmax")
    with pytest.raises(ExtractionError, match="head='votes'"):
        to_circuit(model, head="votes")


def test_non_finite_logits_are_refused():
    model = random_model(8, [12], 3, seed=3)
    with torch.no_grad():
        model[1].weights[2, 0] = float("nan")
    with pytest.raises(ExtractionError, match="non-finite gate logits"):
        to_circuit(model)


def test_threshold_cells_from_a_registered_extractor():
    class Majority(torch.nn.Module):  # a toy binary neuron: [x0 + ~x1 + x2 >= 2] per group of 3 features
        def forward(self, x):
            v = x[:, 0::3] + (1 - x[:, 1::3]) + x[:, 2::3]
            return (v >= 2).to(x.dtype)

    def extract_majority(module, builder, position):
        f = builder.features.reshape(-1, 3)
        rows = [np.array([2 * r[0], 2 * r[1] + 1, 2 * r[2]]) for r in f]
        builder.features = builder.add_thresholds(rows, np.full(len(rows), 2))

    register_extractor(Majority, extract_majority)
    try:
        model = torch.nn.Sequential(LogicLayer(5, 12, implementation="reference"), Majority(), GroupSum(2)).eval()
        circuit = to_circuit(model)
        assert circuit.n_thresholds == 4
        x = all_bits(5)
        assert np.array_equal(group_counts(circuit, x), model_counts(model, x))
    finally:
        del EXTRACTORS[Majority]


def test_head_errors():
    with pytest.raises(ExtractionError, match="LogicLayer at 2 follows the GroupSum"):
        to_circuit(torch.nn.Sequential(LogicLayer(4, 4), GroupSum(2), LogicLayer(4, 4)))
    with pytest.raises(ExtractionError, match="k=3 classes, but the layer before it has 4 outputs"):
        to_circuit(torch.nn.Sequential(LogicLayer(4, 4), GroupSum(3)))
    with pytest.raises(ExtractionError, match="comes before any LogicLayer"):
        to_circuit(torch.nn.Sequential(torch.nn.Flatten(), GroupSum(1)))
    with pytest.raises(ExtractionError, match="only Flatten"):
        to_circuit(torch.nn.Sequential(torch.nn.Flatten(0), LogicLayer(4, 4), GroupSum(2)))


def test_register_extractor_for_new_module_type():
    class Negate(torch.nn.Module):  # a toy "layer": NOT of every feature
        def forward(self, x):
            return 1 - x

    def extract_negate(module, builder, position):
        feats = builder.features
        builder.features = builder.add_gates(np.full(feats.size, diffgates.gates.NOT_A), feats, feats)

    register_extractor(Negate, extract_negate)
    try:
        model = torch.nn.Sequential(LogicLayer(6, 8, implementation="reference"), Negate(), GroupSum(2)).eval()
        x = random_bits(33, 6, seed=1)
        assert np.array_equal(group_counts(to_circuit(model), x), model_counts(model, x))
    finally:
        del EXTRACTORS[Negate]


# ---- JSON round trip and corrupt files -------------------------------------------------------------------
def test_json_round_trip(tmp_path):
    circuit = to_circuit(random_model(9, [30, 20], 4, tau=2.5, seed=2), input_layout={"bits": [1, 2]})
    path = tmp_path / "c.json"
    circuit.save(path)
    same = Circuit.load(path)
    assert same.structurally_equal(circuit)
    assert same.input_layout == {"bits": [1, 2]} and same.meta == circuit.meta and same.tau == 2.5
    assert load_circuit(path, simplify=False).structurally_equal(circuit)


@pytest.mark.parametrize("text,message", [
    ('{"format": "diffgates-circuit", "version": 1, "n_inputs": 2', "not a JSON file"),
    ('{"format": "something-else"}', "not a diffgates circuit"),
    ('[1, 2, 3]', "not a diffgates circuit"),
    ('{"config": {"lr": 0.01}}', "not a diffgates circuit"),
])
def test_foreign_or_truncated_json_is_refused(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(CircuitFormatError, match=message):
        load_circuit(path)
    with pytest.raises(CircuitFormatError):
        Circuit.load(path)


def test_corrupt_circuit_contents_are_refused(tmp_path):
    good = random_circuit(4, 10, 2, k=2, seed=1).to_dict()
    cases = {
        "version": (dict(good, version=99), "version 99"),
        "forward edge": (dict(good, gates=dict(good["gates"], a=[13] + good["gates"]["a"][1:])), "topological"),
        "bad op": (dict(good, gates=dict(good["gates"], op=[17] + good["gates"]["op"][1:])), "not a gate id"),
        "missing": ({k: v for k, v in good.items() if k != "outputs"}, "missing or has malformed field"),
        "outputs": (dict(good, outputs=[0, 1, 2]), "3 outputs cannot form 2 equal groups"),
        "float op": (dict(good, gates=dict(good["gates"], op=[1.7] + good["gates"]["op"][1:])), "list of integers"),
        "float classes": (dict(good, head={"kind": "group_sum", "num_classes": 2.0}), "num_classes must be an integer"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        with pytest.raises(CircuitFormatError, match=message):
            load_circuit(path)


def test_load_circuit_refuses_missing_binary_and_pickles(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_circuit(tmp_path / "nope.json")
    pickle_file = tmp_path / "model.pt"
    torch.save({"a": 1}, pickle_file)
    with pytest.raises(CircuitFormatError, match="never unpickles"):
        load_circuit(pickle_file)
    binary = tmp_path / "blob.dat"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(CircuitFormatError, match="neither JSON nor a safetensors"):
        load_circuit(binary)


@pytest.fixture
def run_dir(tmp_path):
    """A run directory as ``diffgates train`` writes it (model.safetensors + model.json), and its model."""
    from diffgates.families import model_spec
    from diffgates.modelfiles import save_model

    model = random_model(12, [40, 30], 3, tau=4.0, seed=8, gate_weights=simplifiable_weights())
    folder = tmp_path / "run"
    folder.mkdir()
    save_model(model, folder / "model", spec=model_spec(model), config={}, step=3,
               input_layout={"kind": "fake", "n_bits": 12})
    return folder, model


def test_load_circuit_from_run_directory_and_model_files(run_dir):
    folder, model = run_dir
    raw = load_circuit(folder, simplify=False)
    assert raw.structurally_equal(to_circuit(model))
    assert raw.input_layout == {"kind": "fake", "n_bits": 12} and raw.meta["model_path"] == str(folder)
    x = all_bits(12)
    for path in (folder / "model.safetensors", folder / "model.json"):
        small = load_circuit(path)
        assert small.n_gates < raw.n_gates and small.input_layout == raw.input_layout
        assert np.array_equal(group_counts(small, x), model_counts(model, x))


def test_load_circuit_reports_broken_model_files(run_dir):
    folder, _ = run_dir
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_circuit(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="no model.safetensors"):
        load_circuit(folder)


# ---- the CLI -------------------------------------------------------------------------------------------
def test_cli_circuit_from_run_directory(tmp_path, run_dir, capsys):
    folder, model = run_dir
    out = tmp_path / "sub" / "net.json"
    assert main(["circuit", str(folder), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "before" in text and "after" in text and "removed" in text and f"wrote {out}" in text
    saved = Circuit.load(out)
    assert saved.n_gates < 70
    x = all_bits(12)
    assert np.array_equal(group_counts(saved, x), model_counts(model, x))


def test_cli_json_and_no_simplify(tmp_path, capsys):
    circuit = to_circuit(random_model(10, [50, 20], 2, seed=4))
    src = tmp_path / "in.json"
    circuit.save(src)
    out = tmp_path / "out.json"
    assert main(["circuit", str(src), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["before"]["gates"] == 70 and report["after"]["gates"] == Circuit.load(out).n_gates
    assert report["removed_gates"] == 70 - report["after"]["gates"] and report["out"] == str(out)
    assert sum(report["before"]["gates_by_type"].values()) == 70
    assert main(["circuit", str(src), "--out", str(out), "--no-simplify"]) == 0
    text = capsys.readouterr().out
    assert "removed" not in text and Circuit.load(out).structurally_equal(circuit)


def test_cli_errors(tmp_path, capsys):
    assert main(["circuit", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o.json")]) == 3  # a missing file: the same code as every command
    assert "does not exist" in capsys.readouterr().err
    src = tmp_path / "c.json"
    random_circuit(3, 5, 1, seed=0).save(src)
    assert main(["circuit", str(src), "--out", str(src)]) == 2
    assert "is the input file" in capsys.readouterr().err

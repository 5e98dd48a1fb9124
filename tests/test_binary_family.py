"""The binary family end to end: spec, build, exact threshold folding (ties included), circuits equal to the
eval model (IR evaluator and the compiled C engine), training hooks, low-bit variants and their errors.

Run: python -m pytest tests/test_binary_family.py -q
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from diffgates.backends.c.engine import compile_circuit
from diffgates.backends.xnor import compile_xnor, reference_scores
from diffgates.cli import main as cli_main
from diffgates.families import binary_spec, build_model, model_spec, validate_spec
from diffgates.families.binary import BINARY, BinaryNetwork
from diffgates.frontend import ExtractionError, fold_block, to_circuit
from diffgates.ir import group_counts, simplify
from diffgates.modelfiles import load_model
from diffgates.nn import OrPool2d
from diffgates.nn.binary import (BinaryActivation, BinaryBlock, BinaryClassifier, BinaryConv2d, BinaryLinear, Bipolar,
                                 FoldableBatchNorm, recalibrate_batchnorm_)
from diffgates.train.trainer import lr_factor

TINY = ["--dataset", "fake", "-a", "binary", "-bs", "20", "--threads", "1", "--no-progress", "--val-fraction", "0.1"]


def _bits(n: int, shape, seed: int, p: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((n, *shape), generator=g) < p).float()


def _trained(spec, steps: int = 15, seed: int = 0):
    """A model whose BN statistics and weights moved off their initial values."""
    torch.manual_seed(seed)
    model = build_model(spec)
    opt = torch.optim.Adam(model.parameters(), 0.02)
    for step in range(steps):
        x = _bits(64, spec["input_shape"], seed * 100 + step, 0.4)
        loss = torch.nn.functional.cross_entropy(model(x), torch.randint(0, spec["n_classes"], (64,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _assert_deploys_exactly(model, x: torch.Tensor):
    circuit = BINARY.deploy(model)
    expected = BINARY.deployed_counts(model, x, circuit).numpy()
    flat = x.flatten(1).numpy().astype(np.uint8)
    assert np.array_equal(group_counts(circuit, flat), expected)
    simplified = simplify(circuit)
    assert np.array_equal(group_counts(simplified, flat), expected)
    engine = compile_circuit(simplified)
    assert np.array_equal(engine.counts(flat == 1), expected)
    program = BINARY.xnor_program(model)  # the feature-packed engine computes the same agreements
    assert np.array_equal(reference_scores(program, flat), expected)
    assert np.array_equal(compile_xnor(program, threads=2).scores(x.numpy()), expected)
    # The counts are the agreements: the model's logits are s * (2p - n), so the argmax is the same.
    assert np.array_equal(expected.argmax(1), model(x).argmax(1).numpy())
    return circuit


# ---------------------------------------------------------------- spec and build

def test_spec_roundtrip_structure_and_widths():
    spec = binary_spec(784, 10, [1024] * 3, input_shape=[1, 28, 28])
    model = build_model(spec)
    assert isinstance(model, BinaryNetwork) and model_spec(model) == spec
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Bipolar", "Flatten", "BinaryBlock", "BinaryBlock", "BinaryBlock", "BinaryClassifier"]
    assert BINARY.layer_widths(spec) == [1024, 1024, 1024, 10]
    conv = binary_spec(784, 10, [512], conv=[[64, 3, 1], [64, 3, 2], [128, 3, 1], [128, 3, 2]], input_shape=[1, 28, 28])
    model = build_model(conv)
    assert model[6].layer.in_features == 128 * 4 * 4 and isinstance(model[2].pool, OrPool2d)
    assert BINARY.layer_widths(conv) == [64 * 26 * 26, 64 * 24 * 24, 128 * 10 * 10, 128 * 8 * 8, 512, 10]
    assert "BNN" in BINARY.describe(spec, build_model(spec))


@pytest.mark.parametrize("change,message", [
    ({"hidden": []}, "hidden"), ({"hidden": [0]}, "hidden"), ({"activation": "relu"}, "activation"),
    ({"activation": "lq"}, "weight_bits >= 2"), ({"weight_bits": 2, "scaling": "xnor"}, "scaling/binarize"),
    ({"conv": [[8, 3, 2]] * 5}, "shrink"), ({"conv": [[8, 3]]}, "channels, kernel, pool"),
    ({"estimator": "identity"}, "estimator"), ({"weight_bits": 9}, "at most 8")])
def test_bad_specs_are_named(change, message):
    spec = {**binary_spec(144, 3, [8], input_shape=[1, 12, 12]), **change}
    with pytest.raises(ValueError, match=message):
        validate_spec(spec)


# ---------------------------------------------------------------- exact folding, ties included

def _block(n_in: int, out: int, gamma, beta, mean, var, scaling=None):
    block = BinaryBlock(BinaryLinear(n_in, out, scaling=scaling), FoldableBatchNorm(out), BinaryActivation())
    with torch.no_grad():
        block.norm.weight.copy_(torch.tensor(gamma, dtype=torch.float32))
        block.norm.bias.copy_(torch.tensor(beta, dtype=torch.float32))
        block.norm.running_mean.copy_(torch.tensor(mean, dtype=torch.float32))
        block.norm.running_var.copy_(torch.tensor(var, dtype=torch.float32))
    return block.eval()


def test_fold_thresholds_by_hand():
    # n = 4 inputs: y = 2p - 4 in {-4, -2, 0, 2, 4}. Channel 0: y >= 1 -> p >= 3. Channel 1: gamma < 0,
    # bit = (y - 1) * (-1) >= 0 -> y <= 1 -> p <= 2 -> flipped weights, p' >= 2. Channel 2: y - 0 >= 0 exactly
    # at the tie y = 0 (sign(0) = +1) -> p >= 2. Channel 3: gamma = 0, beta > 0 -> always 1 (T = 0);
    # channel 4: gamma = 0, beta < 0 -> never (T = n + 1).
    eps = 1e-5
    block = _block(4, 5, [1.0, -1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.5, -0.5], [1.0, 1.0, 0.0, 0.0, 0.0],
                   [1 - eps] * 5)
    with torch.no_grad():
        block.layer.weight.copy_(torch.tensor([[0.5, -0.5, 0.5, -0.5]] * 5))
    bits, thresholds = fold_block(block)
    assert thresholds.tolist() == [3, 2, 2, 0, 5]
    assert bits[0].tolist() == [1, 0, 1, 0] and bits[1].tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("scaling", [None, "xnor"])
def test_fold_reproduces_the_float_comparison_at_ties(scaling):
    # Running means on reachable integers (ties: z = 0 exactly), both signs of gamma, gamma = 0, a tiny
    # variance; every input pattern of a 7-input neuron is checked.
    n, out = 7, 12
    torch.manual_seed(1)
    mean = [float(v) for v in (-7, -5, -1, 1, 3, 7, 0.5, -0.5, 1, -3, 5, 2)]
    gamma = [1.0, -1.0, 2.0, -0.5, 1.0, 1.0, -3.0, 1.0, 0.0, 1e-3, -1e-3, 1.0]
    beta = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, -0.2, 0.0, 0.0, 1e-7]
    block = _block(n, out, gamma, beta, mean, [1.0] * 6 + [1e-3] * 6, scaling)
    patterns = torch.tensor([[(i >> k) & 1 for k in range(n)] for i in range(2 ** n)], dtype=torch.float32)
    with torch.no_grad():
        expected = block(2 * patterns - 1) >= 0
    bits, thresholds = fold_block(block)
    agreements = (patterns[:, None, :] == torch.from_numpy(bits)[None].float()).sum(-1)
    assert torch.equal(agreements >= torch.from_numpy(thresholds)[None], expected)


def test_fold_refuses_training_mode_and_non_finite_parameters():
    block = _block(4, 2, [1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]).train()
    with pytest.raises(ExtractionError, match="training mode"):
        fold_block(block)
    block.eval()
    with torch.no_grad():
        block.norm.running_var[1] = float("nan")
    with pytest.raises(ExtractionError, match="non-finite norm.running_var"):
        fold_block(block)


# ---------------------------------------------------------------- circuits equal the eval model

@pytest.mark.parametrize("hidden", [[1], [63], [65, 157]])
@pytest.mark.parametrize("scaling", [None, "xnor"])
def test_mlp_circuit_equals_the_eval_model(hidden, scaling):
    spec = binary_spec(65, 3, hidden, input_shape=[65], scaling=scaling)
    model = _trained(spec, seed=len(hidden))
    circuit = _assert_deploys_exactly(model, _bits(157, [65], 7))
    assert circuit.n_thresholds == sum(hidden)


@pytest.mark.parametrize("conv,shape", [([[3, 3, 1]], [1, 9, 9]), ([[5, 3, 2], [4, 3, 1]], [2, 11, 12]),
                                        ([[65, 3, 2]], [1, 7, 7])])
def test_conv_circuit_equals_the_eval_model(conv, shape):
    spec = binary_spec(math.prod(shape), 4, [9], conv=conv, input_shape=shape)
    model = _trained(spec, seed=conv[0][0])
    _assert_deploys_exactly(model, _bits(63, shape, 8))


def test_stochastic_binaryconnect_deploys_its_signs():
    spec = binary_spec(20, 2, [16], input_shape=[20], binarize="stochastic")
    model = _trained(spec)
    _assert_deploys_exactly(model, _bits(65, [20], 9))


def test_undeployable_models_are_refused_with_the_reason():
    for options in ({"activation": "qnn"}, {"weight_bits": 2, "activation": "lq"}):
        model = build_model(binary_spec(20, 2, [8], input_shape=[20], **options)).eval()
        model(_bits(3, [20], 0))  # they do run
        with pytest.raises(ValueError, match="no circuit form"):
            BINARY.deploy(model)
    no_bipolar = torch.nn.Sequential(BinaryBlock(BinaryLinear(4, 3), FoldableBatchNorm(3), BinaryActivation()),
                                     BinaryClassifier(3, 2)).eval()
    with pytest.raises(ExtractionError, match="must start with Bipolar"):
        to_circuit(no_bipolar)
    padded = torch.nn.Sequential(Bipolar(), BinaryBlock(BinaryConv2d(1, 2, 3, padding=1), FoldableBatchNorm(2),
                                                        BinaryActivation()), torch.nn.Flatten(),
                                 BinaryClassifier(2 * 5 * 5, 2)).eval()
    with pytest.raises(ExtractionError, match="padding"):
        to_circuit(padded, input_shape=(1, 5, 5))


def test_blocks_check_their_parts():
    with pytest.raises(ValueError, match="FoldableBatchNorm"):
        BinaryBlock(BinaryLinear(4, 3), FoldableBatchNorm(2), BinaryActivation())
    with pytest.raises(ValueError, match="only a convolution block may pool"):
        BinaryBlock(BinaryLinear(4, 3), FoldableBatchNorm(3), BinaryActivation(), OrPool2d(2))
    with pytest.raises(ValueError, match="FoldableBatchNorm expects"):
        FoldableBatchNorm(3).eval()(torch.zeros(2, 3, 4))


# ---------------------------------------------------------------- training

def test_lr_schedules():
    assert lr_factor("constant", 50, 100) == 1.0
    assert lr_factor("cosine", 0, 100) == 1.0 and lr_factor("cosine", 100, 100) == 0.0
    assert lr_factor("cosine", 50, 100) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_factor("step", 1, 10)


def test_bnn_trains_on_bits_clips_latent_weights_and_deploys(tmp_path, fake_dataset):
    out = tmp_path / "bnn"
    assert cli_main(["train", *TINY, "-k", "32", "-l", "2", "-lr", "0.05", "-ni", "60", "-ef", "30",
                     "--lr-schedule", "cosine", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["deploys_as_circuit"] and results["model"]["variant"] == "BNN"
    assert results["config"]["lr_schedule"] == "cosine"
    model = load_model(out)
    latent = [m.layer.weight for m in model if isinstance(m, (BinaryBlock, BinaryClassifier))]
    assert all(float(w.detach().abs().max()) <= 1.0 for w in latent)  # clipped after every step (lr 0.05 pushes past 1)
    x = fake_dataset.encode(fake_dataset.x_test, binary=True)
    _assert_deploys_exactly(model, x)
    # The reported deployed accuracy is the circuit's.
    circuit = BINARY.deploy(model)
    counts = group_counts(circuit, x.numpy().astype(np.uint8))
    accuracy = float((counts.argmax(1) == fake_dataset.y_test.numpy()).mean())
    assert results["evaluations"][-1]["test_acc_eval_mode"] == pytest.approx(accuracy)
    assert cli_main(["compile", str(out), "--repeats", "1"]) == 0
    report = json.loads((out / "compiled.json").read_text())
    assert report["bit_exact_with_model"] is True and report["xnor_engine"]["bit_exact_with_model"] is True


@pytest.mark.parametrize("options", [["--activation", "qnn"], ["--weight-bits", "2", "--activation", "lq"],
                                     ["--scaling", "xnor", "--lr-scaling", "binarynet"],
                                     ["--optimizer", "askew_sgd"]])
def test_variants_train_through_the_cli(tmp_path, fake_dataset, options):
    out = tmp_path / "v"
    assert cli_main(["train", *TINY, "-k", "16", "-l", "1", "-lr", "0.01", "-ni", "20", "-ef", "20", *options,
                     "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "finished" and results["evaluations"][-1]["test_acc_eval_mode"] is not None


def test_askew_sgd_anneals_once_per_epoch_after_the_first():
    from diffgates.optim import AskewSGD
    from diffgates.train.config import TrainConfig

    model = build_model(binary_spec(8, 2, [4], input_shape=[8]))
    config = TrainConfig(dataset="x", architecture="binary", num_neurons=4, num_layers=1,
                         model_options={"optimizer": "askew_sgd"})
    opt = BINARY.make_optimizer(model, config)
    assert isinstance(opt, AskewSGD)
    constrained = [g for g in opt.param_groups if g["constrained"]]
    assert {id(p) for g in constrained for p in g["params"]} == {id(m.layer.weight) for m in model
                                                                 if isinstance(m, (BinaryBlock, BinaryClassifier))}
    eps = []
    for step in range(1, 31):
        BINARY.after_step(model, opt, config, step, steps_per_epoch=10)
        eps.append(constrained[0]["eps"])
    # The first epoch (steps 1-10) is plain clipped SGD; each epoch end from then on shrinks eps once.
    assert eps[:9] == [1.0] * 9 and eps[9] == pytest.approx(0.96) and eps[18] == pytest.approx(0.96)
    assert eps[19] == pytest.approx(0.96 ** 2) and eps[29] == pytest.approx(0.96 ** 3)
    with pytest.raises(ValueError, match="askew_sgd constrains binary weights"):
        BINARY.make_optimizer(build_model(binary_spec(8, 2, [4], input_shape=[8], weight_bits=2)), config)


def test_relaxed_evaluation_leaves_batchnorm_statistics_alone():
    """Train-mode accuracy normalizes by batch statistics; it must not move the running ones (or any buffer)."""
    from diffgates.families import accuracy_counts

    spec = binary_spec(in_dim=12, n_classes=3, hidden=[9, 7], input_shape=[12])
    model = _trained(spec)
    before = {name: b.clone() for name, b in model.named_buffers()}
    x = (torch.rand(65, 12) * 255).to(torch.uint8)
    y = torch.randint(0, 3, (65,))
    accuracy_counts(model, x, y, lambda rows, binary: (rows > 127).float(), binary=True, train_mode=True,
                    batch_size=16)
    assert not model.training
    for name, b in model.named_buffers():
        assert torch.equal(b, before[name]), name


def test_recalibrated_statistics_are_the_averaged_batch_statistics_of_the_deployed_weights():
    torch.manual_seed(4)
    first, second = BinaryLinear(12, 9, binarize="stochastic"), BinaryLinear(9, 5)
    bn1, bn2 = FoldableBatchNorm(9), FoldableBatchNorm(5)
    model = torch.nn.Sequential(first, bn1, BinaryActivation(), torch.nn.Dropout(0.5), second, bn2)
    model.train()
    batches = [_bits(33, (12,), 1) * 2 - 1, _bits(32, (12,), 2) * 2 - 1]
    assert recalibrate_batchnorm_(model, batches) == 65
    assert model.training and all(m.training for m in model) and bn1.momentum == 0.1
    # Reference: eval-mode (deterministic) weights, no dropout, each BN normalizing by its batch statistics.
    means, vars_ = [[], []], [[], []]
    for x in batches:
        h = first.eval()(x)
        means[0].append(h.mean(0))
        vars_[0].append(h.var(0, unbiased=True))
        a = torch.where((h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + bn1.eps) * bn1.weight + bn1.bias >= 0,
                        1.0, -1.0)
        h2 = second.eval()(a)
        means[1].append(h2.mean(0))
        vars_[1].append(h2.var(0, unbiased=True))
    for k, bn in enumerate((bn1, bn2)):
        torch.testing.assert_close(bn.running_mean, torch.stack(means[k]).mean(0))
        torch.testing.assert_close(bn.running_var, torch.stack(vars_[k]).mean(0))
    # A batch without a variance is refused and leaves the statistics as they were.
    saved = bn1.running_mean.clone()
    with pytest.raises(ValueError, match="a batch of 1 row has no batch variance"):
        recalibrate_batchnorm_(model, [batches[0], batches[1][:1]])
    assert torch.equal(bn1.running_mean, saved) and bn1.momentum == 0.1
    assert recalibrate_batchnorm_(model, []) == 0 and torch.equal(bn1.running_mean, saved)


def test_training_with_bn_recalibration_saves_recalibrated_statistics_and_trains_the_same(tmp_path, fake_dataset):
    from diffgates.train.trainer import _derived_seed

    args = [*TINY, "-k", "16", "-l", "2", "-lr", "0.02", "-ni", "30", "-ef", "15", "--seed", "5"]
    plain, recal = tmp_path / "plain", tmp_path / "recal"
    assert cli_main(["train", *args, "--out", str(plain)]) == 0
    assert cli_main(["train", *args, "--bn-recalibrate", "50", "--out", str(recal)]) == 0
    runs = [json.loads((d / "results.json").read_text()) for d in (plain, recal)]
    assert [e["train_loss"] for e in runs[0]["evaluations"]] == [e["train_loss"] for e in runs[1]["evaluations"]]
    assert runs[1]["config"]["model_options"]["bn_recalibrate"] == 50
    # The saved model holds the plain run's weights with statistics recomputed on the trainer's 50 rows.
    expected, got = load_model(plain), load_model(recal)
    g = torch.Generator().manual_seed(_derived_seed("diffgates-calibration-rows", 5))
    rows = torch.randperm(len(fake_dataset.y_train), generator=g)[:50]
    recalibrate_batchnorm_(expected, [fake_dataset.encode(fake_dataset.x_train[rows], True)])
    for (name, a), b in zip(expected.state_dict().items(), got.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert not torch.equal(load_model(plain)[2].norm.running_mean, got[2].norm.running_mean)  # [0] Bipolar, [1] Flatten
    for bad in ("-1", "1"):
        assert cli_main(["train", *args, "--bn-recalibrate", bad, "--out", str(tmp_path / "bad")]) != 0

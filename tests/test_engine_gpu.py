"""Tests of bit-packed circuit inference (``diffgates.engines.gpu``) against the numpy reference evaluator.

The lowering (``plan_circuit``: dead gates, level order, liveness slots) is checked in numpy on any
machine. The Triton kernels run on CPU tensors under Triton's interpreter when there is no CUDA
device (``TRITON_INTERPRET=1``, set here before the kernels are first imported; tiny circuits), and on
the GPU otherwise, where the GPU-only tests add the 48K-gate MNIST-sized net. Everything discrete is
compared exactly.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the kernels' first import

from circuit_cases import random_bits, random_circuit, random_model  # noqa: E402

from diffgates import gates  # noqa: E402
from diffgates.circuit import Circuit, evaluate_outputs, group_counts, predict  # noqa: E402
from diffgates.circuit.extract import to_circuit  # noqa: E402
from diffgates.engines import gpu as engine  # noqa: E402
from diffgates.kernels import gpu as gpu_kernels  # noqa: E402

HAVE_KERNELS = gpu_kernels.unavailable_reason() is None  # Triton installed, and CUDA or the interpreter
needs_kernels = pytest.mark.skipif(not HAVE_KERNELS, reason=f"Triton kernels cannot run here: "
                                                            f"{gpu_kernels.unavailable_reason()}")
ON_GPU = HAVE_KERNELS and torch.cuda.is_available() and not gpu_kernels.interpreting()
gpu_only = pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device (the interpreter runs tiny circuits only)")
BATCHES = (1, 31, 33, 63, 65, 157)


def mixed_circuit() -> Circuit:
    """Long and short edges, self pairs, all 16 gate kinds live, outputs on an input, a constant, a repeat."""
    c = random_circuit(9, 48, 3, k=3, seed=7)
    const = c.n_inputs + int(np.flatnonzero(np.isin(c.ops, [gates.FALSE, gates.TRUE]))[0])
    outputs = np.concatenate([c.n_inputs + np.arange(c.n_gates)[::-1], [0, const, c.n_inputs + 20]])
    return Circuit(c.n_inputs, c.ops, c.a, c.b, outputs, num_classes=3)


def test_mixed_circuit_covers_every_gate_kind():
    plan = engine.plan_circuit(mixed_circuit())
    assert sorted(set(plan.normal_forms().tolist())) == sorted(engine.gate_normal_forms().tolist())


def simulate_plan(plan: engine.GpuPlan, x: np.ndarray) -> np.ndarray:
    """Execute a plan in numpy with the kernel's semantics: (N, n_inputs) bits -> (N, n_outputs) bits."""
    slots = np.zeros((plan.n_slots, x.shape[0]), dtype=bool)
    slots[plan.input_slot] = x[:, plan.input_index].T.astype(bool)
    (sa, sb), nf = plan.operand_slots(), plan.normal_forms()
    for lv in range(plan.n_levels):
        g = slice(plan.level_start[lv], plan.level_start[lv + 1])
        a, b = slots[sa[g]], slots[sb[g]]
        c = [((nf[g] >> i) & 1).astype(bool)[:, None] for i in range(4)]
        slots[plan.gate_out[g]] = c[0] ^ (c[1] & a) ^ (c[2] & b) ^ (c[3] & a & b)
    return slots[plan.output_slot].T


def assert_level_hazard_free(plan: engine.GpuPlan) -> None:
    """Within a level, no gate writes a slot that another gate of the level writes or actually reads."""
    (sa, sb), nf = plan.operand_slots(), plan.normal_forms()
    uses_a, uses_b = (nf & 0b1010) != 0, (nf & 0b1100) != 0  # c1 or c3 / c2 or c3
    for lv in range(plan.n_levels):
        g = slice(plan.level_start[lv], plan.level_start[lv + 1])
        written = plan.gate_out[g]
        assert len(np.unique(written)) == len(written), f"level {lv} writes a slot twice"
        read = set(sa[g][uses_a[g]]) | set(sb[g][uses_b[g]])
        assert not read & set(written), f"level {lv} reads slots it also writes: {sorted(read & set(written))}"


# ---- lowering (numpy only) -------------------------------------------------------------------------

def test_normal_forms_reproduce_every_truth_table():
    nf = engine.gate_normal_forms()
    for g in gates.GATES:
        c0, c1, c2, c3 = ((int(nf[g.id]) >> i) & 1 for i in range(4))
        for a in (0, 1):
            for b in (0, 1):
                assert c0 ^ (c1 & a) ^ (c2 & b) ^ (c3 & a & b) == g(a, b), (g.name, a, b)


@pytest.mark.parametrize("seed", range(6))
def test_plan_executes_like_the_reference(seed):
    c = random_circuit(7 + seed, 40 + 30 * seed, 6 * (seed + 1), k=seed % 3 + 1, seed=seed)
    plan = engine.plan_circuit(c)
    x = random_bits(200, c.n_inputs, seed=seed)
    assert np.array_equal(simulate_plan(plan, x), evaluate_outputs(c, x))
    assert_level_hazard_free(plan)


def test_plan_of_a_layered_net_keeps_about_two_layers_live():
    model = random_model(40, [64, 64, 64, 60], k=6, seed=1)
    c = to_circuit(model)
    plan = engine.plan_circuit(c)
    assert plan.n_slots <= 40 + 2 * 64
    x = random_bits(100, 40, seed=3)
    assert np.array_equal(simulate_plan(plan, x), evaluate_outputs(c, x))


def test_plan_drops_dead_gates():
    # Gate 0 (node 2) is read only through the ignored operand of gate 1 (B reads b only).
    c = Circuit(2, ops=[gates.AND, gates.B, gates.XOR], a=[0, 2, 0], b=[1, 1, 1], outputs=[3, 4], num_classes=1)
    plan = engine.plan_circuit(c)
    assert plan.n_live_gates == 2 and plan.n_gates == 3
    x = random_bits(16, 2)
    assert np.array_equal(simulate_plan(plan, x), evaluate_outputs(c, x))


# ---- kernels ---------------------------------------------------------------------------------------

def _device():
    return "cuda" if ON_GPU else "cpu"


@needs_kernels
@pytest.mark.parametrize("word_bits", engine.WORD_BITS)
def test_counts_match_numpy_for_every_batch_size(word_bits):
    c = mixed_circuit()
    eng = engine.compile_gpu(c, word_bits=word_bits, device=_device())
    for n in BATCHES:
        x = random_bits(n, c.n_inputs, seed=n)
        got = eng.group_counts(x)
        assert got.dtype == torch.int32 and got.shape == (n, c.num_classes)
        np.testing.assert_array_equal(got.cpu().numpy(), group_counts(c, x), err_msg=f"N={n}")


@needs_kernels
@pytest.mark.parametrize("word_bits", engine.WORD_BITS)
def test_outputs_match_numpy(word_bits):
    c = mixed_circuit()
    eng = engine.compile_gpu(c, word_bits=word_bits, device=_device())
    for n in (1, 65):
        x = random_bits(n, c.n_inputs, seed=n + 1)
        np.testing.assert_array_equal(eng.evaluate_outputs(x).cpu().numpy(), evaluate_outputs(c, x))


@needs_kernels
def test_layered_model_counts_and_predictions():
    model = random_model(20, [32, 32, 30], k=3, seed=4)
    c = to_circuit(model)
    eng = engine.compile_gpu(c, word_bits=64, device=_device())
    x = random_bits(157, 20, seed=2)
    np.testing.assert_array_equal(eng.group_counts(x).cpu().numpy(), group_counts(c, x))
    np.testing.assert_array_equal(eng.predict(x).cpu().numpy(), predict(c, x))


@needs_kernels
@pytest.mark.parametrize("lane_bits", [4, 8])
def test_many_tiles_per_program(lane_bits):
    # One program walks 10 tiles of one word: its scratch is reused tile after tile.
    c = mixed_circuit()
    cfg = engine.GpuEngineConfig(block_words=1, block_gates=16, block_outputs=4, programs=1,
                                 count_lane_bits=lane_bits)
    eng = engine.compile_gpu(c, word_bits=32, device=_device(), config=cfg)
    x = random_bits(300, c.n_inputs, seed=11)
    np.testing.assert_array_equal(eng.group_counts(x).cpu().numpy(), group_counts(c, x))


@needs_kernels
@pytest.mark.parametrize("word_bits, lane_bits, group", [
    pytest.param(32, 8, 520, marks=gpu_only),  # 260 chunks: too slow for the interpreter
    (64, 4, 40),
])
def test_lane_counters_flush_before_overflow(word_bits, lane_bits, group):
    # Counts far above a lane's capacity (255 / 15): the lanes must be flushed in time.
    c = Circuit(2, ops=[gates.TRUE], a=[0], b=[1], outputs=[2] * (group - 7) + [0] * 7, num_classes=1)
    cfg = engine.GpuEngineConfig(block_words=1, block_outputs=2, count_lane_bits=lane_bits, programs=1)
    eng = engine.compile_gpu(c, word_bits=word_bits, device=_device(), config=cfg)
    x = random_bits(word_bits + 3, 2, seed=4)
    got = eng.group_counts(x).cpu().numpy()
    np.testing.assert_array_equal(got, group_counts(c, x))
    assert got.max() == group


@needs_kernels
def test_circuits_without_gates_or_with_constant_outputs():
    only_inputs = Circuit(3, ops=[], a=[], b=[], outputs=[2, 0, 1, 1], num_classes=2)
    constants = Circuit(2, ops=[gates.TRUE, gates.FALSE], a=[0, 0], b=[1, 1], outputs=[2, 3, 2], num_classes=1)
    for c in (only_inputs, constants):
        eng = engine.compile_gpu(c, word_bits=32, device=_device())
        x = random_bits(33, c.n_inputs, seed=1)
        np.testing.assert_array_equal(eng.group_counts(x).cpu().numpy(), group_counts(c, x))


@needs_kernels
@pytest.mark.parametrize("word_bits", engine.WORD_BITS)
def test_pack_unpack_layout_and_round_trip(word_bits):
    x = torch.from_numpy(random_bits(70, 5, seed=3)).to(_device())
    words = engine.pack_bits(x, word_bits)
    assert words.shape == (5, 3 if word_bits == 32 else 2)
    w = words.cpu().numpy().astype(np.int64)
    for sample, d in [(0, 0), (33, 2), (69, 4), (64, 1)]:
        bit = (w[d, sample // word_bits] >> (sample % word_bits)) & 1
        assert bit == x[sample, d].item()
    valid = 70 - (words.shape[1] - 1) * word_bits  # samples in the last word; the rest must be 0
    assert (w[:, -1] >> valid == 0).all()
    assert torch.equal(engine.unpack_bits(words, 70, word_bits), x.bool())


@needs_kernels
def test_packed_entry_point_and_input_kinds():
    c = mixed_circuit()
    eng = engine.compile_gpu(c, device=_device())
    x = random_bits(40, c.n_inputs, seed=5)
    expected = group_counts(c, x)
    t = torch.from_numpy(x)
    for data in (x, t, t.bool(), t.float(), t.to(torch.int64), x.reshape(40, 3, 3)):
        np.testing.assert_array_equal(eng(data).cpu().numpy(), expected)
    words = eng.pack(x)
    np.testing.assert_array_equal(eng.group_counts_packed(words, 40).cpu().numpy(), expected)


@needs_kernels
@pytest.mark.parametrize("data, message", [
    (np.full((2, 9), 0.5), "got 0.5 at sample 0, input 0"),
    (torch.tensor([[0, 1, 2, 0, 0, 0, 0, 0, 0]]), "got 2 at sample 0, input 2"),
    (np.zeros((2, 8)), "expected input of shape (N >= 1, 9)"),
    (np.zeros(9), "use x[None, :] for one sample"),
])
def test_bad_inputs_name_the_value(data, message):
    eng = engine.compile_gpu(mixed_circuit(), device=_device())
    with pytest.raises(ValueError) as info:
        eng.group_counts(data)
    assert message in str(info.value)


@needs_kernels
def test_bad_arguments_are_rejected():
    c = mixed_circuit()
    with pytest.raises(ValueError, match="word_bits must be 32 or 64, got word_bits=16"):
        engine.compile_gpu(c, word_bits=16, device=_device())
    with pytest.raises(ValueError, match="power of two, got 6"):
        engine.compile_gpu(c, device=_device(), config=engine.GpuEngineConfig(block_gates=6))
    with pytest.raises(ValueError, match="count_lane_bits must be 4 or 8, got 16"):
        engine.compile_gpu(c, device=_device(), config=engine.GpuEngineConfig(count_lane_bits=16))
    eng = engine.compile_gpu(c, word_bits=32, device=_device())
    with pytest.raises(ValueError, match="fewer than n=100"):
        eng.group_counts_packed(eng.pack(random_bits(40, 9)), 100)
    with pytest.raises(TypeError, match="expects a diffgates Circuit"):
        engine.compile_gpu("net.json")


# ---- GPU only --------------------------------------------------------------------------------------

@gpu_only
@pytest.mark.parametrize("word_bits", engine.WORD_BITS)
def test_mnist_sized_net_on_gpu(word_bits):
    # The 48K-gate net of the issue (784 -> 8000 x 6 -> 10 classes), batch not a multiple of any word.
    model = random_model(784, [8000] * 6, k=10, seed=0)
    c = to_circuit(model)
    eng = engine.compile_gpu(c, word_bits=word_bits)
    x = random_bits(4099, 784, seed=1)
    np.testing.assert_array_equal(eng.group_counts(x).cpu().numpy(), group_counts(c, x))


@gpu_only
@pytest.mark.parametrize("seed", range(4))
def test_random_circuits_large_batches_on_gpu(seed):
    c = random_circuit(64, 5000, 1000, k=10, seed=seed)
    eng = engine.compile_gpu(c, word_bits=(32, 64)[seed % 2])
    x = random_bits(100_003, 64, seed=seed)
    np.testing.assert_array_equal(eng.group_counts(x).cpu().numpy(), group_counts(c, x))

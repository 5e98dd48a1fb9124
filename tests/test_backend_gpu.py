"""Tests of bit-packed circuit inference (``diffgates.backends.gpu``) against the numpy reference evaluator.

The lowering (``plan_circuit``: cells to gates, dead gates, ALAP levels, liveness slots) is checked in
numpy on any machine, its slot assignment against a plain sequential allocator written here. The
Triton kernels run on CPU tensors under Triton's interpreter when there is no CUDA device
(``TRITON_INTERPRET=1``, set here before the kernels are first imported; tiny circuits), and on the GPU
otherwise, where the tests marked ``gpu`` add the 48K-gate MNIST-sized net. Everything discrete is
compared exactly.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the kernels' first import

from circuit_cases import all_bits, random_bits, random_circuit, random_model  # noqa: E402

from diffgates import _triton, gates  # noqa: E402
from diffgates.backends import compile_circuit  # noqa: E402
from diffgates.backends.gpu import engine  # noqa: E402
from diffgates.frontend import to_circuit  # noqa: E402
from diffgates.ir import (THRESHOLD, Circuit, Head, evaluate_outputs, group_counts, head_outputs,  # noqa: E402
                          lower_cells, predict)

HAVE_KERNELS = _triton.unavailable_reason() is None  # Triton installed, and CUDA or the interpreter
needs_kernels = pytest.mark.skipif(not HAVE_KERNELS, reason=f"Triton kernels cannot run here: "
                                                            f"{_triton.unavailable_reason()}")
ON_GPU = HAVE_KERNELS and torch.cuda.is_available() and not _triton.interpreting()
# CUDA (conftest's ``gpu`` marker skips without it), and compiled kernels: these sizes are far too big
# for the interpreter, which a CUDA machine may still have been asked for.
compiled = pytest.mark.skipif(torch.cuda.is_available() and _triton.interpreting(),
                              reason="too big for Triton's interpreter (TRITON_INTERPRET is set)")
BATCHES = (1, 31, 33, 63, 65, 157)


def gpu_only(test):
    return pytest.mark.gpu(compiled(test))


def mixed_circuit(head: Head | None = None) -> Circuit:
    """Long and short edges, self pairs, all 16 gate kinds live, outputs on an input, a constant, a repeat."""
    c = random_circuit(9, 48, 3, k=3, seed=7)
    const = c.n_inputs + int(np.flatnonzero(np.isin(c.ops, [gates.FALSE, gates.TRUE]))[0])
    outputs = np.concatenate([c.n_inputs + np.arange(c.n_gates)[::-1], [0, const, c.n_inputs + 20]])
    return Circuit(c.n_inputs, c.ops, c.a, c.b, outputs, head=head or Head.group_sum(3))


def threshold_circuit(head: Head | None = None) -> Circuit:
    """Three threshold cells (two sharing a row, one counting a repeated literal) between gates.

    Node 7 = [x0 + !x2 + x3 + (x0^x1) + !x4 >= 2] and node 8 the same row >= 4 feed later gates;
    node 12 = [node 9 + 2 * !node 10 >= 1] is read by the last gate.
    """
    t = THRESHOLD
    ops = [gates.XOR, t, t, gates.AND, gates.OR, gates.XNOR, t, gates.NAND]
    a = [0, 0, 0, 7, 8, 7, 1, 12]
    b = [1, 2, 4, 5, 9, 6, 1, 11]
    lits = [2 * 0, 2 * 2 + 1, 2 * 3, 2 * 6, 2 * 4 + 1, 2 * 9, 2 * 10 + 1, 2 * 10 + 1]
    return Circuit(6, ops, a, b, outputs=[13, 12, 10, 7, 11, 9], head=head or Head.group_sum(2),
                   popcount_ptr=[0, 5, 8], popcount_lits=lits)


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


# ---- slot assignment: the vectorised plan against a plain sequential allocator ------------------------

def sequential_slots(c: Circuit) -> dict:
    """The plan's slot policy one node at a time (gates-only ``c``), as the reference of ``plan_circuit``.

    Live gates run in ALAP level order (ties by index); a value's slot is free from the level after
    its last reader (outputs: never); each level first frees, in allocation order, then allocates its
    gates in order, each popping the most recently freed slot or taking a new one.
    """
    n_in = c.n_inputs
    live, alap = c.analysis.live, c.analysis.alap
    cells = [i for i in range(c.n_gates) if live[n_in + i]]
    shift = min((int(alap[i]) for i in cells), default=1) - 1
    cells.sort(key=lambda i: (int(alap[i]), i))
    level = {n_in + i: int(alap[i]) - shift for i in cells}
    depth = max(level.values(), default=0)
    last_read = {}
    for i in cells:
        g = gates.GATES[int(c.ops[i])]
        for node, used in ((int(c.a[i]), g.uses_a), (int(c.b[i]), g.uses_b)):
            if used:
                last_read[node] = max(last_read.get(node, 0), level[n_in + i])
    for node in c.outputs.tolist():
        last_read[node] = depth + 1
    free, slot, freed_at, n_slots = [], {}, {}, 0

    def allocate(node):
        nonlocal n_slots
        if free:
            slot[node] = free.pop()
        else:
            slot[node], n_slots = n_slots, n_slots + 1
        freed_at.setdefault(last_read[node] + 1, []).append(node)

    inputs = [v for v in range(n_in) if live[v]]
    for v in inputs:
        allocate(v)
    for lv in range(1, depth + 1):
        for node in freed_at.get(lv, []):
            free.append(slot[node])
        for i in cells:
            if level[n_in + i] == lv:
                allocate(n_in + i)
    return {"n_slots": max(n_slots, 1), "input_index": inputs, "input_slot": [slot[v] for v in inputs],
            "gate_node": [n_in + i for i in cells], "gate_out": [slot[n_in + i] for i in cells],
            "output_slot": [slot[v] for v in c.outputs.tolist()]}


def assert_values_survive(c: Circuit, plan: engine.GpuPlan) -> None:
    """Replay the plan tracking which node each slot holds: every read finds its operand's value.

    A slot rewritten while its value was still needed makes a later read (or an output) find
    another node there; within a level, ``assert_level_hazard_free`` covers reads and writes.
    """
    holder = np.full(plan.n_slots, -1, dtype=np.int64)
    holder[plan.input_slot] = plan.input_index
    (sa, sb), n_in = plan.operand_slots(), c.n_inputs
    for lv in range(plan.n_levels):
        g = np.arange(plan.level_start[lv], plan.level_start[lv + 1])
        cell = plan.gate_node[g] - n_in
        op = c.ops[cell]
        for slots, src, uses in ((sa, c.a, engine._USES_A), (sb, c.b, engine._USES_B)):
            used = uses[op]
            got, want = holder[slots[g][used]], src[cell][used]
            assert np.array_equal(got, want), f"level {lv}: a gate reads node {got[got != want][:3]} " \
                                              f"instead of {want[got != want][:3]}"
        holder[plan.gate_out[g]] = plan.gate_node[g]
    assert np.array_equal(holder[plan.output_slot], c.outputs), "an output's slot was overwritten"


def plan_cases():
    yield "mixed", mixed_circuit()
    yield "thresholds", lower_cells(threshold_circuit())
    yield "layered", to_circuit(random_model(30, [48, 48, 40], k=4, seed=2))
    for seed in range(4):
        yield f"random{seed}", random_circuit(5 + seed, 60 + 40 * seed, 4 * (seed + 1), k=seed % 2 + 1, seed=seed)
    # Dead gates deeper than every output: the ALAP levels start above 1 and are renumbered.
    c = random_circuit(6, 80, 6, k=2, seed=9)
    yield "dead tail", Circuit(c.n_inputs, c.ops, c.a, c.b, c.n_inputs + np.arange(10, 16), num_classes=2)


@pytest.mark.parametrize("name, c", list(plan_cases()), ids=[name for name, _ in plan_cases()])
def test_vectorised_slots_equal_the_sequential_allocator(name, c):
    plan = engine.plan_circuit(c)
    ref = sequential_slots(c)
    assert plan.n_slots == ref["n_slots"]
    for key in ("input_index", "input_slot", "gate_node", "gate_out", "output_slot"):
        assert getattr(plan, key).tolist() == ref[key], key
    assert_values_survive(c, plan)
    assert_level_hazard_free(plan)


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
    assert_values_survive(c, plan)


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


def test_plan_lowers_threshold_cells():
    c = threshold_circuit()
    plan = engine.plan_circuit(c)
    assert plan.n_cells_lowered == 3 and plan.n_gates == lower_cells(c).n_gates
    x = all_bits(6)
    assert np.array_equal(simulate_plan(plan, x), evaluate_outputs(c, x))


def test_plan_rejects_non_circuits():
    with pytest.raises(TypeError, match="expects a diffgates Circuit, got str"):
        engine.plan_circuit("net.json")


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
        got = eng(x)
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
def test_threshold_cells_feeding_gates_match_numpy():
    c = threshold_circuit()
    eng = engine.compile_gpu(c, word_bits=32, device=_device())
    assert eng.circuit is c and not eng.gates_circuit.has_cells
    assert eng.stats()["thresholds_lowered"] == 3
    x = all_bits(6)  # every input: each threshold both decided and undecided
    np.testing.assert_array_equal(eng(x).cpu().numpy(), group_counts(c, x))
    np.testing.assert_array_equal(eng.evaluate_outputs(x).cpu().numpy(), evaluate_outputs(c, x))


@needs_kernels
def test_argmax_and_bits_heads():
    x = random_bits(70, 9, seed=8)
    argmax = mixed_circuit(Head.argmax(3))
    eng = compile_circuit(argmax, backend="gpu", device=_device())
    assert eng.backend == "gpu" and eng.stats()["head"] == "argmax"
    classes = eng(x)
    assert classes.dtype == torch.int64 and classes.shape == (70,)
    np.testing.assert_array_equal(classes.cpu().numpy(), head_outputs(argmax, x))
    np.testing.assert_array_equal(eng.predict(x).cpu().numpy(), predict(argmax, x))
    np.testing.assert_array_equal(eng.counts(x).cpu().numpy(), group_counts(argmax, x))
    np.testing.assert_array_equal(eng.run_packed(eng.pack(x), 70).cpu().numpy(), head_outputs(argmax, x))

    bits = threshold_circuit(Head.bits())
    eng = engine.compile_gpu(bits, word_bits=64, device=_device())
    xb = all_bits(6)
    out = eng(xb)
    assert out.dtype == torch.bool and out.shape == (64, bits.n_outputs)
    np.testing.assert_array_equal(out.cpu().numpy(), head_outputs(bits, xb))
    words = eng.pack(xb[:37])
    np.testing.assert_array_equal(eng.run_packed(words, 37).cpu().numpy(), evaluate_outputs(bits, xb[:37]))
    for method in (eng.counts, eng.predict):
        with pytest.raises(ValueError, match="head is 'bits'"):
            method(xb)


@needs_kernels
def test_layered_model_counts_and_predictions():
    model = random_model(20, [32, 32, 30], k=3, seed=4)
    c = to_circuit(model)
    eng = engine.compile_gpu(c, word_bits=64, device=_device())
    x = random_bits(157, 20, seed=2)
    np.testing.assert_array_equal(eng.counts(x).cpu().numpy(), group_counts(c, x))
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
    np.testing.assert_array_equal(eng(x).cpu().numpy(), group_counts(c, x))


@needs_kernels
@pytest.mark.parametrize("word_bits, lane_bits, group", [
    pytest.param(32, 8, 520, marks=[pytest.mark.gpu, compiled]),  # 260 chunks: too slow for the interpreter
    (64, 4, 40),
])
def test_lane_counters_flush_before_overflow(word_bits, lane_bits, group):
    # Counts far above a lane's capacity (255 / 15): the lanes must be flushed in time.
    c = Circuit(2, ops=[gates.TRUE], a=[0], b=[1], outputs=[2] * (group - 7) + [0] * 7, num_classes=1)
    cfg = engine.GpuEngineConfig(block_words=1, block_outputs=2, count_lane_bits=lane_bits, programs=1)
    eng = engine.compile_gpu(c, word_bits=word_bits, device=_device(), config=cfg)
    x = random_bits(word_bits + 3, 2, seed=4)
    got = eng(x).cpu().numpy()
    np.testing.assert_array_equal(got, group_counts(c, x))
    assert got.max() == group


@needs_kernels
def test_circuits_without_gates_or_with_constant_outputs():
    only_inputs = Circuit(3, ops=[], a=[], b=[], outputs=[2, 0, 1, 1], num_classes=2)
    constants = Circuit(2, ops=[gates.TRUE, gates.FALSE], a=[0, 0], b=[1, 1], outputs=[2, 3, 2], num_classes=1)
    for c in (only_inputs, constants):
        eng = engine.compile_gpu(c, word_bits=32, device=_device())
        x = random_bits(33, c.n_inputs, seed=1)
        np.testing.assert_array_equal(eng(x).cpu().numpy(), group_counts(c, x))


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
    kinds = (x, x.astype(bool), x.astype(np.float16), t, t.bool(), t.float(), t.to(torch.int64), t.half(),
             t.bfloat16(), t.to(torch.uint32), t.to(torch.float8_e4m3fn), x.reshape(40, 3, 3), t.reshape(40, 9, 1))
    for data in kinds:
        np.testing.assert_array_equal(eng(data).cpu().numpy(), expected, err_msg=f"{data.dtype}")
    words = eng.pack(x)
    np.testing.assert_array_equal(eng.run_packed(words, 40).cpu().numpy(), expected)
    np.testing.assert_array_equal(eng.counts_packed(words, 40).cpu().numpy(), expected)
    # More words than the samples need (the first 33 samples of a packed batch of 40).
    np.testing.assert_array_equal(eng.run_packed(words, 33).cpu().numpy(), expected[:33])
    np.testing.assert_array_equal(eng.run_packed(torch.cat([words, words], 1), 40).cpu().numpy(), expected)


@needs_kernels
@pytest.mark.parametrize("data, message", [
    (np.full((2, 9), 0.5), "got 0.5 at sample 0, input 0"),
    (torch.tensor([[0, 1, 2, 0, 0, 0, 0, 0, 0]]), "got 2 at sample 0, input 2"),
    (torch.tensor([[0, 1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, -1, 0]], dtype=torch.bfloat16),
     "got -1.0 at sample 1, input 7 (1 non-binary values in total)"),
    (torch.full((3, 9), 0.5, dtype=torch.float16), "got 0.5 at sample 0, input 0 (27 non-binary"),
    (torch.tensor([[0.0] * 8 + [float("nan")]]), "got nan at sample 0, input 8"),
    (np.zeros((2, 8)), "expected input of shape (N >= 1, 9)"),
    (np.zeros((0, 9)), "expected input of shape (N >= 1, 9)"),
    (torch.zeros((0, 9)), "expected input of shape (N >= 1, 9)"),
    (np.zeros(9), "use x[None, :] for one sample"),
    (torch.zeros(9), "use x[None, :] for one sample"),
    (torch.zeros((2, 9), dtype=torch.complex64), "got dtype torch.complex64"),
    (np.zeros((2, 9), dtype=np.complex64), "got dtype complex64"),
])
def test_bad_inputs_name_the_value(data, message):
    eng = engine.compile_gpu(mixed_circuit(), device=_device())
    with pytest.raises(ValueError) as info:
        eng(data)
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
    words = eng.pack(random_bits(40, 9))
    with pytest.raises(ValueError, match="fewer than n=100"):
        eng.run_packed(words, 100)
    with pytest.raises(ValueError, match="n must be a positive number of samples, got n=0"):
        eng.run_packed(words, 0)
    with pytest.raises(ValueError, match=r"dtype torch.int32 \(word_bits=32, from engine.pack\), got Tensor of "
                                         r"shape \(9, 2\) dtype torch.int64"):
        eng.run_packed(words.to(torch.int64), 40)
    with pytest.raises(ValueError, match=r"expected packed input of shape \(9, >= 2\)"):
        eng.run_packed(words[:5], 40)
    with pytest.raises(ValueError, match="must be a power of two, got 3"):
        eng.config = engine.GpuEngineConfig(block_outputs=3)
    with pytest.raises(TypeError, match="expects a diffgates Circuit"):
        engine.compile_gpu("net.json")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="torch sees no CUDA device here"):
            engine.compile_gpu(c, device="cuda")


# ---- GPU only --------------------------------------------------------------------------------------

@gpu_only
@pytest.mark.parametrize("word_bits", engine.WORD_BITS)
def test_mnist_sized_net_on_gpu(word_bits):
    # The 48K-gate benchmark net (784 -> 8000 x 6 -> 10 classes), batch not a multiple of any word.
    model = random_model(784, [8000] * 6, k=10, seed=0)
    c = to_circuit(model)
    eng = engine.compile_gpu(c, word_bits=word_bits)
    x = random_bits(4099, 784, seed=1)
    np.testing.assert_array_equal(eng(x).cpu().numpy(), group_counts(c, x))


@gpu_only
@pytest.mark.parametrize("seed", range(4))
def test_random_circuits_large_batches_on_gpu(seed):
    c = random_circuit(64, 5000, 1000, k=10, seed=seed)
    eng = engine.compile_gpu(c, word_bits=(32, 64)[seed % 2])
    x = random_bits(100_003, 64, seed=seed)
    np.testing.assert_array_equal(eng(x).cpu().numpy(), group_counts(c, x))


@gpu_only
def test_heads_and_cells_on_gpu():
    x = random_bits(10_007, 6, seed=5)
    for head in (Head.group_sum(2), Head.argmax(2), Head.bits()):
        c = threshold_circuit(head)
        eng = engine.compile_gpu(c)
        np.testing.assert_array_equal(eng(x).cpu().numpy(), head_outputs(c, x), err_msg=head.kind)

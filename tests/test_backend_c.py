"""Tests of the compiled CPU engine (``diffgates.backends.c.engine``) and the naive baseline (``c.naive``).

Every engine result is compared bit for bit (``np.array_equal``) with the numpy reference evaluator
(``diffgates.ir.group_counts``), and for models also with the eval model's output * tau,
over awkward batch sizes (1, 63, 65, 157, 1000: below, at and across word and block boundaries), both
word types this machine runs ('u64' always, 'avx2' when the CPU has it), both layouts ('code' and
'table') and 1 or 2 threads. Circuits are small, so the whole file builds and runs in seconds.

Run: ``PYTHONPATH=src python -m pytest tests/test_backend_c.py -q``
"""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

import diffgates

from circuit_cases import model_counts, random_bits, random_cell_circuit, random_circuit, random_model
from diffgates import gates
from diffgates._native import CompilationError, compiler_unavailable_reason
from diffgates.ir import Circuit, Head, group_counts, head_outputs
from diffgates.frontend import to_circuit
from diffgates.backends.c import engine as engine_c
from diffgates.backends.c.program import INPUT, LOCAL, SLOT, _lifo_slots, count_steps, encode_table, lower
from diffgates.backends.c.naive import compile_naive

pytestmark = pytest.mark.skipif(compiler_unavailable_reason() is not None,
                                reason=f"no C compiler: {compiler_unavailable_reason()}")

ISAS = ["u64"] + (["avx2"] if "avx2" in engine_c.cpu_flags() else [])
LAYOUTS = ["code", "table"]
SIZES = (1, 63, 65, 157, 1000)


def _check(engine, circuit: Circuit, sizes=SIZES, seed: int = 0) -> None:
    """engine(x) == group_counts(circuit, x) for every batch size, as uint8, bool and packed input."""
    for n in sizes:
        x = random_bits(n, circuit.n_inputs, seed=seed + n)
        want = group_counts(circuit, x)
        got = engine(x)
        assert got.dtype == np.int32 and got.shape == (n, circuit.num_classes)
        assert np.array_equal(got, want), f"N={n}: engine differs from the reference"
        assert np.array_equal(engine.run_packed(engine.pack(x), n), want), f"N={n}: packed path differs"


# ---- circuits of every shape ------------------------------------------------------------------

def _hand_circuit() -> Circuit:
    """Outputs that are input bits, constants (also constants only a fold reveals) and repeated nodes."""
    ops = [gates.FALSE, gates.TRUE, gates.AND, gates.XOR, gates.NOT_A, gates.OR]
    a = [0, 0, 1, 2, 4, 7]       # gate 2 = x1 & FALSE (folds to 0), gate 3 = x2 ^ x2 (folds to 0)
    b = [0, 0, 5, 2, 0, 8]       # gate 5 = TRUE | ... (folds to 1)
    n_in = 5
    outputs = [0, n_in + 0, n_in + 1, 4, n_in + 2, n_in + 3, n_in + 4, n_in + 4, n_in + 5, 0, 3, 3]
    return Circuit(n_inputs=n_in, ops=ops, a=a, b=b, outputs=outputs, num_classes=3)


UNIFORM = np.ones(gates.NUM_GATES)  # every gate kind equally likely: little folds away

CIRCUITS = {
    "random": lambda: random_circuit(37, 300, 24, k=4, seed=1),
    "random_uniform": lambda: random_circuit(37, 600, 24, k=4, seed=1, gate_weights=UNIFORM),
    "random_wide_groups": lambda: random_circuit(70, 400, 130, k=2, seed=2, gate_weights=UNIFORM),
    "layered": lambda: to_circuit(random_model(100, [300, 300, 120], k=4, seed=3)),
    "deep_chain": lambda: random_circuit(5, 200, 6, k=3, seed=3),
    "hand_constants": _hand_circuit,
    "no_gates": lambda: Circuit(n_inputs=9, ops=[], a=[], b=[], outputs=[3, 1, 1, 8, 0, 2], num_classes=2),
    "one_output": lambda: random_circuit(3, 10, 1, k=1, seed=4),
    "one_input": lambda: random_circuit(1, 12, 4, k=2, seed=6),  # rows shorter than a word: padded reads
}


@pytest.fixture(scope="module", params=list(CIRCUITS))
def circuit(request) -> Circuit:
    return CIRCUITS[request.param]()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("isa", ISAS)
def test_engine_matches_reference(circuit, isa, layout):
    engine = engine_c.compile_circuit(circuit, isa=isa, layout=layout)
    assert engine.isa == isa and engine.layout == layout
    _check(engine, circuit)
    engine.threads = 2
    _check(engine, circuit, sizes=(1, 65, 1000))


def test_chunked_code_layout_with_tiny_chunks():
    """Chunks of 7 gate steps: values cross C functions through the scratch buffer, locals stay inside."""
    circuit = random_circuit(20, 250, 90, k=3, seed=5, gate_weights=UNIFORM)
    program = lower(circuit, layout="code", chunk_size=7)
    assert len(program.chunk_starts) > 5 and (program.kind == LOCAL).any()
    engine = engine_c.compile_circuit(circuit, isa="u64", layout="code", chunk_size=7)
    _check(engine, circuit, sizes=(63, 157))


# ---- models: one-layer nets, widths not divisible by 64, the eval model as second reference ------

MODELS = {
    "one_layer": dict(in_dim=20, widths=[40], k=4),
    "widths_not_64": dict(in_dim=70, widths=[130, 99], k=3),
    "unique_connections": dict(in_dim=30, widths=[96, 96, 64], k=8, connections="unique"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_models_match_eval_model(name):
    spec = dict(MODELS[name])
    model = random_model(spec.pop("in_dim"), spec.pop("widths"), spec.pop("k"), tau=3.0, seed=7, **spec)
    engine = diffgates.compile(model)  # extracted and simplified
    circuit = to_circuit(model)
    engine_raw = engine_c.compile_circuit(circuit, isa="u64")  # as extracted, no simplification
    for n in (1, 65, 157):
        x = random_bits(n, circuit.n_inputs, seed=n)
        want = model_counts(model, x)
        assert np.array_equal(engine(x), want)
        assert np.array_equal(engine_raw(x), want)
        assert np.array_equal(engine.predict(x), want.argmax(-1))


# ---- inputs -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_engine():
    circuit = random_circuit(12, 60, 6, k=3, seed=8)
    return circuit, engine_c.compile_circuit(circuit, isa="u64")


def test_input_types(small_engine):
    circuit, engine = small_engine
    x = random_bits(100, 12, seed=9)
    want = group_counts(circuit, x)
    for variant in (x.astype(bool), x.astype(np.float32), x.astype(np.int64), torch.from_numpy(x).float(),
                    np.asfortranarray(x), x[::-1].copy()[::-1]):
        assert np.array_equal(engine(variant), want)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_a_large_batch_runs_in_bounded_memory(dtype):
    """uint8 images (the natural type) and floats are checked and run in chunks: no whole bool copy."""
    import tracemalloc

    circuit = random_circuit(784, 200, 10, k=10, seed=3)
    engine = engine_c.compile_circuit(circuit)
    x = np.zeros((100_000, 784), dtype=dtype)  # 78 MB as uint8, 314 MB as float32
    x[::7, ::3] = 1
    tracemalloc.start()
    try:
        counts = engine(x)
        extra = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The counts (4 MB) plus one chunk's temporaries; a whole bool copy alone would be 78 MB.
    assert extra < 40 << 20, f"{extra / 2**20:.0f} MB of temporaries for a {x.nbytes / 2**20:.0f} MB input"
    rows = np.r_[0:300, 99_700:100_000]
    assert np.array_equal(counts[rows], group_counts(circuit, x[rows]))


@pytest.mark.parametrize("bad, message", [
    (np.full((4, 12), 2, dtype=np.uint8), "binary"),
    (np.full((4, 12), 0.5), "binary"),
    (np.zeros((4, 11), dtype=np.uint8), r"\(N >= 1, 12\)"),
    (np.zeros((0, 12), dtype=np.uint8), r"\(N >= 1, 12\)"),
    (np.zeros(12, dtype=np.uint8), "single row"),
    (np.array([["a"] * 12]), "dtype"),
])
def test_bad_inputs_raise(small_engine, bad, message):
    _, engine = small_engine
    with pytest.raises(ValueError, match=message):
        engine(bad)


def test_non_binary_error_names_the_value(small_engine):
    _, engine = small_engine
    x = np.zeros((3, 12), dtype=np.float32)
    x[2, 5] = 0.25
    with pytest.raises(ValueError, match=r"0\.25 at sample 2, input 5"):
        engine.predict(x)


def test_run_packed_checks_its_input(small_engine):
    _, engine = small_engine
    packed = engine.pack(random_bits(70, 12))
    with pytest.raises(ValueError, match="run_packed"):
        engine.run_packed(packed, 200)
    with pytest.raises(ValueError, match="run_packed"):
        engine.run_packed(packed.astype(np.int64), 70)


def test_predict_ties_go_to_lowest_class():
    # Class 0 and 2 both count input 0, class 1 counts its negation: ties between 0 and 2 always.
    circuit = Circuit(n_inputs=2, ops=[gates.NOT_A], a=[0], b=[0], outputs=[0, 2, 0], num_classes=3)
    engine = engine_c.compile_circuit(circuit, isa="u64")
    x = np.array([[0, 0], [1, 0], [1, 1]], dtype=np.uint8)
    assert np.array_equal(engine(x), [[0, 1, 0], [1, 0, 1], [1, 0, 1]])
    assert np.array_equal(engine.predict(x), [1, 0, 0])


# ---- threads, options, errors -------------------------------------------------------------------

def test_threads_are_deterministic(small_engine):
    circuit, engine = small_engine
    x = random_bits(3000, 12, seed=10)
    want = group_counts(circuit, x)
    for threads in (1, 2, 3, 64):
        engine.threads = threads
        assert engine.threads == threads
        assert np.array_equal(engine(x), want)
    engine.threads = 1


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts(small_engine, threads):
    _, engine = small_engine
    with pytest.raises(ValueError, match="threads"):
        engine.threads = threads
    with pytest.raises(ValueError, match="threads"):
        engine_c.compile_circuit(small_engine[0], threads=threads)


@pytest.mark.parametrize("openmp", ["0", "1"])
def test_posix_threads_and_openmp(monkeypatch, openmp):
    monkeypatch.setenv("DIFFGATES_OPENMP", openmp)
    if openmp == "1" and not engine_c._native.compiler_supports("-fopenmp"):
        pytest.skip("the C compiler has no OpenMP")
    circuit = random_circuit(9, 40, 4, k=2, seed=11)
    engine = engine_c.compile_circuit(circuit, threads=2, isa="u64")
    assert engine.openmp == (openmp == "1")
    _check(engine, circuit, sizes=(65, 1000))


def test_options_and_attributes(small_engine):
    circuit, engine = small_engine
    assert engine.isa == "u64" and engine.block == 64 and engine.layout == "code"
    assert "dg_results" in engine.source and engine.build_seconds > 0
    stats = engine.stats()
    assert stats["backend"] == "c" and stats["steps"] == engine.program.n_gates and stats["head"] == "group_sum"
    assert engine_c.compile_circuit(circuit, isa="portable").isa == "u64"
    with pytest.raises(ValueError, match="isa"):
        engine_c.compile_circuit(circuit, isa="sse9")
    with pytest.raises(ValueError, match="layout"):
        engine_c.compile_circuit(circuit, layout="graph")
    with pytest.raises(TypeError, match="compiles a diffgates Circuit"):
        engine_c.compile_circuit("net.json")
    with pytest.raises(TypeError, match="Circuit or a torch model"):
        diffgates.compile("net.json")
    assert engine_c.resolve_isa("auto").name in ("u64", "avx2", "avx512")


def test_auto_layout_picks_table_for_big_programs(monkeypatch):
    circuit = random_circuit(16, 120, 8, k=2, seed=12)
    monkeypatch.setattr(engine_c, "AUTO_TABLE_MIN_STEPS", 1)
    engine = engine_c.compile_circuit(circuit, isa="u64")
    assert engine.layout == "table" and engine.table.size > 0
    _check(engine, circuit, sizes=(63,))


@pytest.mark.skipif("avx512f" in engine_c.cpu_flags(), reason="this CPU has AVX-512")
def test_isa_the_cpu_lacks_is_refused(small_engine):
    with pytest.raises(RuntimeError, match="avx512"):
        engine_c.compile_circuit(small_engine[0], isa="avx512")


def test_compilation_error_carries_the_log(tmp_path, monkeypatch):
    broken = tmp_path / "broken-cc"
    broken.write_text("#!/bin/sh\necho 'fatal: this compiler is broken on purpose' >&2\nexit 3\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("DIFFGATES_CC", str(broken))
    monkeypatch.setenv("DIFFGATES_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CompilationError, match="broken on purpose") as info:
        engine_c.compile_circuit(random_circuit(4, 5, 2, k=1, seed=13), isa="u64")
    assert "exit 3" in str(info.value)


# ---- lowering -----------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
def test_lowering_reads_only_defined_values(layout):
    """Steps read inputs or values of earlier steps; slots never exceed the values they hold."""
    circuit = random_circuit(10, 500, 20, k=4, seed=14, gate_weights=UNIFORM)
    program = lower(circuit, layout=layout)
    defined = set(range(circuit.n_inputs))
    for op, dst, a, b in zip(program.op.tolist(), program.dst.tolist(), program.a.tolist(), program.b.tolist()):
        if op < 0:
            assert all(int(v) in defined for v in program.groups[dst])
            continue
        assert all(v in defined for v in (a, b) if v >= 0)
        defined.add(dst)
    assert program.n_slots <= program.n_gates
    assert (program.kind[: circuit.n_inputs] == INPUT).all()
    assert program.n_gates == count_steps(circuit)
    if layout == "table":
        assert encode_table(program, 8).dtype == np.int32
    else:
        with pytest.raises(ValueError, match="table"):
            encode_table(program, 8)


def test_folding_drops_constants_and_copies():
    circuit = _hand_circuit()
    # gates: FALSE, TRUE (outputs: kept as one word each), x1&0, x2^x2 -> 0, NOT x4 (a step), TRUE|.. -> 1
    assert count_steps(circuit) == 3


def test_bad_lowering_arguments():
    circuit = random_circuit(4, 5, 2, seed=15)
    with pytest.raises(ValueError, match="chunk_size"):
        lower(circuit, chunk_size=0)
    with pytest.raises(ValueError, match="layout"):
        lower(circuit, layout="json")


# ---- the naive baseline ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["random", "hand_constants", "no_gates"])
def test_naive_engine_matches_reference(name):
    circuit = CIRCUITS[name]()
    engine = compile_naive(circuit)
    _check_naive(engine, circuit)


def _check_naive(engine, circuit):
    for n in SIZES:
        x = random_bits(n, circuit.n_inputs, seed=n)
        assert np.array_equal(engine(x), group_counts(circuit, x)), f"naive engine differs at N={n}"


@pytest.mark.parametrize("widths", [[64, 48], [20]])  # [20]: a one-layer net (invalid C in the original)
def test_naive_engine_on_a_model(widths):
    model = random_model(24, widths, k=4, tau=2.0, seed=16)
    engine = compile_naive(to_circuit(model))
    x = random_bits(130, 24, seed=17)
    assert np.array_equal(engine(x), model_counts(model, x))
    with pytest.raises(TypeError, match="Circuit"):
        compile_naive(model)


def test_cache_dir_is_respected(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFGATES_CACHE", str(tmp_path))
    engine = engine_c.compile_circuit(random_circuit(6, 8, 2, seed=18), isa="u64")
    assert str(engine.library_path).startswith(str(tmp_path)) and os.path.exists(engine.library_path)


# ---- threshold cells, heads, the slot allocator ---------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("isa", ISAS)
def test_threshold_cells_and_heads_match_the_reference(isa, layout):
    for seed in range(3):
        circuit = random_cell_circuit(11, 157, 12, k=3, seed=seed, cells=0.3)
        for head in (Head.group_sum(3, 2.0), Head.argmax(3), Head.bits()):
            c = circuit.replace(head=head)
            engine = engine_c.compile_circuit(c, isa=isa, layout=layout, threads=2)
            for n in (1, 63, 65, 157):
                x = random_bits(n, 11, seed=seed + n)
                want = head_outputs(c, x)
                got = engine(x)
                assert got.dtype == want.dtype and np.array_equal(got, want), (seed, head, n)
                assert np.array_equal(engine.run_packed(engine.pack(x), n), want)
            if head.grouped:
                assert np.array_equal(engine.predict(x), group_counts(c, x).argmax(-1))
            else:
                with pytest.raises(ValueError, match="'bits'"):
                    engine.counts(x)


def _lifo_reference(alloc_step, free_step, free_rank, freed_alloc):
    """The allocator as a plain loop over time: frees of a step (in rank order) push, the step's
    allocation pops the most recently freed slot or makes a new one."""
    frees_at = {}
    for f in sorted(range(len(free_step)), key=lambda f: (free_step[f], free_rank[f])):
        frees_at.setdefault(int(free_step[f]), []).append(int(freed_alloc[f]))
    slot, stack, n = {}, [], 0
    events = sorted(set(frees_at) | set(int(s) for s in alloc_step))
    alloc_of_step = {int(s): j for j, s in enumerate(alloc_step)}
    for t in events:
        for j in frees_at.get(t, []):
            stack.append(slot[j])
        if t in alloc_of_step:
            j = alloc_of_step[t]
            if stack:
                slot[j] = stack.pop()
            else:
                slot[j] = n
                n += 1
    return [slot[j] for j in range(len(alloc_step))], n


@pytest.mark.parametrize("seed", range(20))
def test_lifo_slot_allocation_equals_a_plain_loop(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    alloc_step = np.sort(rng.choice(3 * n, size=n, replace=False))
    # each allocation is freed at a later step (or never), with a rank among that step's frees
    lives = rng.integers(1, 40, size=n)
    freed = np.flatnonzero(rng.random(n) < 0.9)
    free_step = alloc_step[freed] + lives[freed]
    free_rank = rng.permutation(freed.size)
    from diffgates.backends.c.program import _RANKS
    got, count = _lifo_slots(alloc_step, free_step * _RANKS + free_rank, freed)
    want, want_count = _lifo_reference(alloc_step, free_step, free_rank, freed)
    assert got.tolist() == want and count == want_count


def test_program_slots_never_hold_two_live_values():
    """Replaying the program: every read finds the value its step expects in the word it reads."""
    circuit = random_cell_circuit(10, 400, 20, k=4, seed=21, cells=0.2)
    for layout in LAYOUTS:
        program = lower(circuit, layout=layout)
        holder = {w: w for w in range(circuit.n_inputs)}  # word -> the value it holds now
        for op, dst, a, b in zip(program.op.tolist(), program.dst.tolist(), program.a.tolist(), program.b.tolist()):
            reads = (program.groups[dst].tolist() if op == -1 else program.row(a).tolist() if op == -2
                     else [v for v in (a, b) if v >= 0])
            for v in reads:
                if program.kind[v] != LOCAL:
                    assert holder.get(int(program.word[v])) == v
            if op != -1 and program.kind[dst] == SLOT:
                holder[int(program.word[dst])] = dst

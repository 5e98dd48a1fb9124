"""Tests of the Triton LogicLayer kernels (``diffgates.kernels.gpu``) against the reference.

Without CUDA the kernels run on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``, set
here before the kernels are first imported), at small awkward sizes: the ops' CPU implementation runs
Triton when called with ``interpret=True``, which ``gpu.logic_layer`` and
``kernels.logic_layer(implementation='gpu')`` pass for CPU tensors. With CUDA they run on the GPU, and
the GPU-only tests (``@pytest.mark.gpu``) add full-size layers, half precision and the ``LogicLayer``
dispatch. Skipped when Triton is not installed.

Run: python -m pytest tests/test_kernels_gpu.py -q

Tolerances: float32 atol 1e-5 / rtol 1e-4 (a few rounding steps on values of order 1 and sums over a
handful of consumers), float64 atol 1e-12 / rtol 1e-10; eval mode on {0,1} inputs is compared exactly.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the kernels' first import
pytest.importorskip("triton")

from kernel_checks import (COEFF_INDEX_KINDS, check_against_reference,  # noqa: E402
                           check_coefficients_against_reference, make_coeff_index, make_inputs, reference_fn)

from diffgates import _triton, kernels  # noqa: E402
from diffgates.kernels import gpu, ops, reference  # noqa: E402

if gpu.unavailable_reason() is not None:
    pytest.skip(f"Triton kernels cannot run here: {gpu.unavailable_reason()}", allow_module_level=True)

ON_GPU = torch.cuda.is_available() and not gpu.interpreting()
DEVICE = "cuda" if ON_GPU else "cpu"


def gpu_only(test):
    """CUDA-only (``gpu`` marker: conftest skips it without CUDA), and not under the interpreter."""
    interpreted = pytest.mark.skipif(torch.cuda.is_available() and gpu.interpreting(),
                                     reason="TRITON_INTERPRET=1 runs small sizes only")
    return pytest.mark.gpu(interpreted(test))

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-4), torch.float64: dict(atol=1e-12, rtol=1e-10)}
SIZES = [(1, 63, 65), (65, 157, 63), (157, 65, 157)]  # (N, in_dim, out_dim), awkward on purpose


def fused(x, weights, connections, training, coeff_index=None):
    """The GPU path as the dispatcher runs it: fused coefficients, then the fused layer."""
    return gpu.logic_layer(x, gpu.gate_coefficients(weights, training), connections, coeff_index)


def dispatched(x, weights, connections, training, coeff_index=None):
    """The public entry point, asked for the Triton kernels (the interpreter on CPU tensors)."""
    return kernels.logic_layer(x, weights, connections, training, "gpu", coeff_index=coeff_index)


@pytest.fixture(params=["csr", "atomic"])
def backward_mode(request):
    before = gpu.backward_mode()
    gpu.set_backward_mode(request.param)
    yield request.param
    gpu.set_backward_mode(before)


@pytest.mark.parametrize("size", SIZES)
def test_matches_reference_float32(size, backward_mode):
    check_against_reference(fused, reference_fn, *size, dtype=torch.float32, device=DEVICE, **TOL[torch.float32])


@pytest.mark.parametrize("size", [SIZES[0], SIZES[2]])
def test_matches_reference_float64(size):
    check_against_reference(fused, reference_fn, *size, dtype=torch.float64, device=DEVICE, **TOL[torch.float64])


def test_unique_connections():
    check_against_reference(fused, reference_fn, 63, 65, 157, dtype=torch.float64, connections="unique",
                            device=DEVICE, **TOL[torch.float64])


def test_self_pairs_and_heavily_shared_inputs(backward_mode):
    # 3 inputs feed 65 neurons: every input has ~43 consumers; neurons 0..9 read one input twice.
    conn = torch.randint(0, 3, (2, 65), generator=torch.Generator().manual_seed(3))
    conn[1, :10] = conn[0, :10]
    check_against_reference(fused, reference_fn, 33, 3, 65, dtype=torch.float64, connections=conn,
                            device=DEVICE, **TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eval_mode_is_exact_on_bits(dtype):
    check_against_reference(fused, reference_fn, 65, 63, 157, dtype=dtype, training=False, inputs="bits",
                            exact=True, device=DEVICE, **TOL[dtype])


def test_csr_backward_is_deterministic():
    gpu.set_backward_mode("csr")
    x, w, conn = make_inputs(157, 65, 157, dtype=torch.float32, device=DEVICE, seed=5)
    grads = []
    for _ in range(2):
        xi = x.clone().requires_grad_()
        y = gpu.logic_layer(xi, reference.gate_coefficients(w, True), conn)
        y.backward(torch.ones_like(y))
        grads.append(xi.grad)
    assert torch.equal(grads[0], grads[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", COEFF_INDEX_KINDS)
@pytest.mark.parametrize("size", [(1, 63, 157), (65, 1, 63), (63, 157, 65), (157, 65, 1)],
                         ids=lambda s: "x".join(map(str, s)))
def test_coeff_index_coefficient_form_matches_reference(size, kind, dtype, backward_mode):
    # Forward, input gradient and per-row sums of the coefficient gradient (segment sum or atomics).
    check_coefficients_against_reference(gpu.logic_layer, *size, coeff_index=kind, dtype=dtype, device=DEVICE,
                                         **TOL[dtype])


@pytest.mark.parametrize("kind", ["random", "conv"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_coeff_index_matches_reference_mixture(kind, training):
    check_against_reference(fused, reference_fn, 65, 63, 157, dtype=torch.float64, training=training,
                            coeff_index=kind, device=DEVICE, **TOL[torch.float64])


@pytest.mark.parametrize("kind", ["random", "one"])
def test_coeff_index_through_the_public_api(kind, backward_mode):
    check_against_reference(dispatched, reference_fn, 63, 65, 157, dtype=torch.float32, coeff_index=kind,
                            device=DEVICE, **TOL[torch.float32])


def test_public_api_runs_triton_only_when_asked():
    x, w, conn = make_inputs(5, 7, 9, dtype=torch.float32, device=DEVICE)
    y = dispatched(x, w, conn, True)
    assert y.is_contiguous()  # Triton's layout (the C kernel returns feature-major views)
    torch.testing.assert_close(y, reference.logic_layer_reference(x, w, conn, True), **TOL[torch.float32])
    if not ON_GPU:
        assert kernels.resolve(None, x.device, x.dtype) == "cpu"  # unasked, CPU tensors get the C kernel


def test_coeff_index_csr_backward_is_deterministic():
    gpu.set_backward_mode("csr")
    index, rows = make_coeff_index(157, "one")
    x, w, conn = make_inputs(157, 65, 157, dtype=torch.float32, device=DEVICE, seed=5, rows=rows)
    grads = []
    for _ in range(2):
        xi, ci = x.clone().requires_grad_(), reference.gate_coefficients(w, True).detach().requires_grad_()
        gpu.logic_layer(xi, ci, conn, index).backward(torch.ones(157, 157, device=DEVICE))
        grads.append((xi.grad, ci.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


def test_coeff_index_csr_lists_each_rows_neurons_in_order():
    c = gpu.coeff_index_csr(torch.tensor([2, 0, 2, 2, 0], device=DEVICE), 4)
    offsets, entries = c.row_offsets.tolist(), c.row_entries.tolist()
    assert {r: entries[offsets[r]:offsets[r + 1]] for r in range(4)} == {0: [1, 4], 1: [], 2: [0, 2, 3], 3: []}
    assert c.index.dtype == torch.int32


def test_batch_split_coefficient_reduction():
    # The coefficient gradient sums over the batch in slices; any slicing gives the same numbers.
    from diffgates.kernels import gpu_triton
    x, w, conn = make_inputs(157, 63, 65, dtype=torch.float64, device=DEVICE, seed=2)
    wiring = gpu.wiring(conn, x.shape[1])
    coeffs = reference.gate_coefficients(w, True)
    gy = torch.randn(157, 65, dtype=torch.float64, generator=torch.Generator().manual_seed(9)).to(DEVICE)
    results = [gpu_triton.backward(gy, x, coeffs, wiring.conn, wiring.fan_offsets, wiring.fan_entries,
                                   deterministic=True, need_x=False, need_coeffs=True, splits=s)[1] for s in (1, 3)]
    a, b, ab = x[:, conn[0]], x[:, conn[1]], x[:, conn[0]] * x[:, conn[1]]
    expected = torch.stack([gy.sum(0), (gy * a).sum(0), (gy * b).sum(0), (gy * ab).sum(0)], dim=1)
    for r in results:
        torch.testing.assert_close(r, expected, **TOL[torch.float64])
    # Shared rows: the segment sum adds the slices as well.
    index, rows = make_coeff_index(65, "random")
    c = gpu.coeff_index_csr(index.to(DEVICE), rows)
    shared = coeffs[:rows]
    for s in (1, 3):
        got = gpu_triton.backward(gy, x, shared, wiring.conn, wiring.fan_offsets, wiring.fan_entries,
                                  deterministic=True, need_x=False, need_coeffs=True, splits=s, coeff_index=c.index,
                                  row_offsets=c.row_offsets, row_entries=c.row_entries)[1]
        torch.testing.assert_close(got, torch.zeros_like(shared).index_add_(0, index.to(DEVICE), expected),
                                   **TOL[torch.float64])


@pytest.mark.parametrize("tiles", [16, 32])
def test_other_launch_parameters_give_the_same_numbers(tiles, backward_mode):
    # bench_gpu.py --sweep-training launches the kernels with other tiles (set_tuning): tile edges
    # that cut neurons, rows and inputs mid-block must not change the results.
    from dataclasses import replace

    from diffgates.kernels import gpu_triton
    t = replace(gpu_triton.tuning(), fwd_block_n=tiles, fwd_block_j=tiles, grad_block_n=tiles, grad_block_j=tiles,
                target_programs=64, csr_block_n=tiles, csr_block_i=tiles, coeff_block_j=tiles, seg_block_k=tiles)
    gpu_triton.set_tuning(t)
    try:
        assert gpu_triton.tuning() == t
        check_against_reference(fused, reference_fn, 157, 65, 157, dtype=torch.float32, device=DEVICE,
                                **TOL[torch.float32])
        check_coefficients_against_reference(gpu.logic_layer, 157, 65, 157, coeff_index="random",
                                             dtype=torch.float32, device=DEVICE, **TOL[torch.float32])
    finally:
        gpu_triton.set_tuning(None)
    assert gpu_triton.tuning() != t


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_gate_coefficients(dtype):
    _, w, _ = make_inputs(1, 2, 157, dtype=dtype, device=DEVICE, seed=4)
    w1, w2 = w.clone().requires_grad_(), w.clone().requires_grad_()
    c1, c2 = gpu.gate_coefficients(w1, True), reference.gate_coefficients(w2, True)
    torch.testing.assert_close(c1, c2, **TOL[dtype])
    g = torch.randn(157, 4, dtype=dtype, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    c1.backward(g)
    c2.backward(g)
    torch.testing.assert_close(w1.grad, w2.grad, **TOL[dtype])
    assert torch.equal(gpu.gate_coefficients(w, False), reference.gate_coefficients(w, False))


def test_only_requested_gradients_are_computed():
    x, w, conn = make_inputs(5, 7, 9, dtype=torch.float32, device=DEVICE)
    coeffs = reference.gate_coefficients(w, True).requires_grad_()
    y = gpu.logic_layer(x, coeffs, conn)  # x needs no gradient
    (gc,) = torch.autograd.grad(y.sum(), coeffs)
    assert gc.shape == (9, 4)
    xg = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(gpu.logic_layer(xg, coeffs.detach(), conn).sum(), xg)
    assert gx.shape == x.shape


def test_empty_batch():
    x, w, conn = make_inputs(1, 7, 9, dtype=torch.float32, device=DEVICE)
    x = x[:0].clone().requires_grad_()
    coeffs = reference.gate_coefficients(w, True).requires_grad_()
    y = gpu.logic_layer(x, coeffs, conn)
    assert y.shape == (0, 9)
    y.sum().backward()
    assert x.grad.shape == (0, 7) and torch.equal(coeffs.grad, torch.zeros_like(coeffs))


def test_fanout_index_lists_every_consumer_in_order():
    conn = torch.tensor([[2, 0, 2, 1], [2, 3, 0, 2]])
    offsets, entries = gpu.fanout_index(conn, 5)
    out = conn.shape[1]
    got = {i: entries[offsets[i]:offsets[i + 1]].tolist() for i in range(5)}
    # entry = slot * out + neuron; input 2 is a of neurons 0 and 2, b of neurons 0 and 3.
    assert got == {0: [1, out + 2], 1: [3], 2: [0, 2, out + 0, out + 3], 3: [out + 1], 4: []}


def test_wiring_is_cached_until_connections_change():
    conn = torch.tensor([[0, 1], [1, 0]], device=DEVICE)
    w1 = gpu.wiring(conn, 2)
    assert gpu.wiring(conn, 2) is w1
    conn[0, 0] = 1  # in place: bumps the version counter
    w2 = gpu.wiring(conn, 2)
    assert w2 is not w1 and w2.conn[0, 0].item() == 1


@pytest.mark.parametrize("case, message", [
    ("int_x", "supports"),
    ("coeff_shape", "coeffs must have shape"),
    ("coeff_dtype", "coeffs.dtype"),
    ("conn_shape", "connections must have shape"),
    ("conn_range", "connections[1, 2] = 7 is outside [0, 4]"),
    ("negative", "connections[0, 0] = -1 is outside"),
    ("index_range", "coeff_index[3] = 2 is outside [0, 1] for coeffs with 2 rows"),
    ("index_negative", "coeff_index[0] = -1 is outside [0, 1]"),
    ("index_shape", "coeff_index must have shape (out_dim,) = (4,)"),
    ("index_dtype", "coeff_index must be int64 or int32, got torch.float32"),
])
def test_bad_inputs_name_the_value(case, message):
    x = torch.rand(3, 5, device=DEVICE)
    coeffs = torch.rand(4, 4, device=DEVICE)
    conn = torch.zeros(2, 4, dtype=torch.int64, device=DEVICE)
    if case == "int_x":
        x = x.to(torch.int32)
    elif case == "coeff_shape":
        coeffs = coeffs[:3]
    elif case == "coeff_dtype":
        coeffs = coeffs.double()
    elif case == "conn_shape":
        conn = conn[:1]
    elif case == "conn_range":
        conn[1, 2] = 7
    elif case == "negative":
        conn[0, 0] = -1
    index = None
    if case.startswith("index"):
        coeffs = coeffs[:2]
        index = torch.tensor([0, 1, 1, 2 if case == "index_range" else 0], device=DEVICE)
        if case == "index_negative":
            index[0] = -1
        elif case == "index_shape":
            index = index[:3]
        elif case == "index_dtype":
            index = index.float()
    with pytest.raises(ValueError) as info:
        gpu.logic_layer(x, coeffs, conn, index)
    assert message in str(info.value)


def test_backward_mode_is_validated():
    with pytest.raises(ValueError, match="'fast'"):
        gpu.set_backward_mode("fast")


def test_unavailable_reasons(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "TRITON_INTERPRET=1" in gpu.unavailable_reason()
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert gpu.unavailable_reason() is None

    real_import = _triton.importlib.import_module

    def no_triton(name, *args):
        if name == "triton":
            raise ImportError("No module named 'triton'")
        return real_import(name, *args)

    monkeypatch.setattr(_triton.importlib, "import_module", no_triton)
    assert "pip install triton" in gpu.unavailable_reason()
    assert "pip install triton" in kernels.unavailable_reason("gpu")


def test_custom_ops_pass_opcheck():
    interpret = not ON_GPU  # CPU tensors: the ops' Triton path under the interpreter
    x, w, conn = make_inputs(3, 5, 4, dtype=torch.float64, device=DEVICE)
    wiring = gpu.wiring(conn, 5)
    coeffs = reference.gate_coefficients(w, True)
    torch.library.opcheck(ops.logic_layer,
                          (x.requires_grad_(), coeffs.requires_grad_(), wiring.conn, None, wiring.fan_offsets,
                           wiring.fan_entries, None, None, True, interpret))
    # The aot_dispatch checks (slow under the interpreter) are enough once, on the main op.
    quick = ("test_schema", "test_autograd_registration", "test_faketensor")
    index = gpu.coeff_index_csr(torch.tensor([1, 0, 1, 1], device=DEVICE), 3)  # row 2 unused
    for deterministic in (True, False):
        torch.library.opcheck(ops.logic_layer,
                              (x, coeffs[:3].detach().requires_grad_(), wiring.conn, index.index, wiring.fan_offsets,
                               wiring.fan_entries, index.row_offsets, index.row_entries, deterministic, interpret),
                              test_utils=quick)
    torch.library.opcheck(ops.gate_coefficients, (w.clone().requires_grad_(), interpret), test_utils=quick)
    torch.library.opcheck(ops.gate_coefficients_backward, (w, torch.randn_like(coeffs), interpret),
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.skipif(ON_GPU, reason="on a GPU the other tests compile the kernels for real")
def test_kernels_compile_for_a_gpu_without_one():
    # The interpreter does not run Triton's compiler: compile for sm_90 with the bundled ptxas instead.
    package = os.path.dirname(os.path.dirname(os.path.abspath(gpu.__file__)))  # .../diffgates
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(package), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "diffgates.tools.gpu_aot", "--quick"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("ok", "SPILL", "FAIL"))]
    assert len(lines) == 8 and "8/8 kernels compiled for sm_90" in proc.stdout
    # Resource usage comes from each cubin (cuobjdump ships with Triton's NVIDIA backend). The main
    # specialisations (float32, 32-bit words) must keep their tiles in registers: no local memory.
    from diffgates.tools.gpu_aot import cuobjdump_path
    if cuobjdump_path() is not None:
        assert all("registers x" in line for line in lines), lines
        assert "; 0 use local memory" in proc.stdout, [line for line in lines if line.startswith("SPILL")]


def test_register_limited_occupancy():
    from diffgates.tools.gpu_aot import Usage
    assert Usage(64, 0, 0, 0).warps_per_sm(4) == 32  # 64 regs x 32 lanes x 4 warps = 8K: 8 blocks
    assert Usage(208, 0, 0, 0).warps_per_sm(4) == 8  # 6656 per warp: 9 warps fit, so 2 blocks of 4
    assert Usage(32, 0, 0, 0).warps_per_sm(8) == 64  # capped by the SM's 64 warp slots
    assert Usage(32, 0, 0, 0).warps_per_sm(8, max_warps=48) == 48  # sm_86/sm_89 have 48 slots
    assert Usage(33, 0, 0, 0).warps_per_sm(8) == 48  # 33 regs round up to 1280 per warp: 51 warps -> 6 blocks


# ---- GPU only --------------------------------------------------------------------------------------

@gpu_only
@pytest.mark.parametrize("size", [(100, 784, 8000), (1000, 8000, 8000), (3, 64000, 64000)])
def test_full_size_layers(size, backward_mode):
    check_against_reference(fused, reference_fn, *size, dtype=torch.float32, device="cuda", atol=2e-5, rtol=1e-4)


@gpu_only
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_close_to_float32(dtype):
    x, w, conn = make_inputs(157, 784, 1000, dtype=torch.float32, device="cuda")
    ref = reference.logic_layer_reference(x, w, conn, True)
    got = fused(x.to(dtype), w.to(dtype), conn, True)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), ref, atol=2e-2, rtol=2e-2)
    # Shared rows: the half-precision coefficient gradient is summed in float32, then rounded once.
    index, rows = make_coeff_index(1000, "conv", device="cuda")
    coeffs = reference.gate_coefficients(w[:rows], True).detach()
    c32, c16 = coeffs.clone().requires_grad_(), coeffs.to(dtype).requires_grad_()
    reference.logic_layer_coefficients_reference(x, c32, conn, index).sum().backward()
    y16 = gpu.logic_layer(x.to(dtype), c16, conn, index)
    torch.testing.assert_close(y16.float(), reference.logic_layer_coefficients_reference(x, coeffs, conn, index),
                               atol=2e-2, rtol=2e-2)
    y16.float().sum().backward()
    torch.testing.assert_close(c16.grad.float(), c32.grad, atol=0, rtol=1e-2)


@gpu_only
@pytest.mark.parametrize("kind", ["conv", "random"])
def test_coeff_index_full_size(kind, backward_mode):
    # A convolution-sized layer: 64000 positions x neurons sharing a handful of gates, and random sharing.
    check_against_reference(fused, reference_fn, 100, 8000, 64000, dtype=torch.float32, device="cuda",
                            coeff_index=kind, atol=2e-5, rtol=1e-4)
    check_coefficients_against_reference(gpu.logic_layer, 100, 8000, 64000, coeff_index=kind, dtype=torch.float32,
                                         device="cuda", atol=2e-5, rtol=1e-4)


@gpu_only
def test_logic_layer_dispatches_to_gpu_and_agrees():
    from diffgates.nn import LogicLayer
    torch.manual_seed(0)
    layer = LogicLayer(784, 8000, device="cuda")
    assert kernels.resolve(None, torch.device("cuda")) == "gpu"
    x = torch.rand(100, 784, device="cuda")
    for training in (True, False):
        layer.train(training)
        got = layer(x)
        ref = reference.logic_layer_reference(x, layer.weights, layer.connections, training)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


class _FusedLayer(torch.nn.Module):
    """A LogicLayer run through this module's kernels only (independent of the dispatcher)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return gpu.logic_layer(x, gpu.gate_coefficients(self.layer.weights, self.training), self.layer.connections)


@gpu_only
def test_training_step_is_capturable_in_a_cuda_graph():
    from diffgates.nn import GroupSum, LogicLayer
    torch.manual_seed(0)
    model = torch.nn.Sequential(_FusedLayer(LogicLayer(784, 1000, device="cuda")),
                                _FusedLayer(LogicLayer(1000, 1000, device="cuda")), GroupSum(10, tau=10))
    opt = torch.optim.Adam(model.parameters(), lr=0.01, capturable=True)
    x = torch.rand(100, 784, device="cuda")
    y = torch.randint(0, 10, (100,), device="cuda")

    def step():
        opt.zero_grad(set_to_none=False)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up: builds the fan-out index and compiles the kernels
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = step()
    graph.replay()
    torch.cuda.synchronize()
    first = float(loss)
    for _ in range(30):
        graph.replay()
    torch.cuda.synchronize()
    assert float(loss) < first  # the replayed steps keep training the same parameters

"""The GPU backend: bit-packed inference of a Circuit in one persistent Triton kernel.

* ``engine``: ``compile_gpu(circuit, word_bits=32, device=None, config=None) -> GpuCircuit``, the
  lowering ``plan_circuit`` (dead gates, ALAP levels, liveness slots), ``pack_bits`` / ``unpack_bits``
  and the launch parameters ``GpuEngineConfig``;
* ``kernels``: the Triton kernels (packing, unpacking, the circuit), loaded through
  ``diffgates._triton`` so that CPU tensors run them under ``TRITON_INTERPRET=1``.

The kernel evaluates two-input gates only: threshold cells are lowered with
``diffgates.ir.lower_cells`` first. Runs on CUDA devices, or on the CPU under Triton's interpreter
(slow; for tests). Names load on first use, so importing this package imports neither torch nor
Triton. Example::

    from diffgates.backends.gpu import compile_gpu
    engine = compile_gpu(circuit)       # or diffgates.backends.compile_circuit(circuit, backend="gpu")
    counts = engine(x_bits)             # (N, num_classes) int32 on the device for a 'group_sum' head
"""
from __future__ import annotations

from ..._lazy import lazy_attributes

_ENGINE = "diffgates.backends.gpu.engine"
_LAZY = {name: _ENGINE for name in ("compile_gpu", "GpuCircuit", "GpuPlan", "GpuEngineConfig", "INTERPRETER_CONFIG",
                                    "plan_circuit", "pack_bits", "unpack_bits", "gate_normal_forms", "WORD_BITS")}

__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

"""The C backend: the compiled CPU engine and the standalone C99 export, from one lowering.

* ``program``: a Circuit lowered to word steps (cleanup, schedule, slot allocation, step table);
* ``source``: C text of a program for a word type (portable uint64, AVX2, AVX-512);
* ``engine``: ``compile_circuit(circuit) -> CompiledCircuit`` (built with the system compiler, cached);
* ``export``: ``export_c(circuit, outdir)``: ``NAME.c``/``NAME.h``, an example program, a Makefile;
* ``naive``: the one-C-statement-per-gate baseline the engine is measured against.

Modules load on first use, so importing this package never needs a C compiler.
"""
from __future__ import annotations

from ..._lazy import lazy_attributes

_LAZY = {"compile_circuit": "diffgates.backends.c.engine", "CompiledCircuit": "diffgates.backends.c.engine",
         "export_c": "diffgates.backends.c.export", "compile_naive": "diffgates.backends.c.naive"}

__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

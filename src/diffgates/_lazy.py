"""Package attributes that import their module on first use: ``import diffgates`` stays light.

A package lists its names once, ``name -> "module"`` or ``name -> ("module", "attribute")`` (a
module given alone is the attribute itself), and installs ``__getattr__`` / ``__dir__`` with::

    __getattr__, __dir__ = lazy_attributes(__name__, {"compile_circuit": "diffgates.backends.c.engine"})

so ``from diffgates.backends.c import compile_circuit`` loads the engine only then, and a package
never needs a C compiler, torch or Triton to be imported.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_attributes(package: str, table: Mapping[str, str | tuple[str, str | None]]
                    ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` that resolve the names of ``table`` on first use."""
    def resolve(name: str):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        entry = table[name]
        module, attr = (entry, name) if isinstance(entry, str) else entry
        loaded = importlib.import_module(module)
        value = loaded if attr is None else getattr(loaded, attr)
        setattr(sys.modules[package], name, value)  # why: later lookups skip __getattr__
        return value

    def listing() -> list[str]:
        return sorted({*vars(sys.modules[package]), *table})

    return resolve, listing

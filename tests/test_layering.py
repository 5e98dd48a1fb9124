"""Imports point one way: every diffgates module may import only from layers below its own (or its own
package). The test reads every module's source (imports inside functions included, and module paths
given as strings to importlib or to the registries), so a late, lazy import that runs up the layers
fails here as well.

The layers, bottom up (the README's architecture section shows the same picture):

0. utilities: ``gates``, ``_atomic``, ``_native``, ``_malloc``, ``_triton``, ``_lazy``
1. ``ir``: the Circuit IR (numpy only)
2. ``backends`` (engines and exporters of the IR) and ``kernels`` (training ops), side by side
3. ``nn``: the torch modules
4. ``frontend``: model -> IR
5. ``families`` (model families) and ``data`` (datasets), side by side
6. ``modelfiles`` (model files, run folders) and ``deploy`` (``compile``/``export_*`` of models)
7. ``train``: the one trainer
8. ``commands``, ``cli``, ``tools``: what users run

Run: python -m pytest tests/test_layering.py -q
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "diffgates"

LAYERS = {
    "gates": 0, "_atomic": 0, "_native": 0, "_malloc": 0, "_triton": 0, "_lazy": 0,
    "ir": 1,
    "backends": 2, "kernels": 2,
    "nn": 3, "optim": 3,
    "frontend": 4,
    "families": 5, "data": 5,
    "modelfiles": 6, "deploy": 6, "models": 6,
    "train": 7,
    "commands": 8, "cli": 8, "__main__": 8, "tools": 8,
}
# Packages of one layer that may import each other (everything else in a layer stays apart).
GROUPS = {"cli": "commands", "__main__": "commands", "tools": "commands"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported diffgates module) of every import in the file, at any depth, and of module paths in
    strings handed to importlib / the Triton loader or listed in registries (dicts and tuples)."""
    module = _module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            found.append((node.lineno, target))
            # "from . import x" imports the submodule x
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names
                      if (ROOT.parent / f"{target}.{alias.name}".replace(".", "/")).exists()
                      or (ROOT.parent / (f"{target}.{alias.name}".replace(".", "/") + ".py")).exists()]
        elif isinstance(node, (ast.Dict, ast.Tuple, ast.List, ast.Call)):
            values = node.values if isinstance(node, ast.Dict) else node.args if isinstance(node, ast.Call) else node.elts
            for v in values:
                if isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value.startswith("diffgates."):
                    found.append((v.lineno, v.value.split(":")[0]))
    return [(line, name) for line, name in found if name == "diffgates" or name.startswith("diffgates.")]


def _layer(name: str) -> tuple[str, int] | None:
    parts = name.split(".")
    if len(parts) < 2:
        return None  # the top-level package: only its own lazy table names things
    top = parts[1]
    if top not in LAYERS:
        raise AssertionError(f"module {name} is in no layer: add it to LAYERS (and the README's picture)")
    return top, LAYERS[top]


def _edges():
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        for line, target in _imports(path):
            yield path, line, module, target


def test_every_module_belongs_to_a_layer():
    for path in sorted(ROOT.rglob("*.py")):
        if path.parent == ROOT and path.name == "__init__.py":
            continue
        _layer(_module_name(path))


def test_imports_point_down_the_layers():
    upward = []
    for path, line, module, target in _edges():
        src, dst = _layer(module), _layer(target)
        if src is None or dst is None:
            continue
        (src_pkg, src_layer), (dst_pkg, dst_layer) = src, dst
        same_group = GROUPS.get(src_pkg, src_pkg) == GROUPS.get(dst_pkg, dst_pkg)
        if dst_layer > src_layer or (dst_layer == src_layer and not same_group):
            upward.append(f"{path.relative_to(ROOT.parent)}:{line}: {module} ({src_pkg}, layer {src_layer}) imports "
                          f"{target} ({dst_pkg}, layer {dst_layer})")
    assert not upward, "imports that run up (or across) the layers:\n" + "\n".join(upward)


def test_the_ir_imports_numpy_and_gates_only():
    allowed = {"diffgates.gates", "diffgates._atomic"}
    for path in sorted((ROOT / "ir").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            for name in names:
                assert not name.startswith(("torch", "triton")), f"{path.name} imports {name}"
        for line, target in _imports(path):
            if not target.startswith("diffgates.ir") and target != "diffgates":  # "from .. import x" names x too
                assert target in allowed, f"{path.name}:{line} imports {target}"


@pytest.mark.parametrize("module", ["diffgates", "diffgates.ir", "diffgates.backends", "diffgates.backends.c",
                                    "diffgates.backends.engine", "diffgates.backends.c.engine", "diffgates.backends.c.export",
                                    "diffgates.backends.verilog.emit", "diffgates.backends.verilog.simulate",
                                    "diffgates.backends.netlist.aiger", "diffgates.backends.netlist.blif",
                                    "diffgates.backends.netlist.abc"])
def test_importing_the_circuit_side_does_not_load_torch(module):
    code = f"import {module}, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_layering_check_catches_an_upward_import(tmp_path):
    # The checker itself: an ir module importing the trainer (lazily, inside a function) is found.
    fake = ROOT / "ir" / "_layering_probe.py"
    fake.write_text("def f():\n    from ..train import trainer\n")
    try:
        offending = [(m, t) for p, _, m, t in _edges() if p == fake]
        assert ("diffgates.ir._layering_probe", "diffgates.train") in offending
        with pytest.raises(AssertionError, match="run up"):
            test_imports_point_down_the_layers()
    finally:
        fake.unlink()

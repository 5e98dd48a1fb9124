"""The native build cache (``diffgates._native``) repairs itself and survives an unusable cache folder.

* A damaged library (cut to half, zero bytes: what a power loss leaves) or one with a missing or wrong
  record is rebuilt with one warning naming it; ``load_library`` never loads an unchecked file.
* A library the dynamic loader rejects is rebuilt once; a second rejection raises, naming the file.
* A cache folder that cannot be written falls back to a per-process temporary folder with one warning,
  for the circuit engine and for the CPU training kernel.
* Two processes building the same library at once both get a whole one (and it is compiled once).

Loading a truncated ELF can kill a process with SIGBUS, and truncating a library this process has
loaded would too, so every load of a damaged library runs in a child process. Each test has its own
cache folder (``DIFFGATES_CACHE`` under ``tmp_path``) and sources no other test loads.

Run: python -m pytest tests/test_native_cache.py -q
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import pytest

from diffgates import _native, gates
from diffgates.backends.c import engine as engine_c
from diffgates.ir import Circuit, group_counts

pytestmark = pytest.mark.skipif(_native.compiler_unavailable_reason() is not None,
                                reason=f"no C compiler: {_native.compiler_unavailable_reason()}")


def _source(tag: str, value: int = 42) -> str:
    """A tiny library whose ``dg_answer()`` returns ``value``; ``tag`` makes its cache key unique."""
    return f"/* {tag} */\nint dg_answer(void) {{ return {value}; }}\n"


def _record(lib) -> str:
    return f"{lib}.sha256"


def _fingerprint(lib) -> str:
    data = open(lib, "rb").read()
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}\n"


def _cache_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """A fresh cache folder for this test, with no memory of earlier fallback folders."""
    monkeypatch.setenv("DIFFGATES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_native, "_FALLBACK", {}, raising=False)
    return tmp_path / "cache"


# A child that builds and loads, then prints what it got and the RuntimeWarnings it saw, as JSON.
CHILD = r"""
import json, sys, warnings
import numpy as np
from diffgates import _native
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    if sys.argv[1] == "source":
        path = _native.build_shared_library(sys.argv[2], sys.argv[3])
        value = _native.load_library(path).dg_answer()
    else:
        from diffgates.backends.c import compile_circuit
        from diffgates import gates
        from diffgates.ir import Circuit
        c = Circuit(n_inputs=2, ops=[gates.AND], a=[0], b=[1], outputs=[2, 0], num_classes=2)
        engine = compile_circuit(c, isa="u64")
        path, value = engine.library_path, engine(np.array([[1, 1], [1, 0]], dtype=np.uint8)).tolist()
print(json.dumps({"path": str(path), "value": value, "fallback": [str(p) for p in getattr(_native, "_FALLBACK", {}).values()],
                  "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]}))
"""
CIRCUIT_VALUE = [[1, 1], [0, 1]]  # AND(x0, x1) and x0 for the rows (1, 1) and (1, 0)


def _child(cache, what: str, *args: str, env: dict | None = None) -> dict:
    """Run CHILD with ``cache`` as DIFFGATES_CACHE; a crash (SIGBUS: returncode -7) fails the test here."""
    proc = subprocess.run([sys.executable, "-c", CHILD, what, *args], capture_output=True, text=True,
                          env={**os.environ, "DIFFGATES_CACHE": str(cache), **(env or {})}, timeout=300)
    assert proc.returncode == 0, f"the child failed (returncode {proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


# ---- damaged libraries -----------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["half", "empty"])
@pytest.mark.parametrize("what", ["source", "circuit"])
def test_a_truncated_library_is_rebuilt_with_one_warning(cache, what, damage):
    args = (_source(f"truncated {what} {damage}"), "truncated") if what == "source" else ()
    first = _child(cache, what, *args)
    lib, size = first["path"], os.path.getsize(first["path"])
    assert first["warnings"] == []
    os.truncate(lib, size // 2 if damage == "half" else 0)  # a power loss before the data reached the disk
    again = _child(cache, what, *args)  # old code: SIGBUS (half) or "file too short" (empty)
    assert again["path"] == lib and again["value"] == (42 if what == "source" else CIRCUIT_VALUE)
    assert len(again["warnings"]) == 1 and lib in again["warnings"][0], again["warnings"]
    assert f"its record says '{size}'" in again["warnings"][0]
    assert os.path.getsize(lib) == size and open(_record(lib)).read() == _fingerprint(lib)


@pytest.mark.parametrize("record", ["missing", "wrong size", "wrong hash"])
def test_a_library_without_a_matching_record_is_rebuilt(cache, record):
    source = _source(f"record {record}")
    lib = _native.build_shared_library(source, "record")  # built, never loaded by this process
    size = lib.stat().st_size
    if record == "missing":
        os.unlink(_record(lib))
    else:
        digest = hashlib.sha256(lib.read_bytes()).hexdigest()
        with open(_record(lib), "w") as f:
            f.write(f"{size + 1} {digest}\n" if record == "wrong size" else f"{size} {digest[::-1]}\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _native.build_shared_library(source, "record") == lib
    found = _cache_warnings(caught)
    if record == "missing":  # unverifiable (an older cache), not known to be damaged: rebuilt quietly
        assert found == [], found
    else:
        assert len(found) == 1 and str(lib) in found[0] and "damaged" in found[0], found
    assert open(_record(lib)).read() == _fingerprint(lib)
    assert _native.load_library(lib).dg_answer() == 42


def test_load_library_refuses_a_library_that_does_not_match_its_record(cache):
    lib = _native.build_shared_library(_source("refused"), "refused")
    os.unlink(_record(lib))
    with pytest.raises(OSError, match="no record") as info:  # old code: loaded it unchecked
        _native.load_library(lib)
    assert str(lib) in str(info.value)


def test_a_library_the_loader_rejects_is_rebuilt_once(cache, monkeypatch):
    source = _source("rejected")
    lib = _native.build_shared_library(source, "rejected")
    lib.write_bytes(b"not an ELF file\n")  # damaged, though its record (rewritten below) matches
    with open(_record(lib), "w") as f:
        f.write(_fingerprint(lib))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path, loaded = _native.open_library(source, "rejected")
    found = _cache_warnings(caught)
    assert path == lib and loaded.dg_answer() == 42
    assert len(found) == 1 and str(lib) in found[0] and "loader rejects" in found[0], found

    # A loader that keeps rejecting it: one rebuild, then a clear error naming the file.
    calls = []

    def reject(name, *args, **kwargs):
        calls.append(name)
        raise OSError(f"{name}: invalid ELF header")

    monkeypatch.setattr(_native.ctypes, "CDLL", reject)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        with pytest.raises(_native.LibraryLoadError, match="loader rejects") as info:
            _native.open_library(source, "rejected")
    assert str(lib) in str(info.value) and calls == [str(lib), str(lib)]


# ---- unusable cache folders ------------------------------------------------------------------------

def _unwritable(cache, how: str):
    """Make ``cache`` unusable: a path under a regular file (also for root), or a read-only folder."""
    if how == "under a file":
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.parent.joinpath("file").write_text("a regular file\n")
        return cache.parent / "file" / "cache"
    cache.mkdir(parents=True)
    cache.chmod(0o555)
    return cache


def _permissions_bind() -> bool:
    """False for root (CAP_DAC_OVERRIDE writes into a read-only folder anyway)."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o555)
        return not os.access(folder, os.W_OK)


UNWRITABLE = ["under a file", pytest.param("read-only", marks=pytest.mark.skipif(
    not _permissions_bind(), reason="this user (root) writes into read-only folders"))]


@pytest.mark.parametrize("how", UNWRITABLE)
def test_an_unwritable_cache_falls_back_for_circuits(cache, monkeypatch, how):
    cache = _unwritable(cache, how)
    monkeypatch.setenv("DIFFGATES_CACHE", str(cache))
    c = Circuit(n_inputs=3, ops=[gates.AND, gates.XOR], a=[0, 1], b=[1, 2], outputs=[3, 4], num_classes=2)
    x = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1]], dtype=np.uint8)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            engines = [engine_c.compile_circuit(c, isa="u64"), engine_c.compile_circuit(c, isa="u64", layout="table")]
        for engine in engines:
            assert np.array_equal(engine(x), group_counts(c, x))
            assert not str(engine.library_path).startswith(str(cache))
        found = _cache_warnings(caught)
        assert len(found) == 1, found  # one per process, not one per build
        assert str(cache) in found[0] and "DIFFGATES_CACHE" in found[0]
    finally:
        if cache.is_dir():
            cache.chmod(0o755)


@pytest.mark.parametrize("how", UNWRITABLE)
def test_an_unwritable_cache_falls_back_for_the_training_kernel(cache, monkeypatch, how):
    import torch

    from diffgates.kernels import cpu

    cache = _unwritable(cache, how)
    monkeypatch.setenv("DIFFGATES_CACHE", str(cache))
    for memo in (cpu._library, cpu.unavailable_reason):  # the kernel keeps its loaded library
        memo.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert cpu.unavailable_reason() is None  # old code: "[Errno 20] Not a directory: ..."
        found = _cache_warnings(caught)
        assert len(found) == 1 and str(cache) in found[0] and "DIFFGATES_CACHE" in found[0], found
        x = torch.rand(5, 6)
        coeffs = torch.randn(3, 4)
        conn = torch.tensor([[0, 2, 5], [1, 2, 3]])
        a, b = x[:, conn[0]], x[:, conn[1]]
        want = coeffs[:, 0] + coeffs[:, 1] * a + coeffs[:, 2] * b + coeffs[:, 3] * a * b
        torch.testing.assert_close(cpu.logic_layer(x, coeffs, conn), want)
    finally:
        for memo in (cpu._library, cpu.unavailable_reason):  # later tests load it from their own cache
            memo.cache_clear()
        if cache.is_dir():
            cache.chmod(0o755)


def test_the_fallback_folder_is_removed_at_exit(cache):
    cache = _unwritable(cache, "under a file")
    got = _child(cache, "source", _source("fallback"), "fallback")
    assert got["value"] == 42 and len(got["warnings"]) == 1 and str(cache) in got["warnings"][0]
    assert len(got["fallback"]) == 1 and got["path"].startswith(got["fallback"][0])
    assert not os.path.exists(got["fallback"][0])


# ---- concurrent builders ---------------------------------------------------------------------------

BUILDER = r"""
import os, sys, time
from diffgates import _native
ready, go = sys.argv[3], sys.argv[4]
open(ready, "w").close()
while not os.path.exists(go):  # start building together with the other process
    time.sleep(0.001)
path = _native.build_shared_library(sys.argv[1], sys.argv[2])
print(_native.load_library(path).dg_answer())
"""


def test_two_processes_building_one_library_both_succeed(cache, tmp_path):
    source = _source("concurrent", value=7) + "".join(f"int f{i}(int x) {{ return x * {i} + 1; }}\n"
                                                     for i in range(300))  # some compile time
    go = tmp_path / "go"
    env = {**os.environ, "DIFFGATES_CACHE": str(cache), "DIFFGATES_SHOW_SOURCE": "1"}
    procs = [subprocess.Popen([sys.executable, "-W", "error::RuntimeWarning", "-c", BUILDER, source, "concurrent",
                               str(tmp_path / f"ready{i}"), str(go)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and out.strip() == "7", err[-3000:]
    compiled = sum(err.count("--- diffgates: source of") for _, err in results)
    assert compiled == 1, f"compiled {compiled} times: the second builder should wait for the first"
    (lib,) = (cache / "build").glob("concurrent-*.so")
    assert open(_record(lib)).read() == _fingerprint(lib)

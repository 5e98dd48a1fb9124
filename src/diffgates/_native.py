"""Build C source into a shared library, cached on disk by source hash, and load it with ctypes.

Every native piece of diffgates (the fused CPU training kernel, the compiled circuit engine) goes
through ``build_shared_library``: source text + flags -> ``.so``; the same inputs never compile twice,
a failed build raises ``CompilationError`` carrying the compiler's log, and concurrent builders (two
processes, a DDP job) never see a half-written library (compile to a temp name, then rename).

Environment:
  ``DIFFGATES_CACHE``       cache folder (default ``$XDG_CACHE_HOME/diffgates`` or ``~/.cache/diffgates``)
  ``DIFFGATES_CC``          C compiler (default ``$CC`` or ``cc``)
  ``DIFFGATES_SHOW_SOURCE`` when set to 1, print every generated source before building it
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path


class CompilationError(RuntimeError):
    """The C compiler failed; the message carries its command line and log."""


def cache_dir() -> Path:
    root = os.environ.get("DIFFGATES_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "diffgates"


def compiler() -> str:
    return os.environ.get("DIFFGATES_CC") or os.environ.get("CC") or "cc"


@lru_cache(maxsize=None)
def compiler_unavailable_reason() -> str | None:
    """None when a working C compiler is on PATH, else why not."""
    cc = compiler()
    if shutil.which(cc) is None:
        return f"no C compiler found (looked for {cc!r}; set DIFFGATES_CC or CC)"
    return None


@lru_cache(maxsize=None)
def compiler_supports(flag: str) -> bool:
    """Whether the compiler accepts ``flag`` (e.g. -fopenmp, -mavx2) for a trivial shared library."""
    if compiler_unavailable_reason():
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "probe.c")
        src.write_text("int diffgates_probe(void) { return 1; }\n")
        cmd = [compiler(), flag, "-shared", "-fPIC", str(src), "-o", str(Path(tmp, "probe.so"))]
        return subprocess.run(cmd, capture_output=True).returncode == 0


def build_shared_library(source: str, name: str, flags: list[str] | tuple[str, ...] = ()) -> Path:
    """Compile ``source`` (C) with ``flags`` into a cached shared library and return its path."""
    reason = compiler_unavailable_reason()
    if reason:
        raise CompilationError(reason)
    cmd_flags = ["-shared", "-fPIC", *flags]
    key = hashlib.sha256("\0".join([compiler(), *cmd_flags, source]).encode()).hexdigest()[:24]
    out_dir = cache_dir() / "build"
    lib = out_dir / f"{name}-{key}.so"
    if lib.exists():
        return lib
    if os.environ.get("DIFFGATES_SHOW_SOURCE") == "1":
        print(f"--- diffgates: source of {lib.name} ---\n{source}\n--- end ---", file=sys.stderr)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        src = Path(tmp, f"{name}.c")
        src.write_text(source)
        tmp_lib = Path(tmp, lib.name)
        cmd = [compiler(), *cmd_flags, str(src), "-o", str(tmp_lib)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            keep = out_dir / f"{name}-{key}.failed.c"
            shutil.copyfile(src, keep)
            raise CompilationError(f"building {name} failed (exit {proc.returncode}).\ncommand: {' '.join(cmd)}\n"
                                   f"source kept at: {keep}\ncompiler log:\n{proc.stdout}{proc.stderr}")
        os.replace(tmp_lib, lib)  # atomic: another process sees either no library or a whole one
    return lib


def load_library(path: Path) -> ctypes.CDLL:
    return ctypes.CDLL(str(path))

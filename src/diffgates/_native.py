"""Build C source into a shared library, cached on disk by source hash, and load it with ctypes.

Every native piece of diffgates (the fused CPU training kernels, the compiled circuit engines) goes
through ``open_library(source, name, flags)`` -> ``(path, ctypes.CDLL)``, or its two halves
``build_shared_library`` (source text + flags -> ``.so`` path) and ``load_library`` (the checked load);
``load_failure(load)`` turns a failed build or load into the one-line reason a kernel module reports.

What the cache (``cache_dir()/build``) guarantees:

* The same inputs (compiler, flags, source) never compile twice; a failed build raises
  ``CompilationError`` carrying the compiler's log.
* Nothing is loaded unchecked. Each library ``NAME-KEY.so`` has a record ``NAME-KEY.so.sha256`` (its
  size and sha256), written after the library is complete; both are fsynced under temp names, then
  renamed into place. ``load_library`` refuses (``LibraryLoadError``) a library that is missing, has no
  record or does not match it, so a truncated file (a power loss) is never handed to dlopen, which
  would die of SIGBUS. A check reads and hashes the file: 0.6 ms per MB measured (0.03 ms for the
  usual 15-60 KB libraries); ``open_library`` checks twice (on build and on load).
* A damaged library is deleted and rebuilt, with one ``CacheWarning`` naming it and what was wrong;
  so is one that the dynamic loader rejects (``open_library``, once: a second failure raises). One
  without a record (from a version before records) is rebuilt quietly.
* Builders of one library (processes, DDP ranks, threads) take turns on ``NAME-KEY.so.lock``: one
  compiles, the others then use its result. Readers never see a half-written library or record.
* A cache folder that cannot be created, read or written (read-only file system, permissions, a path
  under a regular file) stops nothing: builds go to a temporary folder of this process (deleted at
  exit), with one ``CacheWarning`` naming the folder, the error and ``DIFFGATES_CACHE``.

Environment:
  ``DIFFGATES_CACHE``       cache folder (default ``$XDG_CACHE_HOME/diffgates`` or ``~/.cache/diffgates``)
  ``DIFFGATES_CC``          C compiler (default ``$CC`` or ``cc``)
  ``DIFFGATES_SHOW_SOURCE`` when set to 1, print every generated source before building it
"""
from __future__ import annotations

import atexit
import ctypes
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator


class CompilationError(RuntimeError):
    """The C compiler failed; the message carries its command line and log."""


class LibraryLoadError(OSError):
    """A built library that must not or cannot be loaded; the message names the file and why."""


class CacheWarning(RuntimeWarning):
    """The build cache was damaged (and repaired) or unusable (and replaced by a temporary folder)."""


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


def load_failure(load) -> str | None:
    """None when ``load()`` (a kernel module's build-and-load) succeeds, else the first line of why not."""
    try:
        load()
    except (CompilationError, OSError) as exc:
        return str(exc).splitlines()[0]
    return None


def open_library(source: str, name: str, flags: list[str] | tuple[str, ...] = ()) -> tuple[Path, ctypes.CDLL]:
    """``build_shared_library`` then ``load_library``; a library the loader rejects is rebuilt once."""
    path = build_shared_library(source, name, flags)
    try:
        return path, load_library(path)
    except LibraryLoadError as exc:
        _discard(path, str(exc))
    path = build_shared_library(source, name, flags)
    return path, load_library(path)  # a second failure propagates: no loop


def build_shared_library(source: str, name: str, flags: list[str] | tuple[str, ...] = ()) -> Path:
    """Compile ``source`` (C) with ``flags`` into a cached shared library and return its path.

    The library matches its record (a damaged one is rebuilt); load it with ``load_library``.
    """
    reason = compiler_unavailable_reason()
    if reason:
        raise CompilationError(reason)
    cmd_flags = ["-shared", "-fPIC", *flags]
    key = hashlib.sha256("\0".join([compiler(), *cmd_flags, source]).encode()).hexdigest()[:24]
    lib_name = f"{name}-{key}.so"
    out_dir = cache_dir() / "build"
    try:
        return _ensure_built(out_dir / lib_name, name, source, cmd_flags)
    except OSError as exc:  # the cache folder cannot be created, read or written (compiler errors are not OSError)
        return _ensure_built(_fallback_dir(out_dir, exc) / lib_name, name, source, cmd_flags)


def load_library(path: str | os.PathLike) -> ctypes.CDLL:
    """Load a library made by ``build_shared_library`` after checking it against its record.

    Raises ``LibraryLoadError`` (an OSError) naming the file when it is missing, has no record, does not
    match it, or the dynamic loader rejects it.
    """
    path = Path(path)
    problem = _problem(path)
    if problem is None:
        try:
            return ctypes.CDLL(str(path))
        except OSError as exc:
            problem = f"the dynamic loader rejects it ({exc})"
    raise LibraryLoadError(f"cannot load {path}: {problem}")


_MISSING = "it is missing"
# No record: a library of a version before records, or a build stopped between its two renames. Rebuilt
# without a warning: nothing is known to be wrong with it, it just cannot be checked.
_NO_RECORD = "it has no record of a finished build (size and sha256)"
# Unusable cache build folder -> this process's temporary stand-in (cleared by tests).
_FALLBACK: dict[Path, Path] = {}


def _record(lib: Path) -> Path:
    return lib.with_name(lib.name + ".sha256")


def _fingerprint(data: bytes) -> str:
    """The record's text: size in bytes and sha256."""
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}\n"


def _problem(lib: Path) -> str | None:
    """None when ``lib`` matches its record, else what is wrong with it (``_MISSING`` when absent)."""
    try:
        data = lib.read_bytes()  # read, never mmap: touching a truncated mapping is a SIGBUS
    except FileNotFoundError:
        return _MISSING
    try:
        record = _record(lib).read_text()
    except FileNotFoundError:
        return _NO_RECORD
    size = record.partition(" ")[0]
    if size != str(len(data)):  # checked first: a truncated file costs no hashing
        return f"it is {len(data)} bytes, its record says {size!r}"
    if record != _fingerprint(data):
        return "its sha256 differs from its record"
    return None


def _ensure_built(lib: Path, name: str, source: str, cmd_flags: list[str]) -> Path:
    """``lib``, matching its record: as found, or compiled (under its lock) when missing or damaged."""
    if _problem(lib) is None:
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with _locked(lib):
        problem = _problem(lib)  # another builder may have finished while we waited
        if problem is not None:
            if problem not in (_MISSING, _NO_RECORD):
                _discard(lib, f"the cached library {lib} is damaged: {problem}")
            _compile(lib, name, source, cmd_flags)
    return lib


@contextmanager
def _locked(lib: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``lib`` (released on close, also when the process dies)."""
    fd = os.open(lib.with_name(lib.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # flock, not lockf: two threads of one process also take turns
        yield
    finally:
        os.close(fd)


def _discard(lib: Path, what: str) -> None:
    warnings.warn(f"diffgates: {what}; deleting it and building it again", CacheWarning)
    _record(lib).unlink(missing_ok=True)
    lib.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _compile(lib: Path, name: str, source: str, cmd_flags: list[str]) -> None:
    """Compile into a temp folder beside ``lib``, then rename the library and then its record into place."""
    if os.environ.get("DIFFGATES_SHOW_SOURCE") == "1":
        print(f"--- diffgates: source of {lib.name} ---\n{source}\n--- end ---", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        src = Path(tmp, f"{name}.c")
        src.write_text(source)
        tmp_lib, tmp_record = Path(tmp, lib.name), Path(tmp, _record(lib).name)
        cmd = [compiler(), *cmd_flags, str(src), "-o", str(tmp_lib)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as exc:  # keeps OSError meaning "the cache is unusable" to build_shared_library
            raise CompilationError(f"cannot run the C compiler {cmd[0]!r}: {exc}") from exc
        if proc.returncode != 0:
            keep = lib.with_name(f"{lib.stem}.failed.c")
            shutil.copyfile(src, keep)
            raise CompilationError(f"building {name} failed (exit {proc.returncode}).\ncommand: {' '.join(cmd)}\n"
                                   f"source kept at: {keep}\ncompiler log:\n{proc.stdout}{proc.stderr}")
        tmp_record.write_text(_fingerprint(tmp_lib.read_bytes()))
        for path in (tmp_lib, tmp_record):
            _fsync(path)  # on disk before the rename: a power loss cannot truncate a renamed file
        os.replace(tmp_lib, lib)  # atomic: another process sees either no library or a whole one
        os.replace(tmp_record, _record(lib))
        _fsync(lib.parent)  # the renames themselves survive a power loss


def _fallback_dir(out_dir: Path, exc: OSError) -> Path:
    """This process's temporary build folder standing in for the unusable ``out_dir`` (one warning)."""
    if out_dir not in _FALLBACK:
        _FALLBACK[out_dir] = tmp = Path(tempfile.mkdtemp(prefix="diffgates-build-"))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        warnings.warn(f"diffgates: cannot use the build cache {out_dir} ({exc}); building in {tmp} for this "
                      f"process instead (deleted at exit). Set DIFFGATES_CACHE to a writable folder to keep "
                      f"builds between runs.", CacheWarning)
    return _FALLBACK[out_dir]

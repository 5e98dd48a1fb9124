"""Nothing diffgates writes is ever half-written over a good file, and any legal file name works.

* a full disk during each export (c, verilog, aiger, blif) leaves the previous files byte-identical and
  no temp file, and the OSError names the target: simulated (every temp file's ``os.fdopen`` object
  sees a disk with N bytes free) and, where root may mount one, on a real 256 KiB tmpfs;
* the command line: a full disk, an output that is a folder (or a file where a folder belongs), a name
  of 256 bytes: exit 4 and one ``error:`` line naming the output;
* 255-byte names work for every exporter, ``Circuit.save`` and the learning-curve plot (a Verilog
  file's name may have 250: its sidecar has 5 bytes more);
* a kill -9 in the middle of ``export c`` leaves the previous set intact;
* the helpers themselves (``diffgates._atomic``): a set replaces nothing until every file is written, a
  new folder appears whole or not at all, file and folder modes, the folder fsync, the temp names,
  and the trainer's cleanup of a killed run's temp files.

Run: python -m pytest tests/test_atomic_writes.py -q
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from circuit_cases import random_cell_circuit
from diffgates.backends.c.export import export_c
from diffgates.backends.netlist.aiger import export_aiger, read_aiger
from diffgates.backends.netlist.blif import export_blif
from diffgates.backends.verilog.emit import export_verilog
from diffgates.cli import main
from diffgates.ir import Circuit

OLD = random_cell_circuit(8, 40, 8, k=2, seed=1)  # the previous, good export
NEW = random_cell_circuit(32, 6000, 40, k=4, seed=2)  # the export that meets the full disk (tens of KB)

# format -> (the output's name: a folder for c, a file otherwise; the exporter)
EXPORTERS = {
    "c": ("c", export_c),
    "verilog": ("net.v", export_verilog),
    "aiger": ("net.aag", export_aiger),
    "blif": ("net.blif", export_blif),
}
ENOSPC_LINE_END = "the files already there are intact\n"


def _export(fmt: str, circuit: Circuit, folder: Path) -> Path:
    name, export = EXPORTERS[fmt]
    folder.mkdir(parents=True, exist_ok=True)
    export(circuit, folder / name)
    return folder / name


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder``, hidden ones included: a file's bytes, None for a folder."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def _new_files(fmt: str, tmp_path: Path) -> dict[str, bytes]:
    """The files (relative names -> bytes) the export of NEW writes, from a scratch export."""
    scratch = tmp_path / "scratch"
    _export(fmt, NEW, scratch)
    files = {name: data for name, data in _snapshot(scratch).items() if data is not None}
    shutil.rmtree(scratch)
    return files


def _circuit_file(tmp_path: Path, circuit: Circuit) -> Path:
    path = tmp_path / "in" / "circuit.json"
    path.parent.mkdir()
    circuit.save(path)
    return path


class _FileOnDisk:
    """A temp file on a simulated disk: writes past the disk's free bytes write what fits, then ENOSPC."""

    def __init__(self, f, disk: SimpleNamespace):
        self._f, self._disk = f, disk

    def write(self, data):
        if len(data) > self._disk.free:
            self._f.write(data[:self._disk.free])
            self._disk.free = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.free -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@contextmanager
def _full_disk(monkeypatch, free: int):
    """Files the atomic writers open (``os.fdopen`` of their temp files) share a disk with ``free`` bytes."""
    real, disk = os.fdopen, SimpleNamespace(free=free)
    with monkeypatch.context() as m:
        m.setattr(os, "fdopen", lambda fd, *args, **kwargs: _FileOnDisk(real(fd, *args, **kwargs), disk))
        yield


@pytest.fixture
def small_disk(tmp_path):
    """A real 256 KiB tmpfs on ``tmp_path / "disk"``; skipped where mounting one is not permitted."""
    if not sys.platform.startswith("linux") or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs Linux and mount(8)")
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {(proc.stderr or proc.stdout).strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` up to ``leave`` free bytes."""
    st = os.statvfs(disk)
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * (st.f_bavail * st.f_frsize - leave))


# -- a full disk during each export --------------------------------------------------------------------

@pytest.mark.parametrize("fmt", EXPORTERS)
@pytest.mark.parametrize("where", ["first byte", "half way", "last byte"])
def test_a_full_disk_leaves_the_previous_export(tmp_path, monkeypatch, fmt, where):
    new = _new_files(fmt, tmp_path)
    total = sum(map(len, new.values()))
    out = tmp_path / "out"
    _export(fmt, OLD, out)
    before = _snapshot(out)
    with _full_disk(monkeypatch, {"first byte": 0, "half way": total // 2, "last byte": total - 1}[where]):
        with pytest.raises(OSError) as err:
            _export(fmt, NEW, out)
    assert _snapshot(out) == before  # byte-identical, and no temp file left
    assert err.value.errno == errno.ENOSPC
    assert err.value.filename in {str(out / name) for name in new}  # the target, not a temp file


def test_a_full_disk_creates_no_half_folder(tmp_path, monkeypatch):
    parent = tmp_path / "out"
    parent.mkdir()
    with _full_disk(monkeypatch, sum(map(len, _new_files("c", tmp_path).values())) - 1):
        with pytest.raises(OSError, match="No space left"):
            export_c(NEW, parent / "c")
    assert _snapshot(parent) == {}  # no folder, no temp folder


@pytest.mark.parametrize("fmt", EXPORTERS)
def test_a_real_full_disk_through_the_command_line(tmp_path, small_disk, capsys, fmt):
    path = _circuit_file(tmp_path, NEW)
    target = _export(fmt, OLD, small_disk)
    before = _snapshot(small_disk)
    _fill(small_disk, leave=4096)  # every new export needs more than that (NEW: 20 KB and up)
    before["filler"] = (small_disk / "filler").read_bytes()
    assert main(["export", fmt, str(path), str(target), "--no-simplify"]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"diffgates export {fmt}: error: {target}")
    assert ": No space left on device; " in err and err.endswith(ENOSPC_LINE_END)
    assert _snapshot(small_disk) == before


# -- the command line's one line -------------------------------------------------------------------------

def test_the_command_line_on_a_full_disk(tmp_path, monkeypatch, capsys):
    path = _circuit_file(tmp_path, NEW)
    out = tmp_path / "out" / "net.v"
    out.parent.mkdir()
    export_verilog(OLD, out)
    before = _snapshot(out.parent)
    with _full_disk(monkeypatch, 0):
        assert main(["export", "verilog", str(path), str(out)]) == 4
    err = capsys.readouterr().err
    assert err.startswith(f"diffgates export verilog: error: {out}: No space left on device; ")
    assert err.count("\n") == 1 and err.endswith(ENOSPC_LINE_END)
    assert _snapshot(out.parent) == before


@pytest.mark.parametrize("fmt, name, message", [
    ("verilog", "d.v", "Is a directory"),
    ("aiger", "d.aag", "Is a directory"),
    ("blif", "d.blif", "Is a directory"),
    ("c", "d", "Not a directory"),  # OUTDIR is a file
])
def test_an_output_that_is_a_folder_or_a_file(tmp_path, capsys, fmt, name, message):
    path = _circuit_file(tmp_path, OLD)
    out = tmp_path / "out" / name
    out.parent.mkdir()
    if fmt == "c":
        out.write_text("mine")
    else:
        out.mkdir()
    assert main(["export", fmt, str(path), str(out)]) == 4
    assert capsys.readouterr().err == f"diffgates export {fmt}: error: {out}: {message}\n"
    assert _snapshot(out.parent) == ({name: b"mine"} if fmt == "c" else {name: None})


@pytest.mark.parametrize("fmt, suffix", [("verilog", ".v"), ("aiger", ".aag"), ("blif", ".blif"), ("c", "")])
def test_a_name_of_256_bytes(tmp_path, capsys, fmt, suffix):
    path = _circuit_file(tmp_path, OLD)
    out = tmp_path / "out" / ("n" * (256 - len(suffix)) + suffix)
    out.parent.mkdir()
    with pytest.raises(OSError) as err:
        EXPORTERS[fmt][1](OLD, out)
    assert (err.value.errno, err.value.filename) == (errno.ENAMETOOLONG, str(out))  # not a temp file's name
    assert main(["export", fmt, str(path), str(out)]) == 4
    assert capsys.readouterr().err == (f"diffgates export {fmt}: error: {out}: File name too long "
                                       f"(a file name may have at most 255 bytes)\n")
    assert _snapshot(out.parent) == {}


def test_255_byte_names_work_everywhere(tmp_path):
    def name(suffix: str, size: int = 255) -> Path:
        return tmp_path / ("n" * (size - len(suffix)) + suffix)

    export_aiger(OLD, name(".aag"))
    assert read_aiger(name(".aag")).n_inputs == OLD.n_inputs
    export_blif(OLD, name(".blif"))
    assert ".model logic_net" in name(".blif").read_text()
    paths = export_c(OLD, name(""))
    assert all(p.stat().st_size for p in paths)
    for suffix in (".json", ".safetensors"):
        OLD.save(name(suffix))
        assert Circuit.load(name(suffix)).n_gates == OLD.n_gates
    info = export_verilog(OLD, name(".v", 250))  # its sidecar, NAME.v.json, has the 255 bytes
    assert Path(info.sidecar).name == name(".v.json").name and Path(info.path).stat().st_size
    # A 255-byte Verilog name leaves no legal name for the sidecar: refused naming it, nothing written.
    before = _snapshot(tmp_path)
    with pytest.raises(OSError) as err:
        export_verilog(OLD, name(".v"))
    assert err.value.errno == errno.ENAMETOOLONG and err.value.filename == str(name(".v")) + ".json"
    assert _snapshot(tmp_path) == before


def test_a_255_byte_learning_curve_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from diffgates.train.metrics import plot_learning_curves

    evals = [{"step": s, "train_loss": 1 / s, "val_acc_eval_mode": 0.5} for s in (1, 2, 3)]
    path = tmp_path / ("n" * 251 + ".png")
    assert plot_learning_curves({"evaluations": evals, "config": {"dataset": "x"}}, path)
    assert path.read_bytes().startswith(b"\x89PNG") and os.listdir(tmp_path) == [path.name]


# -- kill -9 ------------------------------------------------------------------------------------------

# Holds export_c at its 2nd fsync (the 2nd file of the set is written, the rest not yet) to be killed there.
_EXPORT_THEN_WAIT = """
import os, sys, time
from diffgates.backends.c.export import export_c
from diffgates.ir import Circuit

circuit, fsyncs, real_fsync = Circuit.load(sys.argv[1]), [], os.fsync

def fsync(fd):
    fsyncs.append(fd)
    if len(fsyncs) == 2:
        print("writing", flush=True)
        time.sleep(600)
    real_fsync(fd)

os.fsync = fsync
export_c(circuit, sys.argv[2])
"""


def test_kill_9_in_the_middle_of_export_c(tmp_path):
    big = random_cell_circuit(32, 20000, 40, k=4, seed=3)
    path = _circuit_file(tmp_path, big)
    out = tmp_path / "out"
    export_c(OLD, out)
    before = _snapshot(out)
    proc = subprocess.Popen([sys.executable, "-c", _EXPORT_THEN_WAIT, str(path), str(out)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline() == "writing\n", "the export ended before its 2nd file"
        temps = [name for name in os.listdir(out) if name.startswith(".")]
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -9
    assert {name: data for name, data in _snapshot(out).items() if name not in temps} == before
    assert len(temps) == 2, temps  # it was killed with the new .h and .c written, waiting to replace the old


# -- the helpers -----------------------------------------------------------------------------------------

def test_a_set_replaces_nothing_until_every_file_is_written(tmp_path):
    from diffgates._atomic import atomic_files

    (tmp_path / "a").write_text("old a")
    (tmp_path / "b").write_text("old b")
    for failure in (OSError(errno.EIO, "I/O error"), KeyboardInterrupt()):
        with pytest.raises(type(failure)):
            with atomic_files(tmp_path) as files:
                with files.open("a") as f:
                    f.write("new a")
                with files.open("b") as f:
                    f.write("new")
                    raise failure
        assert _snapshot(tmp_path) == {"a": b"old a", "b": b"old b"}
    with atomic_files(tmp_path) as files:
        for name in ("a", "b", "c"):
            with files.open(name, "wb") as f:
                f.write(f"new {name}".encode())
        assert (tmp_path / "a").read_text() == "old a" and len(os.listdir(tmp_path)) == 5  # 3 temp files
    assert _snapshot(tmp_path) == {"a": b"new a", "b": b"new b", "c": b"new c"}


def test_a_new_folder_appears_whole(tmp_path):
    from diffgates._atomic import atomic_files, is_temp_file

    old_mask = os.umask(0o027)
    try:
        folder = tmp_path / "p" / "new"
        with atomic_files(folder) as files:
            with files.open("x") as f:
                f.write("x")
            assert not folder.exists() and all(map(is_temp_file, os.listdir(folder.parent)))
        assert _snapshot(folder) == {"x": b"x"} and os.listdir(folder.parent) == ["new"]
        assert stat.S_IMODE(folder.stat().st_mode) == 0o750 and stat.S_IMODE((folder / "x").stat().st_mode) == 0o640
    finally:
        os.umask(old_mask)


def test_temp_names_are_short_and_errors_name_the_target(tmp_path, monkeypatch):
    from diffgates._atomic import atomic_write, is_temp_file

    target = tmp_path / ("n" * 255)
    with atomic_write(target, "w") as f:
        f.write("x")
        (temp,) = os.listdir(tmp_path)
        assert is_temp_file(temp) and len(temp) == 16
    assert os.listdir(tmp_path) == [target.name]
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real_fsync(fd)))
    with atomic_write(target, "wb") as f:
        f.write(b"y")
    assert synced == [False, True]  # the file, then its folder (the rename survives a power loss)
    with _full_disk(monkeypatch, 0), pytest.raises(OSError) as err:
        with atomic_write(target, "w") as f:
            f.write("z")
    assert (err.value.errno, err.value.filename) == (errno.ENOSPC, str(target))
    assert _snapshot(tmp_path) == {target.name: b"y"}
    assert not is_temp_file("notes.tmp") and not is_temp_file(".dg-.tmp") and is_temp_file(f"/x/{temp}")


def test_the_trainer_removes_only_diffgates_temp_files(tmp_path):
    from diffgates.train.trainer import Trainer

    fd, temp = tempfile.mkstemp(prefix=".dg-", suffix=".tmp", dir=tmp_path)  # what a killed write leaves
    os.close(fd)
    keep = [".hidden", ".dg-notes.txt", "notes.tmp", "results.json"]
    for name in keep:
        (tmp_path / name).write_text("mine")
    Trainer._remove_stale_temp_files(SimpleNamespace(out_dir=tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(keep)

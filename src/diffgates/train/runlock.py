"""The run-folder lock: one ``diffgates train`` writes into a ``--out`` folder at a time.

A run takes ``RUN/.lock`` (``LOCK_NAME``) with an exclusive ``fcntl.flock`` right after creating the
folder, before it checks whether the folder "already holds a run", and keeps it until it ends. The
check and the run are therefore one critical section: a second writer (a fresh ``train`` into the
same folder, or a second ``--resume`` of the run) is refused with ``RunFolderBusy``, "RUN is in use
by pid N (started ...)", which the command line reports with exit code 5. Under ``torchrun`` only
rank 0 locks: the other ranks never write into the folder.

The flock is the lock, not the file: the kernel drops it when its process ends, even by kill -9, so
a ``.lock`` file left by a dead process is free and the next run takes it over. The file holds the
holder's pid, host and start time (JSON) for the refusal message only. A run deletes it when it
ends, while still holding the flock; ``acquire`` therefore checks that the file it locked is still
the one at the path (else it locks again), so two processes never hold different ``.lock`` files.
The name matches none of the run files and their temp files, so it neither counts as a run nor is
swept as a stale temp file.

Example::

    lock = RunLock("runs/mnist").acquire()   # RunFolderBusy if another process holds it
    try:
        ...                                  # check the folder, train, write files
    finally:
        lock.release()
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".lock"


class RunFolderBusy(RuntimeError):
    """Another live process holds the run folder's lock.

    A RuntimeError, not an OSError: the system refused nothing (an OSError reads as "disk full or no
    permission", and handlers of I/O failures, e.g. the trainer's "failed" record, must not take it
    for one); nor a ValueError: the arguments are fine, the folder is merely busy.
    """


def _holder_text(fd: int) -> str:
    """'pid N (started ...)' from the lock file's content (the holder writes it just after locking)."""
    for _ in range(20):
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"null")
        except ValueError:
            info = None  # being written right now
        if isinstance(info, dict):
            host = "" if info.get("host") == socket.gethostname() else f" on {info.get('host')}"
            return f"pid {info.get('pid')}{host} (started {info.get('started')})"
        time.sleep(0.05)
    return "another process (its pid is not recorded yet)"


def _busy(path: Path, fd: int) -> RunFolderBusy:
    return RunFolderBusy(f"{path.parent} is in use by {_holder_text(fd)}; a run folder takes one writer at a "
                         f"time: wait for that run to end (or stop it), or choose another --out folder")


def _flock(fd: int, operation: int) -> bool:
    """Try ``flock(fd, operation)`` for a moment; False when another open file keeps it."""
    for _ in range(5):
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.02)  # why: a holder may be just ending, or a check_free just peeking
    return False


def _is_file_at(fd: int, path: Path) -> bool:
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (here.st_dev, here.st_ino)


class RunLock:
    """The lock of run folder ``run_dir`` (which must exist); see the module docstring."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock (returns self); RunFolderBusy naming the holder when a live process has it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _flock(fd, fcntl.LOCK_EX):
                    raise _busy(self.path, fd)
            except BaseException:
                os.close(fd)
                raise
            if _is_file_at(fd, self.path):
                break
            os.close(fd)  # why: its holder deleted this file as it ended; lock the one at the path now
        self._fd = fd
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        try:
            os.ftruncate(fd, 0)  # why: a dead holder's record may still be there
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError as exc:  # e.g. a full disk: name the file (a write error names none)
            self.release()
            raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        """Delete the lock file and drop the lock (a no-op when not held)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # why: while still locked, so no one takes the file being deleted
        finally:
            os.close(self._fd)
            self._fd = None


def check_free(run_dir: str | os.PathLike) -> None:
    """Raise RunFolderBusy when another process holds ``run_dir``'s lock; takes and changes nothing."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        if not _flock(fd, fcntl.LOCK_SH):  # why: shared: conflicts with a holder's exclusive lock only
            raise _busy(path, fd)
    finally:
        os.close(fd)

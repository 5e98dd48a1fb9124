"""Atomic file writes: no reader sees, and no full disk, Ctrl-C or killed process leaves, a half-written file.

Every file diffgates writes for users goes through here: exports and their sidecars, checkpoints,
model and circuit files, encoders, results, reports, plots. (Dataset downloads, which verify a
checksum before their rename, and the C build cache do their own temp-file-and-rename.)

``atomic_write(path, mode)`` (one file) guarantees:

* ``path`` holds the old file or the whole new one, never a mix or a truncated file: the data goes to
  a temp file in the same folder (same file system), is flushed and fsynced, and only then renamed over
  ``path`` (``os.replace``, atomic); the folder is fsynced after the rename where the platform allows
  it (POSIX), so the rename itself survives a power loss;
* on any error in the block or in writing (a full disk, KeyboardInterrupt, ...) the temp file is
  removed and ``path`` is untouched; only a kill -9 or a power loss can leave a temp file behind;
* temp files are named ``.dg-XXXXXXXX.tmp`` (16 bytes whatever the target's name), so every legal file
  name works; ``is_temp_file(name)`` recognises them (the trainer deletes a killed run's);
* an ``OSError`` of the write names the target: one raised for a temp path, or naming no file (a
  failed ``write``), is re-raised as the same errno and message with ``filename=path`` (so the command
  line's one-line error names the user's file). An ``OSError`` without a file name raised by the
  block's own code is taken for a write error too;
* what the final rename would refuse is refused before the file's bytes are written: the OS is asked
  about ``path`` first (a name too long, a folder in the way: ``ENAMETOOLONG``, ``IsADirectoryError``);
* the new file gets the usual mode (0666 less the umask); a missing folder is created (see below).

``atomic_files(folder)`` writes a *set* of files (``export c``'s four, a Verilog file and its sidecar)
and guarantees:

* each file is whole (as above), and no file of the set replaces anything before every one of them
  is written and fsynced; any error or Ctrl-C before that leaves ``folder`` exactly as it was;
* the renames then follow one by one (no data is written any more): they are *not* one atomic step.
  An error in them (rare: say a folder created meanwhile under a file's name) or a crash between them
  can leave some files of the set new and the others old, each whole;
* a missing ``folder`` is built as a temp folder beside it and renamed into place in one step, so a
  new folder appears with the whole set or not at all (its missing parents are created first, and
  stay).

Example::

    with atomic_write("results.json", "w") as f:
        json.dump(results, f)

    with atomic_files("out/c") as files:
        for name, text in texts.items():
            with files.open(name, "w") as f:
                f.write(text)
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

TEMP_PREFIX, TEMP_SUFFIX = ".dg-", ".tmp"
# What tempfile.mkstemp/mkdtemp make of the prefix and suffix (8 characters of [a-z0-9_] between).
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[A-Za-z0-9_]+" + re.escape(TEMP_SUFFIX))


def is_temp_file(name: str | os.PathLike) -> bool:
    """Whether ``name`` (a file name or path) is a temp file (or folder) of a diffgates atomic write."""
    return bool(_TEMP_NAME.fullmatch(os.path.basename(os.fsdecode(name))))


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def _naming(target: Path) -> Iterator[None]:
    """Re-raise an OSError of a temp path, or of no path (a write), as the same error naming ``target``."""
    try:
        yield
    except OSError as exc:
        name = exc.filename
        named_temp = isinstance(name, (str, bytes)) and any(map(is_temp_file, Path(os.fsdecode(name)).parts))
        if exc.errno is None or not (name is None or named_temp):
            raise
        raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), os.fspath(target)) from exc


def _check_target(path: Path) -> None:
    """Ask the OS now what the final rename would refuse after all the writing: a name too long, a folder."""
    try:
        mode = os.lstat(path).st_mode  # ENAMETOOLONG (naming path) for a name over the limit
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))


def _fsync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (POSIX); a no-op where folders cannot be opened or synced."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # e.g. Windows: a folder is no file to open
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems that cannot sync a folder
            raise
    finally:
        os.close(fd)


def _unlink(path: str | os.PathLike) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class FileSet:
    """The files ``atomic_files`` writes: ``with files.open(name, mode) as f`` writes one of them.

    Attributes:
        folder: the target folder.
    """

    def __init__(self, folder: Path, staging: Path):
        self.folder = folder
        self._staging = staging  # where the temp files go: ``folder`` itself, or the temp folder replacing it
        self._done: list[tuple[str, str]] = []  # (name, its complete temp file), in the order written

    @contextmanager
    def open(self, name: str, mode: str = "w") -> Iterator[IO]:
        """Yield the file for ``folder / name`` (mode 'w': UTF-8 text, or 'wb'); complete when the block ends.

        The file joins the set (to be renamed into place when ``atomic_files`` ends) only once written
        and fsynced; an error removes its temp file. Opening a name twice keeps the later file.
        """
        if mode not in ("w", "wb"):
            raise ValueError(f"atomic write mode must be 'w' or 'wb', got {mode!r}")
        if name in ("", ".", "..") or Path(name).name != name:
            raise ValueError(f"{name!r} is not a file name (no folders: files go into {self.folder})")
        with _naming(self.folder / name):
            _check_target(self._staging / name)
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=self._staging)
            try:
                with os.fdopen(fd, mode, encoding=None if mode == "wb" else "utf-8") as f:
                    os.chmod(tmp, 0o666 & ~_umask())  # why: mkstemp creates 0600; give the usual file mode
                    yield f
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:
                _unlink(tmp)
                raise
        self._done.append((name, tmp))

    def _commit(self) -> None:
        """Rename every complete temp file to its name, in the order written."""
        while self._done:
            name, tmp = self._done[0]
            with _naming(self.folder / name):
                os.replace(tmp, self._staging / name)
            self._done.pop(0)

    def _discard(self) -> None:
        for _, tmp in self._done:
            _unlink(tmp)
        self._done.clear()


def _is_folder(folder: Path) -> bool:
    """Whether ``folder`` exists (a folder or a link to one); NotADirectoryError for anything else there."""
    try:
        mode = os.stat(folder).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), os.fspath(folder))
    return True


@contextmanager
def atomic_files(folder: str | os.PathLike) -> Iterator[FileSet]:
    """Yield a ``FileSet`` whose files replace those in ``folder`` only once all are written (see above)."""
    folder = Path(folder)
    with _naming(folder):
        if _is_folder(folder):
            staging = folder
        else:
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=folder.parent))
    files = FileSet(folder, staging)
    try:
        if staging != folder:
            os.chmod(staging, 0o777 & ~_umask())  # why: mkdtemp creates 0700; give the usual folder mode
        yield files
        files._commit()
        _fsync_folder(staging)
        if staging != folder:
            with _naming(folder):
                os.rename(staging, folder)  # the whole set appears in one step
            _fsync_folder(folder.parent)
    except BaseException:
        files._discard()
        if staging != folder:
            shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Yield a file object whose contents replace ``path`` atomically when the block succeeds (see above)."""
    path = Path(path)
    _check_target(path)  # why: "." or ".." name a folder, not a file of path.parent
    with atomic_files(path.parent) as files, files.open(path.name, mode) as f:
        yield f


__all__ = ["atomic_write", "atomic_files", "FileSet", "is_temp_file", "TEMP_PREFIX", "TEMP_SUFFIX"]

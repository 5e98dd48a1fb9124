"""Atomic file writes: readers (and a process killed mid-write) see the old file or the whole new one.

``atomic_write(path, mode)`` opens a temp file in the target's folder (same file system, so the final
``os.replace`` is atomic), and on success flushes, fsyncs and renames it over ``path``; on any error
the temp file is removed. Every file diffgates writes for later reading goes through it: checkpoints,
results, circuits.

Example::

    with atomic_write("results.json", "w") as f:
        json.dump(results, f)
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Yield a file object whose contents replace ``path`` atomically when the block succeeds."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # why: mkstemp creates 0600; give the usual file mode
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

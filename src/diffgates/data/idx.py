"""Reader for the IDX files of MNIST and Fashion-MNIST (optionally gzip-compressed).

Format: a big-endian header ``0x00 0x00 <type> <ndim>`` (the "magic number": 2051 = ubyte with 3
dimensions for images, 2049 = ubyte with 1 dimension for labels), then ``ndim`` big-endian uint32
sizes, then the data row-major. Example::

    images = read_idx("mnist/t10k-images-idx3-ubyte.gz", expect_magic=IMAGES_MAGIC)  # (10000, 28, 28)
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from .errors import DataFormatError

__all__ = ["read_idx", "parse_idx", "IMAGES_MAGIC", "LABELS_MAGIC"]

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension


def parse_idx(buf: bytes, *, expect_magic: int | None = None, source: str = "<bytes>") -> np.ndarray:
    """Parse uncompressed IDX bytes of unsigned bytes into a uint8 array of the header's shape."""
    if len(buf) < 4:
        raise DataFormatError(f"{source}: {len(buf)} bytes is too short for an IDX header")
    (magic,) = struct.unpack(">I", buf[:4])
    if expect_magic is not None and magic != expect_magic:
        raise DataFormatError(f"{source}: IDX magic number {magic}, expected {expect_magic} "
                              f"({'images' if expect_magic == IMAGES_MAGIC else 'labels'})")
    zero, dtype_code, ndim = magic >> 16, (magic >> 8) & 0xFF, magic & 0xFF
    if zero != 0 or dtype_code != 0x08 or ndim < 1:
        raise DataFormatError(f"{source}: magic number {magic} is not an unsigned-byte IDX header")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataFormatError(f"{source}: truncated header ({len(buf)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", buf[4:header])
    n = int(np.prod(dims, dtype=np.int64))
    if len(buf) != header + n:
        raise DataFormatError(f"{source}: header says {dims} = {n} bytes of data, file has "
                              f"{len(buf) - header} (truncated or corrupt)")
    # Copy: frombuffer over bytes is read-only, and torch wants writable memory.
    return np.frombuffer(buf, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx(path: str | os.PathLike, *, expect_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (gzip-compressed if it starts with the gzip signature)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise DataFormatError(f"{path}: corrupt or truncated gzip file ({exc}); delete it and "
                                  "download it again") from exc
    return parse_idx(raw, expect_magic=expect_magic, source=str(path))

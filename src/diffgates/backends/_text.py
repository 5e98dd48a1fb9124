"""Vectorised text generation for the code and netlist writers: many similar lines without a Python loop.

``render(fields, n)`` builds ``n`` rows of text at once; row ``i`` is the concatenation of every
field's value for that row. A field is

* ``bytes``: the same text in every row;
* an integer array: the row's number in decimal (negative numbers get a ``-``);
* ``Choice(index, options)``: ``options[index[i]]`` (a list of bytes, e.g. one template piece per
  gate type; an empty option leaves nothing);
* ``Masked(values, show)``: the number where ``show[i]``, nothing elsewhere (an operand a gate
  does not read).

The rows are assembled as fixed-width NUL-padded records (numpy formats the numbers in C) whose
NULs are then dropped, so the cost is a few numpy operations per field, not per row. ``render_lines(..., chunk)`` yields the text in chunks of rows for writers that stream to a
file. Example::

    render([b"wire n", ids, b" = n", a, b" & n", b, b";\\n"], len(ids))
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

@dataclass(frozen=True)
class Choice:
    """Per row, one of a few fixed texts: ``options[index[row]]``."""

    index: np.ndarray
    options: Sequence[bytes]


@dataclass(frozen=True)
class Masked:
    """Per row a number in decimal, or nothing where ``show`` is False."""

    values: np.ndarray
    show: np.ndarray


def _columns(field, n: int) -> np.ndarray:
    """(n, width) uint8 block of one field, NUL-padded on the right (text never holds NUL)."""
    if isinstance(field, (bytes, bytearray)):
        return np.broadcast_to(np.frombuffer(bytes(field), dtype=np.uint8), (n, len(field)))
    if isinstance(field, Choice):
        width = max((len(o) for o in field.options), default=0)
        table = np.zeros((len(field.options), max(width, 1)), dtype=np.uint8)
        for k, option in enumerate(field.options):
            table[k, :len(option)] = np.frombuffer(bytes(option), dtype=np.uint8)
        return table[np.asarray(field.index)][:, :width]
    if isinstance(field, Masked):
        text = _columns(np.asarray(field.values), n).copy()
        text[~np.asarray(field.show, dtype=bool)] = 0
        return text
    values = np.asarray(field)
    if values.shape != (n,) or values.dtype.kind not in "iub":
        raise ValueError(f"a numeric field needs {n} integers, got shape {values.shape} dtype {values.dtype}")
    return _decimal(values.astype(np.int64))


# "0000" .. "9999" as 4-byte words: one gather writes four digits.
_DIGITS4 = np.frombuffer(b"".join(f"{i:04d}".encode() for i in range(10000)), dtype=np.uint32)
_POW10 = np.array([10 ** k for k in range(19)], dtype=np.int64)


def _decimal(values: np.ndarray) -> np.ndarray:
    """(n, width) uint8: each value in decimal, right-aligned, leading positions NUL."""
    n = values.size
    magnitude = np.abs(values)
    digits = 1 + np.searchsorted(_POW10[1:], magnitude, side="right")
    groups = max(1, -(-int(digits.max(initial=1)) // 4))
    words = np.empty((n, groups), dtype=np.uint32)
    for k in range(groups):  # four digits at a time, most significant group first
        words[:, groups - 1 - k] = _DIGITS4[(magnitude // 10 ** (4 * k)) % 10000]
    text = words.view(np.uint8).reshape(n, 4 * groups)
    text[np.arange(4 * groups) < (4 * groups - digits)[:, None]] = 0  # drop the leading zeros
    sign = np.where(values < 0, np.uint8(ord("-")), np.uint8(0))[:, None]
    return np.concatenate([sign, text], axis=1) if (values < 0).any() else text


def render(fields: Sequence, n: int) -> bytes:
    """``n`` rows of text: row i is the concatenation of every field's value for row i."""
    if n == 0:
        return b""
    # One NUL-padded fixed-width record per row; dropping the NULs leaves the rows, in order.
    records = np.concatenate([_columns(f, n) for f in fields], axis=1)
    return records[records != 0].tobytes()


def render_lines(fields: Sequence, n: int, chunk: int = 1 << 18) -> Iterator[bytes]:
    """``render`` in chunks of ``chunk`` rows (arrays and choices are sliced), for streaming writers."""
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)

        def part(field):
            if isinstance(field, (bytes, bytearray)):
                return field
            if isinstance(field, Choice):
                return Choice(np.asarray(field.index)[start:stop], field.options)
            if isinstance(field, Masked):
                return Masked(np.asarray(field.values)[start:stop], np.asarray(field.show)[start:stop])
            return np.asarray(field)[start:stop]

        yield render([part(f) for f in fields], stop - start)


def join_numbers(values: np.ndarray, separator: bytes = b", ", per_line: int = 0, indent: bytes = b"") -> bytes:
    """``values`` as decimal text separated by ``separator``; with ``per_line``, a newline + indent every
    ``per_line`` values (for C array initialisers)."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    n = values.size
    if not n:
        return b""
    if per_line:
        last_in_line = (np.arange(n) % per_line == per_line - 1) & (np.arange(n) < n - 1)
        sep = Choice(np.where(np.arange(n) == n - 1, 2, np.where(last_in_line, 1, 0)),
                     [separator, separator.rstrip() + b"\n" + indent, b""])
    else:
        sep = Choice((np.arange(n) == n - 1).astype(np.int64), [separator, b""])
    return render([values, sep], n)

"""AIGER files (ASCII ``.aag`` and binary ``.aig``) of a Circuit, and a reader for them.

The file is the AND-inverter graph of ``aig.lower_to_aig``: inputs ``x[i]`` (input bit ``i`` of the
encoding), outputs ``out[k]`` = the circuit's raw output bits (class ``k // group_size``), and with
``counts=True`` also each class's count ``count_c<c>[w]`` (LSB first) computed by a balanced adder
tree, and with ``argmax=True`` the winning class index ``class_idx[w]`` (ties to the lowest class).
No latches. The symbol table and the comment section say the same. Format: AIGER 1.9
combinational subset (header ``aag|aig M I 0 O A``), readable by ABC (``read``), Yosys
(``read_aiger``) and the AIGER tools.

Writing is vectorised and streamed: the text rows come from ``backends._text`` and the binary
AND section from a numpy 7-bit varint encoder, in chunks, through ``_atomic.atomic_write``.
Reading parses the numbers with numpy too. Example::

    from diffgates.backends.netlist.aiger import export_aiger, read_aiger
    info = export_aiger(circuit, "net.aig", counts=True)
    aig = read_aiger("net.aig"); values = aig.evaluate(bits)
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..._atomic import atomic_write
from ...ir import Circuit
from .._text import render
from .aig import TEXT_CHUNK, Aig, Names, NetlistInfo, lower_to_aig

AND_CHUNK = 1 << 20  # ANDs encoded at a time


class AigerFormatError(ValueError):
    """An AIGER file is malformed or uses features this reader does not support (latches)."""


def encode_varints(values: np.ndarray) -> bytes:
    """AIGER's 7-bits-per-byte variable-length encoding of non-negative integers, concatenated."""
    v = np.asarray(values, dtype=np.uint64)
    size = np.ones(v.size, dtype=np.int64)
    rest = v >> np.uint64(7)
    while rest.any():  # one pass per byte position (at most 10)
        size += rest > 0
        rest >>= np.uint64(7)
    pos = np.zeros(v.size, dtype=np.int64)
    np.cumsum(size[:-1], out=pos[1:])
    out = np.empty(int(size.sum()), dtype=np.uint8)
    for j in range(int(size.max(initial=0))):
        sel = np.flatnonzero(size > j)
        byte = (v[sel] >> np.uint64(7 * j)) & np.uint64(0x7F)
        more = np.where(size[sel] > j + 1, np.uint64(0x80), np.uint64(0))  # a continuation bit
        out[pos[sel] + j] = (byte | more).astype(np.uint8)
    return out.tobytes()


def aiger_chunks(aig: Aig, binary: bool) -> Iterator[bytes]:
    """The AIGER text (``aag``) or binary (``aig``) file of ``aig``, in chunks.

    Args:
        aig: the graph; ANDs must be topologically numbered (``Aig`` guarantees it).
        binary: binary ``aig`` format instead of ASCII ``aag``.
    """
    i, a = aig.n_inputs, aig.n_ands
    yield f"{'aig' if binary else 'aag'} {aig.max_var} {i} 0 {aig.outputs.size} {a}\n".encode()
    if not binary:
        for s in range(0, i, TEXT_CHUNK):
            yield render([2 * np.arange(s + 1, min(i, s + TEXT_CHUNK) + 1, dtype=np.int64), b"\n"],
                         min(i, s + TEXT_CHUNK) - s)
    for s in range(0, aig.outputs.size, TEXT_CHUNK):
        part = aig.outputs[s:s + TEXT_CHUNK]
        yield render([part, b"\n"], part.size)
    step = AND_CHUNK if binary else TEXT_CHUNK
    for s in range(0, a, step):
        r0, r1 = aig.rhs0[s:s + step], aig.rhs1[s:s + step]
        lhs = 2 * (i + 1 + np.arange(s, s + r0.size, dtype=np.int64))
        if binary:
            deltas = np.empty(2 * r0.size, dtype=np.int64)
            deltas[0::2], deltas[1::2] = lhs - r0, r0 - r1  # lhs > rhs0 >= rhs1
            yield encode_varints(deltas)
        else:
            yield render([lhs, b" ", r0, b" ", r1, b"\n"], r0.size)
    yield from aig.input_names.render(before=lambda s, e: [b"i", np.arange(s, e, dtype=np.int64), b" "])
    yield from aig.output_names.render(before=lambda s, e: [b"o", np.arange(s, e, dtype=np.int64), b" "])
    if aig.comments:
        yield ("c\n" + "".join(f"{line}\n" for line in aig.comments)).encode()


def aiger_bytes(aig: Aig, binary: bool) -> bytes:
    """The whole AIGER file of ``aig`` (see ``aiger_chunks``) as bytes."""
    return b"".join(aiger_chunks(aig, binary))


def write_aiger(aig: Aig, path: str | os.PathLike, binary: bool) -> None:
    """Write ``aig`` as AIGER to ``path`` atomically, chunk by chunk."""
    with atomic_write(path, "wb") as f:
        for chunk in aiger_chunks(aig, binary):
            f.write(chunk)


def export_aiger(circuit: Circuit, path: str | os.PathLike, counts: bool = False,
                 binary: bool | None = None, argmax: bool = False) -> NetlistInfo:
    """Write ``circuit`` as an AIGER file.

    Args:
        circuit: the circuit.
        path: output file; ``.aig`` means binary and ``.aag`` ASCII unless ``binary`` is given.
        counts: add each class's count bits as outputs after the raw output bits (grouped heads).
        binary: force the binary (True) or ASCII (False) format.
        argmax: add the argmax class index bits as the last outputs (grouped heads).

    Returns:
        a ``NetlistInfo`` (AND count, depth, ...).

    Raises:
        ValueError: the format cannot be told from the suffix, or counts/argmax of a 'bits' head.
    """
    path = Path(path)
    if binary is None:
        suffix = path.suffix.lower()
        if suffix not in (".aig", ".aag"):
            raise ValueError(f"cannot tell the AIGER format from {path.name!r}: expected a .aag (ASCII) or "
                             f".aig (binary) file name, or choose with binary=True/False (CLI: --binary/--ascii)")
        binary = suffix == ".aig"
    aig = lower_to_aig(circuit, counts=counts, argmax=argmax)
    write_aiger(aig, path, binary)
    return NetlistInfo(path=str(path), format="aig" if binary else "aag", inputs=aig.n_inputs,
                       outputs=int(aig.outputs.size), nodes=aig.n_ands, depth=aig.depth(), counts=counts,
                       argmax=argmax)


# ---- reading ------------------------------------------------------------------------------------
_SPACE = np.zeros(256, dtype=bool)
_SPACE[[9, 10, 13, 32]] = True
_POW10 = np.array([10 ** k for k in range(19)], dtype=np.int64)
_MAX_DIGITS = 18  # longer numbers cannot be literals of a file this reader holds in memory


LINE_CHUNK = 1 << 18  # lines (or varints) parsed at a time: bounds the per-byte temporaries


def _parse_tokens(region: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whitespace-separated tokens of ``region`` (bytes as uint8): (start, stop, value), value -1
    where the token is not a decimal number of at most ``_MAX_DIGITS`` digits."""
    token = ~_SPACE[region]
    edges = np.diff(np.concatenate([[0], token.view(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    length = stops - starts
    values = np.zeros(starts.size, dtype=np.int64)
    number = length <= _MAX_DIGITS
    for j in range(min(int(length.max(initial=0)), _MAX_DIGITS)):  # Horner's rule, a digit position at a time
        sel = np.flatnonzero(length > j)
        digit = region[starts[sel] + j].astype(np.int64) - 48
        number[sel[(digit < 0) | (digit > 9)]] = False
        values[sel] = 10 * values[sel] + digit
    return starts, stops, np.where(number, values, -1)


class _Lines:
    """Numbers on consecutive lines of a file, parsed with numpy in chunks of lines."""

    def __init__(self, path, data: bytes):
        self.path, self.data = path, data
        self.arr = np.frombuffer(data, dtype=np.uint8)

    def numbers(self, pos: int, n_lines: int, ends_early: str) -> tuple[list[np.ndarray], np.ndarray, int]:
        """Tokens of the ``n_lines`` lines from byte ``pos``: ([value per token (-1 where no number in
        reach), line per token, tokens per line], line start offsets, position after the last line)."""
        values, lines, per_line, line_start = [], [], [], []
        done = 0
        while done < n_lines:
            want = min(LINE_CHUNK, n_lines - done)
            span = 32 * want
            while True:  # a window holding the next `want` lines
                newlines = np.flatnonzero(self.arr[pos:pos + span] == 10)
                if newlines.size >= want or pos + span >= self.arr.size:
                    break
                span *= 4
            if newlines.size < want:
                raise AigerFormatError(f"{self.path}: file ends early ({ends_early})")
            newlines = newlines[:want]
            end = int(newlines[-1]) + 1
            region = self.arr[pos:pos + end]
            starts, _, vals = _parse_tokens(region)
            line_of = np.cumsum(region == 10, dtype=np.int32)[starts]  # newlines before each token
            values.append(vals)
            lines.append(done + line_of)
            per_line.append(np.bincount(line_of, minlength=want))
            line_start.append(pos + np.concatenate([[0], newlines[:-1] + 1]))
            pos += end
            done += want
        if not n_lines:
            empty = np.zeros(0, dtype=np.int64)
            return [empty, empty, empty], empty, pos
        return [np.concatenate(values), np.concatenate(lines), np.concatenate(per_line)], \
            np.concatenate(line_start), pos

    def text(self, start: int) -> str:
        end = self.data.find(b"\n", start)
        return self.data[start:end].decode("ascii", "replace").strip()


def _decode_varints(arr: np.ndarray, pos: int, count: int) -> tuple[np.ndarray, int]:
    """Up to ``count`` AIGER varints from byte ``pos`` of ``arr`` (fewer where the data ends), and the
    position after them."""
    out = []
    while count > 0:
        want = min(count, LINE_CHUNK)
        window = arr[pos:pos + 10 * want]  # a varint of a value below 2**63 has at most 9 bytes
        last = np.flatnonzero(window < 0x80)[:want]
        if not last.size:
            break
        window = window[:int(last[-1]) + 1]
        first = np.concatenate([[0], last[:-1] + 1])
        if (last - first).max() > 8:
            raise AigerFormatError("binary AIGER has a delta of more than 63 bits")
        owner = np.repeat(np.arange(last.size), last - first + 1)
        shift = (np.arange(window.size) - first[owner]) * 7
        out.append(np.add.reduceat((window.astype(np.int64) & 0x7F) << shift, first))
        pos += window.size
        if last.size < want:
            break
        count -= want
    return (np.concatenate(out) if out else np.zeros(0, dtype=np.int64)), pos


def _check_topological(path, lhs: np.ndarray, r0: np.ndarray, r1: np.ndarray) -> None:
    """AigerFormatError naming the first AND that reads itself or a later literal."""
    bad = np.flatnonzero((r0 < 0) | (r0 >= lhs[:r0.size]) | (r1 < 0) | (r1 >= lhs[:r0.size]))
    if bad.size:
        k = int(bad[0])
        raise AigerFormatError(f"{path}: AND {k} (literal {int(lhs[k])}) reads {int(r0[k])}, {int(r1[k])}: "
                               f"not topological")


def read_aiger(path: str | os.PathLike) -> Aig:
    """Read a combinational AIGER file (ASCII or binary) into an ``Aig``.

    Only what this package writes is needed, but any combinational AIGER with inputs numbered
    1..I and ANDs numbered I+1..M in order (as the binary format requires) is accepted.

    Args:
        path: the ``.aag`` / ``.aig`` file.

    Returns:
        the ``Aig``, with the file's symbol names (``i<k>`` / ``o<k>`` where none) and comments.

    Raises:
        AigerFormatError: bad header, latches, out-of-range literals or non-topological ANDs.
    """
    data = Path(path).read_bytes()
    nl = data.find(b"\n")
    header = data[:nl if nl >= 0 else len(data)].decode("ascii", "replace").split()
    if len(header) < 6 or header[0] not in ("aag", "aig") or not all(t.isdigit() for t in header[1:6]):
        raise AigerFormatError(f"{path}: header {' '.join(header)!r} is not 'aag|aig M I L O A'")
    binary = header[0] == "aig"
    m, i, latches, o, a = (int(t) for t in header[1:6])
    if any(t != "0" for t in header[6:]):
        raise AigerFormatError(f"{path}: header {' '.join(header)!r} declares bad/constraint/justice/fairness "
                               f"properties; only combinational AIGER (aag|aig M I 0 O A) is supported")
    if latches:
        raise AigerFormatError(f"{path}: has {latches} latches; only combinational AIGER (L = 0) is supported")
    if m != i + a:
        raise AigerFormatError(f"{path}: M = {m} but I + A = {i + a}; expected inputs and ANDs numbered densely")
    top = 2 * m + 1
    lines = _Lines(path, data)
    ends_early = f"expected {i} inputs, {o} outputs, {a} ANDs"

    def literal_error(what: str, text: str) -> AigerFormatError:
        return AigerFormatError(f"{path}: {what} literal {text!r} is not in 0..{top}")

    def single(pos: int, n: int, what: str) -> tuple[np.ndarray, int]:
        """One literal per line, as the inputs and outputs sections have."""
        (values, line_of, per_line), starts, pos = lines.numbers(pos, n, ends_early)
        ok = np.zeros(n, dtype=bool)
        ok[line_of] = True
        ok &= per_line == 1
        value = np.full(n, -1, dtype=np.int64)
        value[line_of] = values
        bad = np.flatnonzero(~ok | (value < 0) | (value > top))
        if bad.size:
            k = int(bad[0])
            raise literal_error(f"{what} {k}", lines.text(int(starts[k])))
        return value, pos

    pos = nl + 1
    if not binary:
        inputs, pos = single(pos, i, "input")
        wrong = np.flatnonzero(inputs != 2 * (np.arange(i) + 1))
        if wrong.size:
            k = int(wrong[0])
            raise AigerFormatError(f"{path}: input {k} is literal {int(inputs[k])}, expected {2 * (k + 1)}")
    outputs, pos = single(pos, o, "output")
    lhs = 2 * (i + 1 + np.arange(a, dtype=np.int64))
    if binary:
        deltas, pos = _decode_varints(lines.arr, pos, 2 * a)
        whole = deltas.size // 2
        r0 = lhs[:whole] - deltas[0:2 * whole:2]
        r1 = r0 - deltas[1:2 * whole:2]
        _check_topological(path, lhs, r0, r1)
        if whole < a:
            raise AigerFormatError("binary AIGER ends inside an AND gate's delta encoding")
    else:
        (values, line_of, per_line), starts, pos = lines.numbers(pos, a, ends_early)
        fields = np.full((a, 3), -1, dtype=np.int64)
        three = per_line[line_of] == 3
        rank = np.arange(values.size) - (np.cumsum(per_line) - per_line)[line_of]  # token's place in its line
        fields[line_of[three], rank[three]] = values[three]
        bad = (per_line != 3) | (fields < 0).any(1) | (fields > top).any(1) | (fields[:, 0] != lhs)
        r0, r1 = fields[:, 1], fields[:, 2]
        # The first bad line decides, as a line-by-line reader would: its fields, then its operands.
        first = np.flatnonzero(bad | (r0 >= lhs) | (r1 >= lhs))
        if first.size and bad[first[0]]:
            k = int(first[0])
            text = lines.text(int(starts[k])).split()
            if len(text) != 3:
                raise AigerFormatError(f"{path}: AND line {k} has {len(text)} fields, expected 3")
            for t in text:
                if not t.isdigit() or int(t) > top:
                    raise literal_error(f"AND {k}", t)
            raise AigerFormatError(f"{path}: AND {k} defines literal {text[0]}, expected {int(lhs[k])}")
        _check_topological(path, lhs, r0, r1)
    # Symbol table and comments (optional) are plain text after the ANDs.
    in_names: list[str] | None = None
    out_names: list[str] | None = None
    comments: list[str] = []
    text = data[pos:].decode("utf-8", "replace").splitlines()
    for n, line in enumerate(text):
        if line == "c":
            comments = text[n + 1:]
            break
        kind, _, name = line.partition(" ")
        if kind[:1] in ("i", "o") and kind[1:].isdigit():
            if kind[0] == "i":
                names = in_names = in_names if in_names is not None else [f"i{k}" for k in range(i)]
            else:
                names = out_names = out_names if out_names is not None else [f"o{k}" for k in range(o)]
            if int(kind[1:]) >= len(names):
                raise AigerFormatError(f"{path}: symbol {kind!r} refers to a missing {kind[0]}-port")
            names[int(kind[1:])] = name
        elif line.strip():
            raise AigerFormatError(f"{path}: unexpected symbol-table line {line!r}")
    return Aig(i, r0, r1, outputs, Names.of(in_names) if in_names is not None else None,
               Names.of(out_names) if out_names is not None else None, comments)


__all__ = ["AigerFormatError", "aiger_bytes", "aiger_chunks", "encode_varints", "export_aiger", "read_aiger",
           "write_aiger"]

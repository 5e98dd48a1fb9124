"""AIGER export (ASCII ``.aag`` and binary ``.aig``) of a Circuit, and a small AIGER reader.

The file is the AND-inverter graph of ``netlist.lower_to_aig``: inputs ``x[i]`` (input bit ``i`` of
the encoding), outputs ``out[k]`` = the circuit's raw output bits (class ``k // group_size``), and
with ``counts=True`` also each class's count ``count_c<c>[w]`` (LSB first) computed by a balanced
adder tree, and with ``argmax=True`` the winning class index ``class_idx[w]`` (ties to the lowest
class). No latches. The symbol table and the comment section say the same. Format: AIGER 1.9
combinational subset (header ``aag|aig M I 0 O A``), readable by ABC (``read``), Yosys
(``read_aiger``) and the AIGER tools. Example::

    from diffgates.export.aiger import export_aiger, read_aiger
    info = export_aiger(circuit, "net.aig", counts=True)
    aig = read_aiger("net.aig"); values = aig.evaluate(bits)

CLI: ``diffgates export aiger MODEL OUT.aag|OUT.aig [--counts] [--argmax] [--binary|--ascii]``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..circuit.ir import Circuit
from .netlist import Aig, NetlistInfo, add_model_arguments, circuit_from_cli, cli_errors, lower_to_aig

CLI_HELP = "write an AIGER netlist (.aag ASCII or .aig binary): raw output bits, optionally class counts"


class AigerFormatError(ValueError):
    """An AIGER file is malformed or uses features this reader does not support (latches)."""


def _encode_uint(x: int) -> bytes:
    """AIGER's 7-bits-per-byte variable-length unsigned integer."""
    out = bytearray()
    while x & ~0x7F:
        out.append((x & 0x7F) | 0x80)
        x >>= 7
    out.append(x)
    return bytes(out)


def aiger_bytes(aig: Aig, binary: bool) -> bytes:
    """Serialise ``aig`` as AIGER text (``aag``) or binary (``aig``).

    Args:
        aig: the graph; ANDs must be topologically numbered (``Aig`` guarantees it).
        binary: binary ``aig`` format instead of ASCII ``aag``.

    Returns:
        the file contents.
    """
    m, i, o, a = aig.max_var, aig.n_inputs, len(aig.outputs), len(aig.ands)
    parts = [f"{'aig' if binary else 'aag'} {m} {i} 0 {o} {a}\n".encode()]
    if not binary:
        parts.append("".join(f"{2 * (k + 1)}\n" for k in range(i)).encode())
    parts.append("".join(f"{lit}\n" for lit in aig.outputs).encode())
    if binary:
        body = bytearray()
        for k, (r0, r1) in enumerate(aig.ands):
            lhs = 2 * (i + 1 + k)
            body += _encode_uint(lhs - r0) + _encode_uint(r0 - r1)  # deltas: lhs > rhs0 >= rhs1
        parts.append(bytes(body))
    else:
        parts.append("".join(f"{2 * (i + 1 + k)} {r0} {r1}\n" for k, (r0, r1) in enumerate(aig.ands)).encode())
    symbols = [f"i{k} {name}\n" for k, name in enumerate(aig.input_names)]
    symbols += [f"o{k} {name}\n" for k, name in enumerate(aig.output_names)]
    parts.append("".join(symbols).encode())
    if aig.comments:
        parts.append(("c\n" + "".join(f"{line}\n" for line in aig.comments)).encode())
    return b"".join(parts)


def export_aiger(circuit: Circuit, path: str | os.PathLike, counts: bool = False,
                 binary: bool | None = None, argmax: bool = False) -> NetlistInfo:
    """Write ``circuit`` as an AIGER file.

    Args:
        circuit: the circuit.
        path: output file; ``.aig`` means binary and ``.aag`` ASCII unless ``binary`` is given.
        counts: add each class's count bits as outputs after the raw output bits.
        binary: force the binary (True) or ASCII (False) format.
        argmax: add the argmax class index bits as the last outputs.

    Returns:
        a ``NetlistInfo`` (AND count, depth, ...).
    """
    path = Path(path)
    if binary is None:
        suffix = path.suffix.lower()
        if suffix not in (".aig", ".aag"):
            raise ValueError(f"cannot tell the AIGER format from {path.name!r}: expected a .aag (ASCII) or "
                             f".aig (binary) file name, or choose with binary=True/False (CLI: --binary/--ascii)")
        binary = suffix == ".aig"
    aig = lower_to_aig(circuit, counts=counts, argmax=argmax)
    path.write_bytes(aiger_bytes(aig, binary))
    return NetlistInfo(path=str(path), format="aig" if binary else "aag", inputs=aig.n_inputs,
                       outputs=len(aig.outputs), nodes=len(aig.ands), depth=aig.depth(), counts=counts,
                       argmax=argmax)


def _decode_uint(data: bytes, pos: int) -> tuple[int, int]:
    x, shift = 0, 0
    while True:
        if pos >= len(data):
            raise AigerFormatError("binary AIGER ends inside an AND gate's delta encoding")
        byte = data[pos]
        pos += 1
        x |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return x, pos
        shift += 7


def read_aiger(path: str | os.PathLike) -> Aig:
    """Read a combinational AIGER file (ASCII or binary) into an ``Aig``.

    Only what this package writes is needed, but any combinational AIGER with inputs numbered
    1..I and ANDs numbered I+1..M in order (as the binary format requires) is accepted.

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
    pos = nl + 1

    def next_line() -> str:
        nonlocal pos
        end = data.find(b"\n", pos)
        if end < 0:
            raise AigerFormatError(f"{path}: file ends early (expected {i} inputs, {o} outputs, {a} ANDs)")
        line = data[pos:end].decode("ascii", "replace").strip()
        pos = end + 1
        return line

    def literal(text: str, what: str) -> int:
        if not text.isdigit() or int(text) > 2 * m + 1:
            raise AigerFormatError(f"{path}: {what} literal {text!r} is not in 0..{2 * m + 1}")
        return int(text)

    aig = Aig(i)
    if not binary:
        for k in range(i):
            lit = literal(next_line(), f"input {k}")
            if lit != 2 * (k + 1):
                raise AigerFormatError(f"{path}: input {k} is literal {lit}, expected {2 * (k + 1)}")
    outputs = [literal(next_line(), f"output {k}") for k in range(o)]
    for k in range(a):
        lhs = 2 * (i + 1 + k)
        if binary:
            d0, pos = _decode_uint(data, pos)
            d1, pos = _decode_uint(data, pos)
            r0, r1 = lhs - d0, lhs - d0 - d1
        else:
            fields = next_line().split()
            if len(fields) != 3:
                raise AigerFormatError(f"{path}: AND line {k} has {len(fields)} fields, expected 3")
            got, r0, r1 = (literal(t, f"AND {k}") for t in fields)
            if got != lhs:
                raise AigerFormatError(f"{path}: AND {k} defines literal {got}, expected {lhs}")
        if not (0 <= r0 < lhs and 0 <= r1 < lhs):
            raise AigerFormatError(f"{path}: AND {k} (literal {lhs}) reads {r0}, {r1}: not topological")
        aig.ands.append((max(r0, r1), min(r0, r1)))
    aig.outputs = outputs
    aig.output_names = [f"o{k}" for k in range(o)]
    # Symbol table and comments (optional) are plain text after the ANDs.
    lines = data[pos:].decode("utf-8", "replace").splitlines()
    for n, line in enumerate(lines):
        if line == "c":
            aig.comments = lines[n + 1:]
            break
        kind, _, name = line.partition(" ")
        if kind[:1] in ("i", "o") and kind[1:].isdigit():
            names = aig.input_names if kind[0] == "i" else aig.output_names
            if int(kind[1:]) >= len(names):
                raise AigerFormatError(f"{path}: symbol {kind!r} refers to a missing {kind[0]}-port")
            names[int(kind[1:])] = name
        elif line.strip():
            raise AigerFormatError(f"{path}: unexpected symbol-table line {line!r}")
    return aig


# ---- CLI ----------------------------------------------------------------------------------------
def configure_cli(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--counts", action="store_true",
                        help="also output each class's count (balanced adder tree) after the raw output bits")
    parser.add_argument("--argmax", action="store_true",
                        help="also output the winning class index (ties to the lowest class), last")
    # Not "--format": `diffgates export` keeps the format name in args.format.
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--binary", dest="aiger_binary", action="store_const", const=True, default=None,
                      help="write binary AIGER whatever OUT's suffix (default: .aig binary, .aag ASCII)")
    kind.add_argument("--ascii", dest="aiger_binary", action="store_const", const=False,
                      help="write ASCII AIGER whatever OUT's suffix")


def run_cli(args: argparse.Namespace) -> int:
    def body() -> int:
        circuit = circuit_from_cli(args)
        print(export_aiger(circuit, args.out, counts=args.counts, binary=args.aiger_binary,
                           argmax=args.argmax).summary())
        return 0

    return cli_errors("diffgates export aiger", body)

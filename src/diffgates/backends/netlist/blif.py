"""BLIF files of a Circuit (Berkeley Logic Interchange Format, for ABC, Yosys, VPR, SIS).

Two styles:

* ``style='gates'`` (default): one ``.names`` table per gate of the circuit (node ``v`` is net
  ``n<v>``), its cover taken from ``gates.GATES[op]`` (only the inputs the gate uses are listed);
* ``style='aig'``: the AND-inverter graph of ``aig.lower_to_aig`` (AND var ``v`` is ``a<v>``).

Inputs are ``x[i]`` (input bit ``i`` of the encoding); outputs ``out[k]`` are the circuit's raw
output bits (class ``k // group_size``), each driven by a buffer. With ``counts=True`` (grouped
heads only) the outputs also include every class's count ``count_c<c>[w]`` (LSB first), a balanced
tree of ripple-carry adders built as an AIG over the ``out[k]`` nets (nets ``c<v>``). Threshold
cells are lowered to gates first (``diffgates.ir.lower_cells``).

The text is generated with ``backends._text`` (every table of a kind at once, no loop per gate)
and streamed to the file through ``_atomic.atomic_write``. Example::

    from diffgates.backends.netlist.blif import export_blif
    export_blif(circuit, "net.blif", counts=True)
    # berkeley-abc -c "read net.blif; strash; print_stats"
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator

import numpy as np

from ... import gates
from ..._atomic import atomic_write
from ...ir import Circuit, lower_cells
from ...ir.circuit import USES_A, USES_B
from .._text import Choice, Masked, render
from .aig import (TEXT_CHUNK, Aig, Names, NetlistInfo, count_aig, count_names, describe_outputs, input_names,
                  lower_to_aig, output_names)

STYLES = ("gates", "aig")
PER_LINE = 16  # names per line of .inputs / .outputs (continued with a backslash)


def _gate_cover(op: int) -> tuple[list[str], list[str]]:
    """(used operands among 'a', 'b'; on-set rows) of gate ``op``, from its formula and truth table."""
    g = gates.GATES[op]
    used = [v for v in ("a", "b") if "{" + v + "}" in g.formula]
    rows = []
    for a, b in ((0, 0), (0, 1), (1, 0), (1, 1)):
        point = {"a": a, "b": b}
        if any(point[v] for v in ("a", "b") if v not in used):
            continue  # an input the gate ignores is enumerated at 0 only
        if g(a, b):
            cube = "".join(str(point[v]) for v in used)
            rows.append(f"{cube} 1" if used else "1")  # a constant-1 table has a bare "1" row
    return used, rows


# (operands, cover rows) per gate id, derived from diffgates.gates.
GATE_COVERS = tuple(_gate_cover(op) for op in range(gates.NUM_GATES))
_COVER_TEXT = [("".join(r + "\n" for r in rows)).encode() for _, rows in GATE_COVERS]
_LISTS_A = np.array(["a" in used for used, _ in GATE_COVERS] + [False])
_LISTS_B = np.array(["b" in used for used, _ in GATE_COVERS] + [False])
assert np.array_equal(_LISTS_A[:-1], USES_A[:-1]) and np.array_equal(_LISTS_B[:-1], USES_B[:-1])


def _wrapped(keyword: bytes, names: Names) -> Iterator[bytes]:
    """A ``.inputs``/``.outputs`` line, continued with backslashes every ``PER_LINE`` names."""
    n = len(names)
    yield keyword + b" "
    if not n:
        yield b"\n"
        return

    def after(s: int, e: int) -> list:
        k = np.arange(s, e)
        sep = np.where(k == n - 1, 2, np.where(k % PER_LINE == PER_LINE - 1, 1, 0))
        return [Choice(sep, [b" ", b" \\\n ", b"\n"])]

    yield from names.render(after=after)


def _node_name(nodes: np.ndarray, n_inputs: int, show: np.ndarray | None = None) -> list:
    """Fields of net names: input bit ``x[i]`` or gate node ``n<v>`` (nothing where ``show`` is False)."""
    kind = np.where(nodes < n_inputs, 1, 2)
    if show is not None:
        kind = np.where(show, kind, 0)
        return [Choice(kind, [b"", b" x[", b" n"]), Masked(nodes, show), Choice(kind, [b"", b"]", b""])]
    return [Choice(kind, [b"", b"x[", b"n"]), nodes, Choice(kind, [b"", b"]", b""])]


def _gate_tables(circuit: Circuit) -> Iterator[bytes]:
    """``.names`` of every gate (node ``v`` is ``n<v>``), then a buffer per raw output."""
    n_in = circuit.n_inputs
    for s in range(0, circuit.n_gates, TEXT_CHUNK):
        op = circuit.ops[s:s + TEXT_CHUNK]
        a, b = circuit.a[s:s + TEXT_CHUNK], circuit.b[s:s + TEXT_CHUNK]
        yield render([b".names", *_node_name(a, n_in, _LISTS_A[op]), *_node_name(b, n_in, _LISTS_B[op]),
                      b" n", n_in + s + np.arange(op.size, dtype=np.int64), b"\n", Choice(op, _COVER_TEXT)], op.size)
    for s in range(0, circuit.n_outputs, TEXT_CHUNK):
        v = circuit.outputs[s:s + TEXT_CHUNK]
        yield render([b".names ", *_node_name(v, n_in), b" out[", s + np.arange(v.size, dtype=np.int64),
                      b"]\n1 1\n"], v.size)


def _var_name(var: np.ndarray, aig: Aig, input_prefix: bytes, and_prefix: bytes) -> list:
    """Fields of AIG var names: input ``v`` is ``<input_prefix>[v-1]``, an AND ``<and_prefix><v>``."""
    is_and = var > aig.n_inputs
    return [Choice(is_and.astype(np.int8), [input_prefix + b"[", and_prefix]), np.where(is_and, var, var - 1),
            Choice(is_and.astype(np.int8), [b"]", b""])]


def _aig_tables(aig: Aig, input_prefix: bytes, and_prefix: bytes) -> Iterator[bytes]:
    """``.names`` for every AND of ``aig``; complemented operands become 0 in the cover row."""
    for s in range(0, aig.n_ands, TEXT_CHUNK):
        r0, r1 = aig.rhs0[s:s + TEXT_CHUNK], aig.rhs1[s:s + TEXT_CHUNK]
        var = aig.n_inputs + 1 + s + np.arange(r0.size, dtype=np.int64)
        yield render([b".names ", *_var_name(r0 >> 1, aig, input_prefix, and_prefix), b" ",
                      *_var_name(r1 >> 1, aig, input_prefix, and_prefix), b" " + and_prefix, var, b"\n",
                      Choice(r0 & 1, [b"1", b"0"]), Choice(r1 & 1, [b"1", b"0"]), b" 1\n"], r0.size)


def _drivers(aig: Aig, names: Names, input_prefix: bytes, and_prefix: bytes) -> Iterator[bytes]:
    """A table driving each output net ``names[k]`` with ``aig.outputs[k]``: constant, buffer or inverter."""
    lits = aig.outputs

    def before(s: int, e: int) -> list:
        var = lits[s:e] >> 1
        kind = np.where(var == 0, 0, np.where(var > aig.n_inputs, 2, 1))
        return [b".names ", Choice(kind, [b"", input_prefix + b"[", and_prefix]),
                Masked(np.where(kind == 1, var - 1, var), kind > 0), Choice(kind, [b"", b"] ", b" "])]

    def after(s: int, e: int) -> list:
        lit = lits[s:e]
        cover = np.where(lit >> 1 == 0, lit & 1, 2 + (lit & 1))  # 0 / 1: constant; 2: buffer, 3: inverter
        return [b"\n", Choice(cover, [b"", b"1\n", b"1 1\n", b"0 1\n"])]

    yield from names.render(before=before, after=after)


def _check(style: str, model: str) -> None:
    if style not in STYLES:
        raise ValueError(f"BLIF style {style!r} is not known; expected one of {STYLES}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", model):
        raise ValueError(f"BLIF model name {model!r} must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")


def blif_chunks(circuit: Circuit, style: str = "gates", counts: bool = False,
                model: str = "logic_net") -> tuple[Iterator[bytes], int, int]:
    """The BLIF file of ``circuit`` in chunks (see ``blif_text`` for the arguments).

    Returns:
        (chunks, logic tables excluding the output buffers, depth): the gate depth of the raw outputs
        (style 'gates') or their AND depth (style 'aig').
    """
    _check(style, model)
    head = "\n".join(["# diffgates logic gate network, BLIF style " + style]
                     + ["# " + line for line in describe_outputs(circuit, counts)]) + "\n"
    ins, outs = input_names(circuit), output_names(circuit)
    all_outs = outs + count_names(circuit) if counts else outs
    if circuit.has_cells:
        circuit = lower_cells(circuit)
    if style == "gates":
        cnt = count_aig(circuit) if counts else None
        tables = circuit.n_gates + (cnt.n_ands if cnt is not None else 0)
        depth = circuit.depth()

        def body() -> Iterator[bytes]:
            yield from _gate_tables(circuit)
            if cnt is not None:  # the adder trees: an AIG whose inputs are the out[k] nets
                yield from _aig_tables(cnt, b"out", b"c")
                yield from _drivers(cnt, cnt.output_names, b"out", b"c")
    else:
        aig = lower_to_aig(circuit, counts=counts)
        tables = aig.n_ands
        raw = aig.outputs[:circuit.n_outputs] >> 1
        depth = int(aig.levels()[raw].max()) if raw.size else 0

        def body() -> Iterator[bytes]:
            yield from _aig_tables(aig, b"x", b"a")
            yield from _drivers(aig, all_outs, b"x", b"a")

    def chunks() -> Iterator[bytes]:
        yield head.encode() + f".model {model}\n".encode()
        yield from _wrapped(b".inputs", ins)
        yield from _wrapped(b".outputs", all_outs)
        yield from body()
        yield b".end\n"

    return chunks(), tables, depth


def blif_text(circuit: Circuit, style: str = "gates", counts: bool = False,
              model: str = "logic_net") -> tuple[str, int]:
    """The BLIF text of ``circuit``.

    Args:
        circuit: the circuit.
        style: 'gates' (one table per gate) or 'aig' (AND-inverter lowering).
        counts: also output the class counts (grouped heads only).
        model: the ``.model`` name.

    Returns:
        (text, number of logic tables excluding the output buffers).

    Raises:
        ValueError: an unknown style, a model name that is no identifier, counts of a 'bits' head.
    """
    chunks, tables, _ = blif_chunks(circuit, style, counts, model)
    return b"".join(chunks).decode(), tables


def export_blif(circuit: Circuit, path: str | os.PathLike, style: str = "gates", counts: bool = False,
                model: str = "logic_net") -> NetlistInfo:
    """Write ``circuit`` as BLIF to ``path``, atomically (see ``blif_text`` for the arguments).

    Returns:
        a ``NetlistInfo``; ``depth`` is the gate depth (style 'gates') or AND depth (style 'aig').
    """
    chunks, tables, depth = blif_chunks(circuit, style=style, counts=counts, model=model)
    with atomic_write(path, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
    return NetlistInfo(path=str(path), format="blif", inputs=circuit.n_inputs,
                       outputs=circuit.n_outputs + (circuit.num_classes * circuit.count_bits() if counts else 0),
                       nodes=tables, depth=depth, counts=counts)


__all__ = ["STYLES", "GATE_COVERS", "blif_chunks", "blif_text", "export_blif"]

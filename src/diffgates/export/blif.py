"""BLIF export of a Circuit (Berkeley Logic Interchange Format, for ABC, Yosys, VPR, SIS).

Two styles:

* ``style='gates'`` (default): one ``.names`` table per gate of the circuit (node ``v`` is net
  ``n<v>``), its cover taken from ``gates.GATES[op]`` (only the inputs the gate uses are listed);
* ``style='aig'``: the AND-inverter graph of ``netlist.lower_to_aig`` (AND var ``v`` is ``a<v>``).

Inputs are ``x[i]`` (input bit ``i`` of the encoding); outputs ``out[k]`` are the circuit's raw
output bits (class ``k // group_size``), each driven by a buffer. With ``counts=True`` the outputs
also include every class's count ``count_c<c>[w]`` (LSB first), a balanced tree of ripple-carry
adders built as an AIG over the ``out[k]`` nets (nets ``c<v>``). Example::

    from diffgates.export.blif import export_blif
    export_blif(circuit, "net.blif", counts=True)
    # berkeley-abc -c "read net.blif; strash; print_stats"

CLI: ``diffgates export blif MODEL OUT.blif [--style gates|aig] [--counts]``.
"""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Callable, Iterable

from .. import gates
from ..circuit.ir import Circuit
from .netlist import (Aig, NetlistInfo, add_group_counts, add_model_arguments, circuit_from_cli,
                      cli_errors, count_names, describe_outputs, input_names, lower_to_aig, output_names)

CLI_HELP = "write a BLIF netlist (one .names per gate, or the AIG lowering), optionally with class counts"
STYLES = ("gates", "aig")


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


def _names(inputs: Iterable[str], output: str, rows: Iterable[str]) -> str:
    return " ".join([".names", *inputs, output]) + "\n" + "".join(r + "\n" for r in rows)


def _wrapped(keyword: str, names: list[str], per_line: int = 16) -> str:
    """A ``.inputs``/``.outputs`` line, continued with backslashes every ``per_line`` names."""
    chunks = [" ".join(names[k:k + per_line]) for k in range(0, len(names), per_line)] or [""]
    return keyword + " " + " \\\n ".join(chunks) + "\n"


def _aig_tables(aig: Aig, var_name: Callable[[int], str]) -> list[str]:
    """``.names`` for every AND of ``aig``; complemented operands become 0 in the cover row."""
    out = []
    for k, (r0, r1) in enumerate(aig.ands):
        row = f"{1 - (r0 & 1)}{1 - (r1 & 1)} 1"
        out.append(_names([var_name(r0 >> 1), var_name(r1 >> 1)], var_name(aig.n_inputs + 1 + k), [row]))
    return out


def _drive(lit: int, var_name: Callable[[int], str], out: str) -> str:
    """A table driving net ``out`` with AIG literal ``lit`` (constant, buffer or inverter)."""
    if lit >> 1 == 0:
        return _names([], out, ["1"] if lit & 1 else [])
    return _names([var_name(lit >> 1)], out, ["0 1" if lit & 1 else "1 1"])


def blif_text(circuit: Circuit, style: str = "gates", counts: bool = False,
              model: str = "logic_net") -> tuple[str, int]:
    """The BLIF text of ``circuit``.

    Args:
        circuit: the circuit.
        style: 'gates' (one table per gate) or 'aig' (AND-inverter lowering).
        counts: also output the class counts.
        model: the ``.model`` name.

    Returns:
        (text, number of logic tables excluding the output buffers).
    """
    if style not in STYLES:
        raise ValueError(f"BLIF style {style!r} is not known; expected one of {STYLES}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", model):
        raise ValueError(f"BLIF model name {model!r} must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
    ins, outs = input_names(circuit), output_names(circuit)
    all_outs = outs + (count_names(circuit) if counts else [])
    head = ["# diffgates logic gate network, BLIF style " + style] + [
        "# " + line for line in describe_outputs(circuit, counts)]
    body: list[str] = []
    if style == "gates":
        node = ins + [f"n{circuit.n_inputs + i}" for i in range(circuit.n_gates)]
        for i, (op, a, b) in enumerate(zip(circuit.ops.tolist(), circuit.a.tolist(), circuit.b.tolist())):
            used, rows = GATE_COVERS[op]
            operands = [node[a] if v == "a" else node[b] for v in used]
            body.append(_names(operands, node[circuit.n_inputs + i], rows))
        tables = circuit.n_gates
        body += [_names([node[v]], name, ["1 1"]) for v, name in zip(circuit.outputs.tolist(), outs)]
        if counts:
            # The adder trees are an AIG whose inputs are the out[k] nets.
            cnt = Aig(circuit.n_outputs, outs)
            bits = add_group_counts(cnt, [cnt.input(k) for k in range(circuit.n_outputs)], circuit)

            def cnt_name(var: int) -> str:
                return outs[var - 1] if var <= cnt.n_inputs else f"c{var}"

            body += _aig_tables(cnt, cnt_name)
            tables += len(cnt.ands)
            body += [_drive(lit, cnt_name, name)
                     for lit, name in zip((b for cls in bits for b in cls), count_names(circuit))]
    else:
        aig = lower_to_aig(circuit, counts=counts)

        def var_name(var: int) -> str:
            return ins[var - 1] if var <= aig.n_inputs else f"a{var}"

        body += _aig_tables(aig, var_name)
        tables = len(aig.ands)
        body += [_drive(lit, var_name, name) for lit, name in zip(aig.outputs, all_outs)]
    text = ("\n".join(head) + "\n" + f".model {model}\n" + _wrapped(".inputs", ins)
            + _wrapped(".outputs", all_outs) + "".join(body) + ".end\n")
    return text, tables


def export_blif(circuit: Circuit, path: str | os.PathLike, style: str = "gates", counts: bool = False,
                model: str = "logic_net") -> NetlistInfo:
    """Write ``circuit`` as BLIF to ``path`` (see ``blif_text`` for the arguments).

    Returns:
        a ``NetlistInfo``; ``depth`` is the gate depth (style 'gates') or AND depth (style 'aig').
    """
    text, tables = blif_text(circuit, style=style, counts=counts, model=model)
    Path(path).write_text(text)
    depth = circuit.depth() if style == "gates" else lower_to_aig(circuit).depth()
    return NetlistInfo(path=str(path), format="blif", inputs=circuit.n_inputs,
                       outputs=circuit.n_outputs + (circuit.num_classes * circuit.count_bits() if counts else 0),
                       nodes=tables, depth=depth, counts=counts)


# ---- CLI ----------------------------------------------------------------------------------------
def configure_cli(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--style", choices=STYLES, default="gates",
                        help="'gates': one .names table per gate (default); 'aig': AND-inverter lowering")
    parser.add_argument("--counts", action="store_true",
                        help="also output each class's count (balanced adder tree) after the raw output bits")
    parser.add_argument("--model-name", default="logic_net", help="the .model name (default logic_net)")


def run_cli(args: argparse.Namespace) -> int:
    def body() -> int:
        circuit = circuit_from_cli(args)
        print(export_blif(circuit, args.out, style=args.style, counts=args.counts, model=args.model_name).summary())
        return 0

    return cli_errors("diffgates export blif", body)

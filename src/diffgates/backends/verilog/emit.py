"""Verilog export of a Circuit: a documented port contract, optional pipelining, no per-gate Python loop.

Port contract of the generated module (``K`` classes, ``G`` outputs per class, ``W`` =
``circuit.count_bits()`` = bit length of ``G``, ``CB`` = max(1, ceil(log2 K))), by the circuit's head:

* ``input  wire [IN-1:0]  x``          bit ``i`` = input bit ``i`` of the circuit's encoding
  (``circuit.input_layout``, quoted in the header comment and stored in the JSON sidecar);
* head ``group_sum``: ``output wire [K*W-1:0] y``, class ``c``'s count (0..G) at ``y[c*W +: W]``,
  unsigned; with ``argmax=True`` also ``output wire [CB-1:0] class_idx``, the class with the highest
  count, ties to the lowest index (numpy ``argmax``);
* head ``argmax``: ``class_idx`` only (the head's result is the class; the counts stay internal, so
  there is no ``y``). ``argmax`` need not be given;
* head ``bits``: ``output wire [N-1:0] y``, ``y[k]`` = output bit ``k`` (node ``circuit.outputs[k]``);
  there are no classes, so ``argmax=True`` is a ValueError;
* pipelined (``pipeline=n >= 1``): ``clk``; ``rst`` (``reset=True``, synchronous, active high, clears
  the valid pipeline only); ``in_valid``; ``out_valid``. Inputs presented before rising edge ``t``
  appear on the outputs with ``out_valid`` after rising edge ``t + L - 1``: latency ``L`` cycles,
  one new vector per cycle. Data registers have no reset (plain flip-flops / shift registers).

Structure: one ``wire`` per gate (``n<v>`` for node ``v``, the expression filled into
``gates.GATES[op].formula``); per class a balanced adder tree (``s<c>_<t>_<j>``: class ``c``, tree
level ``t``, index ``j``; neighbours paired level by level, an odd one carried; widths grow by one bit
per level up to ``W``; depth ``ceil(log2 G)``), then an argmax tournament (``am<t>_<j>_v``/``_i``,
the right one wins only if strictly greater; depth ``ceil(log2 K)``).

Threshold cells (``popcount(row) >= T``) are native RTL, not lowered to gates: per cell a balanced
adder tree of the same shape over its literals (``t<v>_<t>_<j>``; a negated literal is read as
``!n<u>``, a 1-bit value, at no level), then ``wire n<v> = <count> >= <w>'d<T>;``. A cell whose
threshold is decided (``T <= 0``: true; ``T`` above the row's length: false) is a constant wire.

Every signal gets a *level*: gates 1 + their deepest operand (``circuit.levels()`` when there are no
threshold cells), each adder, compare or duel 1 + the deepest operand, constants 0. With
``pipeline=n`` a register stage follows every ``n`` levels (stage ``s`` holds levels
``s*n+1 .. (s+1)*n``); a value used ``k`` stages after it is computed travels through ``k`` registers
named ``<name>_p<stage>``; the outputs are registered, so latency ``L = max(1, ceil(total_levels / n))``.
Input bits are wires ``n<i>`` (= ``x[i]``), constant gates plain wires read by every stage (never
registered); gates that feed no output are left out. The same text comes out for the same circuit
and arguments.

The design is a table of arrays (``design``: one row per signal) and the text comes from
``backends._text`` in chunks of rows, and ``export_verilog`` streams it to the file (with the JSON
sidecar, as one set of ``diffgates._atomic.atomic_files``: neither replaces an old file before both are
written). Measured on 2 cores: a random layered 10-million-gate circuit (784 inputs, 10
layers of 1M, 10 classes) exports in 11 s combinational (460 MB of text) and 20 s with
``pipeline=2`` (780 MB, 6.2M register bits), 1.7 GB peak RSS. Example::

    from diffgates.backends.verilog import export_verilog
    info = export_verilog(circuit, "net.v", pipeline=2, argmax=True)
    print(info.summary())          # gates, depths, latency, registers; net.v.json holds the same

``diffgates.export_verilog`` (``diffgates.deploy``) also takes a trained model; the command line is
``diffgates export verilog MODEL OUT.v`` (``diffgates.commands``).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..._atomic import atomic_files
from ...ir import Circuit
from .._text import Choice, Masked, render
from .design import (INPUT, LOGIC, NAME_PREFIX, NAME_SEP1, NAME_SEP2, NAME_SHOW, NAME_SUFFIX, TEMPLATES, Design,
                     Schedule, build_design, schedule, split_template)

# Words a module name must not be (the Verilog-2005 / SystemVerilog keywords a user might pick).
_KEYWORDS = frozenset("""always and assign begin buf case casex casez cmos deassign default defparam disable
edge else end endcase endfunction endmodule endprimitive endspecify endtable endtask event for force
forever fork function highz0 highz1 if initial inout input integer join large macromodule medium module
nand negedge nmos nor not notif0 notif1 or output parameter pmos posedge primitive pull0 pull1 pulldown
pullup rcmos real realtime reg release repeat rnmos rpmos rtran rtranif0 rtranif1 scalared small specify
specparam strong0 strong1 supply0 supply1 table task time tran tranif0 tranif1 tri tri0 tri1 triand trior
trireg vectored wait wand weak0 weak1 while wire wor xnor xor logic bit byte int shortint longint class
interface package program generate genvar localparam signed unsigned automatic""".split())
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LAYOUT_COMMENT_CHARS = 4000  # longer input layouts are only in the JSON sidecar
_CHUNK = 1 << 17  # rows of text rendered at once (bounds the temporaries)

# Per template: the text pieces around its operands and which operand fills each slot (4 = none).
_SPLIT = [split_template(t) for t in TEMPLATES]
_PIECES = [[pieces[s] for pieces, _ in _SPLIT] for s in range(5)]
_SLOTS = np.array([[4 if k < 0 else k for k in slots] for _, slots in _SPLIT], dtype=np.intp)


@dataclass
class ExportInfo:
    """What ``export_verilog`` produced; ``to_dict()`` is the JSON sidecar."""
    module: str
    ports: list[dict[str, Any]]
    pipeline: int  # 0 = combinational, else logic levels per register stage
    latency: int  # clock cycles from in_valid to out_valid (0 when combinational)
    levels: int  # logic depth of the node network in RTL levels (circuit.depth() without threshold cells)
    adder_tree_depth: int  # adder levels of one class's group sum: ceil(log2 group_size)
    argmax_depth: int  # comparator levels of the argmax tournament (0 without class_idx)
    total_levels: int  # deepest level of any output signal (gates + adders + comparators)
    gates: int  # cells of the circuit (gates and threshold cells)
    gates_emitted: int  # of those, the ones in the fan-in of an output (the others are left out)
    registers: int  # flip-flop bits (data + valid)
    inputs: int
    classes: int
    group_size: int  # outputs per class ('bits' head: all outputs)
    count_bits: int  # W (1 for a 'bits' head: each y bit is one output)
    class_index_bits: int  # CB (width of class_idx)
    argmax: bool  # whether class_idx is a port
    reset: bool
    input_layout: dict[str, Any] | None
    output_encoding: str
    path: str | None = None
    sidecar: str | None = None
    synthesis: dict[str, Any] | None = field(default=None)
    head: str = "group_sum"  # the circuit's head kind: which ports carry the result
    outputs: int = 0  # output nodes of the circuit
    thresholds: int = 0  # threshold cells (native: adder tree + compare each)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        d.pop("sidecar")
        return d

    @property
    def y_width(self) -> int:
        """Bits of the ``y`` port (0 when there is none: an 'argmax' head)."""
        return next((p["width"] for p in self.ports if p["name"] == "y"), 0)

    def summary(self) -> str:
        """A resource and latency summary (what ``diffgates export verilog`` prints)."""
        shape = (f"classes: {self.classes} x {self.group_size} outputs, counts {self.count_bits} bits"
                 if self.head != "bits" else f"outputs: {self.outputs} bits")
        cells = f" ({self.thresholds} threshold cells)" if self.thresholds else ""
        lines = [f"module {self.module} ({_kind(self.pipeline)})" + (f" -> {self.path}" if self.path else ""),
                 "  ports: " + ", ".join(f"{p['name']}[{p['width']}]" for p in self.ports),
                 f"  gates: {self.gates}{cells} ({self.gates_emitted} feed an output)   inputs: {self.inputs}   "
                 f"{shape}",
                 f"  depth: gate levels {self.levels}, adder tree {self.adder_tree_depth}, argmax "
                 f"{self.argmax_depth}, total {self.total_levels}",
                 f"  latency: {self.latency} cycles   registers: {self.registers} bits"]
        if self.synthesis:
            s = self.synthesis
            lines.append(f"  {s['tool']} ({s['includes']}): {s['luts']} LUT-{s['lut_size']} (depth "
                         f"{s['lut_depth']}), {s['gates_after_opt']} 2-input gates/inverters after optimisation "
                         f"(depth {s['gate_depth']}), {s['seconds']:.1f} s")
        return "\n".join(lines)


def _kind(pipeline: int) -> str:
    if not pipeline:
        return "combinational"
    return f"pipelined, a register stage every {pipeline} level{'s' if pipeline > 1 else ''}"


def _check_args(circuit: Circuit, module: str, pipeline: int, argmax: bool, reset: bool) -> None:
    if not isinstance(module, str) or not _IDENT.fullmatch(module) or module in _KEYWORDS:
        raise ValueError(f"module name {module!r} is not a usable Verilog identifier (expected "
                         f"[A-Za-z_][A-Za-z0-9_]* and not a keyword)")
    if isinstance(pipeline, bool) or not isinstance(pipeline, int) or pipeline < 0:
        raise ValueError(f"pipeline={pipeline!r}: expected an integer >= 0 (0 = combinational, n = a register "
                         f"stage every n logic levels)")
    for name, value in (("argmax", argmax), ("reset", reset)):
        if not isinstance(value, bool):
            raise ValueError(f"{name}={value!r}: expected True or False")
    if argmax and circuit.head.kind == "bits":
        raise ValueError("argmax=True needs class groups, but this circuit's head is 'bits' (y carries the raw "
                         "output bits); export it without argmax")
    if circuit.n_inputs < 1:
        raise ValueError("the circuit has no inputs; a Verilog module needs x to be at least 1 bit wide")


def _ports(circuit: Circuit, pipeline: int, class_idx: bool, reset: bool, latency: int) -> list[dict[str, Any]]:
    """The module's ports in declaration order, with widths and one-line meanings."""
    k, w, head = circuit.num_classes, circuit.count_bits(), circuit.head.kind
    port = lambda name, direction, width, text: {"name": name, "direction": direction, "width": width,
                                                 "description": text}  # noqa: E731
    ports = []
    if pipeline:
        ports.append(port("clk", "input", 1, "rising-edge clock"))
        if reset:
            ports.append(port("rst", "input", 1, "synchronous, active high: clears the valid pipeline "
                                                 "(data registers are not reset)"))
        ports.append(port("in_valid", "input", 1, "x holds a vector this cycle"))
    ports.append(port("x", "input", circuit.n_inputs, "bit i = input bit i of the encoding (see input_layout)"))
    if head == "group_sum":
        ports.append(port("y", "output", k * w, f"class c's count (0..{circuit.group_size}) at y[c*{w} +: {w}], "
                                                f"unsigned"))
    elif head == "bits":
        ports.append(port("y", "output", circuit.n_outputs, "bit k = output k of the circuit (node outputs[k])"))
    if class_idx:
        ports.append(port("class_idx", "output", max(1, (k - 1).bit_length()),
                          "class with the highest count; ties -> lowest index"))
    if pipeline:
        result = {"group_sum": "y/class_idx hold", "argmax": "class_idx holds", "bits": "y holds"}[head]
        ports.append(port("out_valid", "output", 1, f"{result} the result of the vector given "
                                                    f"{latency} cycles earlier"))
    return ports


def _output_encoding(circuit: Circuit) -> str:
    k, w = circuit.num_classes, circuit.count_bits()
    if circuit.head.kind == "group_sum":
        return f"class c's count at y[c*{w} +: {w}] (c = 0..{k - 1}), unsigned"
    if circuit.head.kind == "argmax":
        return f"class_idx = the class (0..{k - 1}) with the highest count, ties -> lowest index; no y"
    return f"y[k] = output bit k (k = 0..{circuit.n_outputs - 1})"


def _header_lines(circuit: Circuit, info: ExportInfo) -> list[str]:
    k, w = info.classes, info.count_bits
    lines = [f"{info.module}: logic gate network exported by diffgates ({_kind(info.pipeline)})", "",
             "Port contract:"]
    for p in info.ports:
        lines.append(f"  {p['direction']:<6} {p['name']:<9} [{p['width']}]  {p['description']}")
    lines.append("")
    if info.head == "bits":
        lines.append(f"Outputs: {info.outputs} bits (head 'bits': y[k] is circuit output k, no class counts).")
    else:
        lines.append(f"Classes K = {k}, outputs per class G = {info.group_size}, count width W = {w}, "
                     f"class index width = {info.class_index_bits}.")
        if info.head == "argmax":
            lines.append("Head 'argmax': class_idx is the result; the class counts stay internal (no y port).")
    lines.append(f"Gates: {info.gates} ({info.gates - info.gates_emitted} feed no output and are left out).")
    if info.thresholds:
        lines.append(f"Threshold cells: {info.thresholds}, each a balanced adder tree over its literals (a negated "
                     f"one read as !n<v>) and one >= compare.")
    if info.head == "bits":
        lines.append(f"Levels: gate network {info.levels}, total {info.total_levels}.")
    else:
        lines.append(f"Levels: gate network {info.levels}, adder tree {info.adder_tree_depth} (balanced, "
                     f"ceil(log2 G)), argmax {info.argmax_depth}, total {info.total_levels}.")
    if info.pipeline:
        lines.append(f"Latency: {info.latency} cycles (inputs before rising edge t -> outputs after edge "
                     f"t+{info.latency - 1}), throughput 1 vector/cycle; {info.registers} register bits.")
    else:
        lines.append("Latency: 0 cycles (combinational).")
    lines += ["", "Input encoding (circuit.input_layout):"]
    if circuit.input_layout is None:
        lines.append("  none recorded: bit i is input i of the circuit")
    else:
        text = json.dumps(circuit.input_layout, sort_keys=True)
        if len(text) > _LAYOUT_COMMENT_CHARS:
            lines.append(f"  {len(text)} characters of JSON: see input_layout in the .json sidecar")
        else:
            lines += ["  " + text[p:p + 96] for p in range(0, len(text), 96)]
    return lines


# ---- vectorised text ------------------------------------------------------------------------------
def _compact(fields: list) -> list:
    """The same text with fewer, narrower fields: a choice or number hidden in every row of this chunk
    is dropped, one that is the same in every row becomes plain bytes, adjacent bytes are merged."""
    out: list = []
    for f in fields:
        if isinstance(f, Choice):
            index = np.asarray(f.index, dtype=np.intp)
            present = np.bincount(index, minlength=len(f.options)) > 0
            options = [o if p else b"" for o, p in zip(f.options, present)]
            used = np.flatnonzero(present)
            if used.size == 1:
                f = options[int(used[0])]
            elif not any(options):
                continue
            else:
                f = Choice(index, options)  # why: unused options no longer widen the record
        elif isinstance(f, Masked):
            show = np.asarray(f.show, dtype=bool)
            if not show.any():
                continue
            if show.all():
                f = np.asarray(f.values)
        if isinstance(f, (bytes, bytearray)):
            if not f:
                continue
            if out and isinstance(out[-1], (bytes, bytearray)):
                out[-1] = out[-1] + f
                continue
        out.append(f)
    return out


def _render(fields: list, n: int) -> bytes:
    return render(_compact(fields), n) if n else b""


def _name_fields(d: Design, sig: np.ndarray) -> list:
    """Fields spelling the names of signals ``sig`` (``n12``, ``s0_1_3``, ``am2_0_i``, ``3'd5``, ...)."""
    nk = d.name_kind[sig].astype(np.intp)
    show = NAME_SHOW[nk]
    return [Choice(nk, NAME_PREFIX), Masked(d.name_num[0][sig], show[:, 0]), Choice(nk, NAME_SEP1),
            Masked(d.name_num[1][sig], show[:, 1]), Choice(nk, NAME_SEP2), Masked(d.name_num[2][sig], show[:, 2]),
            Choice(nk, NAME_SUFFIX)]


def _ref_fields(d: Design, sch: Schedule, sig: np.ndarray, at: int, neg: np.ndarray | None = None) -> list:
    """How stage ``at`` reads signals ``sig``: the wire, or its register copy ``<name>_p<at>``."""
    kind = d.kind[sig]
    regd = ((kind == LOGIC) | (kind == INPUT)) & (sch.stage[sig] != at)
    fields = [] if neg is None else [Choice(neg.astype(np.intp), [b"", b"!"])]
    return fields + _name_fields(d, sig) + [Choice(regd.astype(np.intp), [b"", b"_p"]),
                                            Masked(np.full(sig.size, at, dtype=np.int64), regd)]


def _width_fields(width: np.ndarray) -> list:
    """``[w-1:0] `` for multi-bit signals, nothing for single bits."""
    wide = width > 1
    return [Choice(wide.astype(np.intp), [b"", b"["]), Masked(width - 1, wide), Choice(wide.astype(np.intp),
                                                                                       [b"", b":0] "])]


def _wire_lines(d: Design, sch: Schedule, rows: np.ndarray, st: int) -> Iterator[bytes]:
    """``wire [..] name = expression;`` for signals ``rows`` of stage ``st``, in chunks."""
    for start in range(0, rows.size, _CHUNK):
        r = rows[start:start + _CHUNK]
        n = r.size
        expr = d.expr[r].astype(np.intp)
        none = np.full(n, -1, dtype=np.int64)
        ops = np.stack([d.op[0][r], d.op[1][r], d.op[2][r], d.op[3][r], none], axis=1)
        negs = np.stack([d.neg[0][r], d.neg[1][r], *[np.zeros(n, dtype=bool)] * 3], axis=1)
        fields = [b"    wire ", *_width_fields(d.width[r]), *_name_fields(d, r), b" = "]
        at = np.arange(n)
        for s in range(4):
            k = _SLOTS[expr, s]
            fields.append(Choice(expr, _PIECES[s]))
            fields += _ref_fields(d, sch, ops[at, k], st, negs[at, k])
        fields += [Choice(expr, _PIECES[4]), b";\n"]
        yield _render(fields, n)


def _register_block(d: Design, sch: Schedule, regs: np.ndarray, st: int, rst_prefix: str) -> Iterator[bytes]:
    """The registers into stage ``st + 1`` (declarations, then one always block with the valid bit)."""
    p = st + 1
    valid_in = "in_valid" if st == 0 else f"v_p{st}"
    yield f"    // ---- registers into stage {p} ----\n    reg v_p{p};\n".encode()
    suffix = f"_p{p}".encode()
    for start in range(0, regs.size, _CHUNK):
        r = regs[start:start + _CHUNK]
        yield _render([b"    reg ", *_width_fields(d.width[r]), *_name_fields(d, r), suffix + b";\n"], r.size)
    yield f"    always @(posedge clk) begin\n        v_p{p} <= {rst_prefix}{valid_in};\n".encode()
    for start in range(0, regs.size, _CHUNK):
        r = regs[start:start + _CHUNK]
        yield _render([b"        ", *_name_fields(d, r), suffix + b" <= ", *_ref_fields(d, sch, r, st), b";\n"],
                      r.size)
    yield b"    end\n"


def _text(circuit: Circuit, d: Design, sch: Schedule, info: ExportInfo, reset: bool) -> Iterator[bytes]:
    """The module's text, in chunks (see the module docstring for its structure)."""
    n, latency, n_in = sch.pipeline, sch.latency, circuit.n_inputs
    head = ["// " + line if line else "//" for line in _header_lines(circuit, info)]
    head.append(f"module {info.module} (")
    head.append(",\n".join(f"    {p['direction']:<6} wire "
                           f"{'[' + str(p['width'] - 1) + ':0] ' if p['width'] > 1 or p['name'] in ('x', 'y') else ''}"
                           f"{p['name']}" for p in info.ports))
    head.append(");")
    yield ("\n".join(head) + "\n").encode()
    # Inputs as scalar wires n<i>: simulators then fan out single bits, not the whole x vector.
    for start in range(0, n_in, _CHUNK):
        i = np.arange(start, min(n_in, start + _CHUNK), dtype=np.int64)
        yield _render([b"    wire n", i, b" = x[", i, b"];\n"], i.size)
    emitted = sch.emitted
    est = sch.stage[emitted]
    by_stage = emitted[np.argsort(est, kind="stable")]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(est, minlength=max(latency, 1)))])
    regs, reg_stage, reg_need = sch.registered, sch.stage[sch.registered], sch.need[sch.registered]
    rst_prefix = "rst ? 1'b0 : " if reset else ""
    for st in range(max(latency, 1)):
        if n:
            yield f"    // ---- stage {st}: levels {st * n + 1}..{(st + 1) * n} ----\n".encode()
        yield from _wire_lines(d, sch, by_stage[bounds[st]:bounds[st + 1]], st)
        if n:
            yield from _register_block(d, sch, regs[(reg_stage <= st) & (reg_need > st)], st, rst_prefix)
    y = d.y_signals
    if y.size:
        if info.head == "bits":
            lo = hi = np.arange(y.size, dtype=np.int64)
            index = [lo]
        else:
            lo = np.arange(y.size, dtype=np.int64) * info.count_bits
            hi = lo + info.count_bits - 1
            index = [hi, b":", lo]
        for start in range(0, y.size, _CHUNK):
            s = slice(start, start + _CHUNK)
            yield _render([b"    assign y[", *(f[s] if isinstance(f, np.ndarray) else f for f in index), b"] = ",
                           *_ref_fields(d, sch, y[s], latency), b";\n"], y[s].size)
    if d.class_signal is not None:
        yield _render([b"    assign class_idx = ", *_ref_fields(d, sch, np.array([d.class_signal]), latency),
                       b";\n"], 1)
    if n:
        yield f"    assign out_valid = v_p{latency};\n".encode()
    yield b"endmodule\n"


def _emit(circuit: Circuit, module: str, pipeline: int, argmax: bool, reset: bool) -> tuple[Iterator[bytes],
                                                                                            ExportInfo]:
    """(text chunks, info) of ``circuit``: the design and its schedule, then lazily the text."""
    if not isinstance(circuit, Circuit):
        raise TypeError(f"expected a diffgates Circuit, got {type(circuit).__name__} (diffgates.export_verilog "
                        f"also takes a trained model)")
    _check_args(circuit, module, pipeline, argmax, reset)
    head = circuit.head.kind
    class_idx = argmax or head == "argmax"
    d = build_design(circuit, class_index=class_idx, y_port=head != "argmax")
    sch = schedule(d, pipeline)
    n_in, k = circuit.n_inputs, circuit.num_classes
    regs = sch.registered
    registers = int((d.width[regs] * (sch.need[regs] - sch.stage[regs])).sum()) + sch.latency
    ports = _ports(circuit, pipeline, class_idx, reset, sch.latency)
    info = ExportInfo(module=module, ports=ports, pipeline=pipeline, latency=sch.latency,
                      levels=int(d.node_level[circuit.outputs].max()), adder_tree_depth=d.tree_depth,
                      argmax_depth=d.argmax_depth, total_levels=sch.total_levels, gates=circuit.n_gates,
                      gates_emitted=int(np.count_nonzero(sch.live[d.node_signal[n_in:]])), registers=registers,
                      inputs=n_in, classes=k, group_size=circuit.group_size,
                      count_bits=circuit.count_bits() if circuit.head.grouped else 1,
                      class_index_bits=max(1, (k - 1).bit_length()), argmax=class_idx,
                      reset=bool(reset and pipeline), input_layout=circuit.input_layout,
                      output_encoding=_output_encoding(circuit), head=head, outputs=circuit.n_outputs,
                      thresholds=circuit.n_thresholds)
    return _text(circuit, d, sch, info, reset), info


def generate_verilog(circuit: Circuit, module: str = "logic_net", pipeline: int = 0, argmax: bool = False,
                     reset: bool = True) -> tuple[str, ExportInfo]:
    """The Verilog text of ``circuit`` and its ``ExportInfo`` (see the module docstring).

    Args:
        circuit: the circuit (a ``diffgates.ir.Circuit``; anything else is a TypeError).
        module: the module name (a Verilog identifier).
        pipeline: 0 for a combinational module, n >= 1 for a register stage every n levels.
        argmax: add the ``class_idx`` output ('group_sum' heads; an 'argmax' head always has it, a
            'bits' head never: argmax=True is then a ValueError).
        reset: pipelined only: add the synchronous active-high ``rst`` input.

    Returns:
        (verilog text, info).
    """
    chunks, info = _emit(circuit, module, pipeline, argmax, reset)
    return b"".join(chunks).decode("ascii"), info


def export_verilog(circuit: Circuit, path: str | os.PathLike, module: str = "logic_net", pipeline: int = 0,
                   argmax: bool = False, reset: bool = True) -> ExportInfo:
    """Write the Verilog of ``circuit`` to ``path`` and the JSON sidecar ``<path>.json`` as one atomic set.

    The sidecar is ``ExportInfo.to_dict()``: module, ports with widths, latency, levels, gates, head,
    group size, W, classes, input layout. The text is streamed to the file in chunks, never held whole.
    Each file is whole, and neither replaces an existing file before both are written
    (``diffgates._atomic.atomic_files``; a missing folder is created). The sidecar's name is 5 bytes
    longer than ``path``'s, so ``path``'s name may have at most 250 bytes (255 for the sidecar).

    Args:
        circuit: a ``diffgates.ir.Circuit`` (``diffgates.export_verilog`` converts a trained model).
        path: the ``.v`` file to write.
        module, pipeline, argmax, reset: as for ``generate_verilog``.

    Returns:
        the ``ExportInfo`` (``info.summary()`` is a printable resource and latency summary).

    Example::

        info = export_verilog(circuit, "net.v", pipeline=1)
        assert info.latency >= 1
    """
    chunks, info = _emit(circuit, module, pipeline, argmax, reset)
    path = Path(path)
    info.path, info.sidecar = str(path), str(path) + ".json"
    with atomic_files(path.parent) as files:
        with files.open(path.name, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        with files.open(path.name + ".json", "w") as f:
            f.write(json.dumps(info.to_dict(), indent=1, sort_keys=True) + "\n")
    return info


__all__ = ["ExportInfo", "generate_verilog", "export_verilog"]

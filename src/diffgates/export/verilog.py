"""Verilog export of a Circuit (or a model): a documented port contract, optional pipelining.

Port contract of the generated module (``K`` classes, ``G`` outputs per class, ``W`` =
``circuit.count_bits()`` = bit length of ``G``, ``CB`` = max(1, ceil(log2 K))):

* ``input  wire [IN-1:0]  x``          bit ``i`` = input bit ``i`` of the circuit's encoding
  (``circuit.input_layout``, quoted in the header comment and stored in the JSON sidecar);
* ``output wire [K*W-1:0] y``          class ``c``'s count (0..G) at ``y[c*W +: W]``, unsigned;
* ``output wire [CB-1:0]  class_idx``  (``argmax=True``) the class with the highest count, ties to
  the lowest index (numpy ``argmax``);
* pipelined (``pipeline=n >= 1``): ``clk``; ``rst`` (``reset=True``, synchronous, active high, clears
  the valid pipeline only); ``in_valid``; ``out_valid``. Inputs presented before rising edge ``t``
  appear on ``y``/``class_idx`` with ``out_valid`` after rising edge ``t + L - 1``: latency ``L``
  cycles, one new vector per cycle. Data registers have no reset (plain flip-flops / shift registers).

Structure: one ``wire`` per gate (``n<v>`` for node ``v``, the expression filled into
``gates.GATES[op].formula``), then per class a balanced adder tree (``s<c>_<t>_<j>``: class ``c``,
tree level ``t``, index ``j``; widths grow by one bit per level up to ``W``; depth
``ceil(log2 G)``), then an argmax tournament (``am<t>_<j>_v``/``_i``; depth ``ceil(log2 K)``).
Every signal gets a *level*: gates their ``circuit.levels()``, each adder or comparator 1 + the
deepest operand. With ``pipeline=n`` a register stage follows every ``n`` levels (stage ``s`` holds
levels ``s*n+1 .. (s+1)*n``); a value used ``k`` stages after it is computed travels through ``k``
registers named ``<name>_p<stage>``; the outputs are registered, so latency
``L = max(1, ceil(total_levels / n))``. Input bits are wires ``n<i>`` (= ``x[i]``), constant gates
plain wires read by every stage (never registered); gates that feed no output are left out. The
same text comes out for the same circuit and arguments.

Example::

    import diffgates
    info = diffgates.export_verilog(circuit, "net.v", pipeline=2, argmax=True)
    print(info.summary())          # gates, depths, latency, registers; net.v.json holds the same

CLI: ``diffgates export verilog MODEL OUT.v [--pipeline n] [--argmax] [--module NAME] [--report]``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import gates
from ..circuit.ir import Circuit
from .netlist import balanced_reduce

CLI_HELP = "write Verilog RTL (combinational or pipelined) with a documented port contract"

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

def _gate_template(g: gates.Gate) -> tuple[str, tuple[str, ...]]:
    """(expression with positional operands ``{0}``/``{1}``, the operands it reads) from ``g.formula``."""
    used = tuple(v for v in ("a", "b") if "{" + v + "}" in g.formula)
    slots = {v: "{%d}" % k for k, v in enumerate(used)}
    return g.formula.format(a=slots.get("a", ""), b=slots.get("b", ""), zero="1'b0", ones="1'b1"), used


# Per gate id, derived from the one gate table (no per-gate branches here).
_GATE_TEMPLATES = tuple(_gate_template(g) for g in gates.GATES)

_LAYOUT_COMMENT_CHARS = 4000  # longer input layouts are only in the JSON sidecar


@dataclass
class ExportInfo:
    """What ``export_verilog`` produced; ``to_dict()`` is the JSON sidecar."""
    module: str
    ports: list[dict[str, Any]]
    pipeline: int  # 0 = combinational, else logic levels per register stage
    latency: int  # clock cycles from in_valid to out_valid (0 when combinational)
    levels: int  # logic depth of the gate network (circuit.depth())
    adder_tree_depth: int  # adder levels of one class's group sum: ceil(log2 group_size)
    argmax_depth: int  # comparator levels of the argmax tournament (0 without argmax)
    total_levels: int  # deepest level of any output signal (gates + adders + comparators)
    gates: int  # gates of the circuit
    gates_emitted: int  # of those, the ones in the fan-in of an output (the others are left out)
    registers: int  # flip-flop bits (data + valid)
    inputs: int
    classes: int
    group_size: int
    count_bits: int  # W
    class_index_bits: int  # CB (width of class_idx)
    argmax: bool
    reset: bool
    input_layout: dict[str, Any] | None
    output_encoding: str
    path: str | None = None
    sidecar: str | None = None
    synthesis: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        d.pop("sidecar")
        return d

    def summary(self) -> str:
        """A resource and latency summary (what ``diffgates export verilog`` prints)."""
        lines = [f"module {self.module} ({_kind(self.pipeline)})" + (f" -> {self.path}" if self.path else ""),
                 "  ports: " + ", ".join(f"{p['name']}[{p['width']}]" for p in self.ports),
                 f"  gates: {self.gates} ({self.gates_emitted} feed an output)   inputs: {self.inputs}   "
                 f"classes: {self.classes} x {self.group_size} outputs, counts {self.count_bits} bits",
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


class _Sig:
    """One named value of the design: an input bit, a constant, or a wire computed from others."""
    __slots__ = ("name", "width", "level", "expr", "ops", "kind")

    def __init__(self, name: str, width: int, level: int, expr: str | None, ops: tuple[int, ...], kind: str):
        self.name, self.width, self.level = name, width, level
        # kind: 'input' | 'const' (a literal) | 'constwire' (a constant gate's wire) | 'logic'
        self.expr, self.ops, self.kind = expr, ops, kind


def _check_args(module: str, pipeline: int, argmax: bool, reset: bool) -> None:
    if not isinstance(module, str) or not _IDENT.fullmatch(module) or module in _KEYWORDS:
        raise ValueError(f"module name {module!r} is not a usable Verilog identifier (expected "
                         f"[A-Za-z_][A-Za-z0-9_]* and not a keyword)")
    if isinstance(pipeline, bool) or not isinstance(pipeline, int) or pipeline < 0:
        raise ValueError(f"pipeline={pipeline!r}: expected an integer >= 0 (0 = combinational, n = a register "
                         f"stage every n logic levels)")
    for name, value in (("argmax", argmax), ("reset", reset)):
        if not isinstance(value, bool):
            raise ValueError(f"{name}={value!r}: expected True or False")


def _build_signals(circuit: Circuit, argmax: bool) -> tuple[list[_Sig], list[int], int | None, int, int]:
    """The design as a topologically ordered signal list.

    Returns:
        (signals, class count roots, argmax index root or None, adder tree depth, argmax depth).
    """
    sigs: list[_Sig] = []

    def add(name, width, level, expr, ops, kind="logic") -> int:
        sigs.append(_Sig(name, width, level, expr, tuple(ops), kind))
        return len(sigs) - 1

    # Inputs as scalar wires n<i>: simulators then fan out single bits, not the whole x vector.
    node_sig = [add(f"n{i}", 1, 0, None, (), "input") for i in range(circuit.n_inputs)]
    levels = circuit.levels().tolist()
    for i, (op, a, b) in enumerate(zip(circuit.ops.tolist(), circuit.a.tolist(), circuit.b.tolist())):
        template, used = _GATE_TEMPLATES[op]
        operands = tuple(node_sig[a] if v == "a" else node_sig[b] for v in used)
        v = circuit.n_inputs + i
        if operands:
            node_sig.append(add(f"n{v}", 1, levels[v], template, operands))
        else:  # a constant gate: one wire, read directly by every stage, never registered
            node_sig.append(add(f"n{v}", 1, 0, template, (), "constwire"))

    roots, tree_depth = [], 0
    for c, group in enumerate(circuit.output_groups().tolist()):
        def combine(l, r, t, j, c=c):  # items are (signal, max value)
            total = l[1] + r[1]
            lvl = 1 + max(sigs[l[0]].level, sigs[r[0]].level)
            return add(f"s{c}_{t + 1}_{j}", total.bit_length(), lvl, "{0} + {1}", (l[0], r[0])), total

        (root, _), tree_depth = balanced_reduce([(node_sig[v], 1) for v in group], combine)
        roots.append(root)

    if not argmax:
        return sigs, roots, None, tree_depth, 0
    cb = max(1, (circuit.num_classes - 1).bit_length())
    consts = [add(f"{cb}'d{c}", cb, 0, None, (), "const") for c in range(circuit.num_classes)]

    def duel(l, r, t, j):  # items are (value signal, index signal); the right wins only if strictly greater
        lvl = 1 + max(sigs[s].level for s in (*l, *r))
        v = add(f"am{t + 1}_{j}_v", sigs[l[0]].width, lvl, "({1} > {0}) ? {1} : {0}", (l[0], r[0]))
        i = add(f"am{t + 1}_{j}_i", cb, lvl, "({1} > {0}) ? {3} : {2}", (l[0], r[0], l[1], r[1]))
        return v, i

    (_, idx_root), am_depth = balanced_reduce(list(zip(roots, consts)), duel)
    return sigs, roots, idx_root, tree_depth, am_depth


def _decl(kind: str, width: int, name: str) -> str:
    return f"{kind} {'[' + str(width - 1) + ':0] ' if width > 1 else ''}{name}"


def _comment_block(lines: list[str]) -> list[str]:
    return ["// " + line if line else "//" for line in lines]


def _schedule(sigs: list[_Sig], finals: list[int], n: int, latency: int) -> tuple[list[int], list[int], list[bool]]:
    """Per signal: the stage computing it, the last stage reading it, and whether it feeds an output.

    Stage of a logic signal = (level - 1) // n (0 when combinational); inputs and constants are at
    stage 0; the outputs are read at stage ``latency`` (registered). A signal needed at a later stage
    than its own travels through ``need - stage`` registers.
    """
    stage = [(s.level - 1) // n if n and s.kind == "logic" else 0 for s in sigs]
    # Only logic in the fan-in of an output is emitted (dead gates would need registers for nothing).
    live = [False] * len(sigs)
    for f in finals:
        live[f] = True
    for j in range(len(sigs) - 1, -1, -1):  # reverse topological order
        if live[j]:
            for o in sigs[j].ops:
                live[o] = True
    need = list(stage)
    for j, s in enumerate(sigs):
        if live[j]:
            for o in s.ops:
                need[o] = max(need[o], stage[j])
    for f in finals:
        need[f] = max(need[f], latency)
    return stage, need, live


def _ports(circuit: Circuit, pipeline: int, argmax: bool, reset: bool, latency: int) -> list[dict[str, Any]]:
    """The module's ports in declaration order, with widths and one-line meanings."""
    k, w = circuit.num_classes, circuit.count_bits()
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
    ports.append(port("y", "output", k * w, f"class c's count (0..{circuit.group_size}) at y[c*{w} +: {w}], "
                                            f"unsigned"))
    if argmax:
        ports.append(port("class_idx", "output", max(1, (k - 1).bit_length()),
                          "class with the highest count; ties -> lowest index"))
    if pipeline:
        ports.append(port("out_valid", "output", 1, f"y/class_idx hold the result of the vector given "
                                                    f"{latency} cycles earlier"))
    return ports


def generate_verilog(circuit: Circuit, module: str = "logic_net", pipeline: int = 0, argmax: bool = False,
                     reset: bool = True) -> tuple[str, ExportInfo]:
    """The Verilog text of ``circuit`` and its ``ExportInfo`` (see the module docstring).

    Args:
        circuit: the circuit.
        module: the module name (a Verilog identifier).
        pipeline: 0 for a combinational module, n >= 1 for a register stage every n levels.
        argmax: add the ``class_idx`` output.
        reset: pipelined only: add the synchronous active-high ``rst`` input.

    Returns:
        (verilog text, info).
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"expected a diffgates Circuit, got {type(circuit).__name__}")
    _check_args(module, pipeline, argmax, reset)
    if circuit.n_inputs < 1:
        raise ValueError("the circuit has no inputs; a Verilog module needs x to be at least 1 bit wide")
    sigs, roots, idx_root, tree_depth, am_depth = _build_signals(circuit, argmax)
    k, w, n_in, n = circuit.num_classes, circuit.count_bits(), circuit.n_inputs, pipeline
    finals = roots + ([idx_root] if idx_root is not None else [])
    total_levels = max(sigs[s].level for s in finals)
    latency = max(1, -(-total_levels // n)) if n else 0
    stage, need, live = _schedule(sigs, finals, n, latency)
    registered = [j for j, s in enumerate(sigs) if live[j] and s.kind in ("input", "logic") and need[j] > stage[j]]
    ports = _ports(circuit, n, argmax, reset, latency)
    info = ExportInfo(module=module, ports=ports, pipeline=n, latency=latency, levels=circuit.depth(),
                      adder_tree_depth=tree_depth, argmax_depth=am_depth, total_levels=total_levels,
                      gates=circuit.n_gates, gates_emitted=sum(live[n_in:n_in + circuit.n_gates]),
                      registers=sum(sigs[j].width * (need[j] - stage[j]) for j in registered) + latency,
                      inputs=n_in, classes=k, group_size=circuit.group_size, count_bits=w,
                      class_index_bits=max(1, (k - 1).bit_length()), argmax=argmax, reset=bool(reset and n),
                      input_layout=circuit.input_layout,
                      output_encoding=f"class c's count at y[c*{w} +: {w}] (c = 0..{k - 1}), unsigned")

    def ref(j: int, at: int) -> str:  # how stage `at` reads signal j: its wire, or its register copy
        s = sigs[j]
        return s.name if s.kind in ("const", "constwire") or at == stage[j] else f"{s.name}_p{at}"

    out = _comment_block(_header_lines(circuit, info))
    out.append(f"module {module} (")
    out.append(",\n".join(f"    {p['direction']:<6} wire "
                          f"{'[' + str(p['width'] - 1) + ':0] ' if p['width'] > 1 or p['name'] in ('x', 'y') else ''}"
                          f"{p['name']}" for p in ports))
    out.append(");")
    out += [f"    wire n{i} = x[{i}];" for i in range(n_in)]
    rst_prefix = "rst ? 1'b0 : " if reset else ""
    by_stage: list[list[int]] = [[] for _ in range(max(latency, 1))]
    for j, s in enumerate(sigs):
        if s.kind in ("logic", "constwire") and live[j]:
            by_stage[stage[j]].append(j)
    for st, members in enumerate(by_stage):
        if n:
            out.append(f"    // ---- stage {st}: levels {st * n + 1}..{(st + 1) * n} ----")
        out += [f"    {_decl('wire', sigs[j].width, sigs[j].name)} = "
                f"{sigs[j].expr.format(*(ref(o, st) for o in sigs[j].ops))};" for j in members]
        if n:  # the registers into stage st+1, with the valid bit
            regs = [j for j in registered if stage[j] <= st < need[j]]
            out.append(f"    // ---- registers into stage {st + 1} ----")
            out.append(f"    reg v_p{st + 1};")
            out += [f"    {_decl('reg', sigs[j].width, f'{sigs[j].name}_p{st + 1}')};" for j in regs]
            valid_in = "in_valid" if st == 0 else f"v_p{st}"
            out.append("    always @(posedge clk) begin")
            out.append(f"        v_p{st + 1} <= {rst_prefix}{valid_in};")
            out += [f"        {sigs[j].name}_p{st + 1} <= {ref(j, st)};" for j in regs]
            out.append("    end")
    for c, root in enumerate(roots):
        out.append(f"    assign y[{c * w + w - 1}:{c * w}] = {ref(root, latency)};")
    if argmax:
        out.append(f"    assign class_idx = {ref(idx_root, latency)};")
    if n:
        out.append(f"    assign out_valid = v_p{latency};")
    out.append("endmodule")
    return "\n".join(out) + "\n", info


def _header_lines(circuit: Circuit, info: ExportInfo) -> list[str]:
    k, w = info.classes, info.count_bits
    lines = [f"{info.module}: logic gate network exported by diffgates ({_kind(info.pipeline)})", "",
             "Port contract:"]
    for p in info.ports:
        lines.append(f"  {p['direction']:<6} {p['name']:<9} [{p['width']}]  {p['description']}")
    lines += ["",
              f"Classes K = {k}, outputs per class G = {info.group_size}, count width W = {w}, "
              f"class index width = {info.class_index_bits}.",
              f"Gates: {info.gates} ({info.gates - info.gates_emitted} feed no output and are left out).",
              f"Levels: gate network {info.levels}, adder tree {info.adder_tree_depth} (balanced, ceil(log2 G)), "
              f"argmax {info.argmax_depth}, total {info.total_levels}."]
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


def _as_circuit(model_or_circuit) -> Circuit:
    """A Circuit as is, or a model extracted and simplified."""
    if isinstance(model_or_circuit, Circuit):
        return model_or_circuit
    try:
        import torch
    except ImportError:  # without torch nothing but a Circuit can be given
        torch = None
    if torch is None or not isinstance(model_or_circuit, torch.nn.Module):
        raise TypeError(f"expected a diffgates Circuit or a torch.nn.Module logic network, got "
                        f"{type(model_or_circuit).__name__}")
    from ..circuit.extract import to_circuit
    from ..circuit.passes import simplify

    return simplify(to_circuit(model_or_circuit))


def export_verilog(model_or_circuit, path: str | os.PathLike, module: str = "logic_net", pipeline: int = 0,
                   argmax: bool = False, reset: bool = True) -> ExportInfo:
    """Write Verilog for a Circuit or a model (extracted with ``to_circuit`` and ``simplify``).

    Writes ``path`` and the JSON sidecar ``<path>.json`` (``ExportInfo.to_dict()``: module, ports
    with widths, latency, levels, gates, group size, W, classes, input layout).

    Args:
        model_or_circuit: a ``Circuit`` or a logic network ``torch.nn.Module``.
        path: the ``.v`` file to write.
        module: module name.
        pipeline: 0 = combinational; n >= 1 = a register stage every n logic levels.
        argmax: add the ``class_idx`` output (ties -> lowest index).
        reset: pipelined only: add the synchronous active-high ``rst`` input.

    Returns:
        the ``ExportInfo`` (``info.summary()`` is a printable resource and latency summary).

    Example::

        info = export_verilog(circuit, "net.v", pipeline=1)
        assert info.latency >= 1
    """
    circuit = _as_circuit(model_or_circuit)
    text, info = generate_verilog(circuit, module=module, pipeline=pipeline, argmax=argmax, reset=reset)
    path = Path(path)
    path.write_text(text)
    info.path, info.sidecar = str(path), str(path) + ".json"
    Path(info.sidecar).write_text(json.dumps(info.to_dict(), indent=1, sort_keys=True) + "\n")
    return info


# ---- CLI ----------------------------------------------------------------------------------------
def configure_cli(parser: argparse.ArgumentParser) -> None:
    from .netlist import add_model_arguments

    add_model_arguments(parser)
    parser.add_argument("--pipeline", type=int, default=0, metavar="N",
                        help="a register stage every N logic levels (default 0: combinational)")
    parser.add_argument("--argmax", action="store_true", help="add the class_idx output (ties -> lowest index)")
    parser.add_argument("--module", default="logic_net", help="module name (default logic_net)")
    parser.add_argument("--no-reset", action="store_true", help="pipelined: no rst input")
    parser.add_argument("--report", action="store_true",
                        help="also optimise and map the design with ABC and print LUT-6 and 2-input gate counts "
                             "and depths (needs berkeley-abc or yosys-abc)")


def run_cli(args: argparse.Namespace) -> int:
    from .netlist import circuit_from_cli, cli_errors

    def body() -> int:
        circuit = circuit_from_cli(args)
        info = export_verilog(circuit, args.out, module=args.module, pipeline=args.pipeline, argmax=args.argmax,
                              reset=not args.no_reset)
        if args.report:
            from .synth import synth_report

            info.synthesis = synth_report(circuit, argmax=args.argmax)
            Path(info.sidecar).write_text(json.dumps(info.to_dict(), indent=1, sort_keys=True) + "\n")
        print(info.summary())
        print(f"  sidecar: {info.sidecar}")
        return 0

    return cli_errors("diffgates export verilog", body)

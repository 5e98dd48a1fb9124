"""Shared netlist machinery for the hardware exporters: balanced reduction trees, an AND-inverter
graph (AIG) and the lowering of a Circuit to it, plus the signal names every netlist format uses.

* ``balanced_reduce(items, combine)`` pairs neighbours level by level (log depth, never a linear
  chain); the Verilog group-sum adders, the Verilog argmax tournament and the AIG/BLIF popcounts all
  use it, so every backend has the same tree shape and depth ``ceil(log2(n))``.
* ``Aig`` is a structurally hashed AND-inverter graph in AIGER numbering (literal = 2*var + negated,
  var 0 = constant false, vars 1..I the inputs, then one var per AND in topological order). It also
  evaluates itself on numpy bit arrays (used to check AIGER/BLIF files against the reference).
* ``lower_to_aig(circuit, counts=False, argmax=False)`` lowers every gate through a recipe derived
  from ``gates.TRUTH_TABLES`` (constant / wire / AND with negations / XOR with 3 ANDs), with outputs
  = the circuit's raw output bits, optionally the per-class group counts as extra outputs
  (ripple-carry adders in a balanced tree), and optionally the argmax class index (the same
  tournament as the Verilog ``class_idx``: ties go to the lowest class).

Names shared by AIGER and BLIF: input bit ``i`` is ``x[i]``; raw output ``k`` is ``out[k]`` (class
``k // group_size``, position ``k % group_size`` in its group); count bit ``w`` (LSB first) of
class ``c`` is ``count_c<c>[w]``; bit ``w`` of the argmax class index is ``class_idx[w]``. Example::

    aig = lower_to_aig(circuit, counts=True)
    values = aig.evaluate(bits)              # (N, n_outputs + num_classes * W) bool
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

import numpy as np

from .. import gates
from ..circuit.ir import Circuit

T = TypeVar("T")


def balanced_reduce(items: Sequence[T], combine: Callable[[T, T, int, int], T]) -> tuple[T, int]:
    """Reduce ``items`` with a balanced binary tree of ``combine`` calls.

    Level ``t`` (0-based) combines neighbours (0,1), (2,3), ...; an odd last item is carried to the
    next level unchanged, so the item order (and thus tie-breaking by lower index) is preserved.

    Args:
        items: the leaves, at least one.
        combine: ``combine(left, right, level, index)`` -> the combined item; ``level`` is the tree
            level being built (0 for the first), ``index`` the position of the new item in it.

    Returns:
        (root, depth) with ``depth = ceil(log2(len(items)))`` combine levels.
    """
    level_items = list(items)
    if not level_items:
        raise ValueError("balanced_reduce needs at least one item, got none")
    depth = 0
    while len(level_items) > 1:
        nxt = [combine(level_items[k], level_items[k + 1], depth, k // 2)
               for k in range(0, len(level_items) - 1, 2)]
        if len(level_items) % 2:
            nxt.append(level_items[-1])
        level_items = nxt
        depth += 1
    return level_items[0], depth


def tree_depth(n: int) -> int:
    """Levels of ``balanced_reduce`` over ``n >= 1`` leaves: ``ceil(log2(n))``."""
    return max(0, int(n - 1).bit_length())


# ---- names shared by the netlist formats ------------------------------------------------------
def input_names(circuit: Circuit) -> list[str]:
    return [f"x[{i}]" for i in range(circuit.n_inputs)]


def output_names(circuit: Circuit) -> list[str]:
    return [f"out[{k}]" for k in range(circuit.n_outputs)]


def count_names(circuit: Circuit) -> list[str]:
    """Names of the count bits, class-major, LSB first: ``count_c<c>[w]``."""
    return [f"count_c{c}[{w}]" for c in range(circuit.num_classes) for w in range(circuit.count_bits())]


def argmax_bits(circuit: Circuit) -> int:
    """Bits of the argmax class index (as the Verilog ``class_idx`` port)."""
    return max(1, (circuit.num_classes - 1).bit_length())


def argmax_names(circuit: Circuit) -> list[str]:
    """Names of the argmax class index bits, LSB first: ``class_idx[w]``."""
    return [f"class_idx[{w}]" for w in range(argmax_bits(circuit))]


def describe_outputs(circuit: Circuit, counts: bool, argmax: bool = False) -> list[str]:
    """Human-readable lines saying what a netlist's outputs are (for file comments)."""
    lines = [f"inputs: x[0..{circuit.n_inputs - 1}] = input bit i of the encoding",
             f"outputs out[0..{circuit.n_outputs - 1}]: the circuit's raw output bits; out[k] belongs to "
             f"class k // {circuit.group_size} ({circuit.num_classes} classes, groups of "
             f"{circuit.group_size}); a class's score is the number of its true bits"]
    if counts:
        lines.append(f"outputs count_c<c>[0..{circuit.count_bits() - 1}]: class c's count (popcount of its "
                     f"group) as an unsigned number, LSB first, after all out[k]")
    if argmax:
        lines.append(f"outputs class_idx[0..{argmax_bits(circuit) - 1}]: the class with the highest count "
                     f"(ties to the lowest class), LSB first, last")
    return lines


# ---- AND-inverter graph ------------------------------------------------------------------------
def _gate_recipe(truth_table: Sequence[int]) -> tuple:
    """Classify a 2-input truth table (order (a,b) = 00, 01, 10, 11) into an AIG recipe.

    Returns one of ('const', v), ('a', neg), ('b', neg), ('and', neg_a, neg_b, neg_out),
    ('xor', neg_out): f = neg_out ^ ((a ^ neg_a) & (b ^ neg_b)) and so on.
    """
    tt = [int(v) for v in truth_table]
    pts = [(a, b) for a in (0, 1) for b in (0, 1)]

    def matches(f) -> bool:
        return all(tt[2 * a + b] == f(a, b) for a, b in pts)

    for v in (0, 1):
        if matches(lambda a, b: v):
            return ("const", v)
    for neg in (0, 1):
        if matches(lambda a, b: a ^ neg):
            return ("a", neg)
        if matches(lambda a, b: b ^ neg):
            return ("b", neg)
    for na in (0, 1):
        for nb in (0, 1):
            for no in (0, 1):
                if matches(lambda a, b: no ^ ((a ^ na) & (b ^ nb))):
                    return ("and", na, nb, no)
    for no in (0, 1):
        if matches(lambda a, b: no ^ a ^ b):
            return ("xor", no)
    raise AssertionError(f"truth table {tt} has no 2-input AIG recipe")  # all 16 are covered above


# One recipe per gate id, derived from the truth tables of diffgates.gates (not hand-written).
GATE_RECIPES: tuple[tuple, ...] = tuple(_gate_recipe(g.truth_table) for g in gates.GATES)


class Aig:
    """A structurally hashed AND-inverter graph with AIGER numbering (no latches).

    Attributes:
        n_inputs: number of primary inputs (vars 1..n_inputs).
        ands: list of (rhs0, rhs1) literal pairs with rhs0 >= rhs1; AND k defines var n_inputs+1+k.
        outputs: output literals.
        input_names, output_names: symbol names (same lengths as the inputs / outputs).
        comments: free-text lines (the AIGER comment section).
    """

    def __init__(self, n_inputs: int, input_names: Sequence[str] | None = None):
        if n_inputs < 0:
            raise ValueError(f"n_inputs must be >= 0, got {n_inputs}")
        self.n_inputs = int(n_inputs)
        self.ands: list[tuple[int, int]] = []
        self.outputs: list[int] = []
        self.input_names = list(input_names) if input_names is not None else [f"i{i}" for i in range(n_inputs)]
        self.output_names: list[str] = []
        self.comments: list[str] = []
        self._strash: dict[tuple[int, int], int] = {}

    # ---- construction ----
    @property
    def max_var(self) -> int:
        return self.n_inputs + len(self.ands)

    def input(self, i: int) -> int:
        """Literal of input ``i`` (0-based)."""
        return 2 * (i + 1)

    def and_(self, x: int, y: int) -> int:
        """Literal of x AND y, folding constants / duplicates and reusing an identical AND."""
        if x < y:
            x, y = y, x  # AIGER binary needs rhs0 >= rhs1
        if y == 0 or x == (y ^ 1):
            return 0
        if y == 1 or x == y:
            return x
        key = (x, y)
        lit = self._strash.get(key)
        if lit is None:
            self.ands.append(key)
            lit = 2 * self.max_var
            self._strash[key] = lit
        return lit

    def or_(self, x: int, y: int) -> int:
        return self.and_(x ^ 1, y ^ 1) ^ 1

    def xor_(self, x: int, y: int) -> int:
        return self.or_(self.and_(x, y ^ 1), self.and_(x ^ 1, y))

    def gate(self, op: int, la: int, lb: int) -> int:
        """Literal of ``gates.GATES[op](a, b)`` for input literals ``la``, ``lb``."""
        r = GATE_RECIPES[op]
        if r[0] == "const":
            return r[1]
        if r[0] == "a":
            return la ^ r[1]
        if r[0] == "b":
            return lb ^ r[1]
        if r[0] == "and":
            return self.and_(la ^ r[1], lb ^ r[2]) ^ r[3]
        return self.xor_(la, lb) ^ r[1]

    def add(self, x: Sequence[int], y: Sequence[int], width: int) -> list[int]:
        """Ripple-carry sum of two unsigned literal vectors (LSB first), ``width`` result bits."""
        out, carry = [], 0
        for i in range(width):
            a = x[i] if i < len(x) else 0
            b = y[i] if i < len(y) else 0
            ab = self.xor_(a, b)
            out.append(self.xor_(ab, carry))
            carry = self.or_(self.and_(a, b), self.and_(carry, ab))  # constant 0 operands fold away
        return out

    def popcount(self, lits: Sequence[int], width: int) -> list[int]:
        """Number of true literals as ``width`` bits (LSB first), by a balanced adder tree."""

        def combine(l, r, _level, _index):
            total = l[1] + r[1]
            return self.add(l[0], r[0], total.bit_length()), total

        (bits, _), _ = balanced_reduce([([lit], 1) for lit in lits], combine)
        return (list(bits) + [0] * width)[:width]

    def mux(self, sel: int, x: int, y: int) -> int:
        """Literal of ``sel ? x : y``."""
        return self.or_(self.and_(sel, x), self.and_(sel ^ 1, y))

    def greater(self, x: Sequence[int], y: Sequence[int]) -> int:
        """Literal of ``x > y`` for unsigned literal vectors of equal width (LSB first)."""
        gt = 0
        for xi, yi in zip(x, y):  # from the LSB up: a higher differing bit decides
            gt = self.or_(self.and_(xi, yi ^ 1), self.and_(self.xor_(xi, yi) ^ 1, gt))
        return gt

    def add_output(self, lit: int, name: str) -> None:
        self.outputs.append(int(lit))
        self.output_names.append(name)

    # ---- analysis ----
    def levels(self) -> np.ndarray:
        """(max_var + 1,) AND depth of every var (inputs and the constant 0)."""
        lv = np.zeros(self.max_var + 1, dtype=np.int64)
        for k, (r0, r1) in enumerate(self.ands):
            lv[self.n_inputs + 1 + k] = 1 + max(lv[r0 >> 1], lv[r1 >> 1])
        return lv

    def depth(self) -> int:
        """AND levels from the inputs to the deepest output."""
        if not self.outputs:
            return 0
        lv = self.levels()
        return int(max(lv[lit >> 1] for lit in self.outputs))

    def evaluate(self, bits) -> np.ndarray:
        """(N, n_inputs) 0/1 input rows -> (N, n_outputs) bool output values."""
        from ..circuit.evaluate import as_input_bits

        x = as_input_bits(bits, self.n_inputs)
        vals = np.zeros((self.max_var + 1, x.shape[0]), dtype=bool)
        vals[1:self.n_inputs + 1] = x.T
        for k, (r0, r1) in enumerate(self.ands):
            vals[self.n_inputs + 1 + k] = (vals[r0 >> 1] ^ bool(r0 & 1)) & (vals[r1 >> 1] ^ bool(r1 & 1))
        out = np.empty((x.shape[0], len(self.outputs)), dtype=bool)
        for j, lit in enumerate(self.outputs):
            out[:, j] = vals[lit >> 1] ^ bool(lit & 1)
        return out


def gate_literals(aig: Aig, circuit: Circuit) -> np.ndarray:
    """Lower every gate of ``circuit`` into ``aig`` (whose first inputs are the circuit's inputs).

    Returns:
        (n_nodes,) int64 literal of every circuit node.
    """
    lit = np.empty(circuit.n_nodes, dtype=np.int64)
    lit[:circuit.n_inputs] = 2 * (np.arange(circuit.n_inputs) + 1)
    ops, a, b, base = circuit.ops.tolist(), circuit.a.tolist(), circuit.b.tolist(), circuit.n_inputs
    lits = lit.tolist()
    for i in range(circuit.n_gates):  # topological order: operands are lowered before their users
        lits[base + i] = aig.gate(ops[i], lits[a[i]], lits[b[i]])
    return np.asarray(lits, dtype=np.int64)


def add_group_counts(aig: Aig, output_lits: Sequence[int], circuit: Circuit) -> list[list[int]]:
    """Append per-class popcounts of ``output_lits`` (the raw outputs) to ``aig``.

    Returns:
        num_classes lists of ``circuit.count_bits()`` literals, LSB first.
    """
    gs, w = circuit.group_size, circuit.count_bits()
    return [aig.popcount(output_lits[c * gs:(c + 1) * gs], w) for c in range(circuit.num_classes)]


def add_argmax(aig: Aig, class_counts: Sequence[Sequence[int]], circuit: Circuit) -> list[int]:
    """Append the argmax of the class counts to ``aig``: a balanced tournament in which the right
    contender wins only when its count is strictly greater, so ties go to the lowest class.

    Returns:
        ``argmax_bits(circuit)`` literals of the winning class index, LSB first.
    """
    width = argmax_bits(circuit)
    index = [[(c >> w) & 1 for w in range(width)] for c in range(circuit.num_classes)]  # constant literals

    def duel(left, right, _level, _index):
        right_wins = aig.greater(right[0], left[0])
        return ([aig.mux(right_wins, r, l) for l, r in zip(left[0], right[0])],
                [aig.mux(right_wins, r, l) for l, r in zip(left[1], right[1])])

    (_, idx), _ = balanced_reduce(list(zip(class_counts, index)), duel)
    return list(idx)


def lower_to_aig(circuit: Circuit, counts: bool = False, argmax: bool = False) -> Aig:
    """The AIG of ``circuit``: outputs ``out[k]`` (raw output bits), then optionally the counts and
    the argmax class index.

    Args:
        circuit: the circuit to lower.
        counts: also output every class's count (``count_c<c>[w]``, LSB first), after the raw bits.
        argmax: also output the index of the class with the highest count (``class_idx[w]``, LSB
            first; ties to the lowest class), last.

    Returns:
        an ``Aig`` with ``circuit.n_inputs`` inputs named ``x[i]``.
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"expected a diffgates Circuit, got {type(circuit).__name__}")
    aig = Aig(circuit.n_inputs, input_names(circuit))
    lits = gate_literals(aig, circuit)
    out_lits = [int(v) for v in lits[circuit.outputs]]
    for lit, name in zip(out_lits, output_names(circuit)):
        aig.add_output(lit, name)
    if counts or argmax:
        class_counts = add_group_counts(aig, out_lits, circuit)
        if counts:
            for bit, name in zip((b for cls in class_counts for b in cls), count_names(circuit)):
                aig.add_output(bit, name)
        if argmax:
            for bit, name in zip(add_argmax(aig, class_counts, circuit), argmax_names(circuit)):
                aig.add_output(bit, name)
    aig.comments = ["diffgates logic gate network"] + describe_outputs(circuit, counts, argmax)
    return aig


# ---- shared by the netlist writers and their CLIs ----------------------------------------------
@dataclass
class NetlistInfo:
    """What a netlist writer produced (printed by ``diffgates export aiger|blif``)."""
    path: str
    format: str  # 'aag', 'aig' or 'blif'
    inputs: int
    outputs: int  # raw output bits + count bits + argmax bits
    nodes: int  # AND gates (AIGER, BLIF style 'aig') or .names gate tables (BLIF style 'gates')
    depth: int  # AND levels (AIGER) or gate levels (BLIF style 'gates') up to the raw outputs
    counts: bool
    argmax: bool = False

    def summary(self) -> str:
        extras = [name for name, on in (("class counts", self.counts), ("argmax", self.argmax)) if on]
        return (f"wrote {self.path} ({self.format}): {self.inputs} inputs, {self.outputs} outputs"
                f"{' (incl. ' + ' and '.join(extras) + ')' if extras else ''}, {self.nodes} nodes, "
                f"depth {self.depth}")


def circuit_from_cli(args) -> Circuit:
    """The Circuit named by a CLI's MODEL argument (run dir, model file or circuit JSON).

    Uses ``diffgates.circuit.load.load_circuit`` (simplified unless ``--no-simplify``).
    """
    from ..circuit.load import load_circuit  # imported lazily: it pulls in torch for model files

    return load_circuit(args.model, simplify=not getattr(args, "no_simplify", False))


def cli_errors(prog: str, body: Callable[[], int]) -> int:
    """Run a CLI body; bad input or a missing/failing tool becomes one ``prog: error:`` line and exit 2."""
    try:
        return body()
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # CircuitFormatError is a ValueError
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


def add_model_arguments(parser) -> None:
    """The MODEL / OUT / --no-simplify arguments every netlist CLI shares."""
    parser.add_argument("model", metavar="MODEL", help="run directory, model file or circuit JSON")
    parser.add_argument("out", metavar="OUT", help="output file")
    parser.add_argument("--no-simplify", action="store_true",
                        help="export the circuit as extracted, without the simplification passes")

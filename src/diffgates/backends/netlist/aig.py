"""The AND-inverter graph (AIG) of a Circuit: the one lowering behind the AIGER and BLIF files and ABC.

* ``lower_to_aig(circuit, counts=False, argmax=False)`` lowers every gate by its recipe
  (``GATE_RECIPES``, derived from ``gates.TRUTH_TABLES``: a constant, a wire, one AND with
  negations, or an XOR of 3 ANDs). Outputs are the circuit's raw output bits ``out[k]``; with
  ``counts`` also every class's count (a balanced tree of ripple-carry adders per class), with
  ``argmax`` the index of the winning class (a balanced tournament; ties to the lowest class).
  Threshold cells are lowered to gates first (``diffgates.ir.lower_cells``).
* ``Aig``: the graph in AIGER numbering (literal = 2 * var + negated; var 0 is constant false, vars
  1..I the inputs, then one var per AND in topological order), the ANDs as numpy arrays ``rhs0 >=
  rhs1``. ``Aig.evaluate`` runs it on bit arrays, ``Aig.levels`` / ``depth`` measure it.
* ``count_aig(circuit)``: the count trees alone, over inputs that are the raw outputs (BLIF 'gates').
* ``balanced_reduce`` / ``tree_depth``: the tree shape every backend's adder trees and argmax use.

Lowering is vectorised: gates one logic level at a time (``circuit.level_groups()``), adders over
every class and every pair of a tree level at once, one bit position at a time. Every AND goes
through structural hashing with constant folding (AND with 0 or ``x & ~x`` is 0, AND with 1 or ``x
& x`` is ``x``, an AND equal to an earlier one is that one), done on whole batches with a numpy
open-addressing hash table. The result is exactly the AIG of the plain sequential algorithm (one
``and_`` call after another, each folded or looked up in a dict): every call has its sequential
position (gate index, then recipe step; then the count trees class by class; then the argmax), an
AND takes the position of the first call that made it, and the ANDs are numbered in that order.
This works because which calls give equal ANDs does not depend on the numbering.

Names shared by AIGER and BLIF (``Names``: lists of names kept as vectorised text): input bit
``i`` is ``x[i]``; raw output ``k`` is ``out[k]`` (class ``k // group_size`` for grouped heads);
bit ``w`` (LSB first) of class ``c``'s count is ``count_c<c>[w]``; bit ``w`` of the argmax class is
``class_idx[w]``. Example::

    aig = lower_to_aig(circuit, counts=True)
    values = aig.evaluate(bits)              # (N, n_outputs + num_classes * W) bool
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ... import gates
from ...ir import Circuit, as_input_bits, lower_cells
from ...ir.analysis import group_by_level, segment_gather
from ...ir.evaluate import pack_samples, unpack_samples
from .._text import Choice, render

T = TypeVar("T")
MEMORY_BUDGET = 256 << 20  # bytes of packed var values per chunk of samples in Aig.evaluate
TEXT_CHUNK = 1 << 18  # rows rendered at a time by the writers


# ---- tree shape shared by every backend -------------------------------------------------------
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


# ---- signal names -------------------------------------------------------------------------------
def _field_slice(field, start: int, stop: int):
    """Rows ``start:stop`` of one ``backends._text`` field."""
    if isinstance(field, (bytes, bytearray)):
        return field
    if isinstance(field, Choice):
        return Choice(np.asarray(field.index)[start:stop], field.options)
    return np.asarray(field)[start:stop]


Fields = Callable[[int, int], list]  # (first row, end row) -> backends._text fields of those rows


class Names(Sequence):
    """A list of signal names kept as blocks of vectorised text (``backends._text`` fields).

    ``Names.indexed("x[", n)`` is ``x[0] .. x[n-1]`` without a Python string per name; ``+`` joins
    lists; ``render`` writes every name as one row of a file; indexing and ``tolist()`` give
    ``str`` (for small uses: they materialise the names).
    """

    def __init__(self, blocks: Iterable[tuple[Sequence, int]] = ()):
        self._blocks = tuple((tuple(fields), int(n)) for fields, n in blocks if int(n) > 0)
        self._len = sum(n for _, n in self._blocks)
        self._list: list[str] | None = None

    @classmethod
    def indexed(cls, prefix: str, n: int, suffix: str = "]", start: int = 0) -> "Names":
        """``prefix + str(i) + suffix`` for i = start .. start + n - 1."""
        return cls([((prefix.encode(), np.arange(start, start + n, dtype=np.int64), suffix.encode()), n)])

    @classmethod
    def of(cls, names: Iterable[str]) -> "Names":
        """Names given one by one (as read from a file)."""
        encoded = [str(name).encode() for name in names]
        # One block per TEXT_CHUNK names: rendering a chunk then builds the text table of that chunk only.
        return cls([((Choice(np.arange(len(encoded[s:s + TEXT_CHUNK])), encoded[s:s + TEXT_CHUNK]),),
                     len(encoded[s:s + TEXT_CHUNK])) for s in range(0, len(encoded), TEXT_CHUNK)])

    def __add__(self, other: "Names") -> "Names":
        return Names(self._blocks + Names._coerce(other)._blocks)

    @staticmethod
    def _coerce(names) -> "Names":
        return names if isinstance(names, Names) else Names.of(names)

    def __len__(self) -> int:
        return self._len

    def render(self, before: Fields | None = None, after: bytes | Fields = b"\n",
               chunk: int = TEXT_CHUNK) -> Iterator[bytes]:
        """Every name as one row ``before + name + after``, in chunks of at most ``chunk`` rows.

        ``before`` / ``after`` (bytes, or functions of the rows' global index range returning
        fields) add per-row text such as the AIGER symbol prefix ``o<k> ``.
        """
        first = 0
        for fields, n in self._blocks:
            for s in range(0, n, chunk):
                e = min(n, s + chunk)
                lead = before(first + s, first + e) if before else []
                tail = after(first + s, first + e) if callable(after) else [after]
                yield render([*lead, *(_field_slice(f, s, e) for f in fields), *tail], e - s)
            first += n

    def tolist(self) -> list[str]:
        if self._list is None:
            self._list = b"".join(self.render()).decode().split("\n")[:-1]
        return self._list

    def __getitem__(self, i):
        return self.tolist()[i]

    def __iter__(self):
        return iter(self.tolist())

    def __eq__(self, other) -> bool:
        if isinstance(other, (Names, list, tuple)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        head = ", ".join(self.tolist()[:3]) if self._len <= 10_000 else "..."
        return f"Names({self._len}: {head}{', ...' if self._len > 3 else ''})"


def input_names(circuit: Circuit) -> Names:
    return Names.indexed("x[", circuit.n_inputs)


def output_names(circuit: Circuit) -> Names:
    return Names.indexed("out[", circuit.n_outputs)


def count_names(circuit: Circuit) -> Names:
    """Names of the count bits, class-major, LSB first: ``count_c<c>[w]``."""
    k, w = circuit.num_classes, circuit.count_bits()
    cls, bit = np.repeat(np.arange(k), w), np.tile(np.arange(w), k)
    return Names([((b"count_c", cls, b"[", bit, b"]"), k * w)])


def argmax_bits(circuit: Circuit) -> int:
    """Bits of the argmax class index (as the Verilog ``class_idx`` port)."""
    return max(1, (circuit.num_classes - 1).bit_length())


def argmax_names(circuit: Circuit) -> Names:
    """Names of the argmax class index bits, LSB first: ``class_idx[w]``."""
    return Names.indexed("class_idx[", argmax_bits(circuit))


def require_groups(circuit: Circuit, counts: bool, argmax: bool) -> None:
    """ValueError unless the head has class groups when counts or the argmax are asked for."""
    if (counts or argmax) and not circuit.head.grouped:
        wanted = " and ".join(w for w, on in (("class counts", counts), ("the argmax", argmax)) if on)
        raise ValueError(f"{wanted} need a grouped head ('group_sum' or 'argmax'), but this circuit's head is "
                         f"{circuit.head.kind!r}: its outputs are raw bits without classes; export without "
                         f"counts/argmax")


def describe_outputs(circuit: Circuit, counts: bool, argmax: bool = False) -> list[str]:
    """Human-readable lines saying what a netlist's outputs are (for file comments)."""
    require_groups(circuit, counts, argmax)
    lines = [f"inputs: x[0..{circuit.n_inputs - 1}] = input bit i of the encoding"]
    if not circuit.head.grouped:
        lines.append(f"outputs out[0..{circuit.n_outputs - 1}]: the circuit's raw output bits (head 'bits')")
        return lines
    lines.append(f"outputs out[0..{circuit.n_outputs - 1}]: the circuit's raw output bits; out[k] belongs to "
                 f"class k // {circuit.group_size} ({circuit.num_classes} classes, groups of "
                 f"{circuit.group_size}); a class's score is the number of its true bits")
    if counts:
        lines.append(f"outputs count_c<c>[0..{circuit.count_bits() - 1}]: class c's count (popcount of its "
                     f"group) as an unsigned number, LSB first, after all out[k]")
    if argmax:
        lines.append(f"outputs class_idx[0..{argmax_bits(circuit) - 1}]: the class with the highest count "
                     f"(ties to the lowest class), LSB first, last")
    return lines


# ---- gate recipes ------------------------------------------------------------------------------
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
_KINDS = ("const", "a", "b", "and", "xor")
CONST, WIRE_A, WIRE_B, AND1, XOR3 = range(5)
# The recipes as tables over gate ids: kind, negation of a and b (AND recipes), negation of the result
# (the constant's value for 'const'), and how many ANDs the recipe calls.
RECIPE_KIND = np.array([_KINDS.index(r[0]) for r in GATE_RECIPES], dtype=np.int8)
RECIPE_NEG_A = np.array([r[1] if r[0] == "and" else 0 for r in GATE_RECIPES], dtype=np.int64)
RECIPE_NEG_B = np.array([r[2] if r[0] == "and" else 0 for r in GATE_RECIPES], dtype=np.int64)
RECIPE_NEG_OUT = np.array([r[-1] for r in GATE_RECIPES], dtype=np.int64)
RECIPE_ANDS = np.array([(0, 0, 0, 1, 3)[k] for k in RECIPE_KIND], dtype=np.int64)


# ---- the graph ---------------------------------------------------------------------------------
def and_levels(n_inputs: int, rhs0: np.ndarray, rhs1: np.ndarray) -> np.ndarray:
    """(n_inputs + 1 + A,) AND depth of every var of a topologically numbered AIG.

    Vectorised over wavefronts (Kahn's algorithm): round ``r`` finds every AND whose operands all
    have levels below ``r``; a round costs the size of its wavefront and its fan-out.
    """
    base = n_inputs + 1
    n_ands = rhs0.size
    level = np.zeros(base + n_ands, dtype=np.int64)
    if not n_ands:
        return level
    v0, v1 = rhs0 >> 1, rhs1 >> 1
    inner0, inner1 = v0 >= base, (v1 >= base) & (v1 != v0)  # operands that are ANDs (counted once)
    waiting = inner0.astype(np.int64) + inner1
    src = np.concatenate([v0[inner0], v1[inner1]]) - base
    dst = np.concatenate([np.flatnonzero(inner0), np.flatnonzero(inner1)])
    order = np.argsort(src, kind="stable")
    readers = dst[order]
    ptr = np.zeros(n_ands + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n_ands), out=ptr[1:])
    front = np.flatnonzero(waiting == 0)
    depth = 1
    while front.size:
        level[base + front] = depth
        positions, _ = segment_gather(ptr, front)
        if not positions.size:
            break
        hit, times = np.unique(readers[positions], return_counts=True)
        waiting[hit] -= times
        front = hit[waiting[hit] == 0]
        depth += 1
    return level


class Aig:
    """An AND-inverter graph with AIGER numbering (no latches); see the module docstring.

    Attributes:
        n_inputs: primary inputs (vars 1..n_inputs).
        rhs0, rhs1: (A,) int64 operand literals of the ANDs, ``rhs0 >= rhs1``; AND k defines var
            ``n_inputs + 1 + k`` and reads lower vars only.
        outputs: (O,) int64 output literals.
        input_names, output_names: ``Names`` (same lengths as the inputs / outputs).
        comments: free-text lines (the AIGER comment section).

    Args:
        levels: the AND depth of every var, when the builder knows it (else computed on first use).

    Raises:
        ValueError: shapes disagree, an AND reads itself or a later var, or a literal is out of range.
    """

    def __init__(self, n_inputs: int, rhs0=(), rhs1=(), outputs=(), input_names=None, output_names=None,
                 comments: Iterable[str] = (), levels: np.ndarray | None = None):
        if n_inputs < 0:
            raise ValueError(f"n_inputs must be >= 0, got {n_inputs}")
        self.n_inputs = int(n_inputs)
        r0 = np.asarray(rhs0, dtype=np.int64).reshape(-1)
        r1 = np.asarray(rhs1, dtype=np.int64).reshape(-1)
        if r0.shape != r1.shape:
            raise ValueError(f"rhs0 and rhs1 differ in length: {r0.size} and {r1.size}")
        if not np.all(r0 >= r1):  # AIGER binary needs rhs0 >= rhs1
            r0, r1 = np.maximum(r0, r1), np.minimum(r0, r1)
        self.rhs0, self.rhs1 = r0.view(), r1.view()  # read-only views: the caller's arrays stay as they are
        self.outputs = np.asarray(outputs, dtype=np.int64).reshape(-1).view()
        for arr in (self.rhs0, self.rhs1, self.outputs):
            arr.setflags(write=False)
        for s in range(0, self.n_ands, 1 << 20):  # in chunks: bounds the temporaries
            lhs = 2 * (self.n_inputs + 1 + np.arange(s, min(s + (1 << 20), self.n_ands), dtype=np.int64))
            bad = np.flatnonzero((self.rhs1[s:s + lhs.size] < 0) | (self.rhs0[s:s + lhs.size] >= lhs))
            if bad.size:
                k = int(bad[0])
                raise ValueError(f"AND {s + k} (literal {int(lhs[k])}) reads {int(self.rhs0[s + k])}, "
                                 f"{int(self.rhs1[s + k])}: operands must be earlier literals (topological numbering)")
        if self.outputs.size and (self.outputs.min() < 0 or self.outputs.max() > 2 * self.max_var + 1):
            raise ValueError(f"output literals must lie in 0..{2 * self.max_var + 1}")
        self.input_names = Names.indexed("i", self.n_inputs, "") if input_names is None else Names._coerce(input_names)
        self.output_names = (Names.indexed("o", self.outputs.size, "") if output_names is None
                             else Names._coerce(output_names))
        if len(self.input_names) != self.n_inputs or len(self.output_names) != self.outputs.size:
            raise ValueError(f"{len(self.input_names)} input names for {self.n_inputs} inputs and "
                             f"{len(self.output_names)} output names for {self.outputs.size} outputs")
        self.comments = list(comments)
        if levels is not None:
            levels = np.asarray(levels, dtype=np.int64).view()
            if levels.shape != (self.max_var + 1,):
                raise ValueError(f"levels must have max_var + 1 = {self.max_var + 1} entries, got {levels.shape}")
            levels.setflags(write=False)
        self._levels = levels

    @property
    def n_ands(self) -> int:
        return int(self.rhs0.size)

    @property
    def max_var(self) -> int:
        return self.n_inputs + self.n_ands

    @property
    def ands(self) -> np.ndarray:
        """(A, 2) int64 ``(rhs0, rhs1)`` per AND (a copy, for small uses)."""
        return np.stack([self.rhs0, self.rhs1], axis=1)

    def input(self, i: int) -> int:
        """Literal of input ``i`` (0-based)."""
        return 2 * (i + 1)

    def levels(self) -> np.ndarray:
        """(max_var + 1,) AND depth of every var (0 for the constant and the inputs)."""
        if self._levels is None:
            self._levels = and_levels(self.n_inputs, self.rhs0, self.rhs1)
            self._levels.setflags(write=False)
        return self._levels

    def depth(self) -> int:
        """AND levels from the inputs to the deepest output."""
        if not self.outputs.size:
            return 0
        return int(self.levels()[self.outputs >> 1].max())

    def evaluate(self, bits, chunk: int | None = None) -> np.ndarray:
        """(N, n_inputs) 0/1 input rows -> (N, n_outputs) bool output values.

        Samples are packed 64 to a word and the ANDs evaluated one level at a time; ``chunk``
        samples (default: sized so the packed values stay near ``MEMORY_BUDGET`` bytes) at a time.
        """
        x = as_input_bits(bits, self.n_inputs)
        n_vars = self.max_var + 1
        if chunk is None:
            chunk = 64 * min(64, max(1, MEMORY_BUDGET // (8 * n_vars)))
        base = self.n_inputs + 1
        groups = group_by_level(self.levels()[base:])
        ones = np.uint64(0xFFFFFFFFFFFFFFFF)
        v0, v1, vo = self.rhs0 >> 1, self.rhs1 >> 1, self.outputs >> 1
        m0 = np.where(self.rhs0 & 1, ones, np.uint64(0))  # all-ones where the operand is negated
        m1 = np.where(self.rhs1 & 1, ones, np.uint64(0))
        mo = np.where(self.outputs & 1, ones, np.uint64(0))
        out = np.empty((x.shape[0], self.outputs.size), dtype=bool)
        for start in range(0, x.shape[0], chunk):
            rows = x[start:start + chunk]
            words = -(-rows.shape[0] // 64)
            vals = np.empty((n_vars, words), dtype=np.uint64)
            vals[0] = 0
            vals[1:base] = pack_samples(rows)
            for g in groups:
                vals[base + g] = (vals[v0[g]] ^ m0[g, None]) & (vals[v1[g]] ^ m1[g, None])
            out[start:start + rows.shape[0]] = unpack_samples(vals[vo] ^ mo[:, None], rows.shape[0])
        return out

    def __repr__(self) -> str:
        return f"Aig(inputs={self.n_inputs}, ands={self.n_ands}, outputs={self.outputs.size})"


# ---- structural hashing ------------------------------------------------------------------------
_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads consecutive keys
_LOW32 = (1 << 32) - 1


class _Strash:
    """Batched structural hashing with constant folding: the AND of each call, as the sequential
    algorithm would make it (see the module docstring).

    ``and_(x, y, calls)`` folds or hashes a batch of independent calls; ``calls`` are their
    sequential positions. ANDs are kept as *classes* numbered as found (var ``base + class``), each
    with its key ``(hi << 32) | lo``, the first call that made it and its level; ``finish``
    renumbers them by first call.
    """

    def __init__(self, n_inputs: int, max_calls: int, expected: int | None = None):
        self.base = n_inputs + 1
        if self.base + max_calls >= 1 << 30:  # why: a key (hi << 32) | lo of two literals must fit an int64
            raise ValueError(f"an AIG of up to {max_calls} ANDs over {n_inputs} inputs exceeds the 2**30 vars "
                             f"this lowering supports")
        self.n = 0
        # np.empty / np.zeros leave untouched pages unmapped: the bound on calls costs no memory
        self.key = np.empty(max_calls, dtype=np.int64)
        self.first = np.empty(max_calls, dtype=np.int64)
        self.level = np.zeros(self.base + max_calls, dtype=np.int32)
        self.max_calls = max_calls
        self._table_for(max_calls if expected is None else expected)  # why: growing by rehashing costs ~2x

    def _table_for(self, entries: int) -> None:
        """A hash table (class id per slot, -1 empty) kept at most half full, holding every class."""
        bits = max(10, int(2 * entries - 1).bit_length())
        self.bits, self.mask = bits, (1 << bits) - 1
        self.table = np.full(1 << bits, -1, dtype=np.int32)
        if self.n:
            ids = np.arange(self.n, dtype=np.int64)
            self._probe(self.key[:self.n], ids)

    def _slots(self, key: np.ndarray) -> np.ndarray:
        return ((key.view(np.uint64) * _HASH_MULTIPLIER) >> np.uint64(64 - self.bits)).astype(np.int64)

    def _probe(self, key: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class and slot of every key; a key not in the table claims an empty slot for its ``cand``.

        Linear probing, all keys at once: equal keys move in step, so one of them claims the slot
        and the others find it in the same round.
        """
        n = key.size
        cls = np.empty(n, dtype=np.int64)
        at = np.empty(n, dtype=np.int64)
        todo = np.arange(n)
        slot = self._slots(key)
        while todo.size:
            occ = self.table[slot]
            empty = np.flatnonzero(occ < 0)
            if empty.size:
                self.table[slot[empty]] = cand[todo[empty]]  # one claimant per slot wins
                occ[empty] = self.table[slot[empty]]
            hit = self.key[occ] == key[todo]
            found = todo[hit]
            cls[found] = occ[hit]
            at[found] = slot[hit]
            miss = ~hit
            todo, slot = todo[miss], (slot[miss] + 1) & self.mask
        return cls, at

    def and_(self, x: np.ndarray, y: np.ndarray, calls: np.ndarray) -> np.ndarray:
        """Literals of ``x & y`` for a batch of calls whose operands are already final."""
        hi, lo = np.maximum(x, y), np.minimum(x, y)
        out = hi.copy()  # AND with 1, or x & x: x
        zero = (lo == 0) | (hi == (lo ^ 1))
        out[zero] = 0
        new = np.flatnonzero(~zero & (lo != 1) & (hi != lo))
        if new.size:
            out[new] = self._find(hi[new], lo[new], np.asarray(calls)[new])
        return out

    def _find(self, hi: np.ndarray, lo: np.ndarray, calls: np.ndarray) -> np.ndarray:
        n, lim = hi.size, self.n
        if 2 * (lim + n) > self.table.size:
            self._table_for(max(lim + n, 2 * lim))
        key = (hi << 32) | lo
        cand = lim + np.arange(n, dtype=np.int64)  # provisional class ids; the winners are compacted below
        self.key[lim:lim + n] = key
        cls, at = self._probe(key, cand)
        won = np.flatnonzero(cls == cand)
        again = np.flatnonzero(cls != cand)  # equal to an AND of an earlier batch, or to this batch's winner
        dense = lim + np.arange(won.size, dtype=np.int64)
        self.table[at[won]] = dense
        self.key[dense] = key[won]
        self.first[dense] = calls[won]
        self.level[self.base + dense] = 1 + np.maximum(self.level[hi[won] >> 1], self.level[lo[won] >> 1])
        fresh = np.flatnonzero(cls >= lim)
        remap = np.empty(n, dtype=np.int64)
        remap[won] = dense
        cls[fresh] = remap[cls[fresh] - lim]
        self.n = lim + won.size
        if again.size:  # the AND's first call may be one of these (calls are not in batch order)
            np.minimum.at(self.first, cls[again], calls[again])
        return 2 * (self.base + cls)

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(rhs0, rhs1, var_map, levels) in sequential numbering; ``var_map`` renumbers class vars.

        The hash state is released on the way (the arrays are as large as the AIG), so call it once.
        """
        n, base = self.n, self.base
        first = self.first[:n]
        made = np.zeros(self.max_calls, dtype=bool)
        made[first] = True  # first calls are distinct: their rank among the calls is the new number
        rank = np.cumsum(made, dtype=np.int32)[first]  # why: int32 halves the temporary
        rank -= 1
        del made, first
        self.first = self.table = None
        var_map = np.empty(base + n, dtype=np.int64)
        var_map[:base] = np.arange(base)
        np.add(rank, base, out=var_map[base:])
        order = np.empty(n, dtype=np.int64)
        order[rank] = np.arange(n, dtype=np.int64)
        del rank
        lo = self.key[order]
        self.key = None
        hi = _relabel(lo >> 32, var_map)
        lo &= _LOW32
        lo = _relabel(lo, var_map, out=lo)
        swap = np.flatnonzero(hi < lo)  # renumbering may change which operand is larger
        hi[swap], lo[swap] = lo[swap], hi[swap]
        levels = np.zeros(base + n, dtype=np.int64)
        levels[base:] = self.level[base + order]
        self.level = None
        return hi, lo, var_map, levels


def _relabel(lits: np.ndarray, var_map: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Literals with their vars renumbered by ``var_map`` (into ``out``, which may be ``lits``)."""
    var = var_map[lits >> 1]
    var <<= 1
    return np.bitwise_or(var, lits & 1, out=out)


# ---- lowering ----------------------------------------------------------------------------------
def _lower_gates(strash: _Strash, circuit: Circuit, first_call: np.ndarray) -> np.ndarray:
    """(n_nodes,) literal of every node: the gates lowered one logic level at a time."""
    n_in = circuit.n_inputs
    ops, a, b = circuit.ops, circuit.a, circuit.b
    lit = np.zeros(circuit.n_nodes, dtype=np.int64)
    lit[:n_in] = 2 * (np.arange(n_in, dtype=np.int64) + 1)
    for idx in circuit.level_groups():
        op = ops[idx]
        kind = RECIPE_KIND[op]
        neg = RECIPE_NEG_OUT[op]
        # An operand a gate ignores may be a deeper node, not lowered yet: its literal is gathered, never used.
        la, lb = lit[a[idx]], lit[b[idx]]
        out = np.where(kind == WIRE_A, la, np.where(kind == WIRE_B, lb, 0)) ^ neg
        i_and, i_xor = np.flatnonzero(kind == AND1), np.flatnonzero(kind == XOR3)
        if i_and.size or i_xor.size:
            na, xa, xb, call = i_and.size, la[i_xor], lb[i_xor], first_call[idx]
            # Sequential order: AND gate k calls and_(a^na, b^nb); XOR calls and_(a, ~b), and_(~a, b), then
            # and_ of both negated (the OR).
            first = strash.and_(np.concatenate([la[i_and] ^ RECIPE_NEG_A[op[i_and]], xa, xa ^ 1]),
                                np.concatenate([lb[i_and] ^ RECIPE_NEG_B[op[i_and]], xb ^ 1, xb]),
                                np.concatenate([call[i_and], call[i_xor], call[i_xor] + 1]))
            out[i_and] ^= first[:na]
            if i_xor.size:
                both = strash.and_(first[na:na + i_xor.size] ^ 1, first[na + i_xor.size:] ^ 1, call[i_xor] + 2)
                out[i_xor] ^= both ^ 1
        lit[n_in + idx] = out
    return lit


def _bit_length(values: np.ndarray) -> np.ndarray:
    """Elementwise ``int.bit_length`` of non-negative integers below 2**53."""
    return np.frexp(values.astype(np.float64))[1].astype(np.int64)


@dataclass
class _TreeLevel:
    pairs: int  # adders of this level (per class)
    widths: np.ndarray  # (pairs,) result bits of each adder
    offsets: np.ndarray  # (pairs,) position of each adder's first call within one class's calls
    carried: bool  # an odd last item passes to the next level


def _tree_plan(leaves: int) -> tuple[list[_TreeLevel], int]:
    """The adder tree of ``balanced_reduce`` over ``leaves`` one-bit numbers, and its calls per class.

    An adder of ``w`` result bits makes 9 calls per bit (XOR 3, XOR 3, AND, AND, OR).
    """
    totals = np.ones(leaves, dtype=np.int64)
    plan, calls = [], 0
    while totals.size > 1:
        pairs = totals.size // 2
        sums = totals[0:2 * pairs:2] + totals[1:2 * pairs:2]
        widths = _bit_length(sums)
        offsets = calls + np.concatenate([[0], np.cumsum(9 * widths)[:-1]])
        calls += int(9 * widths.sum())
        carried = bool(totals.size % 2)
        plan.append(_TreeLevel(pairs, widths, offsets, carried))
        totals = np.concatenate([sums, totals[-1:]]) if carried else sums
    return plan, calls


def _group_counts(strash: _Strash, leaves: np.ndarray, call0: int) -> np.ndarray:
    """(classes, bit_length(group)) count bits (LSB first) of each row of ``leaves`` (literals).

    The classes' trees are built together, an adder level at a time and within it a bit position at
    a time, over every class and every adder of that level (adders of one width at once).
    """
    n_cls, group = leaves.shape
    plan, per_class = _tree_plan(group)
    bits = leaves[:, :, None].astype(np.int64)  # (classes, items, bits) literals, 0 past an item's width
    cls_call = call0 + per_class * np.arange(n_cls, dtype=np.int64)[:, None]
    for level in plan:
        p = level.pairs
        left, right = bits[:, 0:2 * p:2], bits[:, 1:2 * p:2]
        width = int(level.widths.max())
        sums = np.zeros((n_cls, p, width), dtype=np.int64)
        for w in np.unique(level.widths).tolist():  # at most 2: the adders of full items, and the last
            sel = np.flatnonzero(level.widths == w)
            call = (cls_call + level.offsets[sel]).reshape(-1)
            carry = np.zeros(call.size, dtype=np.int64)
            for i in range(w):
                x = left[:, sel, i].reshape(-1) if i < left.shape[2] else np.zeros_like(carry)
                y = right[:, sel, i].reshape(-1) if i < right.shape[2] else np.zeros_like(carry)
                c = call + 9 * i
                # ab = x ^ y: calls 0, 1, 2; sum = ab ^ carry: 3, 4, 5; carry = (x & y) | (carry & ab): 6, 7, 8
                r = strash.and_(np.concatenate([x, x ^ 1, x]), np.concatenate([y ^ 1, y, y]),
                                np.concatenate([c, c + 1, c + 6]))
                k = carry.size
                ab = strash.and_(r[:k] ^ 1, r[k:2 * k] ^ 1, c + 2) ^ 1
                s = strash.and_(np.concatenate([ab, ab ^ 1, carry]), np.concatenate([carry ^ 1, carry, ab]),
                                np.concatenate([c + 3, c + 4, c + 7]))
                t = strash.and_(np.concatenate([s[:k] ^ 1, r[2 * k:] ^ 1]),
                                np.concatenate([s[k:2 * k] ^ 1, s[2 * k:] ^ 1]), np.concatenate([c + 5, c + 8]))
                sums[:, sel, i] = (t[:k] ^ 1).reshape(n_cls, sel.size)
                carry = t[k:] ^ 1
        if level.carried:
            last = np.zeros((n_cls, 1, width), dtype=np.int64)
            keep = min(width, bits.shape[2])
            last[:, 0, :keep] = bits[:, -1, :keep]
            sums = np.concatenate([sums, last], axis=1)
        bits = sums
    return bits[:, 0, :]


def _argmax(strash: _Strash, counts: np.ndarray, index_bits: int, call0: int) -> np.ndarray:
    """(index_bits,) literals of the winning class of ``counts`` ((classes, W) literals, LSB first).

    A balanced tournament (``balanced_reduce``): the right contender wins only when its count is
    strictly greater, so ties go to the lower class. Every duel of a round is built at once.
    """
    n_cls, width = counts.shape
    idx = (np.arange(n_cls, dtype=np.int64)[:, None] >> np.arange(index_bits)) & 1  # constant literals
    per_duel = 9 * width + 3 * index_bits  # greater: 6 calls per bit; a mux per count and index bit: 3
    items = np.concatenate([counts.astype(np.int64), idx], axis=1)
    duels = 0
    while items.shape[0] > 1:
        p = items.shape[0] // 2
        left, right = items[0:2 * p:2], items[1:2 * p:2]
        call = call0 + per_duel * (duels + np.arange(p, dtype=np.int64))
        gt = np.zeros(p, dtype=np.int64)
        for i in range(width):  # right > left, from the LSB up: a higher differing bit decides
            x, y, c = right[:, i], left[:, i], call + 6 * i
            r = strash.and_(np.concatenate([x, x, x ^ 1]), np.concatenate([y ^ 1, y ^ 1, y]),
                            np.concatenate([c, c + 1, c + 2]))
            same = strash.and_(r[p:2 * p] ^ 1, r[2 * p:] ^ 1, c + 3)  # NOT (x ^ y)
            held = strash.and_(same, gt, c + 4)
            gt = strash.and_(r[:p] ^ 1, held ^ 1, c + 5) ^ 1
        sel = np.repeat(gt, items.shape[1])
        c = (call[:, None] + 6 * width + 3 * np.arange(items.shape[1])).reshape(-1)
        r = strash.and_(np.concatenate([sel, sel ^ 1]), np.concatenate([right.reshape(-1), left.reshape(-1)]),
                        np.concatenate([c, c + 1]))
        k = sel.size
        won = (strash.and_(r[:k] ^ 1, r[k:] ^ 1, c + 2) ^ 1).reshape(p, items.shape[1])
        items = np.concatenate([won, items[-1:]]) if items.shape[0] % 2 else won
        duels += p
    return items[0, width:]


def _duels(n: int) -> int:
    return max(0, n - 1)  # a tournament of n contenders has n - 1 duels


def lower_to_aig(circuit: Circuit, counts: bool = False, argmax: bool = False) -> Aig:
    """The AIG of ``circuit``: outputs ``out[k]`` (raw output bits), then optionally the counts and
    the argmax class index.

    Args:
        circuit: the circuit to lower (threshold cells are lowered to gates first).
        counts: also output every class's count (``count_c<c>[w]``, LSB first), after the raw bits.
        argmax: also output the index of the class with the highest count (``class_idx[w]``, LSB
            first; ties to the lowest class), last.

    Returns:
        an ``Aig`` with ``circuit.n_inputs`` inputs named ``x[i]`` (levels already known).

    Raises:
        TypeError: ``circuit`` is not a Circuit.
        ValueError: counts or argmax asked of a circuit whose head is 'bits'.
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"expected a diffgates Circuit, got {type(circuit).__name__}")
    comments = ["diffgates logic gate network"] + describe_outputs(circuit, counts, argmax)
    if circuit.has_cells:
        circuit = lower_cells(circuit)
    per_gate = RECIPE_ANDS[circuit.ops]
    first_call = np.concatenate([[0], np.cumsum(per_gate)[:-1]]).astype(np.int64) if per_gate.size else per_gate
    gate_calls = int(per_gate.sum())
    count_calls = argmax_calls = 0
    if counts or argmax:
        count_calls = circuit.num_classes * _tree_plan(circuit.group_size)[1]
    if argmax:
        argmax_calls = _duels(circuit.num_classes) * (9 * circuit.count_bits() + 3 * argmax_bits(circuit))
    # About half the calls of the count trees and the argmax fold away (constant high bits, muxes of
    # constant indices): the table starts at that size and grows if needed.
    strash = _Strash(circuit.n_inputs, gate_calls + count_calls + argmax_calls,
                     expected=gate_calls + (count_calls + argmax_calls) // 2)
    out = _lower_gates(strash, circuit, first_call)[circuit.outputs]
    parts, names = [out], output_names(circuit)
    if counts or argmax:
        cnt = _group_counts(strash, out.reshape(circuit.num_classes, circuit.group_size), gate_calls)
        if counts:
            parts.append(cnt.reshape(-1))
            names = names + count_names(circuit)
        if argmax:
            parts.append(_argmax(strash, cnt, argmax_bits(circuit), gate_calls + count_calls))
            names = names + argmax_names(circuit)
    rhs0, rhs1, var_map, levels = strash.finish()
    return Aig(circuit.n_inputs, rhs0, rhs1, _relabel(np.concatenate(parts), var_map), input_names(circuit),
               names, comments, levels=levels)


def count_aig(circuit: Circuit) -> Aig:
    """The group-count adder trees alone: an AIG whose input ``k`` is raw output ``out[k]`` and whose
    outputs are ``count_c<c>[w]`` (as BLIF style 'gates' writes them after the gate tables)."""
    require_groups(circuit, True, False)
    n_out = circuit.n_outputs
    strash = _Strash(n_out, circuit.num_classes * _tree_plan(circuit.group_size)[1])
    leaves = 2 * (np.arange(n_out, dtype=np.int64) + 1)
    cnt = _group_counts(strash, leaves.reshape(circuit.num_classes, circuit.group_size), 0)
    rhs0, rhs1, var_map, levels = strash.finish()
    return Aig(n_out, rhs0, rhs1, _relabel(cnt.reshape(-1), var_map), output_names(circuit), count_names(circuit),
               levels=levels)


# ---- shared by the netlist writers -------------------------------------------------------------
@dataclass
class NetlistInfo:
    """What a netlist writer produced (printed by ``diffgates export aiger|blif``)."""
    path: str
    format: str  # 'aag', 'aig' or 'blif'
    inputs: int
    outputs: int  # raw output bits + count bits + argmax bits
    nodes: int  # AND gates (AIGER, BLIF style 'aig') or .names gate tables (BLIF style 'gates')
    depth: int  # AND levels (AIGER: to every output) or gate levels (BLIF style 'gates') to the raw outputs
    counts: bool
    argmax: bool = False

    def summary(self) -> str:
        extras = [name for name, on in (("class counts", self.counts), ("argmax", self.argmax)) if on]
        return (f"wrote {self.path} ({self.format}): {self.inputs} inputs, {self.outputs} outputs"
                f"{' (incl. ' + ' and '.join(extras) + ')' if extras else ''}, {self.nodes} nodes, "
                f"depth {self.depth}")


__all__ = ["Aig", "Names", "NetlistInfo", "GATE_RECIPES", "lower_to_aig", "count_aig", "and_levels",
           "balanced_reduce", "tree_depth", "input_names", "output_names", "count_names", "argmax_bits",
           "argmax_names", "describe_outputs", "require_groups"]

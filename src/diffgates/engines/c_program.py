"""Lowering of a Circuit to a straight-line word program: the plan every C code generator emits.

A ``Program`` is what ``diffgates.engines.c`` (the compiled engine) and ``diffgates.export.c`` (the
standalone C export) turn into C text. It does not depend on the word type: every step computes one
word (64, 256 or 512 samples at once) from at most two earlier words with one gate of
``diffgates.gates``, or sums one class's output words into the bit planes of its count. Lowering:

* folds what any C compiler folds in straight-line code (``_fold``): copies (``A``, ``B``) are
  forwarded, constants propagated, gates with a constant or doubled operand reduced, double NOTs
  removed, and gates no output depends on dropped, as are the operands a gate ignores (``B``
  ignores ``a``). This is not logic simplification (``diffgates.circuit.passes``): a compiled
  one-statement-per-gate C file gets the same from ``gcc -O1``;
* places each class's group sum right after the last of its output words is computed, so output words
  live only briefly;
* orders independent gates for the cache (``_schedule``);
* gives every value a word in one scratch buffer per block: input features first
  (``0 .. n_inputs-1``), then *slots* allocated by linear-scan liveness (a slot is reused as soon as
  its value is dead, most recently freed first), so the buffer holds the widest live set, not every
  node, and stays in cache.

Two layouts of the same steps (``layout``):

* ``"code"``: straight-line C, split into chunks (one C function each, so the compiler never sees
  one giant function); a value defined and last read inside one chunk becomes a C local (a register).
  Fastest while the code fits in the caches (small nets) and the natural form of an exported net.
* ``"table"``: the steps as an int32 table (``encode_table``) run by a small fixed C loop per gate
  type; gates of one level are sorted by type so each loop runs long. Builds in about a second
  whatever the size, and for big nets runs as fast as straight-line code or faster: that code's
  ~25 bytes of instructions per gate (about 0.5 MB per block for the folded 48K-gate benchmark net,
  measured 1.3x slower before folding, when it was 1 MB) stream through the L2 cache on every block.

Example::

    program = lower(circuit, layout="table")
    program.n_slots, program.count_bits, encode_table(program, word_bytes=32).nbytes
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import gates
from ..circuit.ir import Circuit

# Where a value lives at run time (Program.kind).
INPUT, SLOT, LOCAL = 0, 1, 2
# Step op for "sum the output words of class dst into its count planes"; gate steps use ids 0..15.
GROUP_SUM = -1

_USES_A = np.array([g.uses_a for g in gates.GATES])
_USES_B = np.array([g.uses_b for g in gates.GATES])


LAYOUTS = ("code", "table")


@dataclass
class Program:
    """A circuit lowered to word operations.

    Attributes:
        layout: "code" or "table" (see the module docstring).
        n_inputs, num_classes: as in the circuit.
        count_bits: bit planes of every class count (``circuit.count_bits()``).
        op, dst, a, b: (S,) int64 arrays, one entry per step in execution order. A gate step computes
            value ``dst = GATES[op](a, b)`` (``a``/``b`` are -1 where the gate ignores them); a
            ``GROUP_SUM`` step (op -1) sums the words of ``groups[dst]`` into class ``dst``'s count.
        groups: per class, (group_size,) value ids of its outputs, in circuit order (may repeat).
        kind: per value id, ``INPUT``, ``SLOT`` or ``LOCAL`` (a C local of the chunk that defines it;
            "code" layout only).
        word: per value id, its word in the scratch buffer (input f -> f; slot k -> n_inputs + k;
            -1 for locals).
        chunk_starts: step index where each chunk (C function) begins ("code" layout; [0] otherwise).
        n_slots: slot words after the inputs: the buffer holds n_inputs + n_slots words per block.
        n_gates: gate steps that run (after ``_fold``).
    """

    layout: str
    n_inputs: int
    num_classes: int
    count_bits: int
    op: np.ndarray
    dst: np.ndarray
    a: np.ndarray
    b: np.ndarray
    groups: list[np.ndarray]
    kind: np.ndarray
    word: np.ndarray
    chunk_starts: list[int]
    n_slots: int
    n_gates: int

    @property
    def n_steps(self) -> int:
        return int(self.op.shape[0])

    @property
    def n_words(self) -> int:
        """Scratch words per block: the inputs, then the slots."""
        return self.n_inputs + self.n_slots


_CONST = {0: -2, 1: -3}  # marker "values" of the constants during folding


def _fold(circuit: Circuit) -> tuple[list[int], list[int], list[int], list[np.ndarray]]:
    """Gate steps of the circuit after the folding any C compiler does to straight-line code.

    Copies are forwarded, constants propagated, a gate with one constant (or twice the same) operand
    becomes a constant, a copy or a NOT, a NOT of a NOT is its operand, and steps no output needs
    are dropped. Step k defines value ``n_in + k``; an unused operand is -1.

    Returns:
        (op, a, b) lists of the steps, and per class the values of its outputs (an output that folded
        to a constant reads a FALSE/TRUE step).
    """
    n_in = circuit.n_inputs
    ops_l, a_l, b_l = circuit.ops.tolist(), circuit.a.tolist(), circuit.b.tolist()
    table = [[[g(x, y) for y in (0, 1)] for x in (0, 1)] for g in gates.GATES]
    value = list(range(n_in)) + [0] * circuit.n_gates
    op: list[int] = []
    sa: list[int] = []
    sb: list[int] = []
    negation: dict[int, int] = {}  # value -> the value it negates (both directions)
    consts: dict[int, int] = {}

    def emit(o: int, x: int, y: int) -> int:
        op.append(o)
        sa.append(x)
        sb.append(y)
        return n_in + len(op) - 1

    def unary(x: int, f0: int, f1: int) -> int:  # the function x -> (f0, f1) of one value
        if f0 == f1:
            return _CONST[f0]
        if f0 == 0:
            return x
        if x not in negation:
            v = emit(gates.NOT_A, x, -1)
            negation[x], negation[v] = v, x
        return negation[x]

    for i in range(circuit.n_gates):
        o = ops_l[i]
        t = table[o]
        x = value[a_l[i]] if _USES_A[o] else _CONST[0]  # an ignored operand acts as a constant
        y = value[b_l[i]] if _USES_B[o] else _CONST[0]
        cx = 0 if x == _CONST[0] else 1 if x == _CONST[1] else None
        cy = 0 if y == _CONST[0] else 1 if y == _CONST[1] else None
        if cx is not None and cy is not None:
            v = _CONST[t[cx][cy]]
        elif cx is not None:
            v = unary(y, t[cx][0], t[cx][1])
        elif cy is not None:
            v = unary(x, t[0][cy], t[1][cy])
        elif x == y:
            v = unary(x, t[0][0], t[1][1])
        else:
            v = emit(o, x, y)
        value[n_in + i] = v
    groups = []
    for group in circuit.output_groups().tolist():
        vals = []
        for node in group:
            v = value[node]
            if v < 0:  # a constant output still needs a word to count: one FALSE/TRUE step each
                bit = 0 if v == _CONST[0] else 1
                if bit not in consts:
                    consts[bit] = emit(gates.TRUE if bit else gates.FALSE, -1, -1)
                v = consts[bit]
            vals.append(v)
        groups.append(vals)
    # Drop steps no output needs (and renumber, so that step k still defines value n_in + k).
    need = [False] * len(op)
    for g in groups:
        for v in g:
            if v >= n_in:
                need[v - n_in] = True
    for k in range(len(op) - 1, -1, -1):
        if need[k]:
            for u in (sa[k], sb[k]):
                if u >= n_in:
                    need[u - n_in] = True
    new = list(range(n_in)) + [-1] * len(op)
    kept = [k for k in range(len(op)) if need[k]]
    for j, k in enumerate(kept):
        new[n_in + k] = n_in + j
    remap = lambda u: new[u] if u >= 0 else -1  # noqa: E731
    return ([op[k] for k in kept], [remap(sa[k]) for k in kept], [remap(sb[k]) for k in kept],
            [np.array([new[v] for v in g], dtype=np.int64) for g in groups])


def count_steps(circuit: Circuit) -> int:
    """Gate steps that run after folding (what the layouts are chosen by)."""
    return len(_fold(circuit)[0])


def lower(circuit: Circuit, layout: str = "code", chunk_size: int = 512, schedule: bool = True) -> Program:
    """Lower ``circuit`` to a Program (see the module docstring).

    Args:
        circuit: any valid Circuit (outputs may be inputs, constants or repeated nodes).
        layout: "code" (straight-line C functions) or "table" (an int32 step table).
        chunk_size: "code" layout: gate steps per C function (compile time grows faster than
            linearly with function size; ~512 keeps a 48K-gate net to seconds).
        schedule: reorder independent gates (``_schedule``); False keeps the circuit's order (dead
            gates and copies are dropped either way).

    Returns:
        The Program.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not known; expected one of {LAYOUTS}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    n_in = circuit.n_inputs
    op, sa, sb, groups = _fold(circuit)
    n_gates, n_values = len(op), n_in + len(op)
    dst = list(range(n_in, n_values))
    if schedule:
        output_class: dict[int, int] = {}
        for c, g in enumerate(groups):
            for v in g.tolist():
                output_class.setdefault(v, c)
        order = _schedule(op, sa, sb, n_in, output_class, by_op=layout == "table")
        op, dst, sa, sb = ([seq[i] for i in order] for seq in (op, dst, sa, sb))

    # Group sums go right after the step defining the class's last-computed output word.
    def_step = np.full(n_values, -1, dtype=np.int64)
    def_step[np.array(dst, dtype=np.int64)] = np.arange(n_gates)
    after = [int(def_step[g].max()) for g in groups]  # -1: all outputs are inputs
    class_order = sorted(range(circuit.num_classes), key=lambda c: (after[c], c))
    steps = ([], [], [], [])
    k = 0
    for i in range(-1, n_gates):
        if i >= 0:
            for seq, val in zip(steps, (op[i], dst[i], sa[i], sb[i])):
                seq.append(val)
        while k < len(class_order) and after[class_order[k]] == i:
            for seq, val in zip(steps, (GROUP_SUM, class_order[k], -1, -1)):
                seq.append(val)
            k += 1
    arrays = [np.array(seq, dtype=np.int64) for seq in steps]
    return _allocate(circuit, layout, *arrays, groups, n_values, chunk_size, n_gates)


def _schedule(op: list[int], sa: list[int], sb: list[int], n_in: int, output_class: dict[int, int],
              by_op: bool) -> list[int]:
    """An evaluation order of the gate steps (step i defines value ``n_in + i``).

    Steps are grouped by ALAP level: a gate runs in the last level before its first reader, so values
    live briefly, and all gates of a level are independent. Within a level, output gates come last,
    class by class, so each class's group sum runs as soon as its words exist. The rest are ordered:

    * ``by_op`` ("table" layout): by gate type, so the table's per-type loops run long;
    * otherwise ("code"): as a walk where the next gate shares an operand with the previous one
      whenever possible (a shared word is still in L1, and dies right away).

    Returns:
        The step indices in evaluation order (a permutation of range(len(op))).
    """
    n = len(op)
    level = [0] * n
    for i in range(n):
        la = level[sa[i] - n_in] if sa[i] >= n_in else 0
        lb = level[sb[i] - n_in] if sb[i] >= n_in else 0
        level[i] = 1 + (la if la > lb else lb)
    depth = max(level, default=0)
    alap = [depth] * n
    for i in range(n - 1, -1, -1):  # readers before producers
        for u in (sa[i], sb[i]):
            if u >= n_in and alap[u - n_in] > alap[i] - 1:
                alap[u - n_in] = alap[i] - 1
    by_level: list[list[int]] = [[] for _ in range(depth + 1)]
    for i in range(n):
        by_level[alap[i]].append(i)
    order: list[int] = []
    for steps in by_level:
        inner = [i for i in steps if (n_in + i) not in output_class]
        outer = [i for i in steps if (n_in + i) in output_class]
        order.extend(sorted(inner, key=op.__getitem__) if by_op else _walk(inner, sa, sb))
        key = (lambda i: (output_class[n_in + i], op[i])) if by_op else (lambda i: output_class[n_in + i])
        order.extend(sorted(outer, key=key))
    return order


def _walk(steps: list[int], sa: list[int], sb: list[int]) -> list[int]:
    """Greedy trail cover of the steps (edges between their operand values): see ``_schedule``."""
    readers: dict[int, list[int]] = {}
    out = [i for i in steps if sa[i] < 0 and sb[i] < 0]  # constants: no operand to share
    for i in steps:
        for u in {sa[i], sb[i]}:
            if u >= 0:
                readers.setdefault(u, []).append(i)
    taken = set(out)
    for start in steps:
        if start in taken:
            continue
        i, cur = start, sb[start] if sb[start] >= 0 else sa[start]
        while True:
            taken.add(i)
            out.append(i)
            other = sa[i] if sb[i] == cur else sb[i]  # continue from the operand not yet shared
            if other >= 0:
                cur = other
            stack = readers.get(cur, [])
            while stack and stack[-1] in taken:
                stack.pop()
            if not stack:
                break
            i = stack.pop()
    return out


def _chunk_starts(op: np.ndarray, chunk_size: int) -> list[int]:
    """Start a new chunk after every ``chunk_size`` gate steps (group sums do not count)."""
    gate_index = np.cumsum(op != GROUP_SUM) - 1
    starts = [0]
    for s in np.flatnonzero((op != GROUP_SUM) & (gate_index % chunk_size == 0) & (gate_index > 0)).tolist():
        starts.append(s)
    return starts


def _allocate(circuit: Circuit, layout: str, op, dst, a, b, groups, n_values, chunk_size, n_gates) -> Program:
    """Chunk the steps ("code"), decide local vs slot per value, and give slots to values.

    Slots are handed out in execution order: a value's slot is freed when its last reader has run
    (reference counts), and a new value takes the most recently freed slot (LIFO: the word most likely
    still in L1; storing into a line just read measured ~30% fewer cycles per gate than into a random
    one when the buffer is in L2).
    """
    n_in = circuit.n_inputs
    n_steps = op.shape[0]
    steps = np.arange(n_steps)
    is_gate = op != GROUP_SUM
    refs = np.zeros(n_values, dtype=np.int64)  # readers per value (group sums count per occurrence)
    last_use = np.full(n_values, -1, dtype=np.int64)
    for src in (a, b):
        mask = src >= 0
        np.add.at(refs, src[mask], 1)
        np.maximum.at(last_use, src[mask], steps[mask])
    in_group = np.zeros(n_values, dtype=bool)
    for s in np.flatnonzero(~is_gate).tolist():
        members = groups[int(dst[s])]
        np.add.at(refs, members, 1)
        np.maximum.at(last_use, members, s)
        in_group[members] = True
    kind = np.full(n_values, SLOT, dtype=np.int64)
    kind[:n_in] = INPUT
    starts = [0]
    if layout == "code":
        starts = _chunk_starts(op, chunk_size)
        chunk_of = np.zeros(n_steps, dtype=np.int64)
        chunk_of[starts[1:]] = 1
        chunk_of = np.cumsum(chunk_of)
        gate_values = dst[is_gate]
        local = (chunk_of[steps[is_gate]] == chunk_of[np.maximum(last_use[gate_values], 0)]) & ~in_group[gate_values]
        kind[gate_values[local]] = LOCAL  # never needed outside the function that computes it

    kind_l, refs_l = kind.tolist(), refs.tolist()
    word = list(range(n_in)) + [-1] * (n_values - n_in)
    free: list[int] = []
    n_slots = 0
    for o, d, x, y in zip(op.tolist(), dst.tolist(), a.tolist(), b.tolist()):
        reads = groups[d].tolist() if o == GROUP_SUM else [u for u in (x, y) if u >= 0]
        for v in reads:
            refs_l[v] -= 1
            if refs_l[v] == 0 and kind_l[v] == SLOT:
                free.append(word[v])
        if o != GROUP_SUM and kind_l[d] == SLOT:
            if free:
                word[d] = free.pop()
            else:
                word[d] = n_in + n_slots
                n_slots += 1
    return Program(layout=layout, n_inputs=n_in, num_classes=circuit.num_classes,
                   count_bits=circuit.count_bits(), op=op, dst=dst, a=a, b=b, groups=groups, kind=kind,
                   word=np.array(word, dtype=np.int64), chunk_starts=starts, n_slots=n_slots, n_gates=n_gates)


def encode_table(program: Program, word_bytes: int) -> np.ndarray:
    """The "table" layout's steps as one int32 array, read front to back by ``dg_exec`` (``c_source``).

    Records: a 3-int header ``[op, n, arg]`` followed by its entries. ``op`` 0..15: ``n`` gates of that
    type, 3 ints each: the byte offsets (word index * ``word_bytes``) in the scratch buffer of the
    result, ``a`` and ``b`` (0 for an ignored operand). ``op`` -1: the group sum of class ``arg``:
    ``n`` byte offsets of the words to count.
    """
    if program.layout != "table":
        raise ValueError(f"encode_table needs a program lowered with layout='table', got {program.layout!r}")
    word = program.word * word_bytes
    op = program.op
    parts: list[np.ndarray] = []
    bounds = np.flatnonzero(np.diff(op) != 0) + 1
    starts = np.concatenate([[0], bounds]) if op.size else np.zeros(0, dtype=np.int64)
    ends = np.concatenate([bounds, [op.size]]) if op.size else np.zeros(0, dtype=np.int64)
    for s0, s1 in zip(starts.tolist(), ends.tolist()):
        if op[s0] == GROUP_SUM:
            for s in range(s0, s1):
                members = word[program.groups[int(program.dst[s])]]
                parts.append(np.array([GROUP_SUM, members.size, program.dst[s]], dtype=np.int64))
                parts.append(members)
            continue
        a, b = program.a[s0:s1], program.b[s0:s1]
        triples = np.stack([word[program.dst[s0:s1]], np.where(a >= 0, word[a], 0), np.where(b >= 0, word[b], 0)], 1)
        parts.append(np.array([op[s0], s1 - s0, 0], dtype=np.int64))
        parts.append(triples.reshape(-1))
    if not parts:
        return np.zeros(0, dtype=np.int32)
    table = np.concatenate(parts)
    if table.size and table.max() > np.iinfo(np.int32).max:
        raise ValueError(f"the scratch buffer ({program.n_words} words of {word_bytes} bytes) is too big for "
                         f"32-bit offsets")
    return table.astype(np.int32)

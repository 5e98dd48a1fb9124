"""Lowering of a Circuit to a straight-line word program: the plan every C code generator emits.

A ``Program`` is what the compiled engine (``engine``) and the standalone export (``export``) turn
into C text. It does not depend on the word type: every step computes one word (64, 256 or 512
samples at once) from at most two earlier words with one gate of ``diffgates.gates``, counts a
popcount row and compares the count with a threshold (a threshold cell), or sums one class's output
words into the bit planes of its count. Lowering, vectorised over whole levels (no per-gate loop):

* cleans the circuit up with ``ir.passes.CLEANUP_PASSES``: constants folded, copies (``A``, ``B``)
  and double NOTs forwarded, doubled operands reduced, dead cells dropped. This is not logic
  simplification (``ir.passes.simplify``): a one-statement-per-gate C file gets the same from
  ``gcc -O1``. Negated popcount literals become NOT steps, so rows count plain words;
* orders the steps by ALAP level (``ir.analysis``: a value is computed in the last level before its
  first reader, so it lives briefly); within a level output words come last, class by class, the
  rest by gate type ("table": long runs per type) or by operand ("code": neighbours share words);
* places each class's group sum right after the last of its output words is computed;
* gives every value a word in one scratch buffer per block: input features first
  (``0 .. n_inputs-1``), then *slots* by liveness in execution order; a slot is free once its
  value's last reader ran, and a new value takes the most recently freed one (LIFO: the word most
  likely still in L1; storing into a line just read measured ~30% fewer cycles per gate than into a
  random one when the buffer is in L2). The stack discipline is computed at once by matching frees
  and allocations like brackets, so the buffer holds the widest live set, not every node.

Two layouts of the same steps (``layout``):

* ``"code"``: straight-line C, split into chunks (one C function each, so the compiler never sees
  one giant function); a value defined and last read inside one chunk becomes a C local (a register).
  Fastest while the code fits in the caches (small nets) and the natural form of an exported net.
* ``"table"``: the steps as an int32 table (``encode_table``) run by a small fixed C loop per step
  type; gates of one level are sorted by type so each loop runs long. Builds in about a second
  whatever the size, and for big nets runs as fast as straight-line code or faster: that code's
  ~25 bytes of instructions per gate stream through the L2 cache on every block.

Example::

    program = lower(circuit, layout="table")
    program.n_slots, program.count_bits, encode_table(program, word_bytes=32).nbytes
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ... import gates
from ...ir import THRESHOLD, Circuit
from ...ir.analysis import row_of_literal, segment_gather
from ...ir.passes import CLEANUP_PASSES, simplify

# Where a value lives at run time (Program.kind).
INPUT, SLOT, LOCAL = 0, 1, 2
# Step ops besides the gate ids 0..15: the group sum of class dst; a threshold cell (dst = a's row >= b).
GROUP_SUM = -1
THRESHOLD_STEP = -2

LAYOUTS = ("code", "table")
# Reads of one step are ranked below this in the liveness keys (a popcount row or class group is shorter).
_RANKS = 1 << 24
_USES_A = np.array([g.uses_a for g in gates.GATES])
_USES_B = np.array([g.uses_b for g in gates.GATES])


@dataclass
class Program:
    """A circuit lowered to word operations.

    Attributes:
        layout: "code" or "table".
        n_inputs, num_classes, count_bits: from the circuit (``count_bits``: bits of a class count).
        head: the circuit's head kind ('group_sum', 'argmax' or 'bits').
        op, dst, a, b: (n_steps,) int64. Gate steps: op 0..15, dst the value defined, a/b the values
            read (-1 for an operand the gate ignores). Group sums: op ``GROUP_SUM``, dst the class.
            Threshold steps: op ``THRESHOLD_STEP``, dst the value defined, a the row, b the threshold.
        groups: per class, the values of its outputs in order (grouped heads; empty for 'bits').
        outputs: the output values in order (what a 'bits' head returns).
        row_ptr, row_values: the threshold steps' rows (CSR): the values each one counts.
        kind: (n_values,) INPUT, SLOT or LOCAL per value; word: its word index (slot values:
            n_inputs + slot; locals: -1).
        chunk_starts: step index where each chunk (C function) begins ("code" layout; [0] otherwise).
        n_slots: slot words after the inputs: the buffer holds n_inputs + n_slots words per block.
        n_gates: gate and threshold steps that run (after the cleanup).
    """

    layout: str
    n_inputs: int
    num_classes: int
    count_bits: int
    head: str
    op: np.ndarray
    dst: np.ndarray
    a: np.ndarray
    b: np.ndarray
    groups: list[np.ndarray]
    outputs: np.ndarray
    row_ptr: np.ndarray
    row_values: np.ndarray
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

    def row(self, r: int) -> np.ndarray:
        return self.row_values[self.row_ptr[r]:self.row_ptr[r + 1]]

    @property
    def row_bits(self) -> int:
        """Count bits of the longest popcount row (0 without threshold steps)."""
        lengths = np.diff(self.row_ptr)
        return int(lengths.max()).bit_length() if lengths.size else 0


def cleanup(circuit: Circuit) -> Circuit:
    """The circuit after the folding every compiler does (``ir.passes.CLEANUP_PASSES``), with plain rows.

    Negated popcount literals are replaced by NOT gates placed right after the node they negate (one
    per distinct node), so threshold steps only count words.
    """
    cleaned = simplify(circuit, CLEANUP_PASSES)
    lits = cleaned.popcount_lits
    negated = np.unique(lits[(lits & 1) == 1] >> 1)
    if not negated.size:
        return cleaned
    n_in, g = cleaned.n_inputs, cleaned.n_gates
    # New order: every cell keyed 2 * node, the NOT of node x keyed 2 * x + 1 (right after x).
    keys = np.concatenate([2 * (n_in + np.arange(g)), 2 * negated + 1])
    order = np.argsort(keys, kind="stable")
    position = np.empty(order.size, dtype=np.int64)
    position[order] = np.arange(order.size)
    new_node = np.concatenate([np.arange(n_in), n_in + position[:g]])  # old node -> new node
    not_node = n_in + position[g:]
    ops = np.concatenate([cleaned.ops, np.full(negated.size, gates.NOT_A, np.uint8)])[order]
    is_gate = ops != THRESHOLD
    a_old = np.concatenate([cleaned.a, negated])[order]
    b_old = np.concatenate([cleaned.b, negated])[order]
    a = np.where(is_gate, new_node[np.where(is_gate, a_old, 0)], a_old)
    b = np.where(is_gate, new_node[np.where(is_gate, b_old, 0)], b_old)
    lookup = np.full(cleaned.n_nodes, -1, dtype=np.int64)
    lookup[negated] = not_node
    node = lits >> 1
    new_lits = 2 * np.where((lits & 1) == 1, lookup[node], new_node[node])
    return cleaned.replace(ops=ops, a=a, b=b, outputs=new_node[cleaned.outputs], popcount_lits=new_lits)


def count_steps(circuit: Circuit) -> int:
    """Gate and threshold steps that run after the cleanup (what the layouts are chosen by)."""
    return cleanup(circuit).n_gates


def _order(c: Circuit, by_op: bool) -> np.ndarray:
    """Evaluation order of the cells of the cleaned circuit ``c`` (see the module docstring)."""
    n_in = c.n_inputs
    alap = c.analysis.alap
    out_class = np.full(c.n_nodes, c.num_classes if c.head.grouped else 1, dtype=np.int64)
    if c.head.grouped:
        classes = np.repeat(np.arange(c.num_classes), c.group_size)
        np.minimum.at(out_class, c.outputs, classes)  # a repeated output belongs to its first class
    else:
        out_class[c.outputs] = 0
    cell_class = out_class[n_in:]
    is_output = cell_class < (c.num_classes if c.head.grouped else 1)
    ops = c.ops.astype(np.int64)
    if by_op:
        # One unique int64 key (level, output?, class, type, index): a single argsort instead of a lexsort.
        k = (c.num_classes if c.head.grouped else 1) + 1
        key = ((alap * 2 + is_output) * k + np.where(is_output, cell_class, -1) + 1) * 17 + ops
        return np.argsort(key * n_cells_bound(c) + np.arange(c.n_gates))
    # Readers of one word side by side: that word is in L1 for all of them and dies at once.
    first = np.where(ops == THRESHOLD, -1, np.minimum(c.a, c.b))
    keys = (np.maximum(c.a, c.b), first, np.where(is_output, cell_class, -1), is_output, alap)
    return np.lexsort(keys)


def n_cells_bound(c: Circuit) -> int:
    """A power of two above the cell count (room for the index in a combined sort key)."""
    return 1 << max(1, int(c.n_gates).bit_length())


def _group_sum_positions(def_pos: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Per class the position after which its group sum runs: its last output word's definition."""
    return np.array([int(def_pos[g].max()) if g.size else -1 for g in groups], dtype=np.int64)


def lower(circuit: Circuit, layout: str = "code", chunk_size: int = 512, schedule: bool = True) -> Program:
    """Lower ``circuit`` to a Program (see the module docstring).

    Args:
        circuit: any valid Circuit (outputs may be inputs, constants or repeated nodes).
        layout: "code" (straight-line C functions) or "table" (an int32 step table).
        chunk_size: "code" layout: gate steps per C function (compile time grows faster than
            linearly with function size; ~512 keeps a 48K-gate net to seconds).
        schedule: order independent cells for the cache; False keeps the circuit's order (dead
            cells and copies are dropped either way).

    Returns:
        The Program.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not known; expected one of {LAYOUTS}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    c = cleanup(circuit)  # a private copy: its analyses can be dropped once the order is known
    n_in, n_cells, n_values = c.n_inputs, c.n_gates, c.n_nodes
    longest = max([c.group_size if c.head.grouped else 0, c.n_outputs, int(np.diff(c.popcount_ptr).max(initial=0))])
    if longest >= _RANKS:
        raise ValueError(f"a class group or popcount row of {longest} words is beyond the C backend's limit of "
                         f"{_RANKS - 1}")
    order = _order(c, by_op=layout == "table") if schedule else np.arange(n_cells)
    c.forget_analyses()  # why: levels, ALAP and liveness of a 10M-gate circuit hold ~300 MB
    cell_ops = c.ops.astype(np.int64)[order]
    is_cell_threshold = cell_ops == THRESHOLD
    op = np.where(is_cell_threshold, THRESHOLD_STEP, cell_ops)
    dst = n_in + order
    used_a = ~is_cell_threshold & _USES_A[np.minimum(cell_ops, 15)]
    used_b = ~is_cell_threshold & _USES_B[np.minimum(cell_ops, 15)]
    a = np.where(is_cell_threshold, c.a[order], np.where(used_a, c.a[order], -1))
    b = np.where(is_cell_threshold, c.b[order], np.where(used_b, c.b[order], -1))
    groups = [g.copy() for g in c.output_groups()] if c.head.grouped else []

    # Group sums go right after the step defining the class's last-computed output word.
    def_pos = np.full(n_values, -1, dtype=np.int64)
    def_pos[dst] = np.arange(n_cells)
    after = _group_sum_positions(def_pos, groups)
    classes = np.lexsort((np.arange(len(groups)), after))  # sums in (position, class) order
    at = after[classes] + 1  # a class's sum goes right after its last output word
    op = np.insert(op, at, GROUP_SUM)
    dst = np.insert(dst, at, classes)
    a = np.insert(a, at, -1)
    b = np.insert(b, at, -1)
    row_ptr, row_values = c.popcount_ptr, c.popcount_lits >> 1
    return _allocate(c, layout, op, dst, a, b, groups, row_ptr, row_values, chunk_size, n_cells)


def _chunk_starts(op: np.ndarray, chunk_size: int) -> list[int]:
    """Start a new chunk after every ``chunk_size`` gate steps (group sums do not count)."""
    is_gate = op != GROUP_SUM
    gate_index = np.cumsum(is_gate) - 1
    return [0] + np.flatnonzero(is_gate & (gate_index % chunk_size == 0) & (gate_index > 0)).tolist()


def _lifo_slots(alloc_step: np.ndarray, free_key: np.ndarray, freed_alloc: np.ndarray) -> tuple[np.ndarray, int]:
    """Slots of allocations under a LIFO free list, without a loop over the steps.

    Allocation ``j`` happens at step ``alloc_step[j]`` (ascending, at most one per step); free ``f``,
    at the time ``free_key[f]`` (``step * R + rank``: a step's frees in rank order, all before that
    step's allocation), gives back the slot of allocation ``freed_alloc[f]``. An allocation takes the
    most recently freed slot, or a new one.

    Returns:
        (slot per allocation, number of slots).
    """
    n_alloc, n_free = alloc_step.size, free_key.size
    if not n_alloc:
        return np.zeros(0, np.int64), 0
    by_time = np.argsort(free_key)  # keys are unique
    free_step = free_key[by_time] // _RANKS
    freed_alloc = freed_alloc[by_time]
    del by_time
    # Merge frees and allocations in time order by counting, not sorting.
    pushes_before = np.searchsorted(free_step, alloc_step, side="right")  # frees up to and at the alloc's step
    creates = np.maximum.accumulate(np.maximum(np.arange(1, n_alloc + 1) - pushes_before, 0))  # new slots so far
    is_create = np.diff(creates, prepend=0) > 0
    alloc_pos = np.arange(n_alloc) + pushes_before  # event positions in the merged sequence
    del pushes_before
    free_pos = np.arange(n_free) + np.searchsorted(alloc_step, free_step, side="left")
    del free_step
    n_events = n_alloc + n_free
    event_id = np.empty(n_events, dtype=np.int32 if n_events < 2 ** 31 else np.int64)
    event_id[free_pos] = np.arange(n_free)
    event_id[alloc_pos] = np.arange(n_alloc)
    delta = np.zeros(n_events, dtype=np.int8)  # +1 a free pushes a slot, -1 an allocation pops one
    delta[free_pos] = 1
    delta[alloc_pos[~is_create]] = -1
    del free_pos, alloc_pos
    stack = np.flatnonzero(delta).astype(np.int32 if n_events < 2 ** 31 else np.int64)  # stack events, in time
    push = delta[stack] > 0
    level = np.cumsum(delta, dtype=np.int32)[stack]  # depth after the event ...
    del delta
    level[~push] += 1  # ... and, for a pop, before it: a pop at depth d takes the last push to depth d
    # Bracket matching: within one depth, pushes and pops alternate in time (stable sort keeps time order).
    order = np.argsort(level, kind="stable")  # the depth walks up and down: runs make this fast
    del level
    pops = np.flatnonzero(~push[order])
    matched_free = event_id[stack[order[pops - 1]]]
    pop_alloc = event_id[stack[order[pops]]]
    del order, stack, push, event_id
    parent = np.arange(n_alloc, dtype=np.int64)
    parent[pop_alloc] = freed_alloc[matched_free]
    slot = np.full(n_alloc, -1, dtype=np.int64)
    slot[is_create] = creates[is_create] - 1
    unresolved = np.flatnonzero(slot < 0)
    while unresolved.size:  # pointer jumping: each allocation inherits the slot its chain started with
        slot[unresolved] = slot[parent[unresolved]]
        parent[unresolved] = parent[parent[unresolved]]
        unresolved = unresolved[slot[unresolved] < 0]
    return slot, int(creates[-1])


def _last_reads(c: Circuit, op, dst, a, b, groups, row_ptr, row_values) -> tuple[np.ndarray, np.ndarray]:
    """Per value: the time of its last read (``step * _RANKS + rank``, -1 if never read) and whether some
    read goes through an offset table (group sums, threshold rows, a 'bits' head's outputs)."""
    n_values, n_steps = c.n_nodes, op.size
    last = np.full(n_values, -1, dtype=np.int64)
    tabled = np.zeros(n_values, dtype=bool)
    steps = np.arange(n_steps, dtype=np.int64)
    for rank, src in enumerate((a, b)):
        m = np.flatnonzero((op >= 0) & (src >= 0))
        np.maximum.at(last, src[m], steps[m] * _RANKS + rank)
    thr = np.flatnonzero(op == THRESHOLD_STEP)
    if thr.size:
        positions, sub_ptr = segment_gather(row_ptr, a[thr])
        within = np.arange(positions.size) - np.repeat(sub_ptr[:-1], np.diff(sub_ptr))
        counted = row_values[positions]
        np.maximum.at(last, counted, np.repeat(thr, np.diff(sub_ptr)) * _RANKS + within)
        tabled[counted] = True
    for s in np.flatnonzero(op == GROUP_SUM).tolist():  # one per class
        members = groups[int(dst[s])]
        np.maximum.at(last, members, s * _RANKS + np.arange(members.size))
        tabled[members] = True
    if not c.head.grouped:  # a 'bits' head reads every output after the last step
        np.maximum.at(last, c.outputs, n_steps * _RANKS + np.arange(c.outputs.size))
        tabled[c.outputs] = True
    return last, tabled


def _allocate(c: Circuit, layout: str, op, dst, a, b, groups, row_ptr, row_values, chunk_size, n_gates) -> Program:
    """Chunk the steps ("code"), decide local vs slot per value, and give slots to values (LIFO)."""
    n_in, n_values = c.n_inputs, c.n_nodes
    n_steps = op.size
    last, tabled = _last_reads(c, op, dst, a, b, groups, row_ptr, row_values)
    kind = np.full(n_values, SLOT, dtype=np.int8)
    kind[:n_in] = INPUT
    def_step = np.flatnonzero(op != GROUP_SUM)
    defined = dst[def_step]
    starts = [0]
    if layout == "code":
        starts = _chunk_starts(op, chunk_size)
        chunk_of = np.zeros(n_steps + 1, dtype=np.int64)
        chunk_of[starts[1:]] = 1
        chunk_of = np.cumsum(chunk_of)
        last_step = np.maximum(last[defined], 0) // _RANKS
        local = (chunk_of[def_step] == chunk_of[last_step]) & ~tabled[defined]
        kind[defined[local]] = LOCAL
    del tabled
    # Slots: allocated at the defining steps of slot values, freed at their last reads (never, for values a
    # 'bits' head reads after the last step).
    is_slot = kind[defined] == SLOT
    slot_values = defined[is_slot]
    alloc_step = def_step[is_slot]
    del defined, def_step, is_slot
    read_at = last[slot_values]
    del last
    freed = np.flatnonzero((read_at >= 0) & (read_at < n_steps * _RANKS))
    slots, n_slots = _lifo_slots(alloc_step, read_at[freed], freed)
    del alloc_step, read_at, freed
    word = np.full(n_values, -1, dtype=np.int64)
    word[:n_in] = np.arange(n_in)
    word[slot_values] = n_in + slots
    return Program(layout=layout, n_inputs=n_in, num_classes=c.num_classes, count_bits=c.count_bits(),
                   head=c.head.kind, op=op, dst=dst, a=a, b=b, groups=groups, outputs=c.outputs.copy(),
                   row_ptr=row_ptr, row_values=row_values, kind=kind, word=word, chunk_starts=starts,
                   n_slots=n_slots, n_gates=n_gates)


def encode_table(program: Program, word_bytes: int) -> np.ndarray:
    """The "table" layout's steps as one int32 array, read front to back by ``dg_exec`` (``source``).

    Records: a 3-int header ``[op, n, arg]`` followed by its entries. ``op`` 0..15: ``n`` gates of that
    type, 3 ints each: the byte offsets (word index * ``word_bytes``) in the scratch buffer of the
    result, ``a`` and ``b`` (0 for an ignored operand). ``op`` -1: the group sum of class ``arg``:
    ``n`` byte offsets of the words to count. ``op`` -2: a threshold cell with threshold ``arg``:
    the byte offset of its result, then the ``n`` byte offsets of the words it counts. ``op`` -3 (a
    'bits' head, last): the ``n`` byte offsets of the output words, copied into the results in order.
    """
    if program.layout != "table":
        raise ValueError(f"encode_table needs a program lowered with layout='table', got {program.layout!r}")
    word = program.word * word_bytes
    n_steps = program.n_steps
    table = _step_records(program, word) if n_steps else np.zeros(0, dtype=np.int64)
    if program.head == "bits":  # a last record copies the output words into the results, in order
        table = np.concatenate([table, [-3, program.outputs.size, 0], word[program.outputs]])
    if table.max(initial=0) > np.iinfo(np.int32).max or table.min(initial=0) < np.iinfo(np.int32).min:
        raise ValueError(f"the scratch buffer ({program.n_words} words of {word_bytes} bytes) is too big for "
                         f"32-bit offsets")
    return table.astype(np.int32)


def _step_records(program: Program, word: np.ndarray) -> np.ndarray:
    """The table records of the steps (``encode_table``), as int64."""
    op, n_steps = program.op, program.n_steps
    # Records: runs of equal gate ops, and one record per group sum or threshold step.
    is_gate = op >= 0
    new_record = np.ones(n_steps, dtype=bool)
    new_record[1:] = ~(is_gate[1:] & is_gate[:-1] & (op[1:] == op[:-1]))
    rec_start = np.flatnonzero(new_record)
    rec_end = np.append(rec_start[1:], n_steps)
    rec_op = op[rec_start]
    group_len = np.array([g.size for g in program.groups], dtype=np.int64)
    row_len = np.diff(program.row_ptr)
    entries = np.where(rec_op >= 0, 3 * (rec_end - rec_start), 0)
    sums = rec_op == GROUP_SUM
    entries[sums] = group_len[program.dst[rec_start[sums]]]
    thr = rec_op == THRESHOLD_STEP
    entries[thr] = 1 + row_len[program.a[rec_start[thr]]]
    length = 3 + entries
    base = np.concatenate([[0], np.cumsum(length)])
    table = np.zeros(int(base[-1]), dtype=np.int64)
    head = base[:-1]
    table[head] = rec_op
    table[head + 1] = np.where(rec_op >= 0, rec_end - rec_start, np.where(sums, entries, entries - 1))
    table[head + 2] = np.where(sums, program.dst[rec_start], np.where(thr, program.b[rec_start], 0))
    # Gate triples: step s of record r at head[r] + 3 + 3 (s - rec_start[r]).
    gate_steps = np.flatnonzero(is_gate)
    rec_of_step = np.cumsum(new_record) - 1
    pos = head[rec_of_step[gate_steps]] + 3 + 3 * (gate_steps - rec_start[rec_of_step[gate_steps]])
    ga, gb = program.a[gate_steps], program.b[gate_steps]
    table[pos] = word[program.dst[gate_steps]]
    table[pos + 1] = np.where(ga >= 0, word[np.maximum(ga, 0)], 0)
    table[pos + 2] = np.where(gb >= 0, word[np.maximum(gb, 0)], 0)
    for r in np.flatnonzero(sums).tolist():  # one per class
        members = program.groups[int(program.dst[rec_start[r]])]
        table[head[r] + 3:head[r] + 3 + members.size] = word[members]
    t_rec = np.flatnonzero(thr)
    if t_rec.size:
        steps = rec_start[t_rec]
        table[head[t_rec] + 3] = word[program.dst[steps]]
        positions, sub_ptr = segment_gather(program.row_ptr, program.a[steps])
        within = np.arange(positions.size) - np.repeat(sub_ptr[:-1], np.diff(sub_ptr))
        table[np.repeat(head[t_rec] + 4, np.diff(sub_ptr)) + within] = word[program.row_values[positions]]
    return table


__all__ = ["Program", "lower", "cleanup", "count_steps", "encode_table", "LAYOUTS", "INPUT", "SLOT", "LOCAL",
           "GROUP_SUM", "THRESHOLD_STEP", "row_of_literal"]

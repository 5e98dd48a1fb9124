"""Tests of the netlist backend (``diffgates.backends.netlist``): the AIG lowering, AIGER .aag/.aig, BLIF, ABC.

* The vectorised lowering must build exactly the AIG of the plain sequential algorithm kept here
  (``SequentialAig``: one ``and_`` call after another, folded or looked up in a dict, as the library
  did before it was vectorised): same ANDs in the same order, same outputs.
* Every file is read back (AIGER by ``read_aiger``, BLIF by the small evaluator below) and compared
  with the numpy reference evaluator (``diffgates.ir``), exhaustively on small circuits, threshold
  cells and every head kind included.
* When ABC (``berkeley-abc`` or ``yosys-abc``) or Yosys is installed (marker ``hw``), it reads the
  files, proves the AIGER and BLIF lowerings equivalent (``cec``) and the synthesis report runs.
  Those tests skip when the tool is missing.

Golden files ``tests/golden/tiny_raw.aag`` and ``tests/golden/tiny_counts.blif`` hold the exact output
for ``tiny_circuit()``; regenerate after an intended change with::

    DIFFGATES_UPDATE_GOLDEN=1 python -m pytest tests/test_backend_netlist.py -k golden
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from circuit_cases import (all_bits, check_golden, model_counts, random_bits, random_cell_circuit, random_circuit,
                           random_model)
from diffgates import gates
from diffgates._atomic import is_temp_file
from diffgates.backends.netlist import abc as abc_report
from diffgates.backends.netlist.aig import (GATE_RECIPES, Aig, Names, and_levels, balanced_reduce, count_aig,
                                            lower_to_aig, tree_depth)
from diffgates.backends.netlist.aiger import (AigerFormatError, aiger_bytes, encode_varints, export_aiger,
                                              read_aiger)
from diffgates.backends.netlist.blif import blif_text, export_blif
from diffgates.frontend import to_circuit
from diffgates.ir import Circuit, Head, evaluate_outputs, group_counts, lower_cells

GOLDEN = Path(__file__).parent / "golden"
ABC = shutil.which("berkeley-abc") or shutil.which("yosys-abc")
needs_abc = pytest.mark.skipif(ABC is None, reason="ABC (berkeley-abc or yosys-abc) is not installed")
needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys is not installed")


def tiny_circuit() -> Circuit:
    """The fixed 4-input, 9-gate, 2-class circuit of the golden files (the same as the Verilog tests'):
    XOR/NAND/OR chains, a constant, a NOT, a pass-through, an output that is an input bit and a repeated output."""
    return Circuit(n_inputs=4,
                   ops=[gates.XOR, gates.NAND, gates.OR, gates.NOT_A, gates.AND, gates.TRUE, gates.XNOR, gates.B,
                        gates.A_AND_NOT_B],
                   a=[0, 2, 4, 5, 6, 0, 7, 1, 10],
                   b=[1, 3, 5, 0, 3, 0, 8, 6, 4],
                   outputs=[10, 11, 3, 12, 12, 9], num_classes=2,
                   input_layout={"kind": "test", "bits": ["a0", "a1", "b0", "b1"]})


# ---- the sequential reference ------------------------------------------------------------------------
class SequentialAig:
    """The AIG built one AND at a time with a dict for structural hashing: the specification of
    ``lower_to_aig`` (the library's code before it was vectorised)."""

    def __init__(self, n_inputs: int):
        self.n_inputs = n_inputs
        self.ands: list[tuple[int, int]] = []
        self._strash: dict[tuple[int, int], int] = {}

    def input(self, i: int) -> int:
        return 2 * (i + 1)

    def and_(self, x: int, y: int) -> int:
        if x < y:
            x, y = y, x
        if y == 0 or x == (y ^ 1):
            return 0
        if y == 1 or x == y:
            return x
        lit = self._strash.get((x, y))
        if lit is None:
            self.ands.append((x, y))
            lit = 2 * (self.n_inputs + len(self.ands))
            self._strash[(x, y)] = lit
        return lit

    def or_(self, x: int, y: int) -> int:
        return self.and_(x ^ 1, y ^ 1) ^ 1

    def xor_(self, x: int, y: int) -> int:
        return self.or_(self.and_(x, y ^ 1), self.and_(x ^ 1, y))

    def gate(self, op: int, la: int, lb: int) -> int:
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

    def add(self, x, y, width: int) -> list[int]:
        out, carry = [], 0
        for i in range(width):
            a = x[i] if i < len(x) else 0
            b = y[i] if i < len(y) else 0
            ab = self.xor_(a, b)
            out.append(self.xor_(ab, carry))
            carry = self.or_(self.and_(a, b), self.and_(carry, ab))
        return out

    def popcount(self, lits, width: int) -> list[int]:
        def combine(l, r, _level, _index):
            total = l[1] + r[1]
            return self.add(l[0], r[0], total.bit_length()), total

        (bits, _), _ = balanced_reduce([([lit], 1) for lit in lits], combine)
        return (list(bits) + [0] * width)[:width]

    def mux(self, sel: int, x: int, y: int) -> int:
        return self.or_(self.and_(sel, x), self.and_(sel ^ 1, y))

    def greater(self, x, y) -> int:
        gt = 0
        for xi, yi in zip(x, y):
            gt = self.or_(self.and_(xi, yi ^ 1), self.and_(self.xor_(xi, yi) ^ 1, gt))
        return gt


def sequential_lowering(circuit: Circuit, counts: bool = False, argmax: bool = False) -> tuple[list, list]:
    """(ands, outputs) of the sequential algorithm: gates in index order, then the count trees class by
    class, then the argmax tournament."""
    aig = SequentialAig(circuit.n_inputs)
    lit = [2 * (i + 1) for i in range(circuit.n_inputs)]
    for op, a, b in zip(circuit.ops.tolist(), circuit.a.tolist(), circuit.b.tolist()):
        lit.append(aig.gate(op, lit[a] if a < len(lit) else 0, lit[b] if b < len(lit) else 0))
    outs = [lit[v] for v in circuit.outputs.tolist()]
    result = list(outs)
    if counts or argmax:
        gs, w = circuit.group_size, circuit.count_bits()
        class_counts = [aig.popcount(outs[c * gs:(c + 1) * gs], w) for c in range(circuit.num_classes)]
        if counts:
            result += [bit for cls in class_counts for bit in cls]
        if argmax:
            width = max(1, (circuit.num_classes - 1).bit_length())
            index = [[(c >> k) & 1 for k in range(width)] for c in range(circuit.num_classes)]

            def duel(left, right, _level, _index):
                right_wins = aig.greater(right[0], left[0])
                return ([aig.mux(right_wins, r, l) for l, r in zip(left[0], right[0])],
                        [aig.mux(right_wins, r, l) for l, r in zip(left[1], right[1])])

            (_, idx), _ = balanced_reduce(list(zip(class_counts, index)), duel)
            result += list(idx)
    return aig.ands, result


def layered_circuit(n_inputs: int, widths, k: int, seed: int) -> Circuit:
    """Layers of random gates of all 16 kinds reading the previous layer (or, a fifth of the time, any
    earlier node); a tenth of each layer repeats another gate of it and a tenth goes through a NOT or
    pass-through gate first, so equal ANDs meet in one batch and across levels."""
    rng = np.random.default_rng(seed)
    ops, a, b, prev, n = [], [], [], np.arange(n_inputs), n_inputs
    for w in widths:
        op = rng.integers(0, 16, w)
        src = np.where(rng.random((2, w)) < 0.2, rng.integers(0, n, (2, w)), rng.choice(prev, (2, w)))
        copy = np.flatnonzero(rng.random(w) < 0.1)
        orig = rng.integers(0, w, copy.size)
        op[copy], src[:, copy] = op[orig], src[:, orig]
        wired = np.flatnonzero(rng.random(w) < 0.1)  # the same literal, one level deeper
        wire_op = rng.choice([gates.A, gates.NOT_A, gates.B], wired.size)
        ops.append(wire_op)
        a.append(src[0, wired])
        b.append(src[0, wired])
        src[0, wired] = n + np.arange(wired.size)  # these gates read the wires instead
        n += wired.size
        ops.append(op)
        a.append(src[0])
        b.append(src[1])
        prev, n = n + np.arange(w), n + w
    outputs = rng.choice(prev, k * 4)
    return Circuit(n_inputs=n_inputs, ops=np.concatenate(ops), a=np.concatenate(a), b=np.concatenate(b),
                   outputs=outputs, num_classes=k)


def cross_level_duplicates() -> Circuit:
    """Gate 2 (deep, behind two wires) and gate 3 (shallow) are the same AND, and so are the XORs after
    them: the sequential order names gate 2's AND first although a level sweep finds gate 3's first."""
    return Circuit(n_inputs=3, ops=[gates.A, gates.A, gates.AND, gates.AND, gates.XOR, gates.XOR, gates.OR],
                   a=[0, 3, 4, 0, 5, 6, 7], b=[0, 3, 1, 1, 2, 2, 8], outputs=[9, 7, 8, 5], num_classes=2)


def _cases():
    """(id, circuit) of awkward sizes: constants, wires and NOTs, all 16 gates, threshold cells, a model."""
    for n in (1, 63, 65, 157):
        yield f"skewed-{n}", random_circuit(7, n, 12, k=3, seed=n)
        yield f"uniform-{n}", random_circuit(9, n, 10, k=5, seed=n + 1, gate_weights=np.ones(16))
        yield f"cells-{n}", random_cell_circuit(6, n, 8, k=2, seed=n + 2)
        yield f"layered-{n}", layered_circuit(12, [n, 65, 63], 3, seed=n + 3)
    yield "cross-level-duplicates", cross_level_duplicates()
    yield "one-class-of-37", random_circuit(8, 300, 37, k=1, seed=9, gate_weights=np.ones(16))
    yield "eleven-classes", random_circuit(8, 200, 33, k=11, seed=10)
    yield "model", to_circuit(random_model(24, [70, 40], 4, seed=3))


CASES = list(_cases())


@pytest.mark.parametrize("counts, argmax", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("name, circuit", CASES, ids=[name for name, _ in CASES])
def test_vectorised_lowering_equals_the_sequential_reference(name, circuit, counts, argmax):
    aig = lower_to_aig(circuit, counts=counts, argmax=argmax)
    plain = lower_cells(circuit) if circuit.has_cells else circuit
    ands, outputs = sequential_lowering(plain, counts, argmax)
    assert aig.ands.tolist() == [list(pair) for pair in ands]
    assert aig.outputs.tolist() == outputs
    # The levels the builder recorded are the graph's levels.
    assert np.array_equal(aig.levels(), and_levels(aig.n_inputs, aig.rhs0, aig.rhs1))


def test_argmax_only_builds_the_counts_it_needs():
    c = random_circuit(6, 90, 12, k=4, seed=12, gate_weights=np.ones(16))
    ands, outputs = sequential_lowering(c, counts=False, argmax=True)
    aig = lower_to_aig(c, argmax=True)
    assert aig.ands.tolist() == [list(p) for p in ands] and aig.outputs.tolist() == outputs


# ---- evaluation against the reference ------------------------------------------------------------------
def _expected(circuit, bits) -> np.ndarray:
    """Reference values of a netlist with counts: raw outputs, then each class's count bits LSB first."""
    counts = group_counts(circuit, bits)
    w = circuit.count_bits()
    count_bits = ((counts[:, :, None] >> np.arange(w)) & 1).astype(bool).reshape(len(bits), -1)
    return np.concatenate([evaluate_outputs(circuit, bits), count_bits], axis=1)


def read_blif(path) -> tuple[list[str], list[str], list[tuple[list[str], str, list[str]]]]:
    """(inputs, outputs, tables) of a BLIF file: a test-side parser independent of the writer."""
    text = re.sub(r"\\\n", " ", Path(path).read_text())
    inputs, outputs, tables, cur = [], [], [], None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("."):
            cur = None
            words = line.split()
            if words[0] == ".inputs":
                inputs += words[1:]
            elif words[0] == ".outputs":
                outputs += words[1:]
            elif words[0] == ".names":
                cur = (words[1:-1], words[-1], [])
                tables.append(cur)
            else:
                assert words[0] in (".model", ".end"), f"unexpected BLIF keyword {words[0]}"
        else:
            assert cur is not None, f"cover row {line!r} outside .names"
            cur[2].append(line)
    return inputs, outputs, tables


def eval_blif(path, bits) -> np.ndarray:
    inputs, outputs, tables = read_blif(path)
    val = {name: bits[:, i].astype(bool) for i, name in enumerate(inputs)}
    for ins, out, rows in tables:  # our writer emits tables in topological order
        assert out not in val, f"net {out} driven twice"
        res = np.zeros(len(bits), dtype=bool)
        for row in rows:
            *cube, bit = row.split() if ins else ["", row]
            assert bit == "1", "the writer only emits on-set rows"
            term = np.ones(len(bits), dtype=bool)
            for name, ch in zip(ins, cube[0] if cube else ""):
                if ch != "-":
                    term &= val[name] == (ch == "1")
            res |= term
        val[out] = res
    return np.stack([val[o] for o in outputs], axis=1)


def test_gate_recipes_reproduce_truth_tables():
    # One gate of each kind on (x0, x1), each its own class.
    c = Circuit(n_inputs=2, ops=np.arange(16), a=np.zeros(16, int), b=np.ones(16, int), outputs=2 + np.arange(16),
                num_classes=16)
    got = lower_to_aig(c).evaluate(all_bits(2))
    want = np.array([[bool(g(a, b)) for g in gates.GATES] for a in (0, 1) for b in (0, 1)])
    assert np.array_equal(got, want)
    assert GATE_RECIPES[gates.XOR][0] == "xor" and GATE_RECIPES[gates.AND] == ("and", 0, 0, 0)


def test_balanced_reduce_depth_and_order():
    for n in (1, 2, 3, 7, 8, 9, 100, 240):
        root, depth = balanced_reduce(list(range(n)), lambda l, r, t, j: l + r)
        assert root == n * (n - 1) // 2 and depth == tree_depth(n) == int(np.ceil(np.log2(n)))
    with pytest.raises(ValueError, match="at least one"):
        balanced_reduce([], lambda *a: None)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aig_lowering_exhaustive(seed):
    c = random_circuit(9, 150, 12, k=3, seed=seed)
    aig = lower_to_aig(c, counts=True)
    bits = all_bits(9)
    assert np.array_equal(aig.evaluate(bits), _expected(c, bits))
    assert np.array_equal(aig.evaluate(bits, chunk=64), aig.evaluate(bits))  # several chunks of samples
    assert aig.output_names[:2] == ["out[0]", "out[1]"] and aig.output_names[-1] == "count_c2[2]"


@pytest.mark.parametrize("k, group, seed", [(1, 4, 0), (3, 4, 1), (5, 2, 2), (4, 3, 3), (10, 1, 4)])
def test_aig_argmax_matches_numpy_with_ties_to_the_lowest_class(k, group, seed):
    c = random_circuit(8, 90, k * group, k=k, seed=seed)
    aig = lower_to_aig(c, argmax=True)
    bits = all_bits(8)
    got = aig.evaluate(bits)[:, c.n_outputs:]
    assert got.shape[1] == max(1, (k - 1).bit_length())
    index = (got.astype(np.int64) << np.arange(got.shape[1])).sum(axis=1)
    counts = group_counts(c, bits)
    assert np.array_equal(index, counts.argmax(axis=1))  # numpy's argmax: first maximum
    if k > 1:  # the exhaustive inputs do produce ties, so the tie rule was exercised
        assert (np.sort(counts, axis=1)[:, -1] == np.sort(counts, axis=1)[:, -2]).any()
    assert aig.output_names[-1] == f"class_idx[{got.shape[1] - 1}]"


@pytest.mark.parametrize("suffix", [".aag", ".aig"])
def test_threshold_cells_in_aiger_match_the_reference(tmp_path, suffix):
    c = random_cell_circuit(8, 120, 12, k=3, seed=21)
    assert c.has_cells
    info = export_aiger(c, tmp_path / f"t{suffix}", counts=True, argmax=True)
    bits = all_bits(8)
    values = read_aiger(tmp_path / f"t{suffix}").evaluate(bits)
    assert info.outputs == values.shape[1] == 12 + 3 * c.count_bits() + 2
    assert np.array_equal(values[:, :-2], _expected(c, bits))
    index = (values[:, -2:].astype(np.int64) << np.arange(2)).sum(axis=1)
    assert np.array_equal(index, group_counts(c, bits).argmax(axis=1))


@pytest.mark.parametrize("style", ["gates", "aig"])
def test_threshold_cells_in_blif_match_the_reference(tmp_path, style):
    c = random_cell_circuit(7, 90, 10, k=2, seed=22)
    export_blif(c, tmp_path / "t.blif", style=style, counts=True)
    bits = all_bits(7)
    assert np.array_equal(eval_blif(tmp_path / "t.blif", bits), _expected(c, bits))


def test_bits_head_exports_raw_bits_and_refuses_counts(tmp_path):
    base = random_circuit(6, 70, 5, seed=23)
    c = base.replace(head=Head.bits())
    bits = all_bits(6)
    export_aiger(c, tmp_path / "b.aag")
    aig = read_aiger(tmp_path / "b.aag")
    assert np.array_equal(aig.evaluate(bits), evaluate_outputs(c, bits))
    assert any("head 'bits'" in line for line in aig.comments)
    export_blif(c, tmp_path / "b.blif", style="aig")
    assert np.array_equal(eval_blif(tmp_path / "b.blif", bits), evaluate_outputs(c, bits))
    for call in (lambda: lower_to_aig(c, counts=True), lambda: lower_to_aig(c, argmax=True),
                 lambda: export_aiger(c, tmp_path / "x.aig", counts=True),
                 lambda: export_blif(c, tmp_path / "x.blif", counts=True), lambda: count_aig(c)):
        with pytest.raises(ValueError, match="head is 'bits'"):
            call()
    assert not (tmp_path / "x.aig").exists() and not (tmp_path / "x.blif").exists()


def test_argmax_head_exports_counts_and_argmax():
    c = random_circuit(6, 80, 9, k=3, seed=24).replace(head=Head.argmax(3))
    aig = lower_to_aig(c, counts=True, argmax=True)
    bits = all_bits(6)
    values = aig.evaluate(bits)
    assert np.array_equal(values[:, :-2], _expected(c, bits))
    assert np.array_equal((values[:, -2:].astype(np.int64) << np.arange(2)).sum(1), group_counts(c, bits).argmax(1))


def test_count_aig_counts_its_inputs():
    c = random_circuit(4, 20, 15, k=3, seed=25)
    cnt = count_aig(c)
    bits = all_bits(15)
    counts = bits.reshape(-1, 3, 5).sum(-1, dtype=np.int64)
    want = ((counts[:, :, None] >> np.arange(c.count_bits())) & 1).astype(bool).reshape(len(bits), -1)
    assert np.array_equal(cnt.evaluate(bits), want)
    assert cnt.input_names[0] == "out[0]" and cnt.output_names[0] == "count_c0[0]"


# ---- AIGER files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".aag", ".aig"])
def test_aiger_roundtrip(tmp_path, suffix):
    c = random_circuit(10, 200, 16, k=4, seed=7)
    info = export_aiger(c, tmp_path / f"n{suffix}", counts=True)
    assert info.format == suffix[1:] and info.outputs == 16 + 4 * c.count_bits()
    aig = read_aiger(tmp_path / f"n{suffix}")
    built = lower_to_aig(c, counts=True)
    assert np.array_equal(aig.ands, built.ands) and np.array_equal(aig.outputs, built.outputs)
    assert info.nodes == aig.n_ands and info.depth == aig.depth() == built.depth()
    bits = all_bits(10)
    assert np.array_equal(aig.evaluate(bits), _expected(c, bits))
    assert aig.input_names[3] == "x[3]" and aig.output_names[16] == "count_c0[0]"
    assert any("raw output bits" in line for line in aig.comments)
    assert not [p for p in tmp_path.iterdir() if is_temp_file(p)]  # the atomic writer left no temp file


def test_aiger_binary_and_ascii_agree(tmp_path):
    c = random_circuit(6, 80, 6, k=2, seed=3)
    export_aiger(c, tmp_path / "a.aag")
    export_aiger(c, tmp_path / "b.aig")
    export_aiger(c, tmp_path / "c.bin", binary=True)
    a, b = read_aiger(tmp_path / "a.aag"), read_aiger(tmp_path / "b.aig")
    assert np.array_equal(a.ands, b.ands) and np.array_equal(a.outputs, b.outputs)
    assert a.output_names == b.output_names
    header = (tmp_path / "b.aig").read_bytes().split(b"\n", 1)[0].decode()
    assert header == f"aig {a.max_var} 6 0 6 {a.n_ands}"
    assert (tmp_path / "c.bin").read_bytes() == (tmp_path / "b.aig").read_bytes()


def test_varint_encoding():
    values = np.array([0, 1, 127, 128, 300, 16383, 16384, 2 ** 35 + 5, 2 ** 62], dtype=np.int64)
    want = bytearray()
    for x in values.tolist():  # the AIGER definition, one value at a time
        while x & ~0x7F:
            want.append((x & 0x7F) | 0x80)
            x >>= 7
        want.append(x)
    assert encode_varints(values) == bytes(want)


def test_names():
    names = Names.indexed("x[", 3) + Names.of(["a b", "c"])
    assert len(names) == 5 and names.tolist() == ["x[0]", "x[1]", "x[2]", "a b", "c"]
    assert names == ["x[0]", "x[1]", "x[2]", "a b", "c"] and names[-1] == "c"
    rows = b"".join(names.render(before=lambda s, e: [b"i", np.arange(s, e), b" "], chunk=2))
    assert rows == b"i0 x[0]\ni1 x[1]\ni2 x[2]\ni3 a b\ni4 c\n"


def test_model_netlist_matches_model(tmp_path):
    model = random_model(20, [60, 30], 3, seed=2)
    c = to_circuit(model)
    export_aiger(c, tmp_path / "m.aig", counts=True)
    bits = random_bits(300, 20, seed=1)
    values = read_aiger(tmp_path / "m.aig").evaluate(bits)[:, c.n_outputs:]
    counts = (values.reshape(300, 3, c.count_bits()) * (1 << np.arange(c.count_bits()))).sum(-1)
    assert np.array_equal(counts, model_counts(model, bits))


@pytest.mark.parametrize("text, message", [
    ("aag 3 1 1 1 1\n2\n4 2\n6\n6 2 4\n", "1 latches"),
    ("aag 2 1 0 1 1\n2\n9\n4 2 2\n", "output 0 literal '9'"),
    ("xyz 1 2 3\n", "'xyz 1 2 3'"),
    ("aag 2 1 0 1 1\n2\n4\n4 2\n", "AND line 0 has 2 fields, expected 3"),
    ("aag 2 1 0 1 1\n2\n4\n5 2 2\n", "AND 0 defines literal 5, expected 4"),
    ("aag 3 1 0 1 2\n2\n6\n4 6 2\n6 4 2\n", r"AND 0 \(literal 4\) reads 6, 2: not topological"),
    ("aag 2 1 0 1 1\n2\n4\n4 2 x\n", "AND 0 literal 'x'"),
    ("aag 2 1 0 1 1\n4\n4\n4 2 2\n", "input 0 is literal 4, expected 2"),
    ("aag 2 1 0 2 1\n2\n4\n", "file ends early"),
    ("aag 2 1 0 1 1\n2\n4\n4 2 3\ni0 a\ni1 b\n", "symbol 'i1' refers to a missing i-port"),
    ("aag 2 1 0 1 1\n2\n4\n4 2 3\nwhat\n", "unexpected symbol-table line 'what'"),
    ("aig 2 1 0 1 1\n4\n\x02", "ends inside an AND gate's delta encoding"),
    ("aig 3 1 0 1 2\n6\n\x02\x00\x07\x00", r"AND 1 \(literal 6\) reads -1, -1: not topological"),
])
def test_aiger_errors(tmp_path, text, message):
    bad = tmp_path / "bad.aag"
    bad.write_bytes(text.encode("latin-1"))
    with pytest.raises(AigerFormatError, match=message):
        read_aiger(bad)


@pytest.mark.parametrize("suffix", [".aag", ".aig"])
def test_aiger_reader_parses_in_chunks(tmp_path, monkeypatch, suffix):
    from diffgates.backends.netlist import aiger

    c = to_circuit(random_model(16, [50, 30], 3, seed=14))
    export_aiger(c, tmp_path / f"n{suffix}", counts=True)
    whole = read_aiger(tmp_path / f"n{suffix}")
    monkeypatch.setattr(aiger, "LINE_CHUNK", 5)  # many chunks of lines (or varints), odd sizes
    parts = read_aiger(tmp_path / f"n{suffix}")
    assert whole.n_ands > 20 and np.array_equal(parts.ands, whole.ands)
    assert np.array_equal(parts.outputs, whole.outputs) and parts.output_names == whole.output_names


def test_aig_checks_its_arrays():
    with pytest.raises(ValueError, match="topological"):
        Aig(1, [4], [2])  # AND 0 defines var 2 (literal 4) and reads itself
    with pytest.raises(ValueError, match="output literals"):
        Aig(1, [], [], [5])
    with pytest.raises(ValueError, match="names"):
        Aig(2, [], [], [2], input_names=["a"])
    aig = Aig(2, [2], [4], [6, 7])  # operands are sorted: rhs0 >= rhs1
    assert aig.ands.tolist() == [[4, 2]] and aig.depth() == 1 and aig.levels().tolist() == [0, 0, 0, 1]


def test_aiger_reader_accepts_unnamed_and_unsorted_operands(tmp_path):
    path = tmp_path / "plain.aag"
    path.write_text("aag 3 2 0 1 1\n2\n4\n 6 \n6 2 4\n")  # rhs0 < rhs1, spaces, no symbols
    aig = read_aiger(path)
    assert aig.ands.tolist() == [[4, 2]] and aig.input_names == ["i0", "i1"] and aig.output_names == ["o0"]
    assert aig.evaluate(all_bits(2))[:, 0].tolist() == [False, False, False, True]
    with pytest.raises(ValueError, match="'net.txt'"):
        export_aiger(tiny_circuit(), tmp_path / "net.txt")


# ---- BLIF files -------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", ["gates", "aig"])
@pytest.mark.parametrize("counts", [False, True])
def test_blif_exhaustive(tmp_path, style, counts):
    c = random_circuit(8, 120, 10, k=2, seed=11)
    info = export_blif(c, tmp_path / "n.blif", style=style, counts=counts)
    bits = all_bits(8)
    want = _expected(c, bits)
    got = eval_blif(tmp_path / "n.blif", bits)
    assert np.array_equal(got, want if counts else want[:, :c.n_outputs])
    assert info.outputs == got.shape[1]
    inputs, outputs, _ = read_blif(tmp_path / "n.blif")
    assert inputs == [f"x[{i}]" for i in range(8)] and outputs[0] == "out[0]"


def test_blif_wraps_long_port_lists():
    c = random_circuit(40, 60, 20, k=2, seed=13)
    text, _ = blif_text(c)
    inputs = text.split(".inputs ", 1)[1].split("\n.outputs", 1)[0]
    assert inputs.count(" \\\n ") == 2 and inputs.split(" \\\n ")[1].split() == [f"x[{i}]" for i in range(16, 32)]


def test_blif_bad_arguments():
    with pytest.raises(ValueError, match="'luts'"):
        blif_text(tiny_circuit(), style="luts")
    with pytest.raises(ValueError, match="'my net'"):
        blif_text(tiny_circuit(), model="my net")


@pytest.mark.parametrize("name,kind", [("tiny_raw.aag", "aag"), ("tiny_counts.blif", "blif")])
def test_golden(name, kind):
    c = tiny_circuit()
    text = aiger_bytes(lower_to_aig(c), binary=False).decode() if kind == "aag" else blif_text(c, counts=True)[0]
    check_golden(text, GOLDEN / name)


# ---- external tools -----------------------------------------------------------------------------------
def _abc(cmd: str, cwd) -> str:
    proc = subprocess.run([ABC, "-c", cmd], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.hw
@needs_abc
@pytest.mark.parametrize("make", [lambda: random_circuit(24, 400, 20, k=4, seed=5, gate_weights=np.ones(16)),
                                  lambda: random_cell_circuit(20, 300, 20, k=4, seed=5)], ids=["gates", "cells"])
def test_abc_reads_and_proves_equivalent(tmp_path, make):
    # Two independent lowerings: BLIF .names from truth tables vs AIGER from AIG recipes.
    c = make()
    export_blif(c, tmp_path / "n.blif", counts=True)
    export_aiger(c, tmp_path / "n.aig", counts=True)
    log = _abc("read_aiger n.aig; print_stats", tmp_path)  # ABC reads binary AIGER only
    assert re.search(r"i/o\s*=\s*%d/\s*%d" % (c.n_inputs, 20 + 4 * c.count_bits()), log), log
    log = _abc("cec n.blif n.aig", tmp_path)
    assert "Networks are equivalent" in log, log
    # ... and a wrong netlist is not.
    wrong = random_circuit(c.n_inputs, 400, 20, k=4, seed=6, gate_weights=np.ones(16))
    export_aiger(wrong, tmp_path / "w.aig", counts=True)
    assert "Networks are equivalent" not in _abc("cec n.blif w.aig", tmp_path)


@pytest.mark.hw
@needs_yosys
def test_yosys_reads_ascii_aiger_and_blif(tmp_path):
    c = random_circuit(10, 100, 8, k=2, seed=8, gate_weights=np.ones(16))
    export_aiger(c, tmp_path / "n.aag", counts=True)
    export_blif(c, tmp_path / "n.blif")
    for cmd in ("read_aiger n.aag; stat", "read_blif n.blif; stat"):
        proc = subprocess.run(["yosys", "-p", cmd], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "Number of cells" in proc.stdout, proc.stdout[-3000:] + proc.stderr


# ---- synthesis report ------------------------------------------------------------------------------
@pytest.mark.hw
@needs_abc
def test_synth_report():
    c = random_circuit(12, 120, 12, k=3, seed=4)
    rep = abc_report.synth_report(c, argmax=True)
    assert rep["tool"].startswith("UC Berkeley, ABC") and "argmax" in rep["includes"]
    assert rep["luts"] > 0 and rep["lut_depth"] >= 1 and rep["lut_size"] == 6 and rep["aig_ands"] > 0
    assert rep["gate_depth"] >= rep["lut_depth"] and rep["aig_depth"] >= rep["lut_depth"]
    by_type = rep["gates_by_type"]
    assert rep["gates_after_opt"] == sum(n for g, n in by_type.items() if g not in ("BUF", "ZERO", "ONE")) > 0
    assert set(by_type) <= {"AND", "NAND", "OR", "NOR", "XOR", "XNOR", "ANDNOT", "ORNOT", "NOT", "BUF", "ZERO", "ONE"}
    # Smaller LUTs need more of them (and at least as many levels); the argmax adds logic.
    rep4 = abc_report.synth_report(c, lut_size=4, argmax=True)
    assert rep4["luts"] > rep["luts"] and rep4["lut_depth"] >= rep["lut_depth"]
    assert abc_report.synth_report(c)["aig_ands"] < rep["aig_ands"]


@pytest.mark.hw
@needs_abc
def test_synth_report_of_tiny_cell_and_bits_circuits():
    c = tiny_circuit()
    rep = abc_report.synth_report(c)
    assert rep["gates_in"] == c.n_gates and rep["luts"] >= 1 and rep["gates_after_opt"] >= 1
    cells = random_cell_circuit(10, 120, 6, k=2, seed=28)
    assert abc_report.synth_report(cells)["aig_ands"] > 0
    bits = random_circuit(8, 60, 6, seed=27, gate_weights=np.ones(16)).replace(head=Head.bits())
    rep = abc_report.synth_report(bits)
    assert rep["includes"] == "gate network" and rep["luts"] >= 1


def test_synth_report_without_abc(monkeypatch):
    monkeypatch.setattr(abc_report.shutil, "which", lambda name: None)
    with pytest.raises(abc_report.SynthesisToolNotFound, match="apt-get install -y berkeley-abc"):
        abc_report.synth_report(tiny_circuit())
    with pytest.raises(ValueError, match="lut_size=1"):
        abc_report.synth_report(tiny_circuit(), lut_size=1)

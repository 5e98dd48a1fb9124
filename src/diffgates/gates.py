"""The 16 two-input Boolean gates: the single definition every other module uses.

Canonical order (the one of Petersen et al. 2022 and the ``difflogic`` package): gate ``g`` has the
truth table whose 4 bits, read for (a, b) = (0,0), (0,1), (1,0), (1,1), spell ``g`` in binary with
(0,0) as the most significant bit. So ``AND`` (only (1,1) true) is 0b0001 = 1 and ``OR`` is 0b0111 = 7.

Every gate's product-logic relaxation is affine in {1, a, b, ab}; ``COEFFS[g]`` holds those four
coefficients, so a softmax mixture of the 16 relaxations collapses to ``c0 + c1 a + c2 b + c3 ab``.

``formula`` is each gate as a bitwise expression over ``{a}``, ``{b}``, ``{zero}``, ``{ones}`` with the
operators ``&``, ``|``, ``^``, ``~`` only: the same text is valid C (on unsigned words or vector
types), Verilog and numpy (on bool/uint arrays) once a backend fills in its operands and constants.

Run ``python -m diffgates.gates`` to print the table.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_GATES = 16


@dataclass(frozen=True)
class Gate:
    id: int
    name: str  # short identifier, usable in generated code and reports
    label: str  # human-readable form, as in the gate table of Petersen et al. (2022)
    coeffs: tuple[int, int, int, int]  # relaxation = c0 + c1*a + c2*b + c3*a*b
    formula: str  # bitwise expression over {a}, {b}, {zero}, {ones}

    @property
    def truth_table(self) -> tuple[int, int, int, int]:
        """Outputs for (a, b) = (0,0), (0,1), (1,0), (1,1)."""
        return tuple((self.id >> (3 - i)) & 1 for i in range(4))

    def __call__(self, a: int, b: int) -> int:
        """Evaluate on single bits (the executable definition of the truth table)."""
        return (self.id >> (3 - (2 * int(a) + int(b)))) & 1

    @property
    def uses_a(self) -> bool:
        return self.coeffs[1] != 0 or self.coeffs[3] != 0

    @property
    def uses_b(self) -> bool:
        return self.coeffs[2] != 0 or self.coeffs[3] != 0


GATES: tuple[Gate, ...] = (
    Gate(0, "FALSE", "false", (0, 0, 0, 0), "{zero}"),
    Gate(1, "AND", "a AND b", (0, 0, 0, 1), "{a} & {b}"),
    Gate(2, "A_AND_NOT_B", "a AND NOT b", (0, 1, 0, -1), "{a} & ~{b}"),
    Gate(3, "A", "a", (0, 1, 0, 0), "{a}"),
    Gate(4, "NOT_A_AND_B", "NOT a AND b", (0, 0, 1, -1), "~{a} & {b}"),
    Gate(5, "B", "b", (0, 0, 1, 0), "{b}"),
    Gate(6, "XOR", "a XOR b", (0, 1, 1, -2), "{a} ^ {b}"),
    Gate(7, "OR", "a OR b", (0, 1, 1, -1), "{a} | {b}"),
    Gate(8, "NOR", "NOT (a OR b)", (1, -1, -1, 1), "~({a} | {b})"),
    Gate(9, "XNOR", "NOT (a XOR b)", (1, -1, -1, 2), "~({a} ^ {b})"),
    Gate(10, "NOT_B", "NOT b", (1, 0, -1, 0), "~{b}"),
    Gate(11, "A_OR_NOT_B", "a OR NOT b", (1, 0, -1, 1), "{a} | ~{b}"),
    Gate(12, "NOT_A", "NOT a", (1, -1, 0, 0), "~{a}"),
    Gate(13, "NOT_A_OR_B", "NOT a OR b", (1, -1, 0, 1), "~{a} | {b}"),
    Gate(14, "NAND", "NOT (a AND b)", (1, 0, 0, -1), "~({a} & {b})"),
    Gate(15, "TRUE", "true", (1, 0, 0, 0), "{ones}"),
)

GATE_NAMES: tuple[str, ...] = tuple(g.name for g in GATES)
GATE_BY_NAME: dict[str, Gate] = {g.name: g for g in GATES}

# (16, 4) int8: rows are gates, columns the coefficients of 1, a, b, ab.
COEFFS = np.array([g.coeffs for g in GATES], dtype=np.int8)
# (16, 4) bool: TRUTH_TABLES[g, 2*a + b] is the gate's output.
TRUTH_TABLES = np.array([g.truth_table for g in GATES], dtype=bool)

# The truth-table entries (a, b) = (0,0), (0,1), (1,0), (1,1) as gates: ENTRY_GATES[e] is true at entry e
# only, so a gate is the sum of the gates of its true entries and ENTRY_COEFFS (4, 4) maps truth-table
# values (or their probabilities) to the coefficients of 1, a, b, ab.
ENTRY_GATES = (8, 4, 2, 1)
ENTRY_COEFFS = COEFFS[list(ENTRY_GATES)]


def gate_from_entries(entries: np.ndarray) -> np.ndarray:
    """Gate ids of (..., 4) truth-table bits in the entry order above: 8*e00 + 4*e01 + 2*e10 + e11."""
    bits = np.asarray(entries, dtype=np.int64)
    return bits @ np.array(ENTRY_GATES, dtype=np.int64)


# Every gate's id by name, for code that builds or rewrites circuits.
(FALSE, AND, A_AND_NOT_B, A, NOT_A_AND_B, B, XOR, OR, NOR, XNOR, NOT_B, A_OR_NOT_B, NOT_A, NOT_A_OR_B, NAND,
 TRUE) = range(NUM_GATES)
assert [FALSE, AND, A_AND_NOT_B, A, NOT_A_AND_B, B, XOR, OR, NOR, XNOR, NOT_B, A_OR_NOT_B, NOT_A, NOT_A_OR_B, NAND,
        TRUE] == [GATE_BY_NAME[n].id for n in GATE_NAMES]
CONSTANT_GATES = frozenset({FALSE, TRUE})


def swap_inputs(gate_id: int) -> int:
    """The gate g' with g'(b, a) == g(a, b): lets a pass put a gate's inputs in canonical order."""
    tt = GATES[gate_id].truth_table
    swapped = (tt[0], tt[2], tt[1], tt[3])
    return int(sum(bit << (3 - i) for i, bit in enumerate(swapped)))


def negate(gate_id: int) -> int:
    """The gate computing NOT g(a, b) (the complement of its truth table)."""
    return 15 - gate_id


def with_inputs_negated(gate_id: int, negate_a: bool, negate_b: bool) -> int:
    """The gate g' with g'(a, b) == g(a ^ negate_a, b ^ negate_b): absorbs NOT gates into consumers."""
    g = GATES[gate_id]
    bits = [g(a ^ negate_a, b ^ negate_b) for a in (0, 1) for b in (0, 1)]
    return int(sum(bit << (3 - i) for i, bit in enumerate(bits)))


def evaluate_bits(gate_ids: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Vectorised truth-table lookup: gate_ids broadcast against boolean arrays a and b."""
    index = (np.asarray(a, dtype=np.intp) << 1) | np.asarray(b, dtype=np.intp)
    return TRUTH_TABLES[np.asarray(gate_ids, dtype=np.intp), index]


def _print_table() -> None:
    print(f"{'id':>2}  {'name':<12} {'truth(00,01,10,11)':<19} {'coeffs(1,a,b,ab)':<18} formula")
    for g in GATES:
        print(f"{g.id:>2}  {g.name:<12} {str(g.truth_table):<19} {str(g.coeffs):<18} "
              f"{g.formula.format(a='a', b='b', zero='0', ones='1')}")


if __name__ == "__main__":
    _print_table()

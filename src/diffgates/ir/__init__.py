"""diffgates.ir: the Circuit IR every backend consumes (numpy only: importing it never loads torch).

* ``circuit``: ``Circuit`` (gates, threshold cells over popcount rows, a typed ``Head``), immutable;
* ``analysis``: levels, level groups, liveness, ALAP levels, computed once per circuit;
* ``passes``: semantics-preserving simplification and ``simplify`` (their fixed point);
* ``evaluate``: the numpy reference evaluator (the executable semantics) and ``as_input_bits``;
* ``lowering``: threshold cells as two-input gates, for backends without native cells;
* ``serialize``: JSON and safetensors files (format version 2; version 1 loads).

Example::

    from diffgates.ir import Circuit, simplify, group_counts
    small = simplify(circuit)
    assert (group_counts(small, x) == group_counts(circuit, x)).all()
"""
from .circuit import HEAD_KINDS, THRESHOLD, Circuit, CircuitFormatError, Head
from .evaluate import as_input_bits, evaluate_outputs, group_counts, head_outputs, predict
from .lowering import lower_cells
from .passes import simplify

__all__ = ["Circuit", "CircuitFormatError", "Head", "HEAD_KINDS", "THRESHOLD", "as_input_bits",
           "evaluate_outputs", "group_counts", "head_outputs", "predict", "simplify", "lower_cells"]

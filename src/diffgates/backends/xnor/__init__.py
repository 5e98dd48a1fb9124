"""The XNOR-popcount backend: binary networks as integer programs, a numpy reference, a compiled engine.

``program`` defines ``XnorProgram`` (conv, OR pool, dense and output layers of 0/1 weights and integer
thresholds) and ``reference_scores``; ``engine.compile_xnor`` builds the feature-packed C engine. A
trained BNN becomes a program with ``diffgates.frontend.to_xnor_program``. numpy only (no torch).
"""
from .engine import ISAS, XnorEngine, compile_xnor
from .program import OrPool, XnorConv, XnorDense, XnorOutput, XnorProgram, reference_predict, reference_scores

__all__ = ["XnorProgram", "XnorConv", "OrPool", "XnorDense", "XnorOutput", "reference_scores", "reference_predict",
           "compile_xnor", "XnorEngine", "ISAS"]

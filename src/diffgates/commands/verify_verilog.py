"""``diffgates verify-verilog MODEL``: export to Verilog, simulate, and report bit-exactness.

MODEL is a run directory, a model file or a circuit file (``diffgates.modelfiles.load_circuit``).
The vectors are random (``--vectors N``, ``--seed``), a dataset's test images in their exact input bits
(``--dataset NAME``, first N with ``--vectors``), or the rows of ``--dataset-bits FILE`` (a ``.npy``
array of 0/1 values, loaded without pickle, or a text file with one row of 0/1 characters per line,
separators allowed). Every vector's class counts (and argmax) from the simulated RTL are compared with
the numpy reference evaluator. Exit status 0 only when every vector matches; 1 on a mismatch; otherwise
the command line's exit code of the error (2 bad input, 3 bad file, 6 simulator missing or failing). Example::

    diffgates verify-verilog runs/mnist --dataset mnist --vectors 2000 --pipeline 2 --simulator verilator
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HELP = "export a model or circuit to Verilog, simulate it (iverilog/verilator) and check it bit for bit"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="run directory, model file or circuit JSON")
    parser.add_argument("--vectors", type=int, default=None, metavar="N",
                        help="vectors to simulate (default: 1000 random ones, or every row of --dataset-bits)")
    parser.add_argument("--pipeline", type=int, default=0, metavar="N",
                        help="a register stage every N logic levels (default 0: combinational)")
    parser.add_argument("--simulator", choices=("iverilog", "verilator"), default="iverilog",
                        help="Icarus Verilog (default) or Verilator (slower to build, faster to run)")
    parser.add_argument("--dataset-bits", metavar="FILE", default=None,
                        help="input rows to use: .npy (N, inputs) 0/1 array, or text with one 0/1 row per line")
    parser.add_argument("--dataset", metavar="NAME", default=None,
                        help="use the test set of this dataset (e.g. mnist20x20) in its exact input bits; "
                             "--vectors takes its first N images")
    parser.add_argument("--data-dir", metavar="DIR", default=None, help="folder with the dataset files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random vectors (default 0)")
    parser.add_argument("--no-argmax", action="store_true", help="do not export and check the class_idx output")
    parser.add_argument("--no-simplify", action="store_true", help="use the circuit as extracted")
    parser.add_argument("--module", default="logic_net", help="module name (default logic_net)")
    parser.add_argument("--keep", metavar="DIR", default=None,
                        help="write the design, testbench and vectors to DIR and keep them")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="seconds allowed for compiling and for simulating (default: no limit)")


def read_dataset_bits(path: str | Path, n_inputs: int) -> np.ndarray:
    """(N, n_inputs) bool rows from a ``.npy`` file (no pickle) or a text file of 0/1 rows.

    Raises:
        ValueError: the file is not one of those, or its rows are not ``n_inputs`` bits of 0/1.
    """
    from ..ir import as_input_bits

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--dataset-bits {path}: no such file")
    if path.suffix.lower() == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except ValueError as exc:  # object arrays would need pickle: refused
            raise ValueError(f"--dataset-bits {path}: not a plain numeric .npy array ({exc})") from exc
    else:
        rows = []
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            digits = "".join(ch for ch in line if ch not in " ,;\t")
            if not digits:
                continue
            if set(digits) - {"0", "1"}:
                bad = next(ch for ch in digits if ch not in "01")
                raise ValueError(f"--dataset-bits {path}, line {lineno}: {bad!r} is not a bit; expected a row "
                                 f"of {n_inputs} characters 0/1")
            if len(digits) != n_inputs:
                raise ValueError(f"--dataset-bits {path}, line {lineno}: {len(digits)} bits, expected {n_inputs}")
            rows.append([ch == "1" for ch in digits])
        if not rows:
            raise ValueError(f"--dataset-bits {path}: no rows found")
        data = np.asarray(rows, dtype=bool)
    return as_input_bits(data, n_inputs)


def run(args: argparse.Namespace) -> int:
    from ..backends.verilog.simulate import verify_verilog
    from ..modelfiles import load_circuit

    circuit = load_circuit(args.model, simplify=not args.no_simplify)
    if args.vectors is not None and args.vectors < 1:
        raise ValueError(f"--vectors {args.vectors}: expected at least 1")
    if args.dataset_bits is not None and args.dataset is not None:
        raise ValueError("give --dataset-bits FILE or --dataset NAME, not both")
    if args.dataset_bits is not None:
        vectors = read_dataset_bits(args.dataset_bits, circuit.n_inputs)
        if args.vectors is not None:
            vectors = vectors[:args.vectors]
    elif args.dataset is not None:
        from ..data import load_dataset
        ds = load_dataset(args.dataset, data_dir=args.data_dir, val_fraction=0)
        x = ds.x_test if args.vectors is None else ds.x_test[:args.vectors]
        vectors = ds.encode(x, binary=True).flatten(1).numpy()
    else:
        vectors = 1000 if args.vectors is None else args.vectors
    result = verify_verilog(circuit, vectors, pipeline=args.pipeline, simulator=args.simulator,
                            argmax=False if args.no_argmax else None, module=args.module, seed=args.seed,
                            workdir=args.keep, timeout=args.timeout)
    info = result.info
    print(f"circuit: {circuit.n_inputs} inputs, {circuit.n_gates} gates, {circuit.num_classes} classes x "
          f"{circuit.group_size}; levels {info.total_levels}, latency {info.latency} cycles")
    print(result.summary())
    for failure in result.failures:
        print("  mismatch: " + " ".join(f"{k}={v}" for k, v in failure.items()))
    if result.workdir:
        print(f"files kept in {result.workdir}")
    return 0 if result.passed else 1

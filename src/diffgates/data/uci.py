"""UCI tabular datasets (Adult, Breast Cancer, MONK-1/2/3) as one-hot bit vectors.

Each dataset is a table-driven ``TableSpec``: the file's columns in order, the label column and
class names, and a ``OneHotEncoder`` over the kept columns with fixed vocabularies (from the
datasets' ``.names`` documentation) or ``Buckets``, so the bit layout never depends on which
values happen to occur. Raw rows are the uint8 bits themselves (shape ``(n_bits,)``); training and
binary inputs are the same bits as float32. Bits are feature by feature in file-column order,
and within a feature in vocabulary / interval order; ``input_layout["bits"][i]`` names bit i.

* Adult (116 bits, classes ``<=50K`` / ``>50K``): rows with '?' dropped; ``fnlwgt`` and
  ``education-num`` dropped; age buckets <21, [21,30), [30,45), [45,60), >=60; capital-gain and
  capital-loss ==0, (0,5000), >=5000; hours-per-week ==0, (0,12], (12,25], (25,40], (40,60), >=60;
  every categorical one-hot. Train = adult.data (30162 rows), test = adult.test (15060 rows; its
  first line ``|1x3 Cross validator`` is skipped and labels lose their trailing '.').
* Breast Cancer (51 bits, classes ``no-recurrence-events`` / ``recurrence-events``): rows with
  '?' dropped (277 remain), 9 attributes one-hot. Test = the sorted first ``round(0.25 * 277) = 69``
  indices of ``permutation(277, BREAST_CANCER_SPLIT_SEED=0)`` (``diffgates.data.dataset``), train
  = the other 208 (file order), before the validation split is carved from train.
* MONK-1/2/3 (17 bits, classes ``0`` / ``1``): attributes a1..a6 with 3, 3, 2, 3, 4, 2 values,
  given train/test files; each line is `` class a1 a2 a3 a4 a5 a6 Id``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .dataset import Dataset, make_dataset, split_indices
from .download import DATASET_FILES, ensure_files
from .encoders import Buckets, OneHotEncoder
from .errors import DataFormatError

__all__ = ["TableSpec", "ADULT", "BREAST_CANCER", "MONK", "load_uci", "read_table",
           "BREAST_CANCER_SPLIT_SEED", "BREAST_CANCER_TEST_FRACTION"]

BREAST_CANCER_SPLIT_SEED = 0
BREAST_CANCER_TEST_FRACTION = 0.25


@dataclass(frozen=True)
class TableSpec:
    """How to read one UCI table: columns (file order), label column, classes, feature encoder."""

    name: str
    columns: tuple[str, ...]
    label: str
    classes: tuple[str, ...]
    encoder: OneHotEncoder
    sep: str | None = ","        # None: split on whitespace
    label_strip: str = ""        # characters stripped from the end of labels (adult.test's '.')
    ignore_columns: tuple[str, ...] = ()   # documented as ignored (e.g. MONK's Id)

    @property
    def dropped(self) -> list[str]:
        kept = set(self.encoder.features) | {self.label}
        return [c for c in self.columns if c not in kept]


# Vocabularies exactly as listed in adult.names.
_ADULT_VOCAB = {
    "workclass": ["Private", "Self-emp-not-inc", "Self-emp-inc", "Federal-gov", "Local-gov",
                  "State-gov", "Without-pay", "Never-worked"],
    "education": ["Bachelors", "Some-college", "11th", "HS-grad", "Prof-school", "Assoc-acdm",
                  "Assoc-voc", "9th", "7th-8th", "12th", "Masters", "1st-4th", "10th", "Doctorate",
                  "5th-6th", "Preschool"],
    "marital-status": ["Married-civ-spouse", "Divorced", "Never-married", "Separated", "Widowed",
                       "Married-spouse-absent", "Married-AF-spouse"],
    "occupation": ["Tech-support", "Craft-repair", "Other-service", "Sales", "Exec-managerial",
                   "Prof-specialty", "Handlers-cleaners", "Machine-op-inspct", "Adm-clerical",
                   "Farming-fishing", "Transport-moving", "Priv-house-serv", "Protective-serv",
                   "Armed-Forces"],
    "relationship": ["Wife", "Own-child", "Husband", "Not-in-family", "Other-relative", "Unmarried"],
    "race": ["White", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other", "Black"],
    "sex": ["Female", "Male"],
    "native-country": ["United-States", "Cambodia", "England", "Puerto-Rico", "Canada", "Germany",
                       "Outlying-US(Guam-USVI-etc)", "India", "Japan", "Greece", "South", "China",
                       "Cuba", "Iran", "Honduras", "Philippines", "Italy", "Poland", "Jamaica",
                       "Vietnam", "Mexico", "Portugal", "Ireland", "France", "Dominican-Republic",
                       "Laos", "Ecuador", "Taiwan", "Haiti", "Columbia", "Hungary", "Guatemala",
                       "Nicaragua", "Scotland", "Thailand", "Yugoslavia", "El-Salvador",
                       "Trinadad&Tobago", "Peru", "Hong", "Holand-Netherlands"],
}
_CAPITAL = Buckets(["[0,0]", "(0,5000)", "[5000,inf)"])

ADULT = TableSpec(
    name="adult",
    columns=("age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
             "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
             "hours-per-week", "native-country", "income"),
    label="income",
    classes=("<=50K", ">50K"),
    encoder=OneHotEncoder({
        "age": Buckets(["(-inf,21)", "[21,30)", "[30,45)", "[45,60)", "[60,inf)"]),
        "workclass": _ADULT_VOCAB["workclass"],
        "education": _ADULT_VOCAB["education"],
        "marital-status": _ADULT_VOCAB["marital-status"],
        "occupation": _ADULT_VOCAB["occupation"],
        "relationship": _ADULT_VOCAB["relationship"],
        "race": _ADULT_VOCAB["race"],
        "sex": _ADULT_VOCAB["sex"],
        "capital-gain": _CAPITAL,
        "capital-loss": _CAPITAL,
        "hours-per-week": Buckets(["[0,0]", "(0,12]", "(12,25]", "(25,40]", "(40,60)", "[60,inf)"]),
        "native-country": _ADULT_VOCAB["native-country"],
    }),
    label_strip=".",
)
assert ADULT.encoder.n_bits == 116, ADULT.encoder.n_bits  # the published input size

# Vocabularies from breast-cancer.names; breast-quad spelled as in the data file (underscores).
BREAST_CANCER = TableSpec(
    name="breast_cancer",
    columns=("class", "age", "menopause", "tumor-size", "inv-nodes", "node-caps", "deg-malig",
             "breast", "breast-quad", "irradiat"),
    label="class",
    classes=("no-recurrence-events", "recurrence-events"),
    encoder=OneHotEncoder({
        "age": [f"{a}-{a + 9}" for a in range(10, 100, 10)],
        "menopause": ["lt40", "ge40", "premeno"],
        "tumor-size": [f"{a}-{a + 4}" for a in range(0, 60, 5)],
        "inv-nodes": [f"{a}-{a + 2}" for a in range(0, 36, 3)] + ["36-39"],
        "node-caps": ["yes", "no"],
        "deg-malig": ["1", "2", "3"],
        "breast": ["left", "right"],
        "breast-quad": ["left_up", "left_low", "right_up", "right_low", "central"],
        "irradiat": ["yes", "no"],
    }),
)
assert BREAST_CANCER.encoder.n_bits == 51, BREAST_CANCER.encoder.n_bits

MONK = TableSpec(
    name="monk",
    columns=("class", "a1", "a2", "a3", "a4", "a5", "a6", "Id"),
    label="class",
    classes=("0", "1"),
    encoder=OneHotEncoder({f"a{i + 1}": [str(v) for v in range(1, n + 1)]
                           for i, n in enumerate((3, 3, 2, 3, 4, 2))}),
    sep=None,
    ignore_columns=("Id",),
)
assert MONK.encoder.n_bits == 17, MONK.encoder.n_bits


def read_table(path: str | os.PathLike, spec: TableSpec) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read one file: ``(bits uint8 (N, n_bits), labels int64 (N,), counts)``; rows with a '?'
    are dropped; blank lines and lines starting with '|' (adult.test's first line) are skipped."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    rows, dropped = [], 0
    width = len(spec.columns)
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("|"):
            continue
        fields = [v.strip() for v in line.split(spec.sep)] if spec.sep else line.split()
        if len(fields) != width:
            raise DataFormatError(f"{path}:{lineno}: {len(fields)} fields, expected "
                                  f"{width} ({', '.join(spec.columns)})")
        if "?" in fields:
            dropped += 1
            continue
        rows.append(fields)
    columns = dict(zip(spec.columns, zip(*rows))) if rows else {c: () for c in spec.columns}
    class_index = {c: i for i, c in enumerate(spec.classes)}
    labels = np.empty(len(rows), dtype=np.int64)
    for i, raw in enumerate(columns[spec.label]):
        v = raw.rstrip(spec.label_strip) if spec.label_strip else raw
        if v not in class_index:
            raise DataFormatError(f"{path}: unknown class {raw!r} (data row {i}); expected one of "
                                  f"{list(spec.classes)}")
        labels[i] = class_index[v]
    table = {f: columns[f] for f in spec.encoder.features}
    try:
        bits = spec.encoder.encode(table, dtype=torch.uint8).numpy()
    except ValueError as exc:
        raise DataFormatError(f"{path}: {exc}") from exc
    return bits, labels, {"rows": len(rows), "dropped_missing": dropped}


def _layout(spec: TableSpec) -> dict:
    d = spec.encoder.layout()
    d["dropped_columns"] = spec.dropped
    d["missing_values"] = "rows containing '?' are dropped"
    d["order"] = "bit i = input_layout['bits'][i]; features in file-column order"
    return d


def _identity_bits(x: torch.Tensor, binary: bool, dtype: torch.dtype) -> torch.Tensor:
    return x.to(dtype)


def load_uci(name: str, data_dir=None, download: bool = True, val_fraction: float = 0.1,
             split_seed: int = 0) -> Dataset:
    """Load ``"adult"``, ``"breast_cancer"`` or ``"monk1"``/``"monk2"``/``"monk3"``."""
    if name not in ("adult", "breast_cancer", "monk1", "monk2", "monk3"):
        raise ValueError(f"load_uci: unknown name {name!r}")
    files = ensure_files(name, DATASET_FILES[name], data_dir, download)
    info: dict = {"files": {k: str(v) for k, v in files.items()}}
    if name == "adult":
        spec = ADULT
        x_tr, y_tr, c_tr = read_table(files["uci/adult/adult.data"], spec)
        x_te, y_te, c_te = read_table(files["uci/adult/adult.test"], spec)
    elif name == "breast_cancer":
        spec = BREAST_CANCER
        x_all, y_all, c_all = read_table(files["uci/breast-cancer/breast-cancer.data"], spec)
        train_idx, test_idx = split_indices(len(y_all), BREAST_CANCER_TEST_FRACTION, BREAST_CANCER_SPLIT_SEED)
        x_tr, y_tr, x_te, y_te = x_all[train_idx], y_all[train_idx], x_all[test_idx], y_all[test_idx]
        c_tr, c_te = c_all, {"rows": len(test_idx)}
        info["test_split"] = (f"test = sorted first round({BREAST_CANCER_TEST_FRACTION} * n) of "
                              f"permutation(n, seed={BREAST_CANCER_SPLIT_SEED}), n = {len(y_all)} rows")
    elif name in ("monk1", "monk2", "monk3"):
        spec = MONK
        k = name[-1]
        x_tr, y_tr, c_tr = read_table(files[f"uci/monk/monks-{k}.train"], spec)
        x_te, y_te, c_te = read_table(files[f"uci/monk/monks-{k}.test"], spec)
    else:
        raise ValueError(f"load_uci: unknown name {name!r}")
    info["counts"] = {"train_file": c_tr, "test_file": c_te}
    n_bits = spec.encoder.n_bits
    return make_dataset(
        name, class_names=list(spec.classes), input_shape=(n_bits,), raw_shape=(n_bits,),
        train=(x_tr, y_tr), test=(x_te, y_te), val_fraction=val_fraction, split_seed=split_seed,
        input_layout=_layout(spec), encoder=_identity_bits, info=info)

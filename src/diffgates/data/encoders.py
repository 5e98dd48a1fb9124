"""Input encoders that turn raw features into the {0, 1} bits a logic gate network reads.

* ``ThermometerEncoder(T)``: ``T`` thresholds per feature; bit ``t`` of a feature is
  ``x > threshold[t]`` (strict). Thresholds are uniform ``lo + (hi - lo) * (t + 1) / (T + 1)``
  (``fit_uniform``; default ``lo=0, hi=1``) or per-feature quantiles of training data
  (``fit_quantile``); they save to / load from JSON.
* ``Buckets``: disjoint numeric intervals in interval notation (``"[21,30)"``), one bit per interval.
* ``OneHotEncoder``: one-hot bits for several features at once, each either a fixed vocabulary of
  strings or a ``Buckets``; the bits of feature 1 come first, then feature 2, ... (in the order the
  features were given), and within a feature in vocabulary / interval order.

Thermometer bit layout. The threshold index ``t`` is inserted right after axis ``axis`` (default 1,
the first non-batch axis) and merged into it. For ``x`` of shape ``(N, F)`` the output has shape
``(N, F*T)`` and ``out[n, f*T + t] = x[n, f] > thr[f, t]`` (feature-major). For images of shape
``(N, C, H, W)`` the output has shape ``(N, C*T, H, W)`` (thresholds stacked as channels), so the
flattened bit index is ``((c*T + t)*H + h)*W + w``. ``thr[f, t]`` is ``thresholds[t]`` for shared
thresholds or ``thresholds[f, t]`` for per-feature ones.

Comparisons are exact: integer inputs compare as ``x >= floor(thr) + 1``; float32 inputs compare
against the largest float32 not above the float64 threshold, which gives the same bits as an
exact real comparison. Example::

    enc = ThermometerEncoder(3).fit_uniform(0, 255)      # thresholds 63.75, 127.5, 191.25
    bits = enc.encode(images_uint8)                       # (N, 3*3, 32, 32) float32 in {0, 1}
    enc.save("thermometer.json"); same = ThermometerEncoder.load("thermometer.json")

    onehot = OneHotEncoder({"age": Buckets(["(-inf,21)", "[21,30)", "[30,inf)"]),
                            "sex": ["Female", "Male"]})
    onehot.encode({"age": [25, 40], "sex": ["Male", "Female"]})   # (2, 5); onehot.bit_names
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_write

__all__ = ["ThermometerEncoder", "Buckets", "OneHotEncoder"]

_FORMAT = "diffgates.ThermometerEncoder"


def _as_tensor(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be a torch tensor or numpy array, got {type(x).__name__}") from exc


def _round_down_f32(t: np.ndarray) -> np.ndarray:
    """Largest float32 <= each float64 value (so ``x32 > result`` equals the exact ``x32 > t``)."""
    with np.errstate(over="ignore"):
        t32 = t.astype(np.float32)
    above = t32.astype(np.float64) > t
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


class ThermometerEncoder:
    """``T`` thresholds per feature; bit ``t`` of a feature is ``x > threshold[t]``.

    Args:
        num_thresholds: ``T >= 1``.
        thresholds: ``None`` for uniform ``(t + 1) / (T + 1)`` on [0, 1]; else shape ``(T,)``
            (shared by all features) or ``(F, T)`` (per feature along ``axis``), finite and
            non-decreasing along ``t``.
        axis: the feature axis of the inputs (>= 1; axis 0 is the batch).
    """

    def __init__(self, num_thresholds: int, thresholds: Any = None, *, axis: int = 1):
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)):
            raise TypeError(f"num_thresholds must be an int, got {num_thresholds!r}")
        if num_thresholds < 1:
            raise ValueError(f"num_thresholds must be >= 1, got {num_thresholds}")
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or axis < 1:
            raise ValueError(f"axis must be an int >= 1 (axis 0 is the batch), got {axis!r}")
        self.num_thresholds = int(num_thresholds)
        self.axis = int(axis)
        if thresholds is None:
            self.fit_uniform(0.0, 1.0)
        else:
            self._set(thresholds)

    # ----------------------------------------------------------------------------- thresholds
    @property
    def thresholds(self) -> np.ndarray:
        """float64 array, shape ``(T,)`` or ``(F, T)`` (a copy)."""
        return self._thr.copy()

    @property
    def per_feature(self) -> bool:
        return self._thr.ndim == 2

    def _set(self, thresholds: Any) -> None:
        thr = np.array(thresholds, dtype=np.float64)
        T = self.num_thresholds
        if thr.ndim not in (1, 2) or thr.shape[-1] != T:
            raise ValueError(f"thresholds must have shape ({T},) or (features, {T}), got {thr.shape}")
        if thr.ndim == 2 and thr.shape[0] < 1:
            raise ValueError("per-feature thresholds need at least one feature row")
        if not np.all(np.isfinite(thr)):
            raise ValueError(f"thresholds must be finite, got {thr.tolist()}")
        if np.any(np.diff(thr, axis=-1) < 0):
            raise ValueError(f"thresholds must be non-decreasing along the threshold axis, got {thr.tolist()}")
        self._thr = thr
        # Precomputed forms for exact comparisons (see the module docstring).
        with np.errstate(over="ignore", invalid="ignore"):
            self._int_min = (np.floor(np.clip(thr, -2.0**62, 2.0**62)) + 1).astype(np.int64)
        self._thr32 = _round_down_f32(thr)

    def fit_uniform(self, lo: float = 0.0, hi: float = 1.0) -> ThermometerEncoder:
        """Shared thresholds ``lo + (hi - lo) * (t + 1) / (T + 1)``, t = 0..T-1; returns self."""
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
            raise ValueError(f"fit_uniform needs finite lo < hi, got lo={lo}, hi={hi}")
        T = self.num_thresholds
        t = np.arange(1, T + 1, dtype=np.float64)
        # One rounding only (numerator / denominator), so e.g. 255*(t+1)/(T+1) is exact when integral.
        self._set((lo * (T + 1) + (hi - lo) * t) / (T + 1))
        return self

    def fit_quantile(self, x: Any) -> ThermometerEncoder:
        """Per-feature thresholds: the ``(t + 1) / (T + 1)`` quantiles (numpy 'linear') of each
        feature along ``axis`` over all other axes of the training data ``x``; returns self."""
        xt = _as_tensor(x, "x")
        if xt.ndim <= self.axis:
            raise ValueError(f"fit_quantile expects x with a feature axis {self.axis}, "
                             f"i.e. shape (N, features, ...), got shape {tuple(xt.shape)}")
        if xt.numel() == 0:
            raise ValueError(f"fit_quantile needs at least one sample, got shape {tuple(xt.shape)}")
        a = xt.detach().cpu().numpy().astype(np.float64, copy=False)
        per_feature = np.moveaxis(a, self.axis, 0).reshape(a.shape[self.axis], -1)
        if not np.all(np.isfinite(per_feature)):
            raise ValueError("fit_quantile: x contains NaN or infinite values")
        q = np.arange(1, self.num_thresholds + 1) / (self.num_thresholds + 1)
        self._set(np.quantile(per_feature, q, axis=1).T)
        return self

    # ------------------------------------------------------------------------------- encoding
    def output_shape(self, sample_shape: Sequence[int]) -> tuple[int, ...]:
        """Per-sample output shape for per-sample input shape ``sample_shape`` (no batch axis)."""
        s = list(sample_shape)
        if len(s) < self.axis:
            raise ValueError(f"sample shape {tuple(s)} has no feature axis {self.axis}")
        s[self.axis - 1] *= self.num_thresholds
        return tuple(s)

    def encode(self, x: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Bits of ``x`` (shape ``(N, F, ...)``) as ``dtype`` in {0, 1}, shape ``(N, F*T, ...)``."""
        xt = _as_tensor(x, "x")
        if xt.ndim <= self.axis:
            raise ValueError(f"encode expects shape (N, features, ...) with feature axis {self.axis}, "
                             f"got shape {tuple(xt.shape)}")
        F = xt.shape[self.axis]
        if self.per_feature and F != self._thr.shape[0]:
            raise ValueError(f"x has {F} features along axis {self.axis} but the thresholds were "
                             f"fitted for {self._thr.shape[0]}")
        if xt.is_complex():
            raise TypeError("complex inputs cannot be thermometer-encoded")
        if xt.dtype == torch.bool:
            xt = xt.to(torch.uint8)
        if xt.dtype.is_floating_point:
            if xt.dtype == torch.float64:
                thr = torch.from_numpy(self._thr)
            else:
                xt = xt.to(torch.float32)
                thr = torch.from_numpy(self._thr32)
            op = torch.gt
        else:
            thr = torch.from_numpy(self._int_min)
            op = torch.ge
        thr = thr.to(xt.device)
        # Broadcast thresholds to (1, ..., F or 1, T, 1, ...) right after the feature axis.
        view = [1] * (xt.ndim + 1)
        view[self.axis + 1] = self.num_thresholds
        if self.per_feature:
            view[self.axis] = F
        bits = op(xt.unsqueeze(self.axis + 1), thr.reshape(view))
        shape = list(xt.shape)
        shape[self.axis] = F * self.num_thresholds
        return bits.reshape(shape).to(dtype)

    # -------------------------------------------------------------------------- description
    def layout(self, sample_shape: Sequence[int] | None = None) -> dict:
        """JSON-serialisable description of the bit layout (and thresholds)."""
        d: dict[str, Any] = {
            "kind": "thermometer",
            "num_thresholds": self.num_thresholds,
            "axis": self.axis,
            "per_feature": self.per_feature,
            "thresholds": self._thr.tolist(),
            "rule": "bit t of feature f = x[f] > thresholds[f][t] (strict); shared thresholds "
                    "when per_feature is false",
            "order": "the threshold axis t is inserted right after `axis` and merged into it: "
                     "(N, F, *rest) -> (N, F*T, *rest), index f*T + t (feature-major)",
        }
        if sample_shape is not None:
            d["input_shape"] = list(sample_shape)
            d["output_shape"] = list(self.output_shape(sample_shape))
        return d

    def to_dict(self) -> dict:
        return {"format": _FORMAT, "version": 1, "num_thresholds": self.num_thresholds,
                "axis": self.axis, "thresholds": self._thr.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ThermometerEncoder:
        if not isinstance(d, Mapping) or d.get("format") != _FORMAT:
            raise ValueError(f"not a saved ThermometerEncoder (expected format {_FORMAT!r}), "
                             f"got {d.get('format') if isinstance(d, Mapping) else type(d).__name__!r}")
        if d.get("version") != 1:
            raise ValueError(f"unsupported ThermometerEncoder version {d.get('version')!r} (expected 1)")
        return cls(int(d["num_thresholds"]), d["thresholds"], axis=int(d.get("axis", 1)))

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted thresholds as JSON, atomically (float64 values round-trip exactly)."""
        with atomic_write(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> ThermometerEncoder:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def __repr__(self) -> str:
        kind = f"per-feature x{self._thr.shape[0]}" if self.per_feature else "shared"
        return f"ThermometerEncoder(num_thresholds={self.num_thresholds}, axis={self.axis}, {kind})"


_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s\])]+)\s*([\])])\s*$")


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


class Buckets:
    """Disjoint numeric intervals, one bit each, written like ``"(-inf,21)"``, ``"[21,30)"``,
    ``"[0,0]"``, ``"[60,inf)"`` (``[`` / ``]`` inclusive, ``(`` / ``)`` exclusive), in increasing order.
    A value in no interval is an error (the intervals need not cover the whole line)."""

    def __init__(self, intervals: Sequence[str]):
        if isinstance(intervals, str) or len(intervals) < 1:
            raise ValueError(f"Buckets needs a list of interval strings, got {intervals!r}")
        parsed = []
        for text in intervals:
            m = _INTERVAL.match(str(text))
            if not m:
                raise ValueError(f"bad interval {text!r}: expected e.g. '[21,30)', '(-inf,21)', '[0,0]'")
            lo, hi = float(m.group(2)), float(m.group(3))
            lo_inc, hi_inc = m.group(1) == "[", m.group(4) == "]"
            if math.isnan(lo) or math.isnan(hi) or lo > hi or (lo == hi and not (lo_inc and hi_inc)):
                raise ValueError(f"empty or invalid interval {text!r}")
            if (lo_inc and math.isinf(lo)) or (hi_inc and math.isinf(hi)):
                raise ValueError(f"interval {text!r}: infinite ends must be open")
            parsed.append((lo, hi, lo_inc, hi_inc))
        for (_, hi0, _, hinc0), (lo1, _, linc1, _), t in zip(parsed, parsed[1:], intervals[1:]):
            if lo1 < hi0 or (lo1 == hi0 and hinc0 and linc1):
                raise ValueError(f"interval {t!r} overlaps or precedes the one before it; "
                                 "intervals must be disjoint and increasing")
        self.intervals = [str(t).replace(" ", "") for t in intervals]
        self._parsed = parsed

    def __len__(self) -> int:
        return len(self._parsed)

    def names(self, feature: str) -> list[str]:
        """Readable bit names, e.g. ``age<21``, ``21<=age<30``, ``hours==0``, ``age>=60``."""
        out = []
        for lo, hi, lo_inc, hi_inc in self._parsed:
            lop, hop = ("<=" if lo_inc else "<"), ("<=" if hi_inc else "<")
            if lo == hi:
                out.append(f"{feature}=={_fmt(lo)}")
            elif math.isinf(lo) and math.isinf(hi):
                out.append(f"{feature}:any")
            elif math.isinf(lo):
                out.append(f"{feature}{hop}{_fmt(hi)}")
            elif math.isinf(hi):
                out.append(f"{feature}{'>=' if lo_inc else '>'}{_fmt(lo)}")
            else:
                out.append(f"{_fmt(lo)}{lop}{feature}{hop}{_fmt(hi)}")
        return out

    def index(self, values: Any, feature: str = "value") -> np.ndarray:
        """Interval index (int64) of each value; ValueError naming the first value in no interval."""
        try:
            v = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{feature}: values must be numeric, got {values!r:.200}") from exc
        out = np.full(v.shape, -1, dtype=np.int64)
        for k, (lo, hi, lo_inc, hi_inc) in enumerate(self._parsed):
            above = v >= lo if lo_inc else v > lo
            below = v <= hi if hi_inc else v < hi
            out[above & below] = k
        bad = np.flatnonzero(out.reshape(-1) < 0)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{feature}: value {float(v.reshape(-1)[i])!r} (row {i}) is in none of the "
                             f"buckets {self.intervals}")
        return out

    def __repr__(self) -> str:
        return f"Buckets({self.intervals})"


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


class OneHotEncoder:
    """One-hot bits for several features; each feature is a fixed vocabulary or a ``Buckets``.

    ``vocabularies`` maps feature name -> list of allowed string values, or ``Buckets`` for a numeric
    feature. Bits are feature by feature in the given order; ``bit_names`` are ``"feature=value"``
    for vocabularies and interval names (``"21<=age<30"``) for buckets. Unknown values raise
    ValueError; fixed vocabularies make the bit layout independent of which values occur.
    """

    def __init__(self, vocabularies: Mapping[str, Sequence[str] | Buckets]):
        if not isinstance(vocabularies, Mapping) or not vocabularies:
            raise ValueError("OneHotEncoder needs a non-empty mapping feature -> vocabulary or Buckets")
        self.features: list[str] = []
        self._specs: list[Buckets | dict[str, int]] = []
        self._vocab_lists: dict[str, list[str]] = {}
        self.bit_names: list[str] = []
        self.offsets: list[int] = []
        for feature, spec in vocabularies.items():
            self.features.append(str(feature))
            self.offsets.append(len(self.bit_names))
            if isinstance(spec, Buckets):
                self._specs.append(spec)
                self.bit_names.extend(spec.names(feature))
            else:
                values = [str(v) for v in spec]
                if not values or isinstance(spec, str):
                    raise ValueError(f"feature {feature!r}: vocabulary must be a non-empty list, got {spec!r}")
                if len(set(values)) != len(values):
                    raise ValueError(f"feature {feature!r}: vocabulary has duplicates: {values}")
                self._specs.append({v: i for i, v in enumerate(values)})
                self._vocab_lists[feature] = values
                self.bit_names.extend(f"{feature}={v}" for v in values)

    @property
    def n_bits(self) -> int:
        return len(self.bit_names)

    def _columns(self, table: Any) -> list[Sequence]:
        if isinstance(table, Mapping):
            missing = [f for f in self.features if f not in table]
            if missing:
                raise ValueError(f"missing feature column(s) {missing}; expected {self.features}")
            cols = [list(table[f]) for f in self.features]
        else:
            rows = list(table)
            for i, r in enumerate(rows):
                if len(r) != len(self.features):
                    raise ValueError(f"row {i} has {len(r)} values, expected {len(self.features)} "
                                     f"({self.features})")
            cols = [[r[j] for r in rows] for j in range(len(self.features))]
        n = {len(c) for c in cols}
        if len(n) > 1:
            raise ValueError(f"feature columns have different lengths {sorted(n)}")
        return cols

    def indices(self, table: Any) -> np.ndarray:
        """Per-feature category index, int64 of shape (N, n_features).

        ``table``: a mapping feature -> column of values, or a sequence of rows in feature order."""
        cols = self._columns(table)
        n = len(cols[0]) if cols else 0
        out = np.empty((n, len(self.features)), dtype=np.int64)
        for j, (feature, spec, col) in enumerate(zip(self.features, self._specs, cols)):
            if n == 0:
                continue
            if isinstance(spec, Buckets):
                try:
                    values = np.fromiter(map(float, col), dtype=np.float64, count=n)
                except (TypeError, ValueError):
                    bad = next(v for v in col if not _is_number(v))
                    raise ValueError(f"feature {feature!r}: {bad!r} is not a number") from None
                out[:, j] = spec.index(values, feature)
            else:
                try:
                    out[:, j] = np.fromiter(map(spec.__getitem__, map(str, col)), dtype=np.int64, count=n)
                except KeyError:
                    row, v = next((i, v) for i, v in enumerate(col) if str(v) not in spec)
                    raise ValueError(f"feature {feature!r}: unknown value {v!r} (row {row}); "
                                     f"allowed: {self._vocab_lists[feature]}") from None
        return out

    def encode(self, table: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """One-hot bits, shape (N, n_bits), exactly one bit set per feature."""
        idx = self.indices(table)
        bits = np.zeros((idx.shape[0], self.n_bits), dtype=np.uint8)
        rows = np.arange(idx.shape[0])
        for j, off in enumerate(self.offsets):
            bits[rows, off + idx[:, j]] = 1
        return torch.from_numpy(bits).to(dtype)

    def layout(self) -> dict:
        """JSON-serialisable description: bit names plus each feature's bit range and values."""
        feats = []
        for feature, spec, off in zip(self.features, self._specs, self.offsets):
            if isinstance(spec, Buckets):
                feats.append({"name": feature, "kind": "buckets", "first_bit": off,
                              "n_bits": len(spec), "intervals": list(spec.intervals)})
            else:
                feats.append({"name": feature, "kind": "categorical", "first_bit": off,
                              "n_bits": len(spec), "values": list(self._vocab_lists[feature])})
        return {"kind": "one_hot", "n_bits": self.n_bits, "features": feats,
                "bits": list(self.bit_names),
                "rule": "exactly one bit per feature is 1: the value's (or interval's) position"}

    def __repr__(self) -> str:
        return f"OneHotEncoder({len(self.features)} features, {self.n_bits} bits)"

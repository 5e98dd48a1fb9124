"""Unit tests of diffgates.data.encoders: ThermometerEncoder (uniform, quantile, exactness, layout,
JSON round trip, errors), Buckets and OneHotEncoder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffgates.data.encoders import Buckets, OneHotEncoder, ThermometerEncoder


# ---------------------------------------------------------------------------------- thermometer
def test_uniform_default_and_strict_comparison():
    enc = ThermometerEncoder(3)
    assert enc.thresholds.tolist() == [0.25, 0.5, 0.75] and not enc.per_feature
    x = torch.tensor([[0.0, 0.25, 0.5], [0.26, 0.75, 1.0]])
    bits = enc.encode(x)
    assert bits.dtype == torch.float32 and bits.shape == (2, 9)
    # feature-major: bit f*T + t; thresholds are strict (x == threshold -> 0)
    assert bits.tolist() == [[0, 0, 0, 0, 0, 0, 1, 0, 0],
                             [1, 0, 0, 1, 1, 0, 1, 1, 1]]
    assert ThermometerEncoder(4).fit_uniform(-1, 1).thresholds.tolist() == [-0.6, -0.2, 0.2, 0.6]


@pytest.mark.parametrize("T", [1, 3, 4, 7, 31])
def test_integer_inputs_exact(T):
    enc = ThermometerEncoder(T).fit_uniform(0, 255)
    x = torch.arange(256, dtype=torch.uint8).reshape(256, 1)
    got = enc.encode(x).numpy()
    want = (np.arange(256)[:, None] / 255) > (np.arange(1, T + 1) / (T + 1))[None, :]
    assert np.array_equal(got, want.astype(np.float32))
    if T == 4:  # 255 * 1/5 = 51 exactly: 51 is not above it, 52 is
        assert got[51, 0] == 0 and got[52, 0] == 1
    # the same bits from float32 and float64 copies of the pixel values (pixel units)
    assert np.array_equal(enc.encode(x.float()).numpy(), got)
    assert np.array_equal(enc.encode(x.double()).numpy(), got)


def test_float32_comparison_is_exact():
    enc = ThermometerEncoder(1, [0.1])  # 0.1 is not a float32 value
    x32 = np.array([np.float32(0.1), np.nextafter(np.float32(0.1), np.float32(0)), np.float32(0.2)],
                   dtype=np.float32).reshape(3, 1)
    want = (x32.astype(np.float64) > 0.1).astype(np.float32)  # the real comparison
    assert np.array_equal(enc.encode(torch.from_numpy(x32)).numpy(), want)
    assert want.ravel().tolist() == [1.0, 0.0, 1.0]


def test_image_layout_channels_times_thresholds():
    enc = ThermometerEncoder(2, [100, 200])
    x = torch.randint(0, 256, (4, 3, 5, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = enc.encode(x)
    assert out.shape == (4, 6, 5, 6)
    for c in range(3):
        for t, thr in enumerate((100, 200)):
            assert torch.equal(out[:, c * 2 + t], (x[:, c] > thr).float())
    flat = out.reshape(4, -1)
    c, t, h, w = 2, 1, 4, 5
    assert flat[3, ((c * 2 + t) * 5 + h) * 6 + w] == float(x[3, c, h, w] > 200)
    assert enc.output_shape((3, 5, 6)) == (6, 5, 6)
    lay = enc.layout((3, 5, 6))
    json.dumps(lay)
    assert lay["output_shape"] == [6, 5, 6] and "f*T + t" in lay["order"]
    assert enc.encode(x, dtype=torch.bool).dtype == torch.bool
    # a later feature axis
    enc2 = ThermometerEncoder(2, [100, 200], axis=2)
    assert enc2.encode(x).shape == (4, 3, 10, 6)


def test_quantile_fit_per_feature_and_json_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(0, 1, 500), rng.uniform(10, 20, 500), rng.integers(0, 3, 500)], axis=1)
    enc = ThermometerEncoder(3).fit_quantile(x)
    assert enc.per_feature and enc.thresholds.shape == (3, 3)
    assert np.allclose(enc.thresholds, np.quantile(x, [0.25, 0.5, 0.75], axis=0).T)
    bits = enc.encode(torch.from_numpy(x))
    assert bits.shape == (500, 9)
    for f in range(3):
        for t in range(3):
            assert torch.equal(bits[:, f * 3 + t], torch.from_numpy(x[:, f] > enc.thresholds[f, t]).float())
    # each quantile bit is set for about 3/4, 1/2, 1/4 of the continuous features
    assert abs(bits[:, 0].mean().item() - 0.75) < 0.01 and abs(bits[:, 5].mean().item() - 0.25) < 0.01
    path = tmp_path / "thermo.json"
    enc.save(path)
    again = ThermometerEncoder.load(path)
    assert np.array_equal(again.thresholds, enc.thresholds)  # float64 exact
    assert torch.equal(again.encode(torch.from_numpy(x)), bits)
    assert json.loads(path.read_text())["format"] == "diffgates.ThermometerEncoder"
    with pytest.raises(ValueError, match="fitted for 3"):
        enc.encode(torch.zeros(2, 4))
    # images: per-channel quantiles
    img = torch.rand(10, 3, 4, 4)
    assert ThermometerEncoder(5).fit_quantile(img).thresholds.shape == (3, 5)


def test_thermometer_errors():
    with pytest.raises(ValueError, match="num_thresholds must be >= 1, got 0"):
        ThermometerEncoder(0)
    with pytest.raises(TypeError, match="num_thresholds must be an int"):
        ThermometerEncoder(2.5)
    with pytest.raises(ValueError, match="axis must be an int >= 1"):
        ThermometerEncoder(3, axis=0)
    with pytest.raises(ValueError, match=r"shape \(3,\) or \(features, 3\), got \(2,\)"):
        ThermometerEncoder(3, [0.1, 0.2])
    with pytest.raises(ValueError, match="non-decreasing"):
        ThermometerEncoder(2, [0.5, 0.1])
    with pytest.raises(ValueError, match="finite"):
        ThermometerEncoder(2, [0.1, float("nan")])
    with pytest.raises(ValueError, match="finite lo < hi"):
        ThermometerEncoder(2).fit_uniform(1, 1)
    with pytest.raises(ValueError, match=r"shape \(N, features, \.\.\.\).*got shape \(5,\)"):
        ThermometerEncoder(2).encode(torch.zeros(5))
    with pytest.raises(ValueError, match="at least one sample"):
        ThermometerEncoder(2).fit_quantile(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="NaN"):
        ThermometerEncoder(2).fit_quantile(np.array([[np.nan], [1.0]]))
    with pytest.raises(ValueError, match="not a saved ThermometerEncoder"):
        ThermometerEncoder.from_dict({"format": "other"})
    with pytest.raises(TypeError, match="torch tensor or numpy array"):
        ThermometerEncoder(2).encode(object())


# ----------------------------------------------------------------------------- buckets / one-hot
def test_buckets():
    b = Buckets(["[0,0]", "(0,12]", "(12,25]", "(25,40]", "(40,60)", "[60,inf)"])
    assert b.names("h") == ["h==0", "0<h<=12", "12<h<=25", "25<h<=40", "40<h<60", "h>=60"]
    assert b.index([0, 1, 12, 13, 40, 41, 59, 60, 99]).tolist() == [0, 1, 1, 2, 3, 4, 4, 5, 5]
    with pytest.raises(ValueError, match=r"h: value -1.0 \(row 1\) is in none of the buckets"):
        b.index([3, -1], "h")
    age = Buckets(["(-inf,21)", "[21,30)", "[30,inf)"])
    assert age.names("age") == ["age<21", "21<=age<30", "age>=30"]
    with pytest.raises(ValueError, match="overlaps"):
        Buckets(["[0,10]", "[10,20)"])
    with pytest.raises(ValueError, match="bad interval"):
        Buckets(["0-10"])
    with pytest.raises(ValueError, match="empty or invalid"):
        Buckets(["(5,5)"])


def test_one_hot_encoder():
    enc = OneHotEncoder({"age": Buckets(["(-inf,21)", "[21,30)", "[30,inf)"]), "sex": ["Female", "Male"],
                         "color": ["red", "green", "blue"]})
    assert enc.n_bits == 8
    assert enc.bit_names == ["age<21", "21<=age<30", "age>=30", "sex=Female", "sex=Male",
                             "color=red", "color=green", "color=blue"]
    rows = [["25", "Male", "blue"], [18, "Female", "red"]]
    bits = enc.encode(rows)
    assert bits.tolist() == [[0, 1, 0, 0, 1, 0, 0, 1], [1, 0, 0, 1, 0, 1, 0, 0]]
    cols = {"age": [25, 18], "sex": ["Male", "Female"], "color": ["blue", "red"]}
    assert torch.equal(enc.encode(cols, dtype=torch.uint8), bits.to(torch.uint8))
    lay = enc.layout()
    json.dumps(lay)
    assert [f["first_bit"] for f in lay["features"]] == [0, 3, 5]
    with pytest.raises(ValueError, match=r"feature 'color': unknown value 'pink' \(row 1\); allowed: \['red'"):
        enc.encode({"age": [1, 2], "sex": ["Male", "Male"], "color": ["red", "pink"]})
    with pytest.raises(ValueError, match="missing feature column"):
        enc.encode({"age": [1]})
    with pytest.raises(ValueError, match="row 0 has 2 values, expected 3"):
        enc.encode([["1", "Male"]])
    with pytest.raises(ValueError, match="'x' is not a number"):
        enc.encode([["x", "Male", "red"]])
    with pytest.raises(ValueError, match="duplicates"):
        OneHotEncoder({"a": ["1", "1"]})
    assert enc.encode([]).shape == (0, 8)

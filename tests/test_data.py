"""diffgates.data on the real benchmark files of ../shared/data (skipped if that folder is absent):
shapes, counts, encodings, splits, the MNIST 20x20 crop, the UCI bit layouts, checksums."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from _data_helpers import SHARED_DATA, isolate

from diffgates.data import DATASET_NAMES, Dataset, load_dataset
from diffgates.data import canonical_name, permutation, split_indices
from diffgates.data.download import FILES, verify_file
from diffgates.data.errors import DataFormatError
from diffgates.data.idx import IMAGES_MAGIC, LABELS_MAGIC, parse_idx, read_idx
from diffgates.data.images import crop_20x20

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} not present")

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


_cache: dict = {}


@pytest.fixture(scope="module")
def offline():
    """Module-wide: nothing may be downloaded (loads use download=False as well); the datasets
    loaded by ``load`` are shared by this module's tests and released after it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIFFGATES_DATA_MIRROR", "http://127.0.0.1:9")
        yield
    _cache.clear()


def load(name, **kw) -> Dataset:
    key = (name, tuple(sorted(kw.items())))
    if key not in _cache:
        _cache[key] = load_dataset(name, data_dir=SHARED_DATA, download=False, **kw)
    return _cache[key]


def full(ds: Dataset, split: str = "train"):
    """Train + val back together (the official training set, in split order)."""
    if split == "test":
        return ds.x_test, ds.y_test
    return torch.cat([ds.x_train, ds.x_val]), torch.cat([ds.y_train, ds.y_val])


# ---------------------------------------------------------------------------------------- names
def test_names_and_aliases():
    assert DATASET_NAMES == ("mnist", "mnist20x20", "fashion_mnist", "cifar10_3", "cifar10_31",
                             "adult", "breast_cancer", "monk1", "monk2", "monk3")
    assert canonical_name("Fashion-MNIST") == "fashion_mnist"
    assert canonical_name(" CIFAR10-31 ") == "cifar10_31"
    with pytest.raises(ValueError, match="valid names: mnist, mnist20x20"):
        load_dataset("svhn")
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("monk1", val_fraction=1.0)


@needs_shared
def test_checksum_table_matches_shared_files():
    for rel in FILES:
        if rel.startswith("cifar"):
            continue
        path = SHARED_DATA / rel
        assert path.stat().st_size == FILES[rel].size, rel
        verify_file(path, rel)  # raises on mismatch


# ---------------------------------------------------------------------------------------- MNIST
@needs_shared
def test_mnist(offline):
    ds = load("mnist")
    assert (ds.n_inputs, ds.n_classes, ds.input_shape) == (784, 10, (1, 28, 28))
    assert ds.class_names == [str(i) for i in range(10)]
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (54000, 6000, 10000)
    x, y = full(ds)
    assert torch.bincount(y, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(ds.y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert abs(x.sum(dtype=torch.int64).item() / x.numel() / 255 - 0.1307) < 5e-5

    grey = ds.encode(ds.x_train[:100], binary=False)
    assert grey.dtype == torch.float32 and grey.shape == (100, 1, 28, 28)
    assert 0.0 <= grey.min() and grey.max() <= 1.0
    assert torch.equal(grey, ds.x_train[:100].float() / 255)
    bits = ds.encode(ds.x_test, binary=True)
    assert bits.shape == (10000, 1, 28, 28)
    assert set(torch.unique(bits).tolist()) == {0.0, 1.0}
    assert torch.equal(bits, (ds.x_test.double() / 255 > 0.5).float())
    # flattened rows are accepted; wrong shapes / dtypes are errors naming the expectation
    assert torch.equal(ds.encode(ds.x_test[:5].reshape(5, 784), True), bits[:5])
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        ds.encode(ds.x_test[:5, 0, :20], True)
    with pytest.raises(TypeError, match="uint8"):
        ds.encode(ds.x_test[:5].float(), True)
    layout = ds.input_layout
    assert layout["kind"] == "image_threshold" and layout["shape"] == [1, 28, 28]
    assert layout["pixel_min"] == 128 and layout["threshold"] == 0.5
    json.dumps(layout)


@needs_shared
def test_mnist20x20_crop_keeps_all_ink(offline):
    ds20, ds28 = load("mnist20x20"), load("mnist")
    assert (ds20.n_inputs, ds20.input_shape) == (400, (1, 20, 20))
    assert ds20.info["crop_fallbacks"] == 0
    for split in ("train", "test"):
        x20, y20 = full(ds20, split)
        x28, y28 = full(ds28, split)
        assert torch.equal(y20, y28)
        # Same ink per image: the crop removed only zero pixels (all pixels are >= 0).
        assert torch.equal(x20.sum(dim=(1, 2, 3), dtype=torch.int64), x28.sum(dim=(1, 2, 3), dtype=torch.int64))
    bits = ds20.encode(ds20.x_val, binary=True)
    assert bits.shape == (6000, 1, 20, 20) and set(torch.unique(bits).tolist()) == {0.0, 1.0}
    assert "crop" in ds20.input_layout


def test_crop_rule_centres_the_bounding_box():
    img = np.zeros((6, 28, 28), np.uint8)
    img[0, 4:24, 4:24] = 1      # margins 4/4 both ways: remove 4 per side
    img[1, 1:15, 10:12] = 1     # rows: blank 1 / 13 -> 0 / 12 -> 0 / 8: none at the top;
                                # columns: blank 10 / 16 (counted as 14) -> 2 / 6
    img[2, 26:28, 0:3] = 1      # blank top 26 (14), bottom 0 -> all 8 at the top; left 0
    img[3, 10:14, 10:14] = 1    # 10 / 14 -> 2 / 6: the 4x4 block lands in rows 8..11 of 20
    img[4, 5:24, 3:23] = 1      # rows 5 / 4 -> total 9 -> the top gives one: 4 / 4; cols 3 / 5 -> 3 / 5
    img[5, 6:20, 6:20] = 1      # 6 / 8 -> 5 / 7 -> 4 / 6 -> 3 / 5: bounding box centred (3 + 14 + 3)
    out, info = crop_20x20(img)
    assert info["top"].tolist() == [4, 0, 8, 2, 4, 3] and info["left"].tolist() == [4, 2, 0, 2, 3, 3]
    block = out[3]
    assert block[8:12, 8:12].all() and block.sum() == 16
    assert info["fallbacks"] == 0
    assert (out.reshape(6, -1).sum(1) == img.reshape(6, -1).sum(1)).all()
    assert out[0].all()  # the 20x20 block fills the crop exactly
    # fewer than 8 blank rows: centre crop, counted and warned
    wide = np.zeros((1, 28, 28), np.uint8)
    wide[0, 2:24, 5:10] = 1
    with pytest.warns(UserWarning, match="fewer than 8 blank"):
        _, info = crop_20x20(wide)
    assert info["fallbacks"] == 1 and info["top"].tolist() == [4]


@needs_shared
def test_fashion_mnist(offline):
    ds = load("fashion_mnist")
    assert (ds.n_inputs, ds.n_classes, ds.input_shape) == (784, 10, (1, 28, 28))
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    x, y = full(ds)
    assert torch.bincount(y, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test, minlength=10).tolist() == [1000] * 10
    assert abs(x.sum(dtype=torch.int64).item() / x.numel() / 255 - 0.2860) < 5e-5
    bits = ds.encode(ds.x_test[:100], binary=True)
    assert set(torch.unique(bits).tolist()) == {0.0, 1.0}


# ---------------------------------------------------------------------------------------- splits
def test_permutation_is_pinned_and_splits_are_deterministic():
    # Pinned values: the split must not change across platforms / numpy / torch versions.
    assert permutation(10, 0).tolist() == [5, 7, 1, 4, 2, 8, 0, 6, 3, 9]
    assert sorted(permutation(1000, 3).tolist()) == list(range(1000))
    assert not np.array_equal(permutation(100, 0), permutation(100, 1))
    rest, val = split_indices(100, 0.1, 0)
    assert len(val) == 10 and len(rest) == 90 and not set(rest) & set(val)
    assert np.array_equal(val, np.sort(permutation(100, 0)[:10]))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        split_indices(10, -0.1, 0)


@needs_shared
def test_val_split_determinism(offline):
    a = load_dataset("monk2", data_dir=SHARED_DATA, download=False, split_seed=5)
    b = load_dataset("monk2", data_dir=SHARED_DATA, download=False, split_seed=5)
    c = load("monk2")
    for f in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    assert not torch.equal(a.x_val, c.x_val)
    assert torch.equal(a.x_test, c.x_test)
    # val = the rows permutation(169, seed) picks, in file order; train + val = the train file
    m0 = load_dataset("monk2", data_dir=SHARED_DATA, download=False, val_fraction=0)
    assert m0.x_val.shape == (0, 17) and m0.y_val.shape == (0,) and len(m0.y_train) == 169
    rest, val = split_indices(169, 0.1, 5)
    assert torch.equal(a.x_val, m0.x_train[val]) and torch.equal(a.x_train, m0.x_train[rest])
    assert torch.equal(a.y_val, m0.y_train[val])


# ------------------------------------------------------------------------------------------- UCI
def _one_bit_per_feature(ds: Dataset):
    x = torch.cat([ds.x_train, ds.x_val, ds.x_test]).long()
    assert set(torch.unique(x).tolist()) <= {0, 1}
    for feat in ds.input_layout["features"]:
        lo = feat["first_bit"]
        counts = x[:, lo:lo + feat["n_bits"]].sum(1)
        assert (counts == 1).all(), feat["name"]


@needs_shared
def test_adult(offline):
    ds = load("adult")
    assert (ds.n_inputs, ds.n_classes, ds.input_shape) == (116, 2, (116,))
    assert ds.class_names == ["<=50K", ">50K"]
    assert len(ds.y_train) + len(ds.y_val) == 30162 and len(ds.y_test) == 15060
    assert ds.info["counts"]["train_file"]["dropped_missing"] == 2399
    assert ds.info["counts"]["test_file"]["dropped_missing"] == 1221
    bits = ds.input_layout["bits"]
    assert len(bits) == 116 == len(set(bits))
    assert bits[:5] == ["age<21", "21<=age<30", "30<=age<45", "45<=age<60", "age>=60"]
    assert "workclass=Private" in bits and "native-country=Holand-Netherlands" in bits
    names = [f["name"] for f in ds.input_layout["features"]]
    assert "fnlwgt" not in names and "education-num" not in names
    assert ds.input_layout["dropped_columns"] == ["fnlwgt", "education-num"]
    _one_bit_per_feature(ds)  # includes: every row has exactly one hours-per-week bit
    hours = next(f for f in ds.input_layout["features"] if f["name"] == "hours-per-week")
    assert hours["n_bits"] == 6
    x = torch.cat([ds.x_train, ds.x_val, ds.x_test])
    per_bucket = x[:, hours["first_bit"]:hours["first_bit"] + 6].sum(0)
    assert (per_bucket[1:] > 0).all()  # the buckets are really used (the original never set them)
    # First row of adult.test: age 25, hours 40, <=50K.
    assert ds.y_test[0] == 0
    row = {bits[i] for i in torch.nonzero(ds.x_test[0]).flatten().tolist()}
    assert {"21<=age<30", "25<hours-per-week<=40", "education=11th", "sex=Male"} <= row
    enc = ds.encode(ds.x_test, binary=False)
    assert enc.dtype == torch.float32 and torch.equal(enc, ds.encode(ds.x_test, binary=True))
    json.dumps(ds.input_layout)


@needs_shared
def test_breast_cancer(offline):
    ds = load("breast_cancer")
    assert (ds.n_inputs, ds.n_classes) == (51, 2)
    assert ds.class_names == ["no-recurrence-events", "recurrence-events"]
    assert len(ds.y_train) + len(ds.y_val) == 208 and len(ds.y_test) == 69
    assert ds.info["counts"]["train_file"] == {"rows": 277, "dropped_missing": 9}
    _one_bit_per_feature(ds)
    y = torch.cat([ds.y_train, ds.y_val, ds.y_test])
    assert len(y) == 277 and 70 < int(y.sum()) < 90  # 85 recurrences minus those with '?'
    # the test split does not depend on split_seed
    other = load_dataset("breast_cancer", data_dir=SHARED_DATA, download=False, split_seed=9)
    assert torch.equal(other.x_test, ds.x_test) and not torch.equal(other.y_val, ds.y_val)
    json.dumps(ds.input_layout)


@needs_shared
@pytest.mark.parametrize("k,train,test", [(1, (62, 62), (216, 216)), (2, (105, 64), (290, 142)),
                                          (3, (62, 60), (204, 228))])
def test_monk(offline, k, train, test):
    ds = load(f"monk{k}")
    assert (ds.n_inputs, ds.n_classes, ds.input_shape) == (17, 2, (17,))
    _, y = full(ds)
    assert tuple(torch.bincount(y, minlength=2).tolist()) == train
    assert tuple(torch.bincount(ds.y_test, minlength=2).tolist()) == test
    assert ds.input_layout["bits"][:4] == ["a1=1", "a1=2", "a1=3", "a2=1"]
    _one_bit_per_feature(ds)
    # test files hold all 432 attribute combinations exactly once
    assert len({tuple(r) for r in ds.x_test.tolist()}) == 432


# ------------------------------------------------------------------------------------------- IDX
def test_idx_parsing_errors(tmp_path):
    header = (IMAGES_MAGIC).to_bytes(4, "big") + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") * 2
    ok = parse_idx(header + bytes(18), expect_magic=IMAGES_MAGIC)
    assert ok.shape == (2, 3, 3) and ok.dtype == np.uint8
    with pytest.raises(DataFormatError, match="truncated or corrupt"):
        parse_idx(header + bytes(17), expect_magic=IMAGES_MAGIC)
    with pytest.raises(DataFormatError, match=f"magic number {IMAGES_MAGIC}, expected {LABELS_MAGIC}"):
        parse_idx(header + bytes(18), expect_magic=LABELS_MAGIC)
    # a truncated gzip file gets a clear error naming the file
    good = gzip.compress(header + bytes(18))
    bad = tmp_path / "cut-images-idx3-ubyte.gz"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataFormatError, match="cut-images-idx3-ubyte.gz.*corrupt or truncated gzip"):
        read_idx(bad, expect_magic=IMAGES_MAGIC)


def test_corrupt_local_file_is_reported(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)
    monk = tmp_path / "root" / "uci" / "monk"
    monk.mkdir(parents=True)
    (monk / "monks-1.train").write_text(" 1 1 1 1 1 3 1 data_5\n 1 9 1 1 1 3 1 data_6\n")
    (monk / "monks-1.test").write_text(" 1 1 1 1 1 3 1 data_5\n")
    with pytest.raises(DataFormatError, match=r"monks-1.train.*a1.*unknown value '9'"):
        load_dataset("monk1", data_dir=tmp_path / "root")
    (monk / "monks-1.train").write_text(" 1 1 1 1 1 3\n")
    with pytest.raises(DataFormatError, match=r"monks-1.train:1: 6 fields, expected 8"):
        load_dataset("monk1", data_dir=tmp_path / "root")

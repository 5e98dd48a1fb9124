"""CIFAR-10 thermometer datasets on tiny files in the official python-batch format (written by
the test: Python 2 style and Python 3 pickles, folder and .tar.gz), and the pickle safety."""
from __future__ import annotations

import hashlib
import json
import os
import pickle

import numpy as np
import pytest
import torch
from _data_helpers import CLASSES, isolate, make_batches, py2_pickle, serve_dir, write_cifar_dir, write_cifar_tar

from diffgates.data import DatasetNotFoundError, load_dataset
from diffgates.data import download as dl
from diffgates.data.cifar import safe_load_batch
from diffgates.data.errors import DataFormatError, UnsafePickleError


@pytest.fixture()
def batches():
    return make_batches(np.random.default_rng(1234))


def official_arrays(batches):
    x_tr = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    y_tr = np.concatenate([batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)])
    x_te = batches["test_batch"][b"data"].reshape(-1, 3, 32, 32)
    return x_tr, y_tr, x_te, np.asarray(batches["test_batch"][b"labels"])


def direct_bits(x: np.ndarray, T: int) -> np.ndarray:
    """bit[n, c*T + t, h, w] = x[n, c, h, w] / 255 > (t + 1) / (T + 1), by plain loops over c, t."""
    out = np.zeros((x.shape[0], 3 * T, 32, 32), np.float32)
    for c in range(3):
        for t in range(T):
            out[:, c * T + t] = (x[:, c].astype(np.float64) / 255) > (t + 1) / (T + 1)
    return out


@pytest.mark.parametrize("T", [3, 31])
@pytest.mark.parametrize("style", ["py2", "py3", "mixed"])
def test_cifar_folder(tmp_path, monkeypatch, batches, T, style):
    isolate(monkeypatch, tmp_path)
    write_cifar_dir(tmp_path / "root", batches, style=style)
    ds = load_dataset(f"CIFAR10-{T}", data_dir=tmp_path / "root", val_fraction=0.2)
    assert ds.name == f"cifar10_{T}"
    assert (ds.n_inputs, ds.n_classes, ds.input_shape) == (3 * T * 1024, 10, (3 * T, 32, 32))
    assert ds.class_names == CLASSES
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (28, 7, 5)
    assert ds.x_train.dtype == torch.uint8 and ds.x_train.shape[1:] == (3, 32, 32)
    x_tr, y_tr, x_te, y_te = official_arrays(batches)
    assert torch.equal(ds.x_test, torch.from_numpy(x_te)) and ds.y_test.tolist() == y_te.tolist()
    # train + val are the official train rows (val keeps file order, like train)
    x_all = torch.cat([ds.x_train, ds.x_val])
    assert sorted(map(bytes, x_all.reshape(35, -1).numpy())) == sorted(map(bytes, x_tr.reshape(35, -1)))
    # channel-major raw layout: R plane, then G, then B, each 32x32 row-major
    assert ds.x_test[0, 1, 2, 3] == batches["test_batch"][b"data"][0, 1024 + 2 * 32 + 3]

    for binary in (False, True):
        bits = ds.encode(ds.x_test, binary=binary)
        assert bits.dtype == torch.float32 and bits.shape == (5, 3 * T, 32, 32)
        assert np.array_equal(bits.numpy(), direct_bits(x_te, T))
    # the documented flat index ((c*T + t)*32 + h)*32 + w
    flat = ds.encode(ds.x_test[:2], binary=True).reshape(2, -1)
    for (c, t, h, w) in [(0, 0, 0, 0), (2, T - 1, 31, 31), (1, T // 2, 5, 17)]:
        i = ((c * T + t) * 32 + h) * 32 + w
        assert flat[1, i].item() == float(x_te[1, c, h, w] / 255 > (t + 1) / (T + 1))
    layout = ds.input_layout
    json.dumps(layout)
    assert layout["kind"] == "thermometer" and layout["num_thresholds"] == T
    assert layout["order"].startswith("bit = ((c*T + t)*H + h)*W + w")
    for t, k in enumerate(layout["pixel_min"]):  # the integer form of the rule
        assert k / 255 > (t + 1) / (T + 1) >= (k - 1) / 255
    assert ds.encode(ds.x_test, binary=True, dtype=torch.bool).dtype == torch.bool


def test_cifar_archive_in_place(tmp_path, monkeypatch, batches):
    isolate(monkeypatch, tmp_path)
    folder = write_cifar_dir(tmp_path / "staging", batches, style="py2")
    write_cifar_tar(tmp_path / "root" / "cifar-10-python.tar.gz", folder)
    ds = load_dataset("cifar10_3", data_dir=tmp_path / "root")
    ref = load_dataset("cifar10_3", data_dir=tmp_path / "staging")
    assert torch.equal(ds.x_train, ref.x_train) and torch.equal(ds.y_val, ref.y_val)
    assert os.listdir(tmp_path / "root") == ["cifar-10-python.tar.gz"]  # read in place, not extracted


def test_cifar_download_via_mirror(tmp_path, monkeypatch, batches):
    isolate(monkeypatch, tmp_path)
    folder = write_cifar_dir(tmp_path / "staging", batches)
    archive = write_cifar_tar(tmp_path / "mirror" / "cifar-10-python.tar.gz", folder)
    blob = archive.read_bytes()
    # The tiny archive stands in for the official one: give the table its checksums.
    monkeypatch.setitem(dl.FILES, "cifar-10-python.tar.gz",
                        dl.RemoteFile("cifar-10-python.tar.gz", dl.FILES["cifar-10-python.tar.gz"].urls,
                                      hashlib.md5(blob).hexdigest(), None, len(blob)))
    with serve_dir(tmp_path / "mirror") as url:
        monkeypatch.setenv("DIFFGATES_DATA_MIRROR", url)
        ds = load_dataset("cifar10_31", data_dir=tmp_path / "dl")
    assert (tmp_path / "dl" / "cifar-10-python.tar.gz").read_bytes() == blob
    assert len(ds.y_test) == 5


def test_cifar_missing_names_official_url(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10_3", data_dir=tmp_path / "none")
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg
    assert str(tmp_path / "none") in msg and "--data-dir" in msg
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py/"):
        load_dataset("cifar10_3", data_dir=tmp_path / "none", download=False)


# ------------------------------------------------------------------------------- pickle safety
class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_malicious_pickles_are_refused(tmp_path, monkeypatch, batches):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": _Evil(f"touch {marker}"), b"labels": []}, protocol=2)
    with pytest.raises(UnsafePickleError, match=r"refusing to load global (posix|nt|os)\.system"):
        safe_load_batch(evil, "evil")
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match=r"builtins\.eval"):
        safe_load_batch(pickle.dumps(_EvalEvil()), "evil")
    with pytest.raises(UnsafePickleError, match="_Evil"):
        safe_load_batch(pickle.dumps(_Evil("true").__class__), "class")
    # inside a dataset folder the whole load is refused
    isolate(monkeypatch, tmp_path)
    folder = write_cifar_dir(tmp_path / "root", batches)
    (folder / "data_batch_3").write_bytes(evil)
    with pytest.raises(UnsafePickleError, match="data_batch_3"):
        load_dataset("cifar10_3", data_dir=tmp_path / "root")
    assert not marker.exists()


def test_malformed_batches(batches):
    good = dict(batches["test_batch"])
    data = pickle.dumps({**good, b"data": good[b"data"].astype(np.int16)}, protocol=2)
    with pytest.raises(DataFormatError, match=r"uint8 array of shape \(N, 3072\)"):
        from diffgates.data.cifar import _batch_arrays
        _batch_arrays(safe_load_batch(data), "x")
    with pytest.raises(DataFormatError, match="not a readable CIFAR-10 batch"):
        safe_load_batch(py2_pickle(good)[:-40], "cut")
    with pytest.raises(DataFormatError, match="expected a pickled dict"):
        safe_load_batch(pickle.dumps([1, 2, 3]), "list")

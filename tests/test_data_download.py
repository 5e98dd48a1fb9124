"""The download path of diffgates.data against a local HTTP mirror (never the real internet):
files arrive verified and atomically, corrupt downloads leave nothing behind, offline errors
name the missing files, read-only data folders are never written to."""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from _data_helpers import SHARED_DATA, isolate, serve_dir

from diffgates.data import DatasetNotFoundError, load_dataset
from diffgates.data.download import FILES, verify_file
from diffgates.data.errors import ChecksumMismatchError

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} not present")

UCI = ["uci/adult/adult.data", "uci/adult/adult.test", "uci/breast-cancer/breast-cancer.data",
       *(f"uci/monk/monks-{k}.{s}" for k in (1, 2, 3) for s in ("train", "test"))]
MNIST = [f"mnist/{p}-{k}-ubyte.gz" for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]


def mirror_of(tmp_path: Path, relpaths) -> Path:
    """A temp copy of some shared files in the data-folder layout (served by the mirror)."""
    root = tmp_path / "mirror"
    for rel in relpaths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHARED_DATA / rel, root / rel)
    return root


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


@needs_shared
def test_download_uci_and_mnist_into_data_dir(tmp_path, monkeypatch):
    cache = isolate(monkeypatch, tmp_path)
    with serve_dir(mirror_of(tmp_path, UCI + MNIST)) as url:
        monkeypatch.setenv("DIFFGATES_DATA_MIRROR", url)
        target = tmp_path / "fresh"  # does not exist yet: created
        for name in ("adult", "breast_cancer", "monk1", "monk2", "monk3", "mnist"):
            ds = load_dataset(name, data_dir=target)
            assert len(ds.y_test) > 0
    for rel in UCI + MNIST:
        verify_file(target / rel, rel)
    assert not [p for p in target.rglob("*") if p.name.endswith(".part") or p.name.startswith(".")]
    assert not cache.exists()  # nothing went to the cache
    # the downloaded copy gives the same dataset as the shared folder
    ref = load_dataset("monk2", data_dir=SHARED_DATA, download=False)
    got = load_dataset("monk2", data_dir=target, download=False)
    assert torch.equal(ref.x_test, got.x_test) and torch.equal(ref.y_train, got.y_train)


@needs_shared
def test_download_goes_to_cache_without_data_dir(tmp_path, monkeypatch):
    cache = isolate(monkeypatch, tmp_path)
    with serve_dir(mirror_of(tmp_path, ["uci/monk/monks-3.train", "uci/monk/monks-3.test"])) as url:
        monkeypatch.setenv("DIFFGATES_DATA_MIRROR", url)
        ds = load_dataset("monk3")
    assert len(ds.y_test) == 432
    assert sorted(p.name for p in (cache / "uci" / "monk").iterdir()) == ["monks-3.test", "monks-3.train"]
    # second load: found in the cache, no server needed (the mirror refuses connections again)
    monkeypatch.setenv("DIFFGATES_DATA_MIRROR", "http://127.0.0.1:9")
    assert torch.equal(load_dataset("monk3").y_test, ds.y_test)


@needs_shared
def test_read_only_data_dir_is_not_written(tmp_path, monkeypatch):
    cache = isolate(monkeypatch, tmp_path)
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        with serve_dir(mirror_of(tmp_path, ["uci/monk/monks-1.train", "uci/monk/monks-1.test"])) as url:
            monkeypatch.setenv("DIFFGATES_DATA_MIRROR", url)
            load_dataset("monk1", data_dir=ro)
        assert list(ro.iterdir()) == []
        assert (cache / "uci/monk/monks-1.train").is_file()
    finally:
        ro.chmod(0o755)


@needs_shared
def test_env_data_root_is_searched(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("DIFFGATES_DATA", str(SHARED_DATA))
    ds = load_dataset("breast-cancer", download=False)
    assert ds.n_inputs == 51


@needs_shared
def test_corrupt_download_raises_and_leaves_nothing(tmp_path, monkeypatch):
    cache = isolate(monkeypatch, tmp_path)
    root = mirror_of(tmp_path, ["uci/adult/adult.data", "uci/adult/adult.test"])
    data = bytearray((root / "uci/adult/adult.data").read_bytes())
    data[1000] ^= 0x01  # one flipped bit
    (root / "uci/adult/adult.data").write_bytes(bytes(data))
    target = tmp_path / "target"
    with serve_dir(root) as url:
        monkeypatch.setenv("DIFFGATES_DATA_MIRROR", url)
        with pytest.raises(ChecksumMismatchError) as err:
            load_dataset("adult", data_dir=target)
    msg = str(err.value)
    assert FILES["uci/adult/adult.data"].md5 in msg and "got" in msg
    assert f"{url}/uci/adult/adult.data" in msg and "uci/adult/adult.data" in msg
    assert err.value.expected == FILES["uci/adult/adult.data"].md5 and err.value.got != err.value.expected
    assert leftovers(target) in ([], ["adult", "uci"])  # at most the empty folders
    assert not (target / "uci/adult/adult.data").exists()
    assert leftovers(cache) == []


def test_offline_error_names_files_and_folders(tmp_path, monkeypatch):
    cache = isolate(monkeypatch, tmp_path)  # mirror = a closed port: connection refused
    data_dir = tmp_path / "mydata"
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("monk2", data_dir=data_dir)
    e = err.value
    assert isinstance(e, FileNotFoundError)
    msg = str(e)
    for needle in ("uci/monk/monks-2.train", "uci/monk/monks-2.test", "'uci/monk/'", str(data_dir),
                   str(cache), "--data-dir", "$DIFFGATES_DATA", "download failed",
                   "https://archive.ics.uci.edu/ml/machine-learning-databases/monks-problems/monks-2.train"):
        assert needle in msg, needle
    assert e.missing == ["uci/monk/monks-2.train", "uci/monk/monks-2.test"]
    assert e.searched[0] == str(data_dir)
    assert leftovers(data_dir / "uci") in ([], ["monk"])


def test_download_disabled_and_http_404(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)
    with pytest.raises(DatasetNotFoundError, match="download=False") as err:
        load_dataset("fashion-mnist", data_dir=tmp_path / "d", download=False)
    assert "fashion-mnist/train-images-idx3-ubyte.gz" in str(err.value)
    assert "fashion-mnist.s3-website.eu-central-1.amazonaws.com" in str(err.value)
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    with serve_dir(empty) as url:
        monkeypatch.setenv("DIFFGATES_DATA_MIRROR", url)
        with pytest.raises(DatasetNotFoundError, match="404"):
            load_dataset("breast_cancer", data_dir=tmp_path / "d")
    assert not (tmp_path / "d" / "uci" / "breast-cancer" / "breast-cancer.data").exists()


@needs_shared
def test_file_url_mirror(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)
    root = mirror_of(tmp_path, ["uci/breast-cancer/breast-cancer.data"])
    monkeypatch.setenv("DIFFGATES_DATA_MIRROR", root.as_uri())
    ds = load_dataset("breast_cancer", data_dir=tmp_path / "d")
    assert len(ds.y_test) == 69
    assert os.path.getsize(tmp_path / "d/uci/breast-cancer/breast-cancer.data") == 18654

"""Tests of diffgates.modelfiles.tensors: safetensors files through the package, written atomically, with
clear errors on truncated / corrupt / foreign files.  Run: python -m pytest tests/test_tensor_files.py -q
"""
from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from diffgates.modelfiles import TensorFileError, read_metadata, read_tensors, write_tensors
from diffgates.modelfiles import tensors as tensor_files


def _sample_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.arange(12.0).reshape(3, 4)
    return {
        "f32": torch.randn(3, 5, generator=g),
        "f64": torch.randn(7, generator=g, dtype=torch.float64),
        "f16": torch.randn(2, 3, generator=g).half(),
        "bf16": torch.randn(4, generator=g).bfloat16(),
        "i64": torch.tensor([[-(2 ** 62), 5, 2 ** 40]]),
        "i32": torch.arange(-3, 3, dtype=torch.int32),
        "u8": torch.arange(0, 256, 51, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "noncontig": base.t(),
        "view_of_the_same_buffer": base[1],
    }


def _write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def test_round_trip_every_dtype_and_metadata(tmp_path):
    tensors = _sample_tensors()
    path = tmp_path / "t.safetensors"
    write_tensors(path, tensors, {"step": "7", "note": "ünïcode"})
    loaded, meta = read_tensors(path)
    assert meta == {"step": "7", "note": "ünïcode"} and read_metadata(path) == meta
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value), name
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temp file left behind


def test_files_are_plain_safetensors(tmp_path):
    tensors = _sample_tensors()
    ours = tmp_path / "ours.safetensors"
    write_tensors(ours, tensors, {"k": "v"})
    theirs_loaded = load_file(str(ours))
    for name, value in tensors.items():
        assert torch.equal(theirs_loaded[name], value), name
    with safe_open(str(ours), framework="pt") as f:
        assert f.metadata() == {"k": "v"}
    theirs = tmp_path / "theirs.safetensors"
    save_file({"a": torch.ones(3)}, str(theirs), metadata={"a": "b"})
    loaded, meta = read_tensors(theirs)
    assert meta == {"a": "b"} and torch.equal(loaded["a"], torch.ones(3))


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    write_tensors(path, {"a": torch.ones(3)})
    before = path.read_bytes()

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device (simulated)")

    real = tensor_files.atomic_write

    def failing(p, mode="wb"):
        import contextlib

        @contextlib.contextmanager
        def cm():
            with real(p, mode) as f:
                yield Full(f)
        return cm()

    monkeypatch.setattr(tensor_files, "atomic_write", failing)
    with pytest.raises(OSError, match="No space left"):
        write_tensors(path, {"a": torch.zeros(3)})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


@pytest.mark.parametrize("tensors, match", [
    ({"x": [1, 2]}, "dense torch.Tensor"),
    ({"__metadata__": torch.zeros(2)}, "cannot be stored"),
    ({"": torch.zeros(2)}, "cannot be stored"),
    ({"s": torch.zeros(3).to_sparse()}, "dense"),
])
def test_unstorable_tensors_are_rejected(tmp_path, tensors, match):
    with pytest.raises(TensorFileError, match=match):
        write_tensors(tmp_path / "x.safetensors", tensors)


def test_non_string_metadata_is_rejected(tmp_path):
    with pytest.raises(TensorFileError, match="str to str"):
        write_tensors(tmp_path / "x.safetensors", {"a": torch.zeros(1)}, {"step": 3})


def _frame(header: dict, data: bytes = b"") -> bytes:
    head = json.dumps(header).encode()
    return len(head).to_bytes(8, "little") + head + data


def test_truncated_corrupt_and_foreign_files_are_reported(tmp_path):
    good = tmp_path / "ok.safetensors"
    write_tensors(good, {"a": torch.arange(4, dtype=torch.float32), "b": torch.ones(2, dtype=torch.int64)})
    data = good.read_bytes()
    cases = {
        "empty": b"", "cut5": data[:5], "cut20": data[:20], "cut-3": data[:-3],
        "png": b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
        "pickle": b"\x80\x04\x95" + b"\x10" + b"\0" * 4 + b"}" * 40,
        "json": (10).to_bytes(8, "little") + b"{not json}",
        "overlap": _frame({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),
        "size": _frame({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
    }
    for name, bad in cases.items():
        path = _write(tmp_path / f"{name}.safetensors", bad)
        for reader in (read_tensors, read_metadata):
            with pytest.raises(TensorFileError, match="not a readable safetensors file") as info:
                reader(path)
            assert os.fspath(path) in str(info.value)
    with pytest.raises(TensorFileError, match="no such file"):
        read_tensors(tmp_path / "missing.safetensors")

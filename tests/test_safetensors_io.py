"""Tests of diffgates.safetensors_io: round trips, interop with the `safetensors` package, and clear
errors on truncated / corrupt / foreign files.  Run: PYTHONPATH=src pytest tests/test_safetensors_io.py
"""
from __future__ import annotations

import json
import os

import pytest
import torch

from diffgates import safetensors_io as sio
from diffgates.safetensors_io import SafetensorsError


def _sample_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 5, generator=g),
        "f64": torch.randn(7, generator=g, dtype=torch.float64),
        "f16": torch.randn(2, 3, generator=g).half(),
        "bf16": torch.randn(4, generator=g).bfloat16(),
        "i64": torch.tensor([[-(2 ** 62), 5, 2 ** 40]]),
        "i32": torch.arange(-3, 3, dtype=torch.int32),
        "i16": torch.tensor([-300, 300], dtype=torch.int16),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.arange(0, 256, 51, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "noncontig": torch.arange(12.0).reshape(3, 4).t(),
    }


def _write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def _frame(header: dict, data: bytes = b"") -> bytes:
    head = json.dumps(header).encode()
    return len(head).to_bytes(8, "little") + head + data


def test_round_trip_every_dtype_and_metadata(tmp_path):
    tensors = _sample_tensors()
    path = tmp_path / "t.safetensors"
    sio.save_file(tensors, path, metadata={"step": "7", "note": "ünïcode"})
    loaded, meta = sio.load_file(path)
    assert meta == {"step": "7", "note": "ünïcode"}
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape, name
        assert torch.equal(loaded[name], value), name
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temp file left behind
    entries, meta2 = sio.read_header(path)
    assert meta2 == meta and entries["f32"]["shape"] == [3, 5] and entries["bf16"]["dtype"] == "BF16"


def test_files_interoperate_with_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    from safetensors import safe_open
    tensors = _sample_tensors()
    ours = tmp_path / "ours.safetensors"
    sio.save_file(tensors, ours, metadata={"k": "v"})
    theirs_loaded = st.load_file(str(ours))
    for name, value in tensors.items():
        assert torch.equal(theirs_loaded[name], value), name
    with safe_open(str(ours), framework="pt") as f:
        assert f.metadata() == {"k": "v"}

    theirs = tmp_path / "theirs.safetensors"
    st.save_file({k: v.contiguous() for k, v in tensors.items()}, str(theirs), metadata={"a": "b"})
    loaded, meta = sio.load_file(theirs)
    assert meta == {"a": "b"}
    for name, value in tensors.items():
        assert torch.equal(loaded[name], value), name


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    sio.save_file({"a": torch.ones(3)}, path)
    before = path.read_bytes()

    def boom(tensor):
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(sio, "_to_le_bytes", boom)
    with pytest.raises(OSError, match="disk full"):
        sio.save_file({"a": torch.zeros(3)}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


@pytest.mark.parametrize("tensors, match", [
    ({"x": torch.zeros(2, dtype=torch.complex64)}, "dtype"),
    ({"__metadata__": torch.zeros(2)}, "cannot be stored"),
    ({"": torch.zeros(2)}, "cannot be stored"),
    ({"s": torch.zeros(3).to_sparse()}, "dense"),
])
def test_unstorable_tensors_are_rejected(tmp_path, tensors, match):
    with pytest.raises(SafetensorsError, match=match):
        sio.save_file(tensors, tmp_path / "x.safetensors")


def test_non_string_metadata_is_rejected(tmp_path):
    with pytest.raises(SafetensorsError, match="str to str"):
        sio.save_file({"a": torch.zeros(1)}, tmp_path / "x.safetensors", metadata={"step": 3})


def _valid_bytes(tmp_path) -> bytes:
    path = tmp_path / "ok.safetensors"
    sio.save_file({"a": torch.arange(4, dtype=torch.float32), "b": torch.ones(2, dtype=torch.int64)}, path)
    return path.read_bytes()


def test_truncated_files_are_reported(tmp_path):
    good = _valid_bytes(tmp_path)
    for cut, match in ((0, "shorter than the 8-byte"), (5, "shorter than the 8-byte"),
                       (20, "truncated safetensors file: header says"),
                       (len(good) - 3, "truncated safetensors file: tensor")):
        path = _write(tmp_path / f"cut{cut}.safetensors", good[:cut])
        with pytest.raises(SafetensorsError, match=match):
            sio.load_file(path)
        with pytest.raises(SafetensorsError):
            sio.read_header(path)


def test_foreign_files_are_reported(tmp_path):
    png = _write(tmp_path / "x.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(SafetensorsError, match="header length field"):
        sio.load_file(png)
    pickle_like = _write(tmp_path / "x.pt", b"\x80\x04\x95" + b"\x10" + b"\0" * 4 + b"}" * 40)
    with pytest.raises(SafetensorsError, match="not a safetensors file"):
        sio.load_file(pickle_like)
    text = _write(tmp_path / "x.json", (16).to_bytes(8, "little") + b"[1, 2, 3]       ")
    with pytest.raises(SafetensorsError, match=r"does not start with '\{'"):
        sio.load_file(text)


@pytest.mark.parametrize("header, data, match", [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": 1}, b"\0" * 8, "exactly the keys"),
    ({"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "dtype 'Q7'"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, "shape"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 12 bytes"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8, "data_offsets"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "overlaps"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "hole"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 12, "extra or missing bytes"),
    ({"__metadata__": {"k": 1}, "a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"\0", "str to str"),
])
def test_corrupt_headers_are_reported(tmp_path, header, data, match):
    path = _write(tmp_path / "bad.safetensors", _frame(header, data))
    with pytest.raises(SafetensorsError, match=match):
        sio.load_file(path)


def test_invalid_json_and_huge_length(tmp_path):
    path = _write(tmp_path / "j.safetensors", (10).to_bytes(8, "little") + b"{not json}")
    with pytest.raises(SafetensorsError, match="not valid UTF-8 JSON"):
        sio.load_file(path)
    path = _write(tmp_path / "h.safetensors", (2 ** 40).to_bytes(8, "little") + b"{}")
    with pytest.raises(SafetensorsError, match="header length field is"):
        sio.load_file(path)


def test_error_message_names_the_file(tmp_path):
    path = _write(tmp_path / "named.safetensors", b"abc")
    with pytest.raises(SafetensorsError) as info:
        sio.load_file(path)
    assert os.fspath(path) in str(info.value)

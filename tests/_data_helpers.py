"""Test helpers for diffgates.data: the shared data folder, an isolated environment, a local HTTP
server, and writers for tiny CIFAR-10 files in the official python-batch format."""
from __future__ import annotations

import contextlib
import functools
import http.server
import io
import pickle
import socket
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def closed_port_url() -> str:
    """An http:// base URL on 127.0.0.1 where nothing listens (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def isolate(monkeypatch, tmp_path: Path) -> Path:
    """No $DIFFGATES_DATA, a fresh user cache under tmp_path, and a mirror that refuses
    connections (so nothing can reach the internet). Returns the cache's data folder."""
    monkeypatch.delenv("DIFFGATES_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("DIFFGATES_DATA_MIRROR", closed_port_url())
    return tmp_path / "xdg-cache" / "diffgates" / "data"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@contextlib.contextmanager
def serve_dir(directory: Path):
    """Serve ``directory`` over HTTP on an ephemeral 127.0.0.1 port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# ----------------------------------------------------------------------------------- CIFAR files
CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _py2_str(b: bytes) -> bytes:
    """Python 2 ``str`` as written by protocol 2 (SHORT_BINSTRING / BINSTRING)."""
    if len(b) < 256:
        return b"U" + bytes([len(b)]) + b
    return b"T" + struct.pack("<i", len(b)) + b


def _py2_int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def _py2_value(v) -> bytes:
    if isinstance(v, np.ndarray):
        assert v.dtype == np.uint8
        shape = b"(" + b"".join(_py2_int(d) for d in v.shape) + b"t"
        dtype = (b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R"
                 + b"(K\x03" + _py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
        return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85"
                + _py2_str(b"b") + b"\x87R" + b"(K\x01" + shape + dtype + b"\x89"
                + _py2_str(v.tobytes()) + b"tb")
    if isinstance(v, int):
        return _py2_int(v)
    if isinstance(v, bytes):
        return _py2_str(v)
    if isinstance(v, list):
        return b"](" + b"".join(_py2_value(x) for x in v) + b"e" if v else b"]"
    raise TypeError(type(v))


def py2_pickle(d: dict) -> bytes:
    """Protocol-2 pickle of a dict as Python 2 + numpy 1.x wrote the official CIFAR batches."""
    body = b"".join(_py2_str(k) + _py2_value(v) for k, v in d.items())
    return b"\x80\x02}(" + body + b"u."


def make_batches(rng: np.random.Generator, n_train: int = 7, n_test: int = 5):
    """dicts of the 5 train batches, the test batch and the meta file, with random content."""
    out = {}
    for name in CIFAR_FILES[:-1]:
        n = n_test if name == "test_batch" else n_train
        out[name] = {
            b"batch_label": f"{name} of 5".encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{name}_{i}.png".encode() for i in range(n)],
        }
    out["batches.meta"] = {b"num_cases_per_batch": n_train, b"label_names": [c.encode() for c in CLASSES],
                           b"num_vis": 3072}
    return out


def write_cifar_dir(root: Path, batches: dict, style: str = "mixed") -> Path:
    """Write ``root/cifar-10-batches-py/``; style 'py2' (like the official files), 'py3'
    (pickle.dumps protocol 2 and default protocol alternating) or 'mixed'."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, d) in enumerate(batches.items()):
        kind = style if style != "mixed" else ("py2", "py3-2", "py3-5")[i % 3]
        if kind == "py2":
            data = py2_pickle(d)
        elif kind in ("py3", "py3-2"):
            data = pickle.dumps(d, protocol=2)
        else:
            data = pickle.dumps(d)
        (folder / name).write_bytes(data)
    return folder


def write_cifar_tar(path: Path, folder: Path) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in CIFAR_FILES:
            tar.add(folder / name, arcname=f"cifar-10-batches-py/{name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path

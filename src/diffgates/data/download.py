"""Finding dataset files locally and downloading (with checksum verification) what is missing.

Data roots, searched in this order for each file:

1. the ``data_dir`` argument (the CLI's ``--data-dir``);
2. ``$DIFFGATES_DATA``;
3. the user cache, ``$XDG_CACHE_HOME/diffgates/data`` or ``~/.cache/diffgates/data``.

Inside a root every dataset has its own sub-folder (the layout of the shared data folder)::

    mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    fashion-mnist/  (same four names)
    uci/adult/adult.data, uci/adult/adult.test
    uci/breast-cancer/breast-cancer.data
    uci/monk/monks-{1,2,3}.{train,test}
    cifar-10-python.tar.gz  or its extracted folder cifar-10-batches-py/

Missing files are downloaded (unless ``download=False``) into the first writable root among
``data_dir``, ``$DIFFGATES_DATA`` and the cache (a read-only ``data_dir`` is never written to).
``$DIFFGATES_DATA_MIRROR`` replaces the official URLs by ``<mirror>/<relative path>`` (same layout;
``http://``, ``https://`` or ``file://``). Every download is checked against the MD5 and SHA-256 in
``FILES`` (the published values), written to a temporary file in the target folder and renamed
into place only when it verifies, so a failed or corrupt download never leaves a file behind.
Files already present locally are used as they are (the parsers check their structure);
``verify_file`` checks one against the table.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ChecksumMismatchError, DatasetNotFoundError

__all__ = ["RemoteFile", "FILES", "DATASET_FILES", "data_roots", "download_roots", "find_file",
           "ensure_files", "download_file", "verify_file", "cache_dir", "first_writable_root",
           "not_found_error", "MIRROR_ENV", "DATA_ENV"]

log = logging.getLogger("diffgates.data")

DATA_ENV = "DIFFGATES_DATA"
MIRROR_ENV = "DIFFGATES_DATA_MIRROR"
_TIMEOUT_S = 60
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: its path relative to a data root, official URLs, checksums, size."""

    path: str
    urls: tuple[str, ...]
    md5: str
    sha256: str | None
    size: int | None


_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/"


def _mk(path: str, urls: Sequence[str], md5: str, sha256: str | None, size: int | None) -> RemoteFile:
    return RemoteFile(path, tuple(urls), md5, sha256, size)


# Published checksums: MD5 as in torchvision (MNIST, Fashion-MNIST), difflogic's uci_datasets.py
# (UCI) and the CIFAR-10 home page; SHA-256 and sizes of the same byte-identical files.
_TABLE = [
    # path, urls, md5, sha256, bytes
    ("mnist/train-images-idx3-ubyte.gz", [u + "train-images-idx3-ubyte.gz" for u in _MNIST_URLS],
     "f68b3c2dcbeaaa9fbdd348bbdeb94873", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
    ("mnist/train-labels-idx1-ubyte.gz", [u + "train-labels-idx1-ubyte.gz" for u in _MNIST_URLS],
     "d53e105ee54ea40749a09fcbcd1e9432", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
    ("mnist/t10k-images-idx3-ubyte.gz", [u + "t10k-images-idx3-ubyte.gz" for u in _MNIST_URLS],
     "9fb629c4189551a2d022fa330f9573f3", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
    ("mnist/t10k-labels-idx1-ubyte.gz", [u + "t10k-labels-idx1-ubyte.gz" for u in _MNIST_URLS],
     "ec29112dd5afa0611ce80d1b7f02629c", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
    ("fashion-mnist/train-images-idx3-ubyte.gz", [_FASHION_URL + "train-images-idx3-ubyte.gz"],
     "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
    ("fashion-mnist/train-labels-idx1-ubyte.gz", [_FASHION_URL + "train-labels-idx1-ubyte.gz"],
     "25c81989df183df01b3e8a0aad5dffbe", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
    ("fashion-mnist/t10k-images-idx3-ubyte.gz", [_FASHION_URL + "t10k-images-idx3-ubyte.gz"],
     "bef4ecab320f06d8554ea6380940ec79", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
    ("fashion-mnist/t10k-labels-idx1-ubyte.gz", [_FASHION_URL + "t10k-labels-idx1-ubyte.gz"],
     "bb300cfdad3c16e7a12a480ee83cd310", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
    ("uci/adult/adult.data", [_UCI + "adult/adult.data"],
     "5d7c39d7b8804f071cdd1f2a7c460872", "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d", 3974305),
    ("uci/adult/adult.test", [_UCI + "adult/adult.test"],
     "35238206dfdf7f1fe215bbb874adecdc", "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05", 2003153),
    ("uci/breast-cancer/breast-cancer.data", [_UCI + "breast-cancer/breast-cancer.data"],
     "d887db31e2b99e39c4b7fc79d2f36a3a", "ca7d3fa97b62ff967b6894ffbb3acaaf4a51062e0149e5950b3ad6f685970b65", 18654),
    ("uci/monk/monks-1.train", [_UCI + "monks-problems/monks-1.train"],
     "fc1fc3a673e00908325c67cf16283335", "d9c328b6f0e095ab10f7bc8468f1d2141f3d08be73e665c3bf0a62994c922606", 2947),
    ("uci/monk/monks-1.test", [_UCI + "monks-problems/monks-1.test"],
     "de4255acb72fb29be5125a7c874e28a0", "e501ada3b21d876ab86f3e1614747bd2edc443a685f229a25e480aa1dea629f6", 10260),
    ("uci/monk/monks-2.train", [_UCI + "monks-problems/monks-2.train"],
     "f109ee3f95805745af6cdff06d6fbc94", "7ebcc278005737caad0cd52e6aa31256a2c3174da8047faf4ac3a9d35edbdaa8", 4013),
    ("uci/monk/monks-2.test", [_UCI + "monks-problems/monks-2.test"],
     "106cb9049ba5ccd7969a0bd5ff19681d", "945650affde377c27f6218c8b17893e339ea831f4bee9f9d7123020699cfbf40", 10260),
    ("uci/monk/monks-3.train", [_UCI + "monks-problems/monks-3.train"],
     "613e44dbb8ffdf54d364bd91e4e74afd", "726f258f80be06af4bb2d8831789514a663f5813e47429211fe19dcd367966f8", 2886),
    ("uci/monk/monks-3.test", [_UCI + "monks-problems/monks-3.test"],
     "46815731e31c07f89422cf60de8738e7", "1d816ae7347afaf895050667adc3f382904c6ed2332d0a2d09353f5e6cb54612", 10260),
    # CIFAR-10 (python version): only the MD5 is published (cs.toronto.edu/~kriz/cifar.html).
    ("cifar-10-python.tar.gz", ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"],
     "c58f30108f718f92721af3b95e74349a", None, 170498071),
]
FILES: dict[str, RemoteFile] = {row[0]: _mk(*row) for row in _TABLE}

_IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# Which files each dataset family needs (paths relative to a data root).
DATASET_FILES: dict[str, tuple[str, ...]] = {
    "mnist": tuple("mnist/" + f for f in _IDX),
    "fashion_mnist": tuple("fashion-mnist/" + f for f in _IDX),
    "adult": ("uci/adult/adult.data", "uci/adult/adult.test"),
    "breast_cancer": ("uci/breast-cancer/breast-cancer.data",),
    "monk1": ("uci/monk/monks-1.train", "uci/monk/monks-1.test"),
    "monk2": ("uci/monk/monks-2.train", "uci/monk/monks-2.test"),
    "monk3": ("uci/monk/monks-3.train", "uci/monk/monks-3.test"),
    "cifar10": ("cifar-10-python.tar.gz",),
}


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/diffgates/data``, else ``~/.cache/diffgates/data``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "diffgates" / "data"


def data_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The roots searched, in order: ``data_dir``, ``$DIFFGATES_DATA``, the user cache."""
    roots = []
    if data_dir is not None and str(data_dir) != "":
        roots.append(Path(data_dir).expanduser())
    env = os.environ.get(DATA_ENV)
    if env:
        roots.append(Path(env).expanduser())
    roots.append(cache_dir())
    unique: list[Path] = []
    for r in roots:
        if r not in unique:
            unique.append(r)
    return unique


def download_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Candidate download targets, in order (``data_roots``); unwritable ones are skipped later."""
    return data_roots(data_dir)


def find_file(relpath: str, roots: Sequence[Path]) -> Path | None:
    """First existing ``root / relpath`` among ``roots`` (a regular file), else None."""
    for root in roots:
        p = root / relpath
        if p.is_file():
            return p
    return None


def _hashes(path: Path) -> tuple[str, str]:
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def _check(spec: RemoteFile, md5: str, sha: str, where: str, url: str = "") -> None:
    for algo, expected, got in (("md5", spec.md5, md5), ("sha256", spec.sha256, sha)):
        if expected is not None and expected != got:
            src = f" downloaded from {url}" if url else ""
            raise ChecksumMismatchError(
                f"checksum mismatch for {spec.path}{src} ({where}): {algo} expected {expected}, "
                f"got {got}. The file is corrupt or not the official one; it was not kept.",
                path=where, url=url, algorithm=algo, expected=expected, got=got)


def verify_file(path: str | os.PathLike, relpath: str) -> None:
    """Check a local file against the published checksums of ``relpath`` (a key of ``FILES``)."""
    spec = FILES[relpath]
    md5, sha = _hashes(Path(path))
    _check(spec, md5, sha, str(path))


def _urls(spec: RemoteFile) -> list[str]:
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return [mirror.rstrip("/") + "/" + spec.path]
    return list(spec.urls)


def download_file(spec: RemoteFile, root: Path) -> Path:
    """Download ``spec`` into ``root / spec.path`` (atomically, verified); returns the path.

    Raises ``ChecksumMismatchError`` if every URL served wrong bytes, ``OSError`` (e.g.
    ``urllib.error.URLError``) if none could be fetched; the target folder is left unchanged then.
    """
    dest = root / spec.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    mismatch: ChecksumMismatchError | None = None
    for url in _urls(spec):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:  # owns fd from here on, whatever fails below
                log.info("downloading %s -> %s", url, dest)
                md5, sha = hashlib.md5(), hashlib.sha256()
                req = urllib.request.Request(url, headers={"User-Agent": "diffgates-data/1 (urllib)"})
                with urllib.request.urlopen(req, timeout=_TIMEOUT_S) as resp:
                    while chunk := resp.read(_CHUNK):
                        md5.update(chunk)
                        sha.update(chunk)
                        out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            _check(spec, md5.hexdigest(), sha.hexdigest(), str(dest), url)
            os.replace(tmp, dest)  # atomic: readers see the old state or the verified file
            return dest
        except ChecksumMismatchError as exc:
            mismatch = exc
        except (OSError, ValueError) as exc:  # URLError/HTTPError/timeouts are OSErrors
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            if tmp.exists():
                tmp.unlink()
    if mismatch is not None:
        raise mismatch
    raise OSError("; ".join(errors))


def _mode_allows_write(path: Path) -> bool:
    """Write permission by the mode bits, also for root (who could write anyway): a folder
    marked read-only, like the shared data folder, is never written into."""
    try:
        st = path.stat()
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    euid = getattr(os, "geteuid", lambda: None)()
    if euid is None:  # Windows: no uid model; the probe file decides
        return True
    if euid == st.st_uid:
        return bool(st.st_mode & stat.S_IWUSR)
    if st.st_gid in (os.getegid(), *os.getgroups()):
        return bool(st.st_mode & stat.S_IWGRP)
    if euid == 0:
        return bool(st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return bool(st.st_mode & stat.S_IWOTH)


def _writable(root: Path, relpath: str) -> bool:
    """Whether the folder for ``root / relpath`` exists or can be created, and is writable."""
    folder = (root / relpath).parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not _mode_allows_write(existing):
        return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # A real probe file: os.access() says yes to root even on read-only mounts.
        fd, probe = tempfile.mkstemp(prefix=".diffgates-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError:
        return False
    return True


def first_writable_root(data_dir, relpath: str) -> Path | None:
    """The first of ``download_roots(data_dir)`` where ``relpath`` can be written (folders are
    created only in the root chosen), else None."""
    return next((r for r in download_roots(data_dir) if _writable(r, relpath)), None)


def not_found_error(dataset: str, missing: Sequence[str], data_dir, reason: str,
                    hint: str = "") -> DatasetNotFoundError:
    """The ``DatasetNotFoundError`` naming the missing files, folders to put them in and URLs."""
    roots = data_roots(data_dir)
    folders = sorted({str(Path(m).parent) for m in missing})
    lines = [f"dataset {dataset!r}: {len(missing)} file(s) missing and not downloaded ({reason})."]
    lines.append("Missing file(s), with official URL:")
    urls = []
    for m in missing:
        spec = FILES.get(m)
        u = ", ".join(spec.urls) if spec else "?"
        urls.extend(spec.urls if spec else [])
        lines.append(f"  {m}    <- {u}")
    where = " and ".join(f"'{f}/'" for f in folders if f != ".")
    where = f"under {where} inside" if where else "directly in"
    lines.append(f"Put them (same file names) {where} one of these data folders:")
    for r in roots:
        lines.append(f"  {r}")
    if hint:
        lines.append(hint)
    lines.append(f"e.g. {roots[0] / missing[0]}. Choose another data folder with --data-dir DIR "
                 f"(data_dir=DIR) or ${DATA_ENV}=DIR; ${MIRROR_ENV}=URL downloads from a mirror "
                 "with the same layout.")
    return DatasetNotFoundError("\n".join(lines), dataset=dataset, missing=missing,
                                searched=[str(r) for r in roots], urls=urls)


def ensure_files(dataset: str, relpaths: Sequence[str], data_dir=None, download: bool = True) -> dict[str, Path]:
    """Local paths of ``relpaths`` (keys of ``FILES``), downloading the missing ones if allowed.

    Raises ``DatasetNotFoundError`` when some cannot be found nor fetched (offline, no writable
    folder, or ``download=False``), ``ChecksumMismatchError`` when a download is corrupt.
    """
    roots = data_roots(data_dir)
    found: dict[str, Path] = {}
    missing: list[str] = []
    for rel in relpaths:
        p = find_file(rel, roots)
        if p is None:
            missing.append(rel)
        else:
            found[rel] = p
    if not missing:
        return found
    if not download:
        raise not_found_error(dataset, missing, data_dir, "download=False")
    for rel in missing:
        spec = FILES[rel]
        target = first_writable_root(data_dir, rel)
        if target is None:
            raise not_found_error(dataset, missing, data_dir, "no writable data folder to download into")
        try:
            found[rel] = download_file(spec, target)
        except ChecksumMismatchError:
            raise
        except (OSError, ValueError) as exc:
            reason = f"download failed: {exc}"
            raise not_found_error(dataset, [m for m in missing if m not in found], data_dir, reason) from exc
    return found

"""Exceptions raised by ``diffgates.data``.

* ``DatasetNotFoundError`` (a ``FileNotFoundError``): a dataset's files are missing and could not be
  downloaded; the message lists each missing file, the folders searched and the official URLs.
* ``ChecksumMismatchError``: a downloaded file's MD5/SHA-256 differs from the published value.
* ``DataFormatError`` (a ``ValueError``): a local file exists but is corrupt, truncated or not in
  the expected format (the message names the file and what was wrong).
* ``UnsafePickleError``: a CIFAR-10 batch file asked the restricted unpickler for something other
  than the numpy array constructors the official files use.
"""
from __future__ import annotations

import pickle
from collections.abc import Sequence


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing locally and could not be downloaded.

    Attributes: ``dataset`` (name), ``missing`` (paths relative to a data root), ``searched``
    (folders searched, in order), ``urls`` (official URLs of the missing files).
    """

    def __init__(self, message: str, *, dataset: str = "", missing: Sequence[str] = (),
                 searched: Sequence[str] = (), urls: Sequence[str] = ()):
        # FileNotFoundError(msg) alone keeps str(err) == msg (no errno formatting).
        super().__init__(message)
        self.dataset = dataset
        self.missing = list(missing)
        self.searched = list(searched)
        self.urls = list(urls)


class ChecksumMismatchError(RuntimeError):
    """A downloaded file does not have the published checksum (it is deleted, never kept)."""

    def __init__(self, message: str, *, path: str = "", url: str = "", algorithm: str = "",
                 expected: str = "", got: str = ""):
        super().__init__(message)
        self.path, self.url = path, url
        self.algorithm, self.expected, self.got = algorithm, expected, got


class DataFormatError(ValueError):
    """A local data file is corrupt, truncated or not in the expected format."""


class UnsafePickleError(pickle.UnpicklingError):
    """A CIFAR-10 batch pickle referenced a global outside the small allow-list."""

"""Shared pytest set-up: an isolated build cache per test run, the data folder, markers, a fake dataset.

* Every test run builds its native libraries into a fresh cache folder (``DIFFGATES_CACHE``), so a
  damaged or stale cache of the user's never decides a result, and runs stay independent.
* Markers (``-m`` selects): ``slow`` (seconds of work; the suite still runs them), ``gpu`` (needs
  a CUDA device: skipped without one), ``hw`` (needs a simulator or synthesis tool: iverilog,
  verilator, yosys or ABC; skipped where missing).
* Fixtures: ``shared_data`` (``../shared/data``, skipping when absent), ``fake_dataset`` (a small
  learnable synthetic ``diffgates.data.Dataset`` that the trainer loads for any name; tests/fake_data.py).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HW_TOOLS = ("iverilog", "verilator", "yosys", "berkeley-abc", "yosys-abc", "abc")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: takes seconds (the suite still runs it)")
    config.addinivalue_line("markers", "gpu: needs a CUDA device")
    config.addinivalue_line("markers", "hw: needs a hardware tool (iverilog, verilator, yosys or ABC)")


def pytest_sessionstart(session) -> None:
    # One fresh build cache per run, unless the caller chose one (CI and users may keep theirs).
    if "DIFFGATES_TEST_KEEP_CACHE" not in os.environ:
        cache = tempfile.mkdtemp(prefix="diffgates-test-cache-")
        session.config._diffgates_cache = cache
        os.environ["DIFFGATES_CACHE"] = cache


def pytest_sessionfinish(session, exitstatus) -> None:
    cache = getattr(session.config, "_diffgates_cache", None)
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)


def pytest_collection_modifyitems(config, items) -> None:
    import torch

    no_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None and not torch.cuda.is_available():  # the marker, not a param id
            item.add_marker(no_gpu)


@pytest.fixture()
def fake_dataset(monkeypatch):
    """The synthetic dataset of tests/fake_data.py, which the trainer then loads for any dataset name."""
    import fake_data
    from diffgates.train import trainer

    dataset = fake_data.make_fake()
    monkeypatch.setattr(trainer, "load_dataset_fn", lambda name, *args: fake_data.make_fake())
    return dataset


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data folder {SHARED_DATA} is not there")
    return SHARED_DATA


def have_tool(*names: str) -> bool:
    return any(shutil.which(n) for n in names)


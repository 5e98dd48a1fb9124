"""diffgates.train.threads: the default thread count leaves out cores other processes keep busy."""
import os

import pytest

from diffgates.train import threads


@pytest.fixture()
def machine(monkeypatch):
    """Set the usable cores and the load average the module sees."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    def set_machine(cores: int, load: float):
        monkeypatch.setattr(threads, "usable_cores", lambda: cores)
        monkeypatch.setattr(threads.os, "getloadavg", lambda: (load, load, load))
    return set_machine


@pytest.mark.parametrize("cores, load, ranks, expect", [
    (2, 0.0, 1, 2), (2, 0.3, 1, 2), (2, 1.02, 1, 1), (2, 5.0, 1, 1),  # never below 1
    (16, 3.6, 1, 12), (16, 0.0, 2, 8), (16, 4.0, 4, 3), (1, 0.0, 1, 1)])
def test_idle_cores_split_over_ranks(machine, cores, load, ranks, expect):
    machine(cores, load)
    n, why = threads.default_threads(ranks)
    assert n == expect and f"{cores} cores" in why and f"load {load:.2f}" in why


def test_omp_num_threads_wins(machine, monkeypatch):
    machine(2, 1.5)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.default_threads() == (2, "OMP_NUM_THREADS=2")
    monkeypatch.setenv("OMP_NUM_THREADS", "two")  # not a count: ignored
    assert threads.default_threads()[0] == 1


def test_without_a_load_average(machine, monkeypatch):
    machine(4, 0.0)

    def unavailable():
        raise OSError("no load average")
    monkeypatch.setattr(threads.os, "getloadavg", unavailable)
    assert threads.default_threads()[0] == 4


def test_usable_cores_is_positive():
    assert 1 <= threads.usable_cores() <= (os.cpu_count() or 1)

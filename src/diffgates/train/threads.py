"""How many CPU threads a training run uses when ``--threads`` is not given.

Why not simply every core: the fused CPU kernel splits each layer's forward and backward over
OpenMP threads that meet at a barrier several times per step. When another process keeps a core
busy, the thread sharing that core waits for its time slice at every barrier: the quickstart MNIST
run (784 -> 2000x4, batch 100) took 312 ms/step on 2 threads next to one busy process, against
about 10 ms/step on 1 thread (and 8.6 ms on 2 idle cores). So the default leaves out the cores that
other processes are using, judged by the 1-minute load average.

``default_threads(ranks_per_node)`` -> ``(threads, reason)``; the trainer prints the reason. A set
``OMP_NUM_THREADS`` is taken as it is. Example::

    threads, why = default_threads()     # e.g. (1, "2 cores, 1-minute load 1.03 from other processes")
"""
from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_threads(ranks_per_node: int = 1) -> tuple[int, str]:
    """Threads per process: the idle share of the usable cores, split over the node's ranks.

    Args:
        ranks_per_node: training processes on this machine (torchrun's local world size).

    Returns:
        (threads >= 1, a one-line reason for the log).
    """
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:  # the user's own choice wins
        return int(env), f"OMP_NUM_THREADS={env}"
    cores = usable_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        load = 0.0
    # Our own process has barely started, so the load is other processes'; a half-busy core counts as busy.
    busy = min(cores - 1, int(load + 0.5))
    threads = max(1, (cores - busy) // max(1, ranks_per_node))
    reason = f"{cores} cores, 1-minute load {load:.2f} from other processes"
    if ranks_per_node > 1:
        reason += f", {ranks_per_node} ranks on this machine"
    return threads, reason

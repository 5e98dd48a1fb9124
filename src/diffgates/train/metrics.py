"""Measuring and reporting a run: accuracy, ``results.json``, learning-curve PNG, machine info, progress bar.

* ``write_results``: ``results.json``, written atomically.
* ``plot_learning_curves``: ``learning_curves.png`` (written atomically) when matplotlib is importable
  (optional extra ``diffgates[plot]``); returns False otherwise so the caller prints one info line.
* ``machine_info``: CPU, threads, torch/python versions (and the GPU name on CUDA) for the record.
* ``Progress``: a small progress bar on stderr (step, rate, ETA, loss, accuracy); plain periodic lines
  instead when stderr is not a terminal or the bar is turned off (``--no-progress``).

Example::

    write_results("runs/x/results.json", results)
    plot_learning_curves(results, "runs/x/learning_curves.png")
"""
from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from typing import TextIO
from typing import Any

import torch

from .. import __version__
from .._atomic import atomic_write
from ..modelfiles import write_json_atomic

# Columns of one evaluation record, in the order they are printed.
EVAL_KEYS = ("step", "train_loss", "train_acc_train_mode", "val_acc_train_mode", "val_acc_eval_mode",
             "test_acc_train_mode", "test_acc_eval_mode", "elapsed_s")


def machine_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """CPU model, cores, torch threads, versions (and GPU name) of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__, "python_version": platform.python_version(),
            "platform": platform.platform(), "diffgates_version": __version__, "device": str(device)}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def write_results(path: str | os.PathLike, results: dict[str, Any]) -> None:
    """Write ``results.json`` atomically (a reader never sees a half-written file)."""
    write_json_atomic(path, results)


def format_evaluation(record: dict[str, Any]) -> str:
    """One line summarising an evaluation record (what the trainer prints)."""
    def pct(key: str) -> str:
        value = record.get(key)
        return "  n/a " if value is None else f"{100 * value:6.2f}"
    return (f"step {record['step']:>8}  loss {record['train_loss']:.4f}  train {pct('train_acc_train_mode')}%  "
            f"val relaxed/discrete {pct('val_acc_train_mode')}/{pct('val_acc_eval_mode')}%  "
            f"test relaxed/discrete {pct('test_acc_train_mode')}/{pct('test_acc_eval_mode')}%")


def plot_learning_curves(results: dict[str, Any], path: str | os.PathLike) -> bool:
    """Draw accuracies (val/test, relaxed/discrete) and train loss over steps into a PNG.

    Returns:
        True when written; False when matplotlib is not installed (nothing written).
    """
    try:
        import matplotlib
        matplotlib.use("Agg")  # why: no display on servers; must precede pyplot import
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    evals = results.get("evaluations") or []
    if not evals:
        return False
    steps = [e["step"] for e in evals]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for key, style in (("val_acc_eval_mode", "C0-"), ("val_acc_train_mode", "C0--"),
                       ("test_acc_eval_mode", "C1-"), ("test_acc_train_mode", "C1--"),
                       ("train_acc_train_mode", "C2:")):
        values = [e.get(key) for e in evals]
        if any(v is not None for v in values):
            ax_acc.plot(steps, [float("nan") if v is None else v for v in values], style, label=key)
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("accuracy")
    ax_acc.legend(fontsize=8)
    ax_acc.grid(alpha=0.3)
    ax_loss.plot(steps, [e["train_loss"] for e in evals], "C3-")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("train loss (mean since previous evaluation)")
    ax_loss.grid(alpha=0.3)
    title = results.get("config", {}).get("preset") or results.get("config", {}).get("dataset", "")
    fig.suptitle(f"diffgates train: {title}")
    fig.tight_layout()
    try:
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)  # why: a file object has no suffix to tell the format by
    finally:
        plt.close(fig)
    return True


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress of a training loop on ``stream``: a redrawn bar on a terminal, plain lines otherwise.

    Args:
        total: last step number.
        start: first step of this session (resumed runs start later; the rate counts this session only).
        stream: where to draw (stderr).
        bar: draw a bar when ``stream`` is a terminal; False prints plain lines instead (``--no-progress``).
        plain_interval_s: seconds between plain lines.
        redraw_interval_s: seconds between bar redraws (stats are fetched only when drawing).
    """

    def __init__(self, total: int, start: int = 0, stream: TextIO | None = None, bar: bool = True,
                 plain_interval_s: float = 30.0, redraw_interval_s: float = 0.2):
        self.total, self.start = total, start
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bar and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = redraw_interval_s if self.tty else plain_interval_s
        self.t0 = time.monotonic()
        self.last_draw = self.t0
        self.step = start
        self.drawn = False

    def _line(self, step: int, loss: float | None, acc: float | None) -> str:
        elapsed = time.monotonic() - self.t0
        rate = (step - self.start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        frac = step / self.total if self.total else 1.0
        stats = "" if loss is None else f" loss {loss:.4f} acc {100 * acc:.2f}%"
        eta_text = _duration(eta) if eta == eta else "?"
        if self.tty:
            width = 24
            filled = int(width * frac)
            return (f"\r[{'#' * filled}{'.' * (width - filled)}] {step}/{self.total} {100 * frac:3.0f}% "
                    f"{rate:.1f} it/s ETA {eta_text}{stats}\033[K")
        return f"step {step}/{self.total} ({100 * frac:.0f}%) {rate:.1f} it/s ETA {eta_text}{stats}\n"

    def update(self, step: int, stats: Callable[[], tuple[float | None, float | None]]) -> None:
        """Record that ``step`` steps are done; ``stats()`` -> (loss, accuracy) is called only when drawing."""
        self.step = step
        now = time.monotonic()
        if now - self.last_draw < self.interval:
            return
        self.last_draw = now
        self.stream.write(self._line(step, *stats()))
        self.stream.flush()
        self.drawn = self.tty

    def clear(self) -> None:
        """Erase the bar (before other output is printed)."""
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.drawn = False

    def close(self) -> None:
        self.clear()

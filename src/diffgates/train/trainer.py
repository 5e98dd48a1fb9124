"""The training loop behind ``diffgates train``: one process, or N processes under ``torchrun`` (DDP).

What a run does (see ``Trainer.run``):

1. seeds torch/numpy/random from ``--seed``, builds the model from the config
   (``model_spec``) and the family's optimizer (``make_optimizer``: Adam with ``-lr``, AdamW with
   ``--weight-decay``, unless the family says otherwise); with ``--resume`` restores
   ``checkpoint.safetensors``. The learning rate follows ``--lr-schedule`` (``lr_factor``), and the
   family's ``after_step`` runs after every step (latent-weight clipping of binary nets);
2. trains for ``-ni`` steps on the global batches of a deterministic data stream: epoch ``e`` is the
   permutation ``randperm(n_train)`` of a generator seeded from (seed, e), and global batch ``s``
   is rows ``[s*bs, (s+1)*bs)`` of the concatenated epochs (``batch_indices``). The position in the
   stream is therefore a function of the step alone, which is what makes ``--resume`` exact;
3. every ``-ef`` steps and at the end evaluates the relaxed network on training-style inputs
   ("train mode") and the discrete network on exact bits ("eval mode") on the validation split and
   the test set; saves ``model.*`` (last), ``best.*`` (best validation eval-mode accuracy),
   ``results.json`` and the learning-curve PNG; checkpoints every evaluation (or
   ``--checkpoint-every`` steps) and at least every ``--checkpoint-minutes``.

The run folder: rank 0 creates ``--out``, locks it for the whole run (``runlock``: a second writer
gets ``RunFolderBusy``), and only then checks that it holds no other run. A run that fails before
writing anything removes the folders it created. An error during training (a full disk while
saving, ...) stops the run with that error; the files already written stay complete (every write
replaces a file only once its new content is whole) and ``results.json`` records
``"status": "failed"`` and the error where it can still be written.

Distributed: under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1 in the environment) each rank
takes a contiguous 1/N shard of every global batch (``-bs`` stays the global batch and must be
divisible by N), gradients are averaged by DistributedDataParallel (gloo on CPU, nccl on CUDA),
evaluation is sharded over the ranks and summed, and only rank 0 writes files and prints. At the end
the ranks compare parameter checksums; ``results.json["distributed"]`` records them.

Determinism: a resumed run repeats the uninterrupted run exactly (same losses and accuracies)
on the same machine with the same ``--threads`` (float reductions in multi-threaded kernels may
otherwise differ in the last bits). Without ``--threads`` the count follows the machine's load
(``threads.default_threads``), so pin it where exact repeats matter.

Run: ``python -m diffgates train --dataset mnist -k 2000 -l 4 -t 10 -bs 100 -ni 3000 -ef 1000 --out runs/mnist``
"""
from __future__ import annotations

import errno
import gc
import hashlib
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..data.augment import random_shift
from ..families import accuracy_counts, build_model, get_family
from ..modelfiles import save_model
from . import checkpoint as ckpt_io
from .config import LR_SCHEDULES, TrainConfig, config_differences
from .metrics import Progress, format_evaluation, machine_info, plot_learning_curves, write_results
from .runlock import RunLock
from .threads import default_threads

RESULTS_FORMAT = "diffgates.results"
RUN_FILES = ("checkpoint.safetensors", "results.json", "model.safetensors", "best.safetensors")


class ConfigMismatchError(ValueError):
    """``--resume`` on a run directory whose saved config differs from the requested one."""


# ----------------------------------------------------------------------------------------------------
# Data order
# ----------------------------------------------------------------------------------------------------

def lr_factor(schedule: str, step: int, num_iterations: int) -> float:
    """The learning rate of step ``step`` (0-based) as a fraction of ``-lr``: a function of the step
    alone, so a resumed run follows the same schedule. 'constant': 1; 'cosine': (1 + cos(pi t/T)) / 2."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, num_iterations) / num_iterations))
    raise ValueError(f"lr_schedule={schedule!r} is not known; expected one of {LR_SCHEDULES}")


def _derived_seed(*parts: object) -> int:
    """A 63-bit generator seed that depends on ``parts`` only (stable across platforms/versions)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's data order."""
    return _derived_seed("diffgates-data-order", seed, epoch)


def _step_seed(seed: int, step: int) -> int:
    """The seed of one step's augmentation (resumable, the same on every rank)."""
    # why the trailing 0: the recorded augmented runs drew their shifts from this exact string
    return _derived_seed("diffgates-augment", seed, step, 0)


class DataOrder:
    """The deterministic stream of training rows: per-epoch permutations seeded from (seed, epoch).

    Args:
        n: number of training rows.
        seed: the run's seed.
    """

    def __init__(self, n: int, seed: int):
        if n < 1:
            raise ValueError(f"the training split is empty (n_train={n}); lower --val-fraction")
        self.n, self.seed = n, seed
        self._cache: dict[int, torch.Tensor] = {}

    def epoch_permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            if len(self._cache) >= 2:  # why: a batch touches at most two epochs; keep memory flat
                self._cache.pop(min(self._cache))
            gen = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
            self._cache[epoch] = torch.randperm(self.n, generator=gen)
        return self._cache[epoch]

    def batch_indices(self, step: int, batch_size: int) -> torch.Tensor:
        """Row indices of global batch ``step`` (0-based): stream positions [step*bs, (step+1)*bs)."""
        pos, end = step * batch_size, (step + 1) * batch_size
        parts = []
        while pos < end:
            epoch, offset = divmod(pos, self.n)
            take = min(end - pos, self.n - offset)
            parts.append(self.epoch_permutation(epoch)[offset:offset + take])
            pos += take
        return torch.cat(parts)


# ----------------------------------------------------------------------------------------------------
# Distributed setup
# ----------------------------------------------------------------------------------------------------

@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_main_process() -> bool:
    """True unless this process is a non-zero rank of a torchrun job (usable before init)."""
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed(device: str) -> DistInfo:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={world} but {var} is not set: launch with "
                               f"`torchrun --nproc_per_node N -m diffgates train ...`")
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl" and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)  # why: NCCL binds each rank to its current device at init
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", world)), backend)


def check_device(name: str) -> torch.device:
    """``name`` as a torch device that exists here; ValueError naming it otherwise."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a torch device; expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"--device {name!r}: expected cpu, cuda or cuda:N")
    return device


def _resolve_device(name: str, info: DistInfo) -> torch.device:
    device = check_device(name)
    if device.type == "cuda" and info.enabled:
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return device


# ----------------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------------

def _load_dataset_default(name: str, data_dir: str | None, val_fraction: float, split_seed: int, download: bool):
    from ..data import load_dataset
    return load_dataset(name, data_dir=data_dir, download=download, val_fraction=val_fraction, split_seed=split_seed)


# Tests replace this to train on a synthetic dataset without touching diffgates.data.
load_dataset_fn: Callable[..., Any] = _load_dataset_default


def _param_checksum(model: torch.nn.Module) -> float:
    """Order-sensitive float64 checksum of all parameters (equal models give equal sums)."""
    total = 0.0
    for i, p in enumerate(model.parameters()):
        flat = p.detach().double().flatten().cpu()
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64).remainder_(997).add_(1)
        total += (i + 1) * float((flat * weights).sum())
    return total


class Trainer:
    """One training run writing into ``out_dir`` (see the module docstring).

    Args:
        config: the resolved TrainConfig (validated here).
        out_dir: run directory (created).
        data_dir: where ``diffgates.data`` looks for files first.
        dataset: an already loaded dataset object (``diffgates.data.Dataset`` API) instead of loading one.
        resume: continue from ``out_dir/checkpoint.safetensors`` (fresh start when there is none).
        log: prints a line (rank 0 only); default ``print``.
    """

    def __init__(self, config: TrainConfig, out_dir: str | os.PathLike, *, data_dir: str | None = None,
                 dataset: Any = None, resume: bool = False, log: Callable[[str], None] | None = None):
        self.config = config.validate()
        self.family = get_family(self.config.architecture)
        self.out_dir = Path(out_dir)
        self.data_dir = data_dir
        self.dataset = dataset
        self.resume = resume
        self._print = log or (lambda text: print(text, flush=True))
        self.dist = DistInfo()
        self.progress: Progress | None = None
        self._stop_signal: int | None = None
        self._lock: RunLock | None = None
        self._created_dirs: list[Path] = []  # folders this run made for --out, deepest first

    # -- helpers ---------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        if self.dist.is_main:
            if self.progress is not None:
                self.progress.clear()
            self._print(text)

    def _barrier(self) -> None:
        if self.dist.enabled:
            torch.distributed.barrier()

    def _all_reduce(self, values: list[float]) -> list[float]:
        if not self.dist.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.comm_device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def _load_data(self) -> Any:
        cfg = self.config
        if self.dataset is not None:
            return self.dataset
        # Rank 0 loads (and downloads) first so that N ranks never download the same files at once.
        if not self.dist.is_main:
            self._barrier()
        ds = load_dataset_fn(cfg.dataset, self.data_dir, cfg.val_fraction, cfg.split_seed, self.dist.is_main)
        if self.dist.is_main:
            self._barrier()
        return ds

    def _prepare_out_dir(self) -> None:
        """Create ``--out`` (remembering what this run made), lock it, then check and clean it (rank 0)."""
        chain = [self.out_dir, *self.out_dir.parents]
        missing = list(takewhile(lambda p: not p.exists(), chain))
        if len(missing) < len(chain) and not chain[len(missing)].is_dir():  # --out is, or is under, a file
            raise NotADirectoryError(errno.ENOTDIR, f"a file, not a folder (--out {self.out_dir} must be a "
                                                    f"folder or a new path)", str(chain[len(missing)]))
        for path in reversed(missing):
            try:
                path.mkdir()
                self._created_dirs.insert(0, path)
            except FileExistsError:
                pass  # another process made it meanwhile: not ours to remove
        # The lock comes first: the check below and the whole run are one critical section.
        self._lock = RunLock(self.out_dir).acquire()
        self._check_run_dir()
        self._remove_stale_temp_files()

    def _release_out_dir(self, failed: bool) -> None:
        """Unlock ``--out``; after a failure also remove the folders this run created, if still empty."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if failed:
            for path in self._created_dirs:  # rmdir removes empty folders only: what holds a file stays
                try:
                    path.rmdir()
                except OSError:
                    break
        self._created_dirs = []

    def _check_run_dir(self) -> None:
        existing = [name for name in RUN_FILES if (self.out_dir / name).exists()]
        if existing and not self.resume:
            raise FileExistsError(f"--out {self.out_dir} already holds a run ({', '.join(existing)}); pass --resume "
                                  f"to continue it, or choose another --out folder")

    def _remove_stale_temp_files(self) -> None:
        """Delete half-written temp files a killed run left behind (ours only: ``_atomic.is_temp_file``)."""
        from .._atomic import is_temp_file

        for path in self.out_dir.iterdir():
            if path.is_file() and is_temp_file(path.name):
                path.unlink(missing_ok=True)

    def _spec(self, ds: Any) -> dict[str, Any]:
        return self.family.spec_from_config(self.config, ds)

    def _install_signal_handlers(self) -> dict[int, Any]:
        """SIGINT/SIGTERM ask the loop to stop after the current step and checkpoint (a second SIGINT aborts)."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}

        def handler(signum, frame):
            if self._stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_signal = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        return previous

    # -- the run -----------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Train (or continue) the run; returns the final results dict (also in ``out_dir/results.json``).

        ``results["status"]`` is ``"finished"``, or ``"interrupted"`` after SIGINT/SIGTERM (a checkpoint
        of the last completed step was written; ``--resume`` continues it). An error raises (after
        ``results.json`` says ``"failed"``, when it fails during training); ``--resume`` continues
        from the last checkpoint.

        Raises:
            RunFolderBusy: another process is writing into ``out_dir``.
        """
        t_setup = time.monotonic()
        cfg = self.config
        threads_before = torch.get_num_threads()
        self.dist = init_distributed(cfg.device)
        finished = False
        try:
            results = self._run(t_setup)
            finished = True
            return results
        finally:
            torch.set_num_threads(threads_before)  # why: --threads must not leak into the caller's process
            self._release_out_dir(failed=not finished)
            if self.dist.enabled and torch.distributed.is_initialized():
                self._close_process_group(wait_for_peers=finished)

    def _close_process_group(self, wait_for_peers: bool) -> None:
        """Release the DDP wrapper, then destroy the process group (after a run that finished on this
        rank, together with the other ranks; after an error at once, so a failing rank never waits).

        why: a DDP reducer that outlives its process group is destroyed during interpreter shutdown,
        where Gloo's worker threads abort the process ("terminate called without an active exception").
        """
        if getattr(self, "train_model", None) is not None:
            self.train_model = self.model
            gc.collect()
        if wait_for_peers:
            try:
                torch.distributed.barrier()  # no rank tears its connections down while another still uses them
            except RuntimeError:
                pass  # a peer failed meanwhile: destroy what is left
        torch.distributed.destroy_process_group()

    def _run(self, t_setup: float) -> dict[str, Any]:
        cfg, dist = self.config, self.dist
        device = _resolve_device(cfg.device, dist)
        self.device = device
        self.comm_device = device if dist.backend == "nccl" else torch.device("cpu")
        threads, self.threads_reason = cfg.threads, "--threads"
        if threads is None and device.type == "cpu":
            # why: threads on a core another process (or rank) keeps busy stall every kernel barrier
            threads, why = default_threads(dist.local_world_size if dist.enabled else 1)
            self.threads_reason = f"auto: {why}; --threads N to choose"
        if threads is not None:
            torch.set_num_threads(threads)
        if cfg.batch_size % dist.world_size:
            raise ValueError(f"-bs {cfg.batch_size} is the global batch and must be divisible by the "
                             f"{dist.world_size} processes")
        if dist.is_main:
            self._prepare_out_dir()
        self._barrier()
        checkpoint = ckpt_io.load_training_checkpoint(self.out_dir) if self.resume else None
        if checkpoint is not None:
            self._check_resume_config(checkpoint)
        elif self.resume:
            self.log(f"--resume: no checkpoint in {self.out_dir} yet; starting from step 0")

        ds = self._load_data()
        if cfg.augment_shift and len(ds.raw_shape) < 2:
            raise ValueError(f"--augment-shift {cfg.augment_shift} translates images; dataset {ds.name!r} has raw "
                             f"rows of shape {tuple(ds.raw_shape)}, not images")
        spec = self._spec(ds)
        self.spec, self.ds = spec, ds
        # The raw training rows live on the training device (a no-op on CPU): batches never cross PCIe.
        self.x_train, self.y_train = ds.x_train.to(device), ds.y_train.to(device)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        random.seed(cfg.seed)
        model = build_model(spec, device=device, implementation=cfg.implementation)
        optimizer = self.family.make_optimizer(model, cfg)
        state = self._fresh_state()
        start = 0
        if checkpoint is not None:
            ckpt_io.restore_training_checkpoint(checkpoint, model, optimizer, self.out_dir / "checkpoint.safetensors")
            state, start = checkpoint.state, checkpoint.step
            state["sessions"].append({"start_step": start})
            self.log(f"resumed {self.out_dir} at step {start} (of {cfg.num_iterations})")
            self._warn_stale_best(state)
        for group in optimizer.param_groups:  # the schedule scales each group's own starting lr
            group.setdefault("initial_lr", group["lr"])
        train_model = model
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel
            # Buffers (the fixed connections) never change: broadcast once at construction, not every step.
            train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                  broadcast_buffers=False)
        self.model, self.train_model, self.optimizer = model, train_model, optimizer
        # Steps per epoch, rounded down (the data stream runs on across epoch boundaries): after_step's epoch clock.
        self.steps_per_epoch = max(1, len(ds.y_train) // cfg.batch_size)
        state["setup_s"] = state.get("setup_s", 0.0) + (time.monotonic() - t_setup)
        self.state = state
        self.log(f"model: {self._describe_model()}; data: {len(ds.y_train)} train / {len(ds.y_val)} val / "
                 f"{len(ds.y_test)} test rows; device {device}, {torch.get_num_threads()} "
                 f"thread{'s' if torch.get_num_threads() != 1 else ''} ({self.threads_reason})"
                 + (f", {dist.world_size} processes ({dist.backend})" if dist.enabled else ""))
        return self._loop(start)

    def _fresh_state(self) -> dict[str, Any]:
        return {"evaluations": [], "best": None, "running": [0.0, 0.0, 0.0], "elapsed_s": 0.0, "eval_s": 0.0,
                "io_s": 0.0, "setup_s": 0.0, "sessions": [{"start_step": 0}], "status": "running"}

    def _check_resume_config(self, checkpoint: ckpt_io.TrainingCheckpoint) -> None:
        saved = ckpt_io.saved_config(self.out_dir, checkpoint.config)
        diffs = config_differences(saved, self.config)
        if diffs:
            lines = "; ".join(f"{k}: saved {a!r}, requested {b!r}" for k, a, b in
                              ((k, *v) for k, v in diffs.items()))
            raise ConfigMismatchError(f"--resume: {self.out_dir} was trained with a different config. Differing keys: "
                                      f"{lines}. Resume with the original flags (or only `--resume --out "
                                      f"{self.out_dir}`), or start a new run in another --out folder")
        if checkpoint.step > self.config.num_iterations:
            raise ConfigMismatchError(f"--resume: the checkpoint is at step {checkpoint.step}, beyond -ni "
                                      f"{self.config.num_iterations}; pass -ni >= {checkpoint.step}")

    def _warn_stale_best(self, state: dict[str, Any]) -> None:
        best_json = self.out_dir / "best.json"
        if state.get("best") is None or not best_json.exists():
            return
        try:
            step = json.loads(best_json.read_text()).get("step")
        except (OSError, ValueError):
            step = None
        if step != state["best"]["step"]:
            self.log(f"warning: best.safetensors is from step {step} but the checkpoint's best is step "
                     f"{state['best']['step']} (the run was killed while saving); it is replaced at the next improvement")

    def _describe_model(self) -> str:
        return self.family.describe(self.spec, self.model)

    def _train_step(self, step: int, order: DataOrder, running: torch.Tensor) -> None:
        cfg, ds, dist = self.config, self.ds, self.dist
        idx = order.batch_indices(step, cfg.batch_size)
        local = idx.view(dist.world_size, -1)[dist.rank].to(self.device)  # contiguous shard of the global batch
        if cfg.augment_shift:  # why the global batch: each row's shift must not depend on the number of ranks
            x_raw = self._shifted(self.x_train[idx.to(self.device)], step).view(dist.world_size, -1,
                                                                                 *self.x_train.shape[1:])[dist.rank]
        else:
            x_raw = self.x_train[local]
        x = ds.encode(x_raw, self.family.binary_inputs)
        y = self.y_train[local]
        logits = self.train_model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        factor = lr_factor(cfg.lr_schedule, step, cfg.num_iterations)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        self.optimizer.step()
        self.family.after_step(self.model, self.optimizer, cfg, step + 1, self.steps_per_epoch)
        with torch.no_grad():
            stats = torch.stack([loss.detach().double() * len(y), (logits.argmax(-1) == y).sum().double(),
                                 torch.tensor(float(len(y)), dtype=torch.float64, device=loss.device)])
            if dist.enabled:
                stats = stats.to(self.comm_device)
                torch.distributed.all_reduce(stats)  # why: every rank (and rank 0's checkpoints) holds global sums
            running += stats.to(running.device)

    def _shifted(self, x_raw: torch.Tensor, step: int) -> torch.Tensor:
        """The raw training rows of ``step`` randomly translated (--augment-shift); seeded by (seed, step)."""
        raw_shape = tuple(self.ds.raw_shape)
        g = torch.Generator().manual_seed(_step_seed(self.config.seed, step))
        images = x_raw.reshape(len(x_raw), *raw_shape)
        return random_shift(images, self.config.augment_shift, g).reshape(x_raw.shape)

    def _loop(self, start: int) -> dict[str, Any]:
        cfg, dist, state = self.config, self.dist, self.state
        order = DataOrder(len(self.ds.y_train), cfg.seed)
        running = torch.tensor(state["running"], dtype=torch.float64, device=self.device)
        session_t0 = time.monotonic()
        elapsed0 = state["elapsed_s"]
        last_ckpt = time.monotonic()
        if dist.is_main:
            self.progress = Progress(cfg.num_iterations, start, bar=cfg.progress)
        previous_handlers = self._install_signal_handlers()

        def elapsed() -> float:
            return elapsed0 + (time.monotonic() - session_t0)

        def stats() -> tuple[float | None, float | None]:
            loss_sum, correct, count = running.tolist()
            return (loss_sum / count, correct / count) if count else (None, None)

        step = start
        try:
            if start >= cfg.num_iterations and state.get("status") == "finished":
                self.log(f"{self.out_dir}: the run already finished at step {start}; nothing to train")
            while step < cfg.num_iterations:
                self.model.train()
                self._train_step(step, order, running)
                step += 1
                if self.progress is not None:
                    self.progress.update(step, stats)
                evaluated = step % cfg.eval_freq == 0 or step == cfg.num_iterations
                if evaluated:
                    self._evaluate(step, running, elapsed)
                    running.zero_()
                due = (cfg.checkpoint_every is None and evaluated) or \
                      (cfg.checkpoint_every is not None and step % cfg.checkpoint_every == 0) or \
                      time.monotonic() - last_ckpt >= 60 * cfg.checkpoint_minutes or step == cfg.num_iterations
                if self._stop_signal is not None:
                    break
                if due and dist.is_main:
                    self._checkpoint(step, running, elapsed, "running" if step < cfg.num_iterations else "finished")
                    last_ckpt = time.monotonic()
            if self._stop_signal is not None and step < cfg.num_iterations:
                name = signal.Signals(self._stop_signal).name
                self.log(f"{name}: stopping at step {step}; writing a checkpoint (continue with --resume)")
                if dist.is_main:
                    self._checkpoint(step, running, elapsed, "interrupted")
                return self._write_results(step, elapsed(), "interrupted")
            if self.progress is not None:
                self.progress.close()
            if self._stop_signal is not None and dist.is_main:  # stopped on the very last step: finish normally
                self._checkpoint(step, running, elapsed, "finished")
            state["status"] = "finished"
            results = self._write_results(step, elapsed(), "finished", final=True)
            if dist.is_main:
                self.log(self._final_summary(results))
            return results
        except (Exception, KeyboardInterrupt) as exc:  # KeyboardInterrupt: a second Ctrl-C aborts at once
            if dist.is_main:
                self._record_failure(step, elapsed(), exc)
            raise
        finally:
            if self.progress is not None:
                self.progress.close()
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)

    # -- evaluation, saving ------------------------------------------------------------------------

    def _accuracy(self, x: torch.Tensor, y: torch.Tensor, *, deployed: bool) -> float | None:
        """Accuracy on rows x/y: as deployed (the family's rule) or relaxed (train mode, training inputs)."""
        kw = dict(batch_size=self.config.eval_batch_size, device=self.device, shard=(self.dist.rank, self.dist.world_size))
        if deployed:
            correct, total = self.family.deployed_accuracy(self.model, x, y, self.ds.encode, **kw)
        else:
            correct, total = accuracy_counts(self.model, x, y, self.ds.encode, binary=self.family.binary_inputs,
                                             train_mode=True, **kw)
        correct, total = self._all_reduce([float(correct), float(total)])
        return correct / total if total else None

    def _calibration_batches(self, rows: int) -> Iterator[torch.Tensor]:
        """The first ``rows`` training rows of a fixed seeded order (all of them if fewer), encoded as the
        family trains (not augmented), in near-equal batches of at most ``eval_batch_size`` and at least 2 rows."""
        g = torch.Generator().manual_seed(_derived_seed("diffgates-calibration-rows", self.config.seed))
        chosen = torch.randperm(len(self.y_train), generator=g)[:rows].to(self.device)
        n_batches = min(math.ceil(len(chosen) / self.config.eval_batch_size), len(chosen) // 2)
        for idx in torch.tensor_split(chosen, max(1, n_batches)):
            yield self.ds.encode(self.x_train[idx], self.family.binary_inputs)

    def _evaluate(self, step: int, running: torch.Tensor, elapsed: Callable[[], float]) -> None:
        t0 = time.monotonic()
        ds, state = self.ds, self.state
        # why before evaluating: what the family changes here (e.g. BN statistics) is what is measured and saved
        self.family.before_evaluation(self.model, self.config, self._calibration_batches)
        loss_sum, correct, count = running.tolist()
        record: dict[str, Any] = {"step": step, "train_loss": loss_sum / count,
                                  "train_acc_train_mode": correct / count}
        for split, x, y in (("val", ds.x_val, ds.y_val), ("test", ds.x_test, ds.y_test)):
            record[f"{split}_acc_train_mode"] = self._accuracy(x, y, deployed=False)
            # "Eval mode" is the model as deployed: for a logic net the discrete circuit on exact bits.
            record[f"{split}_acc_eval_mode"] = self._accuracy(x, y, deployed=True)
        state["eval_s"] += time.monotonic() - t0
        record["elapsed_s"] = elapsed()
        state["evaluations"].append(record)
        best = state["best"]
        key = record["val_acc_eval_mode"]
        # Best = highest discrete validation accuracy (earliest wins ties); without a validation split, the latest.
        improved = best is None or key is None or (best["val_acc_eval_mode"] is not None and key > best["val_acc_eval_mode"])
        if improved:
            state["best"] = dict(record)
        self.log(format_evaluation(record) + ("  (best)" if improved and key is not None else ""))
        if self.dist.is_main:
            t_io = time.monotonic()
            common = dict(spec=self.spec, config=self.config.to_dict(),
                          input_layout=getattr(ds, "input_layout", None))
            if improved:
                save_model(self.model, self.out_dir / "best", step=step, metrics=record, **common)
            save_model(self.model, self.out_dir / "model", step=step, metrics=record, **common)
            state["io_s"] += time.monotonic() - t_io
            self._write_results(step, elapsed(), "running")

    def _checkpoint(self, step: int, running: torch.Tensor, elapsed: Callable[[], float], status: str) -> None:
        t0 = time.monotonic()
        state = self.state
        state["running"] = running.tolist()
        state["status"] = status
        state["elapsed_s"] = elapsed()
        ckpt_io.save_training_checkpoint(self.out_dir, self.model, self.optimizer, step=step,
                                         config=self.config.to_dict(), state=state)
        state["io_s"] += time.monotonic() - t0

    def _record_failure(self, step: int, elapsed_s: float, exc: BaseException) -> None:
        """Mark results.json ``failed`` (or ``interrupted``) with the error; the caller re-raises ``exc``."""
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        try:
            self._write_results(step, elapsed_s, status, error=f"{type(exc).__name__}: {exc}")
        except Exception:  # noqa: BLE001 - e.g. the disk is still full: results.json keeps its last complete content
            pass  # why: the original error is the one to report, not this one

    def _write_results(self, step: int, elapsed_s: float, status: str, final: bool = False,
                       error: str | None = None) -> dict[str, Any]:
        """Assemble results.json (rank 0 writes it; every rank returns it)."""
        cfg, state, ds, spec = self.config, self.state, self.ds, self.spec
        evals = state["evaluations"]
        best = state["best"]
        train_s = max(elapsed_s - state["eval_s"] - state["io_s"], 0.0)
        results: dict[str, Any] = {
            "format": RESULTS_FORMAT, "format_version": 1, "diffgates_version": __version__, "status": status,
            "step": step, "config": cfg.to_dict(),
            "dataset": {"name": cfg.dataset, "n_inputs": int(ds.n_inputs), "n_classes": int(ds.n_classes),
                        "n_train": len(ds.y_train), "n_val": len(ds.y_val), "n_test": len(ds.y_test),
                        "class_names": list(getattr(ds, "class_names", []) or [])},
            "model": self.family.size(spec, self.model),
            "evaluations": evals,
            "best": best,
            "best_selection": "val_acc_eval_mode" if len(ds.y_val) else "latest evaluation (no validation split)",
            "test_acc_eval_mode": evals[-1]["test_acc_eval_mode"] if evals else None,
            "test_acc_train_mode": evals[-1]["test_acc_train_mode"] if evals else None,
            "best_test_acc_eval_mode": best["test_acc_eval_mode"] if best else None,
            "best_step": best["step"] if best else None,
            "timings": {"total_wall_s": elapsed_s + state.get("setup_s", 0.0), "setup_s": state.get("setup_s", 0.0),
                        "loop_s": elapsed_s, "train_s": train_s, "eval_s": state["eval_s"], "io_s": state["io_s"],
                        "s_per_step": train_s / step if step else None,
                        "sessions": state["sessions"]},
            "machine": machine_info(self.device),
        }
        if error is not None:
            results["error"] = error
        if self.dist.enabled:
            results["distributed"] = {"world_size": self.dist.world_size, "backend": self.dist.backend,
                                      "batch": f"global -bs {cfg.batch_size} = {self.dist.world_size} shards of "
                                               f"{cfg.batch_size // self.dist.world_size}"}
            if final:
                mine = torch.tensor([_param_checksum(self.model)], dtype=torch.float64, device=self.comm_device)
                gathered = [torch.zeros_like(mine) for _ in range(self.dist.world_size)]
                torch.distributed.all_gather(gathered, mine)
                sums = [float(t.item()) for t in gathered]
                results["distributed"].update({"param_checksums": sums,
                                               "params_identical_across_ranks": len(set(sums)) == 1})
        if self.dist.is_main:
            write_results(self.out_dir / "results.json", results)
            if final or status == "running":
                if not plot_learning_curves(results, self.out_dir / "learning_curves.png") and final:
                    self.log("info: matplotlib is not installed; skipping learning_curves.png "
                             "(pip install 'diffgates[plot]')")
        return results

    def _final_summary(self, results: dict[str, Any]) -> str:
        t = results["timings"]
        best = results["best"] or {}
        # Without a validation split "best" is just the last evaluation: not worth a second number.
        by_validation = (f", {100 * (results['best_test_acc_eval_mode'] or 0):.2f}% (best by validation, "
                         f"step {best.get('step')})" if results["dataset"]["n_val"] else "")
        return (f"done: {results['step']} steps in {t['total_wall_s']:.1f} s "
                f"({1000 * (t['s_per_step'] or 0):.2f} ms/step training); "
                f"discrete test accuracy {100 * (results['test_acc_eval_mode'] or 0):.2f}% (last)"
                f"{by_validation}; files in {self.out_dir}")


def train(config: TrainConfig, out_dir: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
    """Run ``Trainer(config, out_dir, **kwargs)``; returns the results dict (see ``Trainer``).

    Example::

        from diffgates.train import TrainConfig, train
        results = train(TrainConfig(dataset="monk1", num_neurons=48, num_layers=5, num_iterations=2000),
                        "runs/monk1")
        results["test_acc_eval_mode"]
    """
    return Trainer(config, out_dir, **kwargs).run()

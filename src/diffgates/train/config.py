"""TrainConfig: the flat, commented set of every knob of a training run (one dataclass, JSON-able).

Field names follow the original ``difflogic`` experiment flags (``-bs`` -> ``batch_size``, ``-t`` ->
``tau``, ``-k`` -> ``num_neurons``, ``-l`` -> ``num_layers``, ...). Values resolve in three layers:
these defaults < a named preset (``diffgates.train.presets``) < flags given on the command line.
The full resolved config is printed at start and stored in every checkpoint, results file and
saved model.

Fields in ``RUNTIME_KEYS`` say *how* a run executes (device, threads, kernel, checkpoint cadence,
progress display), not *what* it computes. ``RESUMABLE_CHANGES`` (those, plus ``num_iterations`` and
``eval_freq``) is the one list of fields ``--resume`` may change; any other field fixes the model or
the data stream, and a different value on resume is an error naming it.

Example::

    cfg = TrainConfig(dataset="mnist", num_neurons=2000, num_layers=4, tau=10, batch_size=100)
    cfg.validate()
    cfg.to_dict()  # JSON-able
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from ..families import get_family
from ..kernels import parametrizations as param

CONNECTIONS = ("random", "unique")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    # --- data -------------------------------------------------------------------------------------
    dataset: str | None = None          # --dataset: a name of diffgates.data.DATASET_NAMES
    val_fraction: float = 0.1           # --val-fraction: share of the training set held out for validation
    split_seed: int = 0                 # seed of the train/validation split (independent of --seed)

    # --- model (the original's flags) ---------------------------------------------------------------
    architecture: str = "logic"         # the model family (diffgates.families): "logic", "mlp", ...
    num_neurons: int | None = None      # -k: width of every layer (logic gates, or MLP hidden units)
    num_layers: int | None = None       # -l: number of layers (logic layers, or MLP hidden layers)
    tau: float = 10.0                   # -t: GroupSum temperature (class score = block sum / tau)
    connections: str = "unique"         # --connections: "unique" (published experiments) or "random"
    grad_factor: float = 1.0            # --grad-factor: gradient multiplier into every logic layer (~2 for deep nets)
    parametrization: str = "softmax16"  # --parametrization: logic gate parameters: softmax16 (original), iwp, walsh
    init: str | None = None             # --init: gaussian or residual (None: the parametrization's default)
    residual_logit: float | None = None  # --residual-logit: pass-through logit of the residual init (None: default)
    sampling: str = "soft"              # --sampling: soft, hard (straight-through), gumbel_soft, gumbel_hard
    gumbel_tau: float = 1.0             # --gumbel-tau: temperature of the Gumbel samplings
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # the family's own options (--NAME)

    # --- optimisation -------------------------------------------------------------------------------
    batch_size: int = 128               # -bs: global batch (split across DDP ranks, so results do not depend on N)
    learning_rate: float = 0.01         # -lr: Adam learning rate (0.01 for logic nets, as published)
    weight_decay: float = 0.0           # --weight-decay: > 0 trains with AdamW (decoupled decay), as the CIFAR conv nets
    lr_schedule: str = "constant"       # --lr-schedule: constant (as published for logic nets) or cosine (to 0 at -ni)
    augment_shift: int = 0              # --augment-shift: translate each training image by up to this many pixels
    num_iterations: int = 100_000       # -ni: optimizer steps
    eval_freq: int = 2_000              # -ef: evaluate (val + test, relaxed + discrete) every this many steps
    seed: int = 0                       # --seed: model init (connections, logits) and data order

    # --- runtime (may differ on --resume; does not change what is computed) -------------------------
    device: str = "cpu"                 # --device: cpu, cuda, cuda:1, ... (under torchrun: the local rank's GPU)
    threads: int | None = None          # --threads: torch intra-op threads (None: torch's default)
    implementation: str | None = None   # --implementation: LogicLayer kernel (None: fused for the device)
    checkpoint_every: int | None = None  # --checkpoint-every: steps between resumable checkpoints (None: every eval)
    checkpoint_minutes: float = 5.0     # --checkpoint-minutes: also checkpoint when this much time passed since the last
    eval_batch_size: int = 2_000        # samples per forward pass during evaluation
    progress: bool = True               # progress bar on stderr (plain periodic lines when not a TTY)
    preset: str | None = None           # --preset: the preset the run started from (for the record only)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-able dict (field order)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> "TrainConfig":
        """Inverse of ``to_dict``; unknown keys are an error naming them (a foreign or newer file)."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object of TrainConfig fields, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown TrainConfig keys {unknown}; expected keys among {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first impossible value; returns self for chaining."""
        def positive_int(name: str, value: Any) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")

        if not self.dataset:
            raise ValueError("no dataset: pass --dataset NAME or --preset NAME "
                             "(see `diffgates train --list-presets`)")
        family = get_family(self.architecture)  # ValueError naming the known families
        if not isinstance(self.model_options, dict):
            raise ValueError(f"model_options must be a mapping of option names to values, got "
                             f"{self.model_options!r}")
        family.check_options(self.model_options, where=f"--architecture {self.architecture} options")
        if self.num_neurons is None or self.num_layers is None:
            raise ValueError(f"the model size is not set: pass -k/--num-neurons and -l/--num-layers (got "
                             f"num_neurons={self.num_neurons!r}, num_layers={self.num_layers!r}) or a --preset")
        positive_int("num_neurons (-k)", self.num_neurons)
        positive_int("num_layers (-l)", self.num_layers)
        positive_int("batch_size (-bs)", self.batch_size)
        positive_int("num_iterations (-ni)", self.num_iterations)
        positive_int("eval_freq (-ef)", self.eval_freq)
        positive_int("eval_batch_size", self.eval_batch_size)
        if self.checkpoint_every is not None:
            positive_int("checkpoint_every", self.checkpoint_every)
        if self.threads is not None:
            positive_int("threads", self.threads)
        for name in ("tau", "learning_rate", "grad_factor", "checkpoint_minutes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {name}={value!r}")
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) or not (
                math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got weight_decay={self.weight_decay!r}")
        if not isinstance(self.val_fraction, (int, float)) or not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got val_fraction={self.val_fraction!r}")
        param.check_parametrization(self.parametrization)
        param.check_sampling(self.sampling, self.gumbel_tau)
        if self.init is not None and self.init not in param.INITS:
            raise ValueError(f"init={self.init!r} is not known; expected one of {param.INITS} (or unset for the "
                             f"parametrization's default)")
        if self.residual_logit is not None and (isinstance(self.residual_logit, bool) or not isinstance(
                self.residual_logit, (int, float)) or not math.isfinite(self.residual_logit)):
            raise ValueError(f"residual_logit must be a finite number, got residual_logit={self.residual_logit!r}")
        if isinstance(self.augment_shift, bool) or not isinstance(self.augment_shift, int) or self.augment_shift < 0:
            raise ValueError(f"augment_shift must be an integer >= 0 (pixels), got augment_shift={self.augment_shift!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r} is not known; expected one of {LR_SCHEDULES}")
        if self.connections not in CONNECTIONS:
            raise ValueError(f"connections={self.connections!r} is not known; expected one of {CONNECTIONS}")
        return self


# Keys that say how a run executes, not what it computes: they may change on --resume.
RUNTIME_KEYS = frozenset({"device", "threads", "implementation", "checkpoint_every", "checkpoint_minutes",
                          "eval_batch_size", "progress", "preset"})
# The fields --resume may change. why: none alters the steps already taken (their data order, the model,
# the optimiser): -ni only extends or ends the run earlier, -ef only moves the measurements (and the
# default checkpoints), the runtime keys only how it executes. Every other field (dataset, split, model
# family/size/options, tau, connections, grad factor, batch size, learning rate, seed) would continue
# a different run from this one's weights, so it must equal the saved value.
RESUMABLE_CHANGES = RUNTIME_KEYS | {"num_iterations", "eval_freq"}


def config_differences(saved: TrainConfig, current: TrainConfig,
                       ignore: frozenset[str] = RESUMABLE_CHANGES) -> dict[str, tuple[Any, Any]]:
    """key -> (saved value, current value) for every differing field outside ``ignore``."""
    a, b = saved.to_dict(), current.to_dict()
    return {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}

"""``diffgates train``: train a logic gate network (or an MLP baseline) with the original's flags.

Values resolve as: TrainConfig defaults < ``--preset NAME`` < flags given explicitly (the
overridden preset values are printed). The full resolved config is printed at start.

``--resume`` continues from the config saved in the run's checkpoint. Flags given with it (and the
values of a ``--preset`` given with it) are overrides of that config: those of
``config.RESUMABLE_CHANGES`` (``-ni``, ``-ef``, ``--threads``, ``--device``, the checkpoint cadence,
``--no-progress``, ...) are applied and printed; any other (model, data, seed, ...) must equal the
saved value, else the run is refused naming each such flag. Only flags actually typed count: the
defaults never do. ``--data-dir`` is not part of the config and always applies.

Examples::

    diffgates train --dataset mnist -k 2000 -l 4 -t 10 -bs 100 -ni 3000 -ef 1000 --seed 0 --out runs/mnist
    diffgates train --preset mnist20x20_small --out runs/mnist20 --data-dir ../shared/data
    diffgates train --out runs/mnist20 --resume          # continue a killed run with its saved config
    torchrun --nproc_per_node 2 -m diffgates train --preset adult --out runs/adult --threads 1
    diffgates train --list-presets

Exit status (``diffgates.commands.errors``): 0 finished, 2 bad arguments or config (a conflicting
``--resume`` flag), 3 a missing or corrupt file, 4 the OS refused (a full disk: the last checkpoint
stays intact, ``--resume`` continues), 5 the run folder is in use by another run, 130 stopped by
SIGINT/SIGTERM after writing a checkpoint (``--resume`` continues).
"""
from __future__ import annotations

import argparse
import json
import sys

HELP = "train a logic gate network (or an MLP baseline); resumable, multi-process with torchrun"

# (flags, TrainConfig field, type, help). Defaults are SUPPRESSed so that only flags actually given
# appear in the parsed namespace: that is how explicit flags override a preset.
_CONFIG_FLAGS = [
    (("--dataset",), "dataset", str, "dataset name (see diffgates.data.DATASET_NAMES)"),
    (("-bs", "--batch-size"), "batch_size", int, "global batch size (default 128)"),
    (("-t", "--tau"), "tau", float, "GroupSum temperature tau (default 10)"),
    (("-k", "--num-neurons", "--num_neurons"), "num_neurons", int, "width of every layer"),
    (("-l", "--num-layers", "--num_layers"), "num_layers", int, "number of layers"),
    (("-ni", "--num-iterations"), "num_iterations", int, "optimizer steps (default 100000)"),
    (("-ef", "--eval-freq"), "eval_freq", int, "evaluate every this many steps (default 2000)"),
    (("-lr", "--learning-rate"), "learning_rate", float, "Adam learning rate (default 0.01)"),
    (("--weight-decay",), "weight_decay", float, "decoupled weight decay: > 0 trains with AdamW (default 0: Adam)"),
    (("--lr-schedule",), "lr_schedule", str, "learning rate over the run: constant (default) or cosine (to 0 at -ni)"),
    (("--augment-shift",), "augment_shift", int,
     "translate each training image by a random (dy, dx) of up to this many pixels (default 0: off)"),
    (("--connections",), "connections", str, "'unique' (default, as published) or 'random'"),
    (("--grad-factor",), "grad_factor", float, "gradient multiplier into each logic layer (default 1)"),
    (("--parametrization",), "parametrization", str,
     "logic gate parameters: softmax16 (default, 16 logits), iwp (4 truth-table entries), walsh"),
    (("--init",), "init", str, "gaussian or residual (default: gaussian for softmax16, residual for iwp/walsh)"),
    (("--residual-logit",), "residual_logit", float,
     "pass-through logit of the residual init (default 5 for softmax16, 3 for iwp/walsh)"),
    (("--sampling",), "sampling", str,
     "training forward: soft (default), hard (discrete forward, relaxed gradient), gumbel_soft, gumbel_hard"),
    (("--gumbel-tau",), "gumbel_tau", float, "temperature of the Gumbel samplings (default 1)"),
    (("-s", "--seed"), "seed", int, "seed of model init and data order (default 0)"),
    (("-a", "--architecture"), "architecture", str,
     "the model family: 'logic' (default; alias 'randomly_connected'), 'mlp', ... (diffgates.families)"),
    (("--val-fraction", "-vss", "--valid-set-size"), "val_fraction", float,
     "share of the training set held out for validation / best-model selection (default 0.1)"),
    (("--split-seed",), "split_seed", int, "seed of the train/validation split (default 0)"),
    (("--device",), "device", str, "cpu (default), cuda, cuda:N"),
    (("--threads",), "threads", int, "torch CPU threads (default: torch's; under torchrun: cores / ranks)"),
    (("--implementation",), "implementation", str,
     "LogicLayer kernel: auto (default: fused for the device), reference, cpu, gpu"),
    (("--checkpoint-every",), "checkpoint_every", int,
     "steps between resumable checkpoints (default: at every evaluation)"),
    (("--checkpoint-minutes",), "checkpoint_minutes", float,
     "also checkpoint when this many minutes passed since the last one (default 5)"),
    (("--eval-batch-size",), "eval_batch_size", int, "rows per forward pass during evaluation (default 2000)"),
]


def configure(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run configuration (flags of the original experiments, plus ours)")
    for flags, dest, kind, help_text in _CONFIG_FLAGS:
        group.add_argument(*flags, dest=dest, type=kind, default=argparse.SUPPRESS, help=help_text)
    group.add_argument("--no-progress", dest="progress", action="store_false", default=argparse.SUPPRESS,
                       help="no progress bar: print a plain status line every 30 s instead")
    _add_family_options(parser)
    parser.add_argument("--preset", help="start from a named configuration (see --list-presets)")
    parser.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    parser.add_argument("--out", metavar="DIR", help="run directory: results.json, model/best/checkpoint files")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint with its saved config (flags "
                        "may change -ni, -ef and how it runs, not the model or data)")
    parser.add_argument("--data-dir", metavar="DIR", help="folder with the dataset files (else $DIFFGATES_DATA, "
                        "the user cache, then download)")


_OPTION_PREFIX = "model_option:"


def _add_family_options(parser: argparse.ArgumentParser) -> None:
    """One flag per option any registered model family declares (``--NAME``, into ``model_options``).

    Families sharing an option name share its flag: it accepts every family's choices (the family of the
    run checks its own), and its help lists each family's meaning.
    """
    from ..families import FAMILIES

    by_name: dict[str, list] = {}
    for family in FAMILIES.values():
        for option in family.options:
            by_name.setdefault(option.name, []).append((family.name, option))
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, owners in by_name.items():
        first_family, first = owners[0]
        if any(o.type is not first.type for _, o in owners):
            raise TypeError(f"families {[f for f, _ in owners]} declare option {name!r} with different types")
        if first_family not in groups:
            groups[first_family] = parser.add_argument_group(f"options of the {first_family!r} family")
        choices = None
        if all(o.choices is not None for _, o in owners):
            choices = list(dict.fromkeys(c for _, o in owners for c in o.choices))
        if len(owners) == 1:
            help_text = f"{first.help} (default {first.default!r})"
        else:
            help_text = "; ".join(f"{family}: {o.help} (default {o.default!r})" for family, o in owners)
        groups[first_family].add_argument(f"--{name.replace('_', '-')}", dest=_OPTION_PREFIX + name, type=first.type,
                                          choices=choices, default=argparse.SUPPRESS, help=help_text)


def _explicit_values(args: argparse.Namespace) -> dict:
    values = {dest: getattr(args, dest) for _, dest, _, _ in _CONFIG_FLAGS if hasattr(args, dest)}
    options = {k[len(_OPTION_PREFIX):]: v for k, v in vars(args).items() if k.startswith(_OPTION_PREFIX)}
    if options:
        values["model_options"] = options
    if hasattr(args, "progress"):
        values["progress"] = args.progress
    if values.get("architecture") == "randomly_connected":  # the original script's name for the logic net
        values["architecture"] = "logic"
    if "implementation" in values and values["implementation"] in ("auto", "none", ""):
        values["implementation"] = None
    return values


def _print_config(cfg, source: str, overridden: dict) -> None:
    print(f"config ({source}):")
    for key, value in cfg.to_dict().items():
        mark = ""
        if key in overridden:
            mark = f"    # overrides {overridden[key][0]}: {json.dumps(overridden[key][1])}"
        print(f"  {key}: {json.dumps(value)}{mark}")
    sys.stdout.flush()


def _flag(key: str) -> str:
    """The command-line name of TrainConfig field ``key``."""
    for flags, dest, _, _ in _CONFIG_FLAGS:
        if dest == key:
            return flags[0] if flags[0].startswith("--") else "/".join(flags[:2])  # e.g. -k/--num-neurons
    return "--no-progress" if key == "progress" else f"--{key.replace('_', '-')}"


def _resume_config(out: str, saved, preset: str | None, explicit: dict):
    """``saved`` with the given values applied (see the module docstring); returns (config, {field: new value})."""
    from ..families import get_family
    from ..train.config import RESUMABLE_CHANGES
    from ..train.presets import get_preset, resolve_preset
    from ..train.trainer import ConfigMismatchError

    from_preset = [k for k in (get_preset(preset).values if preset else {}) if k not in explicit]
    given = resolve_preset(preset, explicit)  # why: the same aliases and normalisation as a fresh start
    saved_options = get_family(saved.architecture).check_options(saved.model_options)
    changes, conflicts = {}, []
    for key in [*from_preset, *explicit]:
        source = f" (from --preset {preset})" if key in from_preset else ""
        value = getattr(given, key)
        if key == "model_options":  # only the options typed, each against its saved (or default) value
            conflicts += [(f"--{name.replace('_', '-')}{source}", saved_options.get(name), v)
                          for name, v in value.items() if saved_options.get(name) != v]
        elif value != getattr(saved, key):
            if key in RESUMABLE_CHANGES:
                changes[key] = value
            else:
                conflicts.append((_flag(key) + source, getattr(saved, key), value))
    if conflicts:
        may = sorted({_flag(k) for k in RESUMABLE_CHANGES if k != "preset"})
        raise ConfigMismatchError(
            f"--resume continues the saved config of {out}, and these flags would change its model or data: "
            + "; ".join(f"{flag}: saved {a!r}, given {b!r}" for flag, a, b in conflicts)
            + f". Drop them (the saved values apply) or start a new run in another --out folder; on --resume "
              f"only {', '.join(may)} and --data-dir may change")
    return saved.replace(**changes), changes


def run(args: argparse.Namespace) -> int:
    from ..train import checkpoint as ckpt_io
    from ..train import runlock
    from ..train.presets import describe_presets, get_preset, resolve_preset
    from ..train.trainer import is_main_process, train

    if args.list_presets:
        print(describe_presets())
        return 0
    if not args.out:
        raise ValueError("--out DIR is required (the run directory)")
    explicit = _explicit_values(args)
    main = is_main_process()
    info = None
    if args.resume:
        if main:  # why: a busy folder is reported as busy, whatever its checkpoint says (rank 0 locks it)
            runlock.check_free(args.out)
        info = ckpt_io.read_checkpoint_info(args.out)
        if info is None and args.preset is None and "dataset" not in explicit:
            raise FileNotFoundError(f"--resume: {args.out} has no checkpoint.safetensors to take the config "
                                    f"from; pass --dataset/--preset (and the model flags) to start the run")
    if info is not None:
        saved = ckpt_io.saved_config(args.out, info.get("config"))
        cfg, changes = _resume_config(args.out, saved, args.preset, explicit)
        base, what, overridden = "saved config", "saved config", {k: getattr(saved, k) for k in changes}
        source = f"saved in {args.out}/checkpoint.safetensors at step {info['step']}"
    else:  # a fresh run (also --resume of a folder without a checkpoint yet)
        cfg = resolve_preset(args.preset, explicit)
        base, what, overridden = f"preset {args.preset}", "preset", {}
        if args.preset:
            preset_values = get_preset(args.preset).values
            overridden = {k: preset_values[k] for k, v in explicit.items()
                          if k in preset_values and preset_values[k] != v}
        source = f"preset {args.preset} + flags" if args.preset else "defaults + flags"
    cfg.validate()
    if main:
        _print_config(cfg, source, {k: (base, v) for k, v in overridden.items()})
        if overridden:
            print(f"flags overriding the {what}: " +
                  ", ".join(f"{k} {json.dumps(v)} -> {json.dumps(getattr(cfg, k))}" for k, v in overridden.items()))
    results = train(cfg, args.out, data_dir=args.data_dir, resume=args.resume)
    return 130 if results.get("status") == "interrupted" else 0

"""``diffgates eval DIR``: re-evaluate a model saved by ``diffgates train`` on its dataset.

Loads ``DIR/model.safetensors`` (``--which last``, default) or ``DIR/best.safetensors`` (``--which best``)
— or a model file / its JSON given directly — reloads the dataset with the run's split settings, and
measures the accuracy of the discrete network (eval mode, exact input bits) and of the relaxed
network (train mode, training-style inputs) on the validation split and the test set. Prints a small
table, compares with the accuracies recorded at save time, and with ``--json OUT`` writes them.

Example::

    diffgates eval runs/mnist --which best --data-dir ../shared/data --json runs/mnist/eval_best.json
"""
from __future__ import annotations

import argparse

HELP = "re-evaluate a saved model (discrete and relaxed) on the validation split and the test set"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="DIR", help="run directory of `diffgates train`, or a model .safetensors/.json")
    parser.add_argument("--which", choices=("last", "best"), default="last",
                        help="for a run directory: the last model (default) or the best by validation accuracy")
    parser.add_argument("--data-dir", metavar="DIR", help="folder with the dataset files")
    parser.add_argument("--json", metavar="OUT", help="also write the accuracies to this JSON file")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=2000, help="rows per forward pass (default 2000)")
    parser.add_argument("--implementation", default=None,
                        help="LogicLayer kernel: auto (default), reference, cpu, gpu")


def load_saved_run(model_arg: str, which: str, data_dir: str | None, device: str = "cpu",
                   implementation: str | None = None):
    """A saved model with the dataset it was trained on, split as in its run.

    Returns:
        ``(path, model, config, dataset)``: the resolved model file, the model in eval mode, its
        TrainConfig and the reloaded Dataset. Raises ValueError / FileNotFoundError / ModelFileError.
    """
    from ..modelfiles import load_model, resolve_model_path
    from ..train import trainer
    from ..train.config import TrainConfig

    path = resolve_model_path(model_arg, which)
    model = load_model(path, device=device, implementation=implementation)
    cfg = TrainConfig.from_dict(model.diffgates_config or {}, where=f"{path}: config")
    ds = trainer.load_dataset_fn(cfg.dataset, data_dir, cfg.val_fraction, cfg.split_seed, True)
    return path, model, cfg, ds


def evaluate_saved(model, ds, *, batch_size: int = 2000, device: str = "cpu") -> dict:
    """Accuracies of a loaded model on ``ds``'s validation and test splits (None for an empty split).

    Returns:
        ``{"val_acc_eval_mode", "val_acc_train_mode", "test_acc_eval_mode", "test_acc_train_mode",
        "n_val", "n_test"}``: eval mode is the model as deployed (its family's rule: a logic net's
        discrete circuit; a float baseline's plain accuracy), train mode the relaxed network.
    """
    from ..families import accuracy_counts, get_family

    family = get_family(model.diffgates_spec["kind"])
    out: dict = {}
    for split, x, y in (("val", ds.x_val, ds.y_val), ("test", ds.x_test, ds.y_test)):
        out[f"n_{split}"] = len(y)
        if len(y) == 0:
            out[f"{split}_acc_train_mode"] = out[f"{split}_acc_eval_mode"] = None
            continue
        c, n = accuracy_counts(model, x, y, ds.encode, binary=False, train_mode=True, batch_size=batch_size,
                               device=device)
        out[f"{split}_acc_train_mode"] = c / n
        c, n = family.deployed_accuracy(model, x, y, ds.encode, batch_size=batch_size, device=device)
        out[f"{split}_acc_eval_mode"] = c / n
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from ..families import get_family
    from ..modelfiles import write_json_atomic
    from ..train.trainer import check_device

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    check_device(args.device)
    implementation = None if args.implementation in (None, "auto") else args.implementation
    path, model, cfg, ds = load_saved_run(args.model, args.which, args.data_dir, args.device, implementation)
    result = evaluate_saved(model, ds, batch_size=args.batch_size, device=args.device)
    saved = model.diffgates_info.get("metrics") or {}
    step = model.diffgates_info.get("step")
    kind = model.diffgates_spec["kind"]
    print(f"model: {path} (step {step}, {kind}: {get_family(kind).description}), dataset {cfg.dataset}")
    print(f"{'split':<6} {'rows':>7} {'discrete (eval mode)':>22} {'relaxed (train mode)':>22} {'saved discrete':>16}")
    mismatch = []
    for split in ("val", "test"):
        disc, relax = result[f"{split}_acc_eval_mode"], result[f"{split}_acc_train_mode"]
        rec = saved.get(f"{split}_acc_eval_mode")
        fmt = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"  # noqa: E731
        print(f"{split:<6} {result[f'n_{split}']:>7} {fmt(disc):>22} {fmt(relax):>22} {fmt(rec):>16}")
        if rec is not None and disc is not None and rec != disc:
            mismatch.append(split)
    if mismatch:
        print(f"note: the discrete accuracy on {', '.join(mismatch)} differs from the one recorded at save time "
              f"(different data files or split settings?)")
    if args.json:
        write_json_atomic(args.json, {"model": str(path), "which": args.which, "step": step, "dataset": cfg.dataset,
                                      "architecture": kind, **result, "saved_metrics": saved,
                                      "matches_saved": not mismatch})
        print(f"wrote {args.json}")
    return 0

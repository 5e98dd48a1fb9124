"""Training of every model family: config, presets, checkpoints, metrics and the one trainer.

Command line: ``diffgates train --preset mnist20x20_small --out runs/mnist20`` (see
``diffgates.commands.train``). From Python::

    from diffgates.train import TrainConfig, train
    from diffgates.modelfiles import load_model
    results = train(TrainConfig(dataset="mnist", num_neurons=2000, num_layers=4, batch_size=100,
                                num_iterations=3000, eval_freq=1000), "runs/mnist")
    model = load_model("runs/mnist", which="best")   # eval mode, discrete network
"""
from .checkpoint import CheckpointError
from .config import TrainConfig
from .presets import PRESETS, get_preset, resolve_preset
from .runlock import RunFolderBusy
from .trainer import ConfigMismatchError, Trainer, train

__all__ = ["TrainConfig", "PRESETS", "get_preset", "resolve_preset", "Trainer", "train", "ConfigMismatchError",
           "CheckpointError", "RunFolderBusy"]

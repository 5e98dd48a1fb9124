"""Training of logic gate networks: config, presets, model specs, checkpoints, metrics and the trainer.

Command line: ``diffgates train --preset mnist20x20_small --out runs/mnist20`` (see
``diffgates.commands.train``). From Python::

    from diffgates.train import TrainConfig, train, load_model
    results = train(TrainConfig(dataset="mnist", num_neurons=2000, num_layers=4, batch_size=100,
                                num_iterations=3000, eval_freq=1000), "runs/mnist")
    model = load_model("runs/mnist", which="best")   # eval mode, discrete network
"""
from .checkpoint import CheckpointError, load_model, save_model
from .config import TrainConfig
from .model_spec import build_model, model_spec
from .presets import PRESETS, get_preset, resolve_preset
from .trainer import ConfigMismatchError, Trainer, train

__all__ = ["TrainConfig", "PRESETS", "get_preset", "resolve_preset", "Trainer", "train", "ConfigMismatchError",
           "build_model", "model_spec", "load_model", "save_model", "CheckpointError"]

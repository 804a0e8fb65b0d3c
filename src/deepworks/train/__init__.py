"""Training: the Trainer loop, optimizers, schedulers, losses, callbacks, checkpoints."""

from deepworks.train import losses, optimizers, schedulers  # noqa: F401  (registers components)
from deepworks.train.trainer import EvalResult, FitResult, Trainer

__all__ = ["EvalResult", "FitResult", "Trainer"]

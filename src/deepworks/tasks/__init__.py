"""Tasks: what a training step means (``deepworks list tasks``)."""

from deepworks.tasks import (  # noqa: F401
    adversarial,
    autoencoder,
    classification,
    detection,
    forecasting,
    gan,
    language_model,
    masked_lm,
    rbm,
    regression,
    segmentation,
    seq2seq,
    sequence,
    vae,
)
from deepworks.tasks.base import Task

__all__ = ["Task"]

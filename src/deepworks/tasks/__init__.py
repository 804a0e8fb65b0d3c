"""Tasks: what a training step means (``deepworks list tasks``)."""

from deepworks.tasks import (  # noqa: F401
    classification,
    detection,
    forecasting,
    language_model,
    masked_lm,
    regression,
    segmentation,
    seq2seq,
    sequence,
)
from deepworks.tasks.base import Task

__all__ = ["Task"]

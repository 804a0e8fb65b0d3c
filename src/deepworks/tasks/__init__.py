"""Tasks: what a training step means (``deepworks list tasks``)."""

from deepworks.tasks import (  # noqa: F401
    classification,
    detection,
    forecasting,
    regression,
    segmentation,
    sequence,
)
from deepworks.tasks.base import Task

__all__ = ["Task"]

"""Tasks: what a training step means (``deepworks list tasks``)."""

from deepworks.tasks import classification, detection, regression, segmentation  # noqa: F401
from deepworks.tasks.base import Task

__all__ = ["Task"]

"""Tasks: what a training step means (``deepworks list tasks``)."""

from deepworks.tasks import classification, regression, segmentation  # noqa: F401 (registers tasks)
from deepworks.tasks.base import Task

__all__ = ["Task"]

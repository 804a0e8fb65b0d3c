"""Evaluation: metrics, their specs, cross-validation."""

from deepworks.evaluate.metrics import (
    classification_details,
    classification_metrics,
    regression_metrics,
)
from deepworks.evaluate.specs import MetricSpec, find, resolve

__all__ = [
    "MetricSpec",
    "classification_details",
    "classification_metrics",
    "find",
    "regression_metrics",
    "resolve",
]

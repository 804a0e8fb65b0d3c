"""Evaluation: metrics, cross-validation."""

from deepworks.evaluate.metrics import (
    classification_details,
    classification_metrics,
    higher_is_better,
    regression_metrics,
)

__all__ = [
    "classification_details",
    "classification_metrics",
    "higher_is_better",
    "regression_metrics",
]

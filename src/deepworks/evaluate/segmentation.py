"""Segmentation metrics from a pixel confusion matrix: pixel accuracy, IoU (Jaccard) and dice.

Every metric is a function of the (K, K) confusion matrix ``cm[true, pred]`` of pixel counts,
built in one ``torch.bincount`` on whatever device holds the masks. For class k:

    TP = cm[k, k]     FP = column k minus TP     FN = row k minus TP
    IoU_k  = TP / (TP + FP + FN)          = |A ∩ B| / |A ∪ B|
    dice_k = 2 TP / (2 TP + FP + FN)      = 2 |A ∩ B| / (|A| + |B|)

A class absent from both the truth and the prediction has no IoU (0 / 0): it is NaN per class and
left out of the means. ``iou`` and ``dice`` average the foreground classes (all but class 0, the
background); ``iou_all`` includes the background.
"""

from __future__ import annotations

import numpy as np
import torch

from deepworks.evaluate.specs import MetricSpec

#: What :func:`segmentation_metrics` emits.
SEGMENTATION_METRICS = (
    MetricSpec("iou", "max", headline=True, label="Mean IoU", fmt=".2%"),
    MetricSpec("dice", "max", headline=True, label="Mean dice", fmt=".2%"),
    MetricSpec("pixel_accuracy", "max", headline=True, fmt=".2%"),
    MetricSpec("iou_all", "max", label="Mean IoU (with background)", fmt=".2%"),
)


def confusion_matrix(
    y_true: torch.Tensor | np.ndarray, y_pred: torch.Tensor | np.ndarray, num_classes: int
) -> torch.Tensor:
    """(K, K) int64 pixel counts, rows true class, columns predicted, on the masks' device.

    Args:
        y_true: True masks, any shape (e.g. (N, H, W)), class indices in ``0..K-1``.
        y_pred: Predicted masks, the same shape.
        num_classes: K.
    """
    t = torch.as_tensor(y_true).reshape(-1).long()
    p = torch.as_tensor(y_pred).reshape(-1).long().to(t.device)
    k = num_classes
    return torch.bincount(t * k + p, minlength=k * k)[: k * k].reshape(k, k)  # (K, K)


def _tp_fp_fn(cm: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cm = torch.as_tensor(cm).double().cpu().numpy()
    tp = np.diag(cm)
    return tp, cm.sum(0) - tp, cm.sum(1) - tp  # (K,) each


def iou_per_class(cm: torch.Tensor | np.ndarray) -> np.ndarray:
    """IoU of each class (K,); NaN where the class is in neither truth nor prediction."""
    tp, fp, fn = _tp_fp_fn(cm)
    union = tp + fp + fn
    return np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)


def dice_per_class(cm: torch.Tensor | np.ndarray) -> np.ndarray:
    """Dice (F1) of each class (K,); NaN where the class is in neither truth nor prediction."""
    tp, fp, fn = _tp_fp_fn(cm)
    total = 2 * tp + fp + fn
    return np.divide(2 * tp, total, out=np.full_like(tp, np.nan), where=total > 0)


def _mean(values: np.ndarray) -> float:
    """Mean over the classes that have a value (NaN when none has)."""
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else float("nan")


def segmentation_metrics(cm: torch.Tensor | np.ndarray) -> dict[str, float]:
    """``pixel_accuracy``, ``iou`` (mean foreground), ``iou_all`` (with background), ``dice``."""
    counts = torch.as_tensor(cm).double().cpu().numpy()
    iou, dice = iou_per_class(counts), dice_per_class(counts)
    fg = slice(1, None) if len(counts) > 1 else slice(None)  # one class: it is the foreground
    return {
        "pixel_accuracy": float(np.trace(counts) / max(counts.sum(), 1.0)),
        "iou": _mean(iou[fg]),
        "iou_all": _mean(iou),
        "dice": _mean(dice[fg]),
    }


def segmentation_details(cm: torch.Tensor | np.ndarray, class_names: list[str]) -> dict:
    """Per-class IoU and dice (None for absent classes), pixel support and the confusion matrix,
    JSON-ready for ``evaluation.json``."""
    counts = torch.as_tensor(cm).long().cpu().numpy()

    def listed(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(v) else float(v) for v in values]

    return {
        "task_type": "segmentation",
        "class_names": list(class_names),
        "per_class": {
            "iou": listed(iou_per_class(counts)),
            "dice": listed(dice_per_class(counts)),
            "support": counts.sum(1).tolist(),  # true pixels of each class
        },
        "confusion_matrix": counts.tolist(),
    }

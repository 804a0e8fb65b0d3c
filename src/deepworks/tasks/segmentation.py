"""Semantic segmentation: one class per pixel, from (B, K, H, W) logits and (B, H, W) masks.

Metrics come from the pixel confusion matrix (:mod:`deepworks.evaluate.segmentation`):
``pixel_accuracy``, ``iou`` (mean IoU of the foreground classes), ``iou_all`` (background
included) and ``dice`` (mean foreground dice). Class 0 is the background.

Losses, registered here:

- ``cross_entropy``: per-pixel softmax cross-entropy (the classification loss works as is).
- ``dice``: soft dice on softmax probabilities, ``1 - mean_k (2 Σ p·t + s) / (Σ p + Σ t + s)``,
  sums over the batch and pixels, mean over the foreground classes (``include_background``
  adds class 0). It optimizes the overlap itself, so small classes count as much as large ones.
- ``dice_ce`` (default): ``dice_weight · dice + ce_weight · cross_entropy``: cross-entropy gives
  smooth per-pixel gradients early on, dice keeps the small shapes from being drowned by the
  background.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepworks.config import LossConfig
from deepworks.data.bundle import DataBundle
from deepworks.errors import ConfigError
from deepworks.evaluate.segmentation import (
    SEGMENTATION_METRICS,
    confusion_matrix,
    segmentation_details,
    segmentation_metrics,
)
from deepworks.registry import register_loss, register_task
from deepworks.tasks.base import Task

# --- losses --------------------------------------------------------------------------------


class DiceLoss(nn.Module):
    """Soft multi-class dice loss on logits (B, K, H, W) and masks (B, H, W).

    Args:
        include_background: Average over all K classes instead of classes 1..K-1.
        smooth: Added to numerator and denominator: a class absent from the batch and from the
            prediction scores 1, and the ratio never divides by zero.
        weight: Class weights (K,) for the average over classes, or None for a plain mean.
    """

    def __init__(
        self,
        include_background: bool = False,
        smooth: float = 1.0,
        weight: torch.Tensor | None = None,
    ):
        super().__init__()
        self.include_background = include_background
        self.smooth = smooth
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        k = logits.shape[1]
        prob = logits.float().softmax(dim=1)  # (B, K, H, W)
        onehot = F.one_hot(targets.long(), k).permute(0, 3, 1, 2).to(prob.dtype)  # (B, K, H, W)
        dims = (0, 2, 3)
        inter = (prob * onehot).sum(dims)  # (K,)
        total = prob.sum(dims) + onehot.sum(dims)  # (K,)
        dice = (2 * inter + self.smooth) / (total + self.smooth)  # (K,)
        weight = self.weight
        if not self.include_background and k > 1:
            dice = dice[1:]
            weight = weight[1:] if weight is not None else None
        if weight is None:
            return 1 - dice.mean()
        return 1 - (weight * dice).sum() / weight.sum()


class DiceCE(nn.Module):
    """``dice_weight · dice + ce_weight · cross_entropy`` on the same logits."""

    def __init__(self, dice: DiceLoss, ce: nn.CrossEntropyLoss, dice_weight: float, ce_weight):
        super().__init__()
        self.dice, self.ce = dice, ce
        self.dice_weight, self.ce_weight = dice_weight, ce_weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        ce = self.ce(logits.float(), targets)  # mean over pixels
        return self.dice_weight * self.dice(logits, targets) + self.ce_weight * ce


@register_loss("dice")
def dice(
    include_background: bool = False, smooth: float = 1.0, weight: torch.Tensor | None = None
) -> nn.Module:
    """Soft dice loss on softmax probabilities (segmentation), foreground classes by default."""
    return DiceLoss(include_background, smooth, weight)


@register_loss("dice_ce")
def dice_ce(
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    include_background: bool = False,
    smooth: float = 1.0,
    label_smoothing: float = 0.0,
    weight: torch.Tensor | None = None,
) -> nn.Module:
    """Dice + cross-entropy (segmentation); class weights apply to both terms."""
    ce = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
    return DiceCE(DiceLoss(include_background, smooth, weight), ce, dice_weight, ce_weight)


# --- the task ------------------------------------------------------------------------------


@register_task("segmentation")
class Segmentation(Task):
    """Assign every pixel one of K classes (0 = background)."""

    name = "segmentation"
    losses = ("dice_ce", "cross_entropy", "dice")
    metrics = SEGMENTATION_METRICS

    def num_outputs(self, data: DataBundle, loss: LossConfig) -> int:
        if data.task_type != "segmentation":
            raise ConfigError(
                f"task.name: 'segmentation' needs a mask per image, but {data.name} has "
                f"{data.task_type} targets; use task: {{name: {data.task_type}}} or "
                "segmentation data (e.g. data: {name: shapes, task: segmentation})"
            )
        self.loss_name(loss)
        return data.num_classes

    def _check(self, outputs: torch.Tensor, y: torch.Tensor) -> None:
        if outputs.ndim != 4 or outputs.shape[-2:] != y.shape[-2:]:
            raise ConfigError(
                f"model: outputs of shape {tuple(outputs.shape)} do not fit masks of shape "
                f"{tuple(y.shape)}; segmentation needs (B, K, H, W) logits, e.g. model: unet"
            )

    def training_step(self, model, x, y):
        outputs = model(x)  # (B, K, H, W) logits; y: (B, H, W) class per pixel
        self._check(outputs, y)
        return self.loss_fn(outputs, y), outputs

    def batch_stats(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Pixel accuracy of each image, summed: divided by the images seen it is the pixel
        # accuracy of the epoch (every mask of a dataset has the same size). Stays on device.
        correct = outputs.argmax(1) == y  # (B, H, W)
        return correct.flatten(1).float().mean(1).sum()

    def stats_metrics(self, stats: torch.Tensor, num_samples: int) -> dict[str, float]:
        return {"pixel_accuracy": float(stats) / max(1, num_samples)}

    def evaluate(self, outputs, y, full=True):
        self._check(outputs, y)
        outputs = outputs.float()  # (N, K, H, W)
        k = outputs.shape[1]
        loss = float(self.loss_fn(outputs, y))
        pred = outputs.argmax(1)  # (N, H, W)
        cm = confusion_matrix(y, pred, k)  # (K, K), on the device
        metrics = {"loss": loss} | segmentation_metrics(cm)
        if not full:
            return metrics, None, {}
        names = self.data_info.get("class_names") or [str(i) for i in range(k)]
        details: dict[str, Any] = segmentation_details(cm, names)
        dtype = np.uint8 if k <= 256 else np.int64
        preds = {
            "y_true": y.cpu().numpy().astype(dtype),  # (N, H, W)
            "y_pred": pred.cpu().numpy().astype(dtype),  # (N, H, W)
        }
        return metrics, details, preds

    def predict(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        k = outputs.shape[1]
        pred = outputs.argmax(1).cpu().numpy()  # (N, H, W)
        return {"y_pred": pred.astype(np.uint8 if k <= 256 else np.int64)}

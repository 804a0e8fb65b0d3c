"""Classification: binary and multi-class, from logits to class probabilities and metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deepworks.config import LossConfig
from deepworks.data.bundle import DataBundle
from deepworks.errors import ConfigError
from deepworks.evaluate.metrics import (
    CLASSIFICATION_METRICS,
    classification_details,
    classification_metrics,
    headline_metrics,
)
from deepworks.registry import register_task
from deepworks.tasks.base import Task


@register_task("classification")
class Classification(Task):
    """Assign each sample one of K classes (binary or multi-class).

    Args:
        top_k: Report top-k accuracy for these k (when k < number of classes).
    """

    name = "classification"
    losses = ("cross_entropy", "focal", "bce", "hinge")
    metrics = CLASSIFICATION_METRICS
    explainable = True

    def __init__(self, top_k: list[int] | tuple[int, ...] = (3, 5)):
        super().__init__()
        self.top_k = tuple(top_k)
        self.binary_logit = False  # one sigmoid output (bce) instead of K softmax outputs
        self.outputs_probs = False

    def num_outputs(self, data: DataBundle, loss: LossConfig) -> int:
        if data.task_type != "classification":
            column = data.extras.get("target_column")  # a CSV's target
            holds = f" (its column {column!r} holds continuous values)" if column else ""
            raise ConfigError(
                f"task.name: 'classification' needs one class label per sample, but {data.name} "
                f"is {data.task_type} data{holds}; use task: {{name: {data.task_type}}}"
            )
        if data.train.y.ndim > 1:
            raise ConfigError(
                f"task.name: 'classification' needs one class label per sample, but {data.name} "
                "has one label per position; use task: {name: token_classification}"
            )
        if self.loss_name(loss) == "bce":
            if data.num_classes != 2:
                raise ConfigError(
                    f"train.loss.name: 'bce' is for two classes, {data.name} has "
                    f"{data.num_classes}; use cross_entropy"
                )
            return 1
        return data.num_classes

    def setup(self, data: DataBundle, loss: LossConfig, device: torch.device, model=None) -> None:
        super().setup(data, loss, device, model)
        self.binary_logit = self.loss_name(loss) == "bce"
        if model is not None:
            self.outputs_probs = getattr(model, "output_kind", "logits") == "probs"

    def state(self) -> dict:
        return {"binary_logit": self.binary_logit, "outputs_probs": self.outputs_probs}

    def logits(self, outputs: torch.Tensor) -> torch.Tensor:
        """Models with a softmax output layer give probabilities; log turns them back into
        logits up to a constant, which softmax and cross-entropy do not see."""
        return outputs.clamp_min(1e-12).log() if self.outputs_probs else outputs

    def training_step(self, model, x, y):
        self.outputs_probs = getattr(model, "output_kind", "logits") == "probs"
        outputs = self.logits(model(x))  # (B, K) or (B, 1)
        return self.loss_fn(outputs, y), outputs

    def batch_stats(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.ndim == 2:  # soft labels (mixup / cutmix): count the dominant class
            y = y.argmax(-1)
        pred = (outputs.squeeze(-1) > 0).long() if self.binary_logit else outputs.argmax(-1)
        return (pred == y).sum()

    def stats_metrics(self, stats: torch.Tensor, num_samples: int) -> dict[str, float]:
        return {"accuracy": float(stats) / max(1, num_samples)}

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, K) from what the model returned (logits or probabilities)."""
        outputs = self.logits(outputs.float())
        if self.binary_logit:
            p = torch.sigmoid(outputs.reshape(-1))  # (N,)
            return torch.stack([1 - p, p], dim=1)  # (N, 2)
        return outputs.softmax(dim=-1)  # (N, K)

    def evaluate(self, outputs, y, full=True):
        prob = self.probabilities(outputs)
        loss = float(self.loss_fn(self.logits(outputs.float()), y.to(prob.device)))
        prob_np, y_np = prob.cpu().numpy(), y.cpu().numpy()
        if not full:
            return {"loss": loss} | headline_metrics(y_np, prob_np), None, {}
        metrics = {"loss": loss} | classification_metrics(y_np, prob_np, self.top_k)
        names = self.data_info.get("class_names") or [str(i) for i in range(prob.shape[1])]
        details: dict[str, Any] = classification_details(y_np, prob_np, names)
        preds = {"y_true": y_np, "y_pred": prob_np.argmax(1), "y_prob": prob_np}
        return metrics, details, preds

    def predict(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        prob = self.probabilities(outputs).cpu().numpy()
        return {"y_pred": prob.argmax(1), "y_prob": prob}

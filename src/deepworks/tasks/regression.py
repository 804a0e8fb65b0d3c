"""Regression: predict a real value; metrics MSE, RMSE, MAE and R²."""

from __future__ import annotations

import numpy as np
import torch

from deepworks.config import LossConfig
from deepworks.data.bundle import DataBundle
from deepworks.errors import ConfigError
from deepworks.evaluate.metrics import REGRESSION_METRICS, regression_metrics
from deepworks.registry import register_task
from deepworks.tasks.base import Task


@register_task("regression")
class Regression(Task):
    """Predict one real-valued target per sample.

    Args:
        standardize_target: Train on (y - mean) / std of the training targets and map predictions
            back; keeps the loss near 1 whatever the target's units, so default LRs work.
    """

    name = "regression"
    losses = ("mse", "mae", "huber")
    metrics = REGRESSION_METRICS
    explainable = True

    def __init__(self, standardize_target: bool = True):
        super().__init__()
        self.standardize_target = standardize_target
        self.y_mean, self.y_std = 0.0, 1.0

    def num_outputs(self, data: DataBundle, loss: LossConfig) -> int:
        if data.task_type != "regression":
            raise ConfigError(
                f"task.name: 'regression' needs a real-valued target, but {data.name} has class "
                "labels; use task: {name: classification}"
            )
        return 1

    def setup(self, data: DataBundle, loss: LossConfig, device: torch.device, model=None) -> None:
        super().setup(data, loss, device, model)
        if self.standardize_target:
            y = data.train.y.double()
            self.y_mean, self.y_std = float(y.mean()), float(y.std()) or 1.0

    def state(self) -> dict[str, float]:
        return {"y_mean": self.y_mean, "y_std": self.y_std}

    def training_step(self, model, x, y):
        outputs = model(x).squeeze(-1)  # (B,)
        return self.loss_fn(outputs, (y - self.y_mean) / self.y_std), outputs

    def to_target_units(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float().reshape(len(outputs), -1).squeeze(-1) * self.y_std + self.y_mean

    def evaluate(self, outputs, y, full=True):
        pred = self.to_target_units(outputs)
        scaled = self.loss_fn(outputs.float().reshape(y.shape), (y - self.y_mean) / self.y_std)
        y_np, pred_np = y.cpu().numpy(), pred.cpu().numpy()
        metrics = {"loss": float(scaled)} | regression_metrics(y_np, pred_np)
        details = {"task_type": "regression"}
        return metrics, details, {"y_true": y_np, "y_pred": pred_np}

    def predict(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        return {"y_pred": self.to_target_units(outputs).cpu().numpy()}

"""Forecasting: predict the next H values of a series from a window of its past.

The model maps an input window x (B, W, F) to H outputs (B, H), one per step ahead (the *direct*
multi-step strategy: no forecast is fed back as an input). It trains on the scaled target with
MSE (or MAE / Huber); metrics are computed in the series' original units after undoing the
training span's scaling, y = ŷ_scaled · σ + μ.

Every evaluation also scores the seasonal-naive forecast of the same targets (the value one
season earlier, read from the input window), so ``mae_vs_seasonal_naive`` < 1 says the model
beats the rule a forecaster would try first; see :mod:`deepworks.evaluate.forecasting`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deepworks.config import LossConfig
from deepworks.data.bundle import DataBundle
from deepworks.errors import ConfigError
from deepworks.evaluate.forecasting import (
    FORECAST_METRICS,
    forecast_metrics,
    mase_scale,
    seasonal_naive_from_window,
)
from deepworks.registry import register_task
from deepworks.tasks.base import Task

#: Metrics logged after every epoch (``train.val_metrics: quick``); the rest at the end.
QUICK = ("mae", "rmse", "mae_vs_seasonal_naive")


@register_task("forecasting")
class Forecasting(Task):
    """Multi-step forecasting of one target series from windows of its past (and covariates).

    The data (a time-series dataset such as ``sunspots``) gives the horizon H (the width of
    y), the seasonal period, the scaling of the target and the training series for MASE.
    """

    name = "forecasting"
    losses = ("mse", "mae", "huber")
    metrics = FORECAST_METRICS

    def __init__(self):
        super().__init__()
        self.horizon, self.season, self.target_index = 1, 1, 0
        self.y_shift, self.y_scale, self.mase_scale = 0.0, 1.0, 0.0

    def num_outputs(self, data: DataBundle, loss: LossConfig) -> int:
        if data.task_type != "forecasting" or data.train.y.ndim != 2:
            raise ConfigError(
                f"task.name: 'forecasting' needs a time-series dataset (sunspots, co2, nile, "
                f"series_csv), but {data.name} is {data.task_type} data"
            )
        return int(data.train.y.shape[1])

    def setup(self, data: DataBundle, loss: LossConfig, device: torch.device, model=None) -> None:
        super().setup(data, loss, device, model)
        self.horizon = self.num_outputs(data, loss)
        extras = data.extras
        self.season = int(extras.get("season", 1))
        self.target_index = int(extras.get("target_index", 0))
        scaler = extras.get("target_scaler") or {}
        self.y_shift = float(scaler.get("shift", 0.0))
        self.y_scale = float(scaler.get("scale", 1.0))
        train = extras.get("train_series")
        self.mase_scale = mase_scale(np.asarray(train), self.season) if train else 0.0

    def state(self) -> dict[str, Any]:
        return {
            "horizon": self.horizon,
            "season": self.season,
            "target_index": self.target_index,
            "y_shift": self.y_shift,
            "y_scale": self.y_scale,
            "mase_scale": self.mase_scale,
        }

    def to_units(self, scaled: torch.Tensor | np.ndarray) -> np.ndarray:
        """Scaled target values back in the series' original units."""
        values = scaled.detach().cpu().numpy() if isinstance(scaled, torch.Tensor) else scaled
        return np.asarray(values, dtype=np.float64) * self.y_scale + self.y_shift

    # --- the step ---------------------------------------------------------------------------
    def training_step(self, model, x, y):
        outputs = model(x).reshape(len(x), -1)  # (B, H)
        return self.loss_fn(outputs, y), outputs

    def batch_stats(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (outputs.float() - y).abs().sum()  # scaled absolute errors, kept on the device

    def stats_metrics(self, stats: torch.Tensor, num_samples: int) -> dict[str, float]:
        return {"mae": float(stats) / max(1, num_samples * self.horizon) * self.y_scale}

    def eval_step(self, model, x, y):
        """The model's forecasts (B, H) next to the seasonal-naive ones (B, H), both scaled."""
        forecast = model(x).reshape(len(x), -1).float()
        history = x[:, :, self.target_index] if x.ndim == 3 else x  # (B, W) the target's past
        positions = seasonal_positions(history.shape[1], self.horizon, self.season)
        return torch.cat([forecast, history[:, positions].float()], dim=1)  # (B, 2H)

    # --- evaluation -------------------------------------------------------------------------
    def evaluate(self, outputs, y, full=True):
        h = self.horizon
        forecast, naive = outputs[:, :h], outputs[:, h:]
        loss = float(self.loss_fn(forecast.float(), y.float()))
        y_true, y_pred = self.to_units(y), self.to_units(forecast)
        y_naive = self.to_units(naive) if naive.shape[1] == h else None
        metrics = forecast_metrics(y_true, y_pred, y_naive, self.mase_scale)
        if not full:
            metrics = {k: v for k, v in metrics.items() if k in QUICK}
        metrics = {"loss": loss} | metrics
        details = {"task_type": "forecasting", "horizon": h, "season": self.season}
        predictions = {"y_true": y_true, "y_pred": y_pred}
        if y_naive is not None:
            predictions["y_naive"] = y_naive
        return metrics, details, predictions

    def predict(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        return {"y_pred": self.to_units(outputs[:, : self.horizon])}


def seasonal_positions(window: int, horizon: int, season: int) -> list[int]:
    """Window positions of the seasonal-naive forecast of each step (see
    :func:`deepworks.evaluate.forecasting.seasonal_naive_from_window`)."""
    ones = np.arange(window, dtype=np.float64)[None]  # one row of positions 0..W-1
    return seasonal_naive_from_window(ones, horizon, season)[0].astype(int).tolist()

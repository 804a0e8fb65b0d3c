"""Forecast accuracy: MAE, RMSE, MASE and the ratio to a seasonal-naive forecast.

Forecasts come as (N, H) arrays, one row per forecast origin and one column per step ahead, in
the series' original units. With e_{i,h} = y_{i,h} - ŷ_{i,h}:

    MAE  = mean |e|            RMSE = sqrt(mean e²)

The **seasonal-naive** forecast repeats the value one season (m steps) earlier, using only what
is known at the origin t: ŷ_{t+h} = y_{t+h-m·k} with k = ⌈(h+1)/m⌉ for h = 0..H-1 steps ahead
(for h < m simply y_{t+h-m}; m = 1 is the naive "last value" forecast). A model that does not
beat it has learned nothing a one-line rule would not know.

**MASE** (Hyndman & Koehler, 2006) divides the MAE by the in-sample one-step MAE of the seasonal
naive forecast on the training span, so it is comparable across series and scales:

    MASE = MAE / ( 1/(T-m) Σ_{t=m+1..T} |y_t - y_{t-m}| )

``mae_vs_seasonal_naive`` is the model's MAE over the seasonal-naive MAE *on the same test
targets*: below 1 the model beats the baseline. Both are reported over all steps and for the
first step alone (``_h1``, one-step-ahead), with the MAE of every step (``mae_h1``, ``mae_h2``,
...).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import mean_absolute_error, root_mean_squared_error

from deepworks.evaluate.specs import MetricSpec

#: What :func:`forecast_metrics` emits.
FORECAST_METRICS = (
    MetricSpec("mae", "min", headline=True),
    MetricSpec("rmse", "min", headline=True),
    MetricSpec("mase", "min", headline=True),
    MetricSpec(
        "mae_vs_seasonal_naive_h1",
        "min",
        headline=True,
        label="MAE / seasonal naive (1 step)",
        fmt=".3f",
    ),
    MetricSpec(
        "mae_vs_seasonal_naive", "min", headline=True, label="MAE / seasonal naive", fmt=".3f"
    ),
    MetricSpec("mae_h*", "min", label="MAE, step {}"),
    MetricSpec("rmse_h1", "min"),
    MetricSpec("mase_h1", "min"),
    MetricSpec("seasonal_naive_mae", None, label="Seasonal-naive MAE"),  # the baseline's
    MetricSpec("seasonal_naive_mae_h1", None, label="Seasonal-naive MAE (1 step)"),
)


def mase_scale(train_series: np.ndarray, season: int = 1) -> float:
    """In-sample MAE of the seasonal-naive forecast on the training series: mean |y_t - y_{t-m}|."""
    y = np.asarray(train_series, dtype=np.float64).reshape(-1)
    if len(y) <= season:
        raise ValueError(
            f"the training series ({len(y)} steps) must be longer than season {season}"
        )
    return float(np.mean(np.abs(y[season:] - y[:-season])))


def seasonal_naive_from_window(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Seasonal-naive forecasts (N, H) from the last values before each origin.

    Args:
        history: (N, W) target values of each input window, oldest first, with W >= season.
        horizon: Steps ahead H.
        season: Period m.

    Step h (0-based) repeats the value at window position W - m + (h mod m): the most recent
    value of the same phase of the season, always one known at the origin.
    """
    w = history.shape[1]
    if w < season:
        raise ValueError(f"a window of {w} steps cannot hold one season of {season} steps")
    positions = w - season + np.arange(horizon) % season  # (H,)
    return history[:, positions]


def forecast_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, y_naive: np.ndarray | None = None, scale: float = 0.0
) -> dict[str, float]:
    """Metrics of (N, H) forecasts against the truth, in the units given.

    Args:
        y_true: (N, H) true values.
        y_pred: (N, H) forecasts of the model.
        y_naive: (N, H) seasonal-naive forecasts of the same targets (None: no ratio).
        scale: MASE denominator from :func:`mase_scale` (0: no MASE).
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(y_true.shape)
    out: dict[str, float] = {
        "mae": mean_absolute_error(y_true.ravel(), y_pred.ravel()),
        "rmse": root_mean_squared_error(y_true.ravel(), y_pred.ravel()),
    }
    per_step = mean_absolute_error(y_true, y_pred, multioutput="raw_values")  # (H,)
    for h, value in enumerate(per_step, start=1):
        out[f"mae_h{h}"] = value
    out["rmse_h1"] = root_mean_squared_error(y_true[:, 0], y_pred[:, 0])
    if scale > 0:
        out["mase"] = out["mae"] / scale
        out["mase_h1"] = out["mae_h1"] / scale
    if y_naive is not None:
        y_naive = np.asarray(y_naive, dtype=np.float64).reshape(y_true.shape)
        naive = mean_absolute_error(y_true.ravel(), y_naive.ravel())
        naive_h1 = mean_absolute_error(y_true[:, 0], y_naive[:, 0])
        out["seasonal_naive_mae"] = naive
        out["seasonal_naive_mae_h1"] = naive_h1
        out["mae_vs_seasonal_naive"] = out["mae"] / naive if naive > 0 else float("inf")
        out["mae_vs_seasonal_naive_h1"] = out["mae_h1"] / naive_h1 if naive_h1 > 0 else float("inf")
    return {k: float(v) for k, v in out.items()}

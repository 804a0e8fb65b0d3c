"""Forecast metrics against scikit-learn (MAE, RMSE) and against MASE and the seasonal-naive
forecast worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, root_mean_squared_error

from deepworks.evaluate.forecasting import (
    forecast_metrics,
    mase_scale,
    seasonal_naive_from_window,
)


@pytest.fixture
def forecasts():
    rng = np.random.default_rng(0)
    y_true = rng.normal(50, 10, size=(40, 4))
    y_pred = y_true + rng.normal(0, 2, size=y_true.shape)
    y_naive = y_true + rng.normal(0, 5, size=y_true.shape)
    return y_true, y_pred, y_naive


def test_mae_and_rmse_match_sklearn(forecasts):
    y_true, y_pred, y_naive = forecasts
    m = forecast_metrics(y_true, y_pred, y_naive)
    assert m["mae"] == pytest.approx(mean_absolute_error(y_true.ravel(), y_pred.ravel()))
    assert m["rmse"] == pytest.approx(root_mean_squared_error(y_true.ravel(), y_pred.ravel()))
    assert m["rmse_h1"] == pytest.approx(root_mean_squared_error(y_true[:, 0], y_pred[:, 0]))
    for h in range(4):  # per-step MAE: one column per step ahead
        expected = mean_absolute_error(y_true[:, h], y_pred[:, h])
        assert m[f"mae_h{h + 1}"] == pytest.approx(expected)
    naive = mean_absolute_error(y_true.ravel(), y_naive.ravel())
    assert m["seasonal_naive_mae"] == pytest.approx(naive)
    assert m["mae_vs_seasonal_naive"] == pytest.approx(m["mae"] / naive)
    naive_h1 = mean_absolute_error(y_true[:, 0], y_naive[:, 0])
    assert m["mae_vs_seasonal_naive_h1"] == pytest.approx(m["mae_h1"] / naive_h1)
    assert m["mae_vs_seasonal_naive"] < 1  # the noisier forecast is the naive one
    assert "mase" not in m  # no training series given


def test_mase_by_hand():
    train = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    # season 1: |3-1| + |2-3| + |5-2| + |4-5| = 2 + 1 + 3 + 1 = 7 over 4 steps
    assert mase_scale(train, 1) == pytest.approx(7 / 4)
    # season 2: |2-1| + |5-3| + |4-2| = 1 + 2 + 2 = 5 over 3 steps
    assert mase_scale(train, 2) == pytest.approx(5 / 3)
    y_true = np.array([[6.0, 8.0], [7.0, 9.0]])
    y_pred = np.array([[5.0, 8.5], [7.5, 7.0]])
    # errors 1, 0.5, 0.5, 2: MAE 1.0; step 1: (1 + 0.5) / 2 = 0.75
    m = forecast_metrics(y_true, y_pred, scale=mase_scale(train, 1))
    assert m["mae"] == pytest.approx(1.0)
    assert m["mase"] == pytest.approx(1.0 / 1.75)
    assert m["mase_h1"] == pytest.approx(0.75 / 1.75)
    with pytest.raises(ValueError):
        mase_scale(train, 5)


def test_seasonal_naive_uses_the_value_one_season_back_known_at_the_origin():
    series = np.arange(100, 130, dtype=float)  # y_t = 100 + t: positions are easy to read
    w, m, horizon = 6, 4, 7
    origins = np.arange(w, len(series) - horizon)
    history = np.stack([series[t - w : t] for t in origins])  # (N, W)
    naive = seasonal_naive_from_window(history, horizon, m)
    for row, t in enumerate(origins):
        for h in range(horizon):
            k = -(-(h + 1) // m)  # ceil((h + 1) / m): whole seasons back to a known value
            assert naive[row, h] == series[t + h - m * k]
            assert t + h - m * k < t  # never a value after the origin
    # m = 1: the naive forecast repeats the last value for every step
    ones = seasonal_naive_from_window(history, 3, 1)
    np.testing.assert_array_equal(ones, np.repeat(history[:, -1:], 3, axis=1))
    with pytest.raises(ValueError):
        seasonal_naive_from_window(history[:, :3], 2, 4)


def test_a_perfect_forecast_and_the_naive_itself():
    y = np.array([[1.0, 2.0], [3.0, 4.0]])
    m = forecast_metrics(y, y, y + 1, scale=2.0)
    assert m["mae"] == 0 and m["rmse"] == 0 and m["mase"] == 0
    assert m["mae_vs_seasonal_naive"] == 0
    same = forecast_metrics(y, y + 1, y + 1, scale=2.0)
    assert same["mae_vs_seasonal_naive"] == pytest.approx(1.0)
    assert same["mase"] == pytest.approx(0.5)

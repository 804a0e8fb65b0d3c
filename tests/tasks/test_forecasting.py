"""The forecasting task: metrics in the series' own units against numpy / scikit-learn on the raw
series, the seasonal-naive baseline, and a whole run (train → report → evaluate) on sunspots."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
import torch
from sklearn.metrics import mean_absolute_error, root_mean_squared_error
from torch import nn

import deepworks
from deepworks.config import LossConfig
from deepworks.data.pipeline import load_dataset
from deepworks.errors import ConfigError
from deepworks.models import create_model
from deepworks.tasks.forecasting import Forecasting
from deepworks.train.trainer import Trainer

CPU = torch.device("cpu")
FAST = {"progress": False, "checkpoint": None, "device": "cpu"}
W, H, TEST, VAL = 22, 3, 30, 20


@pytest.fixture(scope="module")
def raw():
    return sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()


@pytest.fixture(scope="module")
def sunspots():
    split = {"val": 0.1, "test": 0.2}
    return load_dataset(
        "sunspots", split=split, window=W, horizon=H, test_steps=TEST, val_steps=VAL
    )


class Constant(nn.Module):
    """Always forecasts 0 in scaled units: the training span's mean in the series' units."""

    def forward(self, x):
        return torch.zeros(len(x), H)


class SeasonalNaive(nn.Module):
    """Forecasts the value one 11-year cycle earlier, read from the input window."""

    def forward(self, x):
        return x[:, W - 11 : W - 11 + H, 0]


def evaluate(model, data):
    task = Forecasting()
    task.setup(data, LossConfig(), CPU)
    outputs = task.eval_step(model, data.test.x, data.test.y)
    return task.evaluate(outputs, data.test.y)


def test_metrics_are_in_the_series_units(sunspots, raw):
    metrics, details, preds = evaluate(Constant(), sunspots)
    n = len(raw)
    origins = np.arange(n - TEST, n - H + 1)
    y_true = np.stack([raw[t : t + H] for t in origins])  # (N, H) sunspot numbers
    np.testing.assert_allclose(preds["y_true"], y_true, rtol=1e-5)
    mean = raw[: n - TEST - VAL].mean()  # the training span's mean
    np.testing.assert_allclose(preds["y_pred"], mean, rtol=1e-5)
    assert metrics["mae"] == pytest.approx(np.abs(y_true - mean).mean(), rel=1e-5)
    assert metrics["rmse"] == pytest.approx(np.sqrt(((y_true - mean) ** 2).mean()), rel=1e-5)
    # seasonal naive: the value 11 years before each target
    naive = np.stack([raw[t - 11 : t - 11 + H] for t in origins])
    np.testing.assert_allclose(preds["y_naive"], naive, rtol=1e-5)
    naive_h1 = np.abs(y_true[:, 0] - naive[:, 0]).mean()
    assert metrics["mae_vs_seasonal_naive_h1"] == pytest.approx(
        np.abs(y_true[:, 0] - mean).mean() / naive_h1, rel=1e-5
    )
    train = raw[: n - TEST - VAL]
    scale = np.abs(train[11:] - train[:-11]).mean()  # in-sample seasonal naive MAE
    assert metrics["mase"] == pytest.approx(metrics["mae"] / scale, rel=1e-6)
    assert details == {"task_type": "forecasting", "horizon": H, "season": 11}
    for h in range(1, H + 1):
        expected = np.abs(y_true[:, h - 1] - mean).mean()
        assert metrics[f"mae_h{h}"] == pytest.approx(expected, rel=1e-5)


def test_the_seasonal_naive_model_scores_a_ratio_of_one(sunspots):
    metrics, _, _ = evaluate(SeasonalNaive(), sunspots)
    assert metrics["mae_vs_seasonal_naive"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["mae_vs_seasonal_naive_h1"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("loss", ["mae", "huber"])
def test_an_mlp_learns_to_beat_the_cycle(sunspots, loss):
    torch.manual_seed(0)
    task = Forecasting()
    assert task.num_outputs(sunspots, LossConfig()) == H
    model = create_model("mlp", in_features=W, num_classes=H, hidden=[32])
    trainer = Trainer(
        epochs=40, batch_size=32, loss={"name": loss}, optimizer={"name": "adam", "lr": 3e-3},
        **FAST,
    )  # fmt: skip
    fit = trainer.fit(model, sunspots, task=task)
    assert fit.history[-1]["train/loss"] < fit.history[0]["train/loss"]
    assert fit.history[-1]["train/mae"] > 0  # training MAE, in sunspot numbers
    test = trainer.test(model, sunspots)
    p = test.predictions
    mae = mean_absolute_error(p["y_true"].ravel(), p["y_pred"].ravel())
    assert test.metrics["test/mae"] == pytest.approx(mae)
    rmse = root_mean_squared_error(p["y_true"].ravel(), p["y_pred"].ravel())
    assert test.metrics["test/rmse"] == pytest.approx(rmse)
    assert test.metrics["test/mae_vs_seasonal_naive_h1"] < 1
    # predict() returns the same forecasts, in sunspot numbers
    np.testing.assert_allclose(trainer.predict(model, sunspots.test.x)["y_pred"], p["y_pred"])


def test_forecasting_needs_a_series_and_a_regression_loss(sunspots):
    digits = load_dataset("digits")
    with pytest.raises(ConfigError, match="needs a time-series dataset"):
        Forecasting().num_outputs(digits, LossConfig())
    with pytest.raises(ConfigError, match="does not fit the forecasting task"):
        Forecasting().setup(sunspots, LossConfig(name="cross_entropy"), CPU)


def test_train_report_and_evaluate_a_sunspots_lstm(tmp_path):
    config = {
        "name": "sun",
        "seed": 0,
        "data": {"name": "sunspots", "window": 22, "horizon": 3, "test_steps": 30},
        "model": {"name": "rnn", "cell": "lstm", "hidden_size": 8},
        "task": {"name": "forecasting"},
        "train": {
            "epochs": 3,
            "batch_size": 64,
            "progress": False,
            "early_stopping": {"patience": 5, "restore_best": True},
        },
    }
    run = deepworks.train(config, out=tmp_path)
    m = run.metrics
    for key in ("mae", "rmse", "mase", "mae_vs_seasonal_naive", "mae_vs_seasonal_naive_h1"):
        assert np.isfinite(m[f"test/{key}"])
    assert {"test/mae_h1", "test/mae_h3", "val/mae"} <= set(m)
    assert run.model.get_config()["num_classes"] == 3 and run.model.get_config()["input_size"] == 1
    html = (run.dir / "report.html").read_text()
    assert 'alt="forecast vs actual"' in html and 'alt="multi-step forecasts"' in html
    assert "Model vs seasonal naive" in html
    again = deepworks.evaluate(run.dir)  # re-creates the same split by time
    for key, value in again.items():
        assert value == pytest.approx(m[key], rel=1e-5), key

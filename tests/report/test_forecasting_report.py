"""The forecasting report: forecast figures with dates on the x-axis and the model-vs-naive
table, from run files written the way a forecasting run writes them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepworks.evaluate.forecasting import forecast_metrics, mase_scale
from deepworks.report import write_report
from deepworks.report.forecasting import multi_step_figure, one_step_figure, sections
from deepworks.report.markup import fmt
from deepworks.report.run_files import load_run


def make_forecast_run(run: Path, horizon: int = 4, dates: list[str] | None = None) -> Path:
    """A forecasting run over a noisy 12-step cycle: truth, model and seasonal-naive forecasts."""
    run.mkdir(parents=True)
    rng = np.random.default_rng(0)
    t = np.arange(120)
    series = 50 + 20 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 2, len(t))
    start, n = 96, 24 - horizon + 1  # the test span is the last 24 steps
    origins = start + np.arange(n)
    y_true = np.stack([series[o : o + horizon] for o in origins])
    y_naive = np.stack([series[o - 12 : o - 12 + horizon] for o in origins])
    y_pred = y_true + rng.normal(0, 1, y_true.shape)
    np.savez(run / "predictions.npz", y_true=y_true, y_pred=y_pred, y_naive=y_naive)
    (run / "config.yaml").write_text("name: cycle\ntask: {name: forecasting}\n")
    (run / "evaluation.json").write_text(
        json.dumps({"split": "test", "task_type": "forecasting", "horizon": horizon, "season": 12})
    )
    extras = {
        "season": 12,
        "train_series": series[:80].tolist(),
        "test_dates": dates if dates is not None else [str(2000 + i) for i in range(24)],
        "context_dates": [str(1990 + i) for i in range(10)],
        "context_values": series[86:96].tolist(),
    }
    data = {"name": "cycle", "task_type": "forecasting", "input_shape": [12, 1], "extras": extras}
    (run / "data.json").write_text(json.dumps(data))
    return run


def pngs(html: str) -> int:
    return len(re.findall(r'<img src="data:image/png;base64,', html))


def test_report_has_the_forecast_figures_and_the_baseline_table(tmp_path):
    run = make_forecast_run(tmp_path / "cycle")
    html = write_report(run).read_text(encoding="utf-8")
    assert 'alt="forecast vs actual"' in html and 'alt="multi-step forecasts"' in html
    assert "Model vs seasonal naive" in html
    # the table's numbers are the metrics of the saved forecasts
    preds = np.load(run / "predictions.npz")
    extras = json.loads((run / "data.json").read_text())["extras"]
    scale = mase_scale(np.asarray(extras["train_series"]), 12)
    model = forecast_metrics(preds["y_true"], preds["y_pred"], preds["y_naive"], scale)
    naive = forecast_metrics(preds["y_true"], preds["y_naive"], None, scale)
    for key in ("mae", "rmse", "mase", "mae_h1"):
        assert f"<td class=num>{fmt(model[key])}</td><td class=num>{fmt(naive[key])}</td>" in html
    assert "(better)" in html  # the model's forecasts are closer than the naive ones


def test_one_step_horizon_has_no_multi_step_figure(tmp_path):
    run = make_forecast_run(tmp_path / "h1", horizon=1)
    found = sections(load_run(run), "test")
    assert [anchor for anchor, _, _ in found] == ["forecast", "baseline"]
    assert pngs(found[0][2]) == 1


def test_dates_on_the_x_axis(tmp_path):
    days = [str(d.date()) for d in pd.date_range("2021-01-03", periods=24, freq="W-SUN")]
    run = make_forecast_run(tmp_path / "weekly", dates=days)
    found = sections(load_run(run), "test")
    assert pngs(found[0][2]) == 2
    preds = np.load(run / "predictions.npz")
    x = pd.to_datetime(pd.Series(days)).to_numpy()
    fig = one_step_figure(x, preds["y_true"], preds["y_pred"], preds["y_naive"], 12)
    line = fig.axes[0].lines[0]  # the actual series, one point per test step
    assert len(line.get_xdata()) == 24
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert any(label.startswith("2021") for label in labels)  # date ticks, not step numbers
    fig = multi_step_figure(x, preds["y_true"], preds["y_pred"])
    forecasts = fig.axes[0].lines[1:]
    assert len(forecasts) == 4 and all(len(f.get_xdata()) in (4, 5) for f in forecasts)


def test_without_dates_or_naive_the_report_still_draws(tmp_path):
    run = make_forecast_run(tmp_path / "plain", dates=[])
    preds = dict(np.load(run / "predictions.npz"))
    del preds["y_naive"]
    np.savez(run / "predictions.npz", **preds)
    found = sections(load_run(run), "test")
    assert [anchor for anchor, _, _ in found] == ["forecast"]
    assert sections(load_run(run), "val")  # another split: step numbers on the x-axis


@pytest.mark.parametrize("split", ["test"])
def test_no_predictions_no_sections(tmp_path, split):
    run = tmp_path / "empty"
    run.mkdir()
    (run / "config.yaml").write_text("name: x\ntask: {name: forecasting}\n")
    assert sections(load_run(run), split) == []

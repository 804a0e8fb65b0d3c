"""Time-series datasets: split by time with no leakage, windows, training-span scaling, missing
values and the one-line errors of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
import torch

from deepworks.data.pipeline import load_dataset
from deepworks.errors import ConfigError, DataError, DeepworksError

SPLIT = {"val": 0.1, "test": 0.2}


def counting_csv(write_csv, n=60, extra="") -> str:
    """A yearly series whose value is its own step number, so a window shows where it came
    from; a second column ``other`` = 2 * step."""
    rows = [f"{1900 + t},{t},{2 * t}" for t in range(n)]
    return write_csv("year,value,other\n" + "\n".join(rows) + "\n" + extra)


def test_split_by_time_never_leaks_a_test_value_into_training(write_csv):
    path = counting_csv(write_csv)
    data = load_dataset(
        "series_csv", path=path, target="value", scale="none", window=5, horizon=3,
        test_steps=12, val_steps=8, split=SPLIT,
    )  # fmt: skip
    n_train, n_val, n = 40, 8, 60
    tx, ty = data.train.x[..., 0].numpy(), data.train.y.numpy()
    assert tx.max() < n_train and ty.max() < n_train  # training sees the training span only
    vy, sy, sx = data.val.y.numpy(), data.test.y.numpy(), data.test.x[..., 0].numpy()
    assert vy.min() >= n_train and vy.max() < n_train + n_val
    assert sy.min() >= n - 12 and sy.max() == n - 1  # test targets: the final span only
    assert sx.min() >= n - 12 - 5  # a test input may reach back one window into val
    # every window: inputs are the W steps just before its H consecutive targets
    for x, y in ((tx, ty), (sx, sy)):
        np.testing.assert_array_equal(y[:, 0] - x[:, -1], 1)
        np.testing.assert_array_equal(np.diff(x, axis=1), 1)
        np.testing.assert_array_equal(np.diff(y, axis=1), 1)
    # windows per span: every origin whose targets fit (training also needs a full window)
    assert (len(data.train), len(data.val), len(data.test)) == (40 - 5 - 3 + 1, 8 - 3 + 1, 10)
    assert data.train.x.shape == (33, 5, 2) and data.train.y.shape == (33, 3)
    assert data.train.x.dtype == data.train.y.dtype == torch.float32
    extras = data.extras
    assert extras["test_dates"] == [str(1900 + t) for t in range(48, 60)]
    assert extras["train_series"] == list(map(float, range(40)))
    assert data.model_sizes == {"input_size": 2} and data.task_type == "forecasting"


def test_scaler_fitted_on_the_training_span_only(write_csv):
    path = counting_csv(write_csv)
    data = load_dataset(
        "series_csv", path=path, target="other", window=4, test_steps=10, split={"val": 0.1},
        scale="standard",
    )  # fmt: skip
    n_train = 60 - 6 - 10
    train = np.arange(n_train, dtype=np.float64)
    mean, std = train.mean(), train.std()
    assert data.extras["target_scaler"]["shift"] == pytest.approx(2 * mean)
    assert data.extras["target_scaler"]["scale"] == pytest.approx(2 * std, rel=1e-5)
    # the last test target, step 59, in training-span units
    assert float(data.test.y[-1, 0]) == pytest.approx((59 - mean) / std, rel=1e-5)
    assert data.extras["target"] == "other" and data.extras["target_index"] == 1
    minmax = load_dataset(
        "series_csv", path=path, target="value", window=4, test_steps=10, split={"val": 0.1},
        scale="minmax",
    )  # fmt: skip
    assert float(minmax.train.x.min()) == 0 and float(minmax.train.x.max()) <= 1
    assert float(minmax.test.y.max()) > 1  # later values exceed the training range


def test_sunspots_holds_out_the_last_years():
    raw = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()
    data = load_dataset("sunspots", split=SPLIT, test_steps=30, val_steps=20, horizon=2)
    assert data.extras["test_dates"][0] == "1979" and data.extras["test_dates"][-1] == "2008"
    assert data.extras["season"] == 11 and data.input_shape == (22, 1)
    s = data.extras["target_scaler"]
    np.testing.assert_allclose(data.test.y[:, 0].numpy() * s["scale"] + s["shift"], raw[-30:-1],
                               rtol=1e-5)  # fmt: skip
    assert s["shift"] == pytest.approx(raw[: 309 - 50].mean(), rel=1e-5)
    fractions = load_dataset("sunspots", split={"val": 0.1, "test": 0.2})
    assert fractions.extras["spans"] == {"train": 216, "val": 31, "test": 62}


def test_nile_and_co2():
    nile = load_dataset("nile", split=SPLIT)
    assert nile.extras["season"] == 1 and nile.input_shape == (8, 1)
    with pytest.raises(DataError, match="first at 1958-05-10; set data.fill"):
        load_dataset("co2", split=SPLIT)
    weekly = load_dataset("co2", split=SPLIT, fill="interpolate")
    assert weekly.extras["season"] == 52 and weekly.input_shape == (104, 1)
    assert np.isfinite(weekly.train.x.numpy()).all()
    monthly = load_dataset("co2", split=SPLIT, fill="ffill", resample="month", horizon=6)
    assert monthly.extras["season"] == 12 and monthly.extras["test_dates"][-1] == "2001-12-01"
    assert monthly.test.y.shape[1] == 6
    dropped = load_dataset("co2", split=SPLIT, fill="drop")
    assert sum(dropped.extras["spans"].values()) == 2284 - 59


def test_missing_values_in_a_csv(write_csv):
    text = "date,sales\n2020-01-01,1\n2020-01-02,2\n2020-01-03,\n2020-01-04,4\n"
    text += "".join(f"2020-01-{d:02d},{d}\n" for d in range(5, 29))
    path = write_csv(text)
    with pytest.raises(DataError, match=r"first at 2020-01-03; set data.fill"):
        load_dataset("series_csv", path=path, target="sales", window=3, split=SPLIT)
    data = load_dataset(
        "series_csv", path=path, target="sales", window=3, split=SPLIT, fill="interpolate",
        scale="none",
    )  # fmt: skip
    assert float(data.train.x[0, 2, 0]) == 3.0  # the straight line across the gap
    # a day absent from an evenly spaced series is missing too
    gap = write_csv(text.replace("2020-01-10,10\n", ""), "gap.csv")
    with pytest.raises(
        DataError, match="2 step\\(s\\) have missing values, the first at 2020-01-03"
    ):
        load_dataset("series_csv", path=gap, target="sales", window=3, split=SPLIT)
    filled = load_dataset(
        "series_csv", path=gap, target="sales", window=3, split=SPLIT, fill="ffill", scale="none"
    )
    assert sum(filled.extras["spans"].values()) == 28


def test_bad_input_is_one_line(write_csv):
    path = counting_csv(write_csv, n=30)
    kw = {"path": path, "split": SPLIT}
    with pytest.raises(DataError, match=r"no column 'valeu'; did you mean 'value'"):
        load_dataset("series_csv", target="valeu", **kw)
    with pytest.raises(DataError, match=r"longer than series_csv|longer than .*data.csv \(30"):
        load_dataset("series_csv", target="value", window=25, horizon=10, **kw)
    with pytest.raises(DataError, match=r"longer than the training span \(21 of 30"):
        load_dataset("series_csv", target="value", window=20, horizon=2, **kw)
    with pytest.raises(DataError, match=r"leaves nothing of .* \(30 steps\) to train on"):
        load_dataset("series_csv", target="value", test_steps=25, val_steps=5, **kw)
    with pytest.raises(DataError, match=r"fewer than the horizon 5"):
        load_dataset("series_csv", target="value", window=5, horizon=5, test_steps=3, **kw)
    with pytest.raises(ConfigError, match=r"window: 8 is shorter than the seasonal period 11"):
        load_dataset("sunspots", split=SPLIT, window=8)
    bad = write_csv("year,value\n2000,1\n2001,2\n2002,abc\n2003,4\n", "bad.csv")
    with pytest.raises(DataError, match=r"line 4, column 'value': 'abc' is not a number"):
        load_dataset("series_csv", path=bad, target="value", split=SPLIT)
    unsorted = write_csv("year,value\n2000,1\n2002,2\n2001,3\n2003,4\n", "unsorted.csv")
    with pytest.raises(DataError, match=r"line 4: the time column 'year' must increase"):
        load_dataset("series_csv", path=unsorted, target="value", split=SPLIT)
    with pytest.raises(DeepworksError) as info:
        load_dataset("series_csv", target="value", window=25, horizon=10, **kw)
    assert "\n" not in str(info.value)

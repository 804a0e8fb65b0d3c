"""Time series as forecasting datasets: split by time, then cut into sliding windows.

A series of T steps with F columns (one of them the *target*) becomes supervised samples by a
sliding window. The sample whose first target step is t reads the W steps before it and predicts
the next H values of the target::

    x_t = (v_{t-W}, ..., v_{t-1})     (W, F)      y_t = (y_t, ..., y_{t+H-1})     (H,)

The series is split by time, never at random: train is the earliest span, then validation, then
test is the final span. Windows are cut *after* splitting, by where their targets lie: a window
belongs to the split that holds all H of its targets, so no test value is ever a training input or
target. Its input may reach back into the previous span (a test window reads the last W values
before its origin, as a forecaster deployed at that time would). Scaling statistics come from the
training span only.

Built-in real series ship inside statsmodels (no download): ``sunspots`` (yearly, 1700-2008),
``co2`` (weekly Mauna Loa CO2, 1958-2001, with missing weeks) and ``nile`` (yearly flow of the
Nile, 1871-1970). ``series_csv`` reads the user's own CSV with a time column.

Missing values are never filled silently: without ``fill`` a gap is a one-line error naming its
first timestamp; ``fill: ffill`` repeats the last value, ``interpolate`` draws a straight line
across the gap, ``drop`` removes the incomplete steps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from deepworks.data.bundle import DataBundle, Split
from deepworks.data.pipeline import fit_scaler
from deepworks.errors import ConfigError, DataError, close_match
from deepworks.registry import register_dataset

Fill = Literal["ffill", "interpolate", "drop"]
RESAMPLE = {"month": ("MS", 12), "quarter": ("QS", 4), "year": ("YS", 1)}


@dataclass
class Series:
    """A loaded series before splitting: timestamps (T,), values (T, F), the target column."""

    time: pd.Index
    values: np.ndarray
    columns: list[str]
    target: str
    season: int
    source: str

    @property
    def target_index(self) -> int:
        return self.columns.index(self.target)


def stamp(value: Any) -> str:
    """A timestamp as short text: ``1979`` for whole years, ``1958-05-10`` for dates."""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d") if value == value.normalize() else str(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def fill_missing(series: Series, fill: Fill | None) -> Series:
    """Apply ``fill`` to the steps with a missing value; without it, name the first such step."""
    missing = np.isnan(series.values).any(axis=1)
    if not missing.any():
        return series
    first = int(np.argmax(missing))
    if fill is None:
        raise DataError(
            f"{series.source}: {int(missing.sum())} step(s) have missing values, the first at "
            f"{stamp(series.time[first])}; set data.fill to ffill, interpolate or drop"
        )
    frame = pd.DataFrame(series.values, columns=series.columns)
    if fill == "ffill":
        frame = frame.ffill().bfill()  # a gap at the very start takes the first known value
    elif fill == "interpolate":
        frame = frame.interpolate(method="linear", limit_direction="both")
    elif fill == "drop":
        keep = ~missing
        return Series(
            series.time[keep],
            series.values[keep],
            series.columns,
            series.target,
            series.season,
            series.source,
        )
    else:
        raise ConfigError(f"data.fill: {fill!r} is not a fill (choices: ffill, interpolate, drop)")
    values = frame.to_numpy(np.float64)
    return Series(series.time, values, series.columns, series.target, series.season, series.source)


def span_sizes(
    n: int, split: dict[str, float], test_steps: int | None, val_steps: int | None
) -> tuple[int, int, int]:
    """(train, val, test) lengths: absolute steps where given, else fractions of the series."""
    val_frac, test_frac = float(split.get("val", 0.0)), float(split.get("test", 0.0))
    n_test = test_steps if test_steps is not None else round(test_frac * n)
    n_val = val_steps if val_steps is not None else round(val_frac * n)
    if n_test < 0 or n_val < 0:
        raise ConfigError("data.test_steps / data.val_steps: must be >= 0")
    return n - n_val - n_test, n_val, n_test


def windows(
    values: np.ndarray, target: np.ndarray, start: int, stop: int, window: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """All windows whose H targets lie in steps [start, stop): x (N, W, F), y (N, H).

    The origin t (first target step) runs over max(start, W) .. stop - H, so inputs come from
    steps t - W .. t - 1, which may precede ``start`` but never reach ``stop``.
    """
    origins = np.arange(max(start, window), stop - horizon + 1)
    x = np.stack([values[t - window : t] for t in origins]) if len(origins) else None
    y = np.stack([target[t : t + horizon] for t in origins]) if len(origins) else None
    return x, y


def forecasting_bundle(
    series: Series,
    *,
    window: int | None,
    horizon: int,
    split: dict[str, float],
    scale: str,
    test_steps: int | None = None,
    val_steps: int | None = None,
    name: str = "",
) -> DataBundle:
    """Split ``series`` by time, scale with training statistics and cut windows into a bundle."""
    m = series.season
    window = max(2 * m, 8) if window is None else window
    if window < 1 or horizon < 1:
        raise ConfigError(f"data.window ({window}) and data.horizon ({horizon}) must be >= 1")
    if window < m:
        raise ConfigError(
            f"data.window: {window} is shorter than the seasonal period {m} of {series.source}; "
            f"the seasonal-naive baseline reads the value one period back from the window, so "
            f"use window >= {m} (or set data.season)"
        )
    n = len(series.values)
    n_train, n_val, n_test = span_sizes(n, split, test_steps, val_steps)
    if n_train <= 0:
        raise DataError(
            f"data.split: holding out val {n_val} and test {n_test} steps leaves nothing of "
            f"{series.source} ({n} steps) to train on; hold out less"
        )
    if window + horizon > n:
        raise DataError(
            f"data.window + data.horizon ({window} + {horizon}) is longer than {series.source} "
            f"({n} steps); use a shorter window or horizon"
        )
    if n_train < window + horizon:
        raise DataError(
            f"data.window + data.horizon ({window} + {horizon}) is longer than the training span "
            f"({n_train} of {n} steps after holding out val {n_val} and test {n_test}); use a "
            "shorter window or horizon, or hold out less"
        )
    if n_train <= m:
        raise DataError(
            f"{series.source}: the training span ({n_train} steps) must be longer than the "
            f"seasonal period ({m}) to scale MASE; hold out less"
        )
    for label, size in (("val", n_val), ("test", n_test)):
        if 0 < size < horizon:
            raise DataError(
                f"data.{label}: the {label} span has {size} steps, fewer than the horizon "
                f"{horizon}; hold out at least {horizon} steps or set it to 0"
            )
    scaler = fit_scaler(series.values[:n_train].astype(np.float32), scale, is_image=False)
    shift = np.asarray(scaler["shift"]) if scaler else np.zeros(series.values.shape[1])
    spread = np.asarray(scaler["scale"]) if scaler else np.ones(series.values.shape[1])
    scaled = ((series.values - shift) / spread).astype(np.float32)  # (T, F)
    k = series.target_index
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n - n_test, n)}
    splits: dict[str, Split | None] = {}
    for label, (a, b) in bounds.items():
        if b - a == 0:
            splits[label] = None
            continue
        x, y = windows(scaled, scaled[:, k], a, b, window, horizon)
        splits[label] = Split(torch.from_numpy(x), torch.from_numpy(y))

    target_values = series.values[:, k]
    test_start = n - n_test
    extras = {
        "target": series.target,
        "target_index": k,
        "columns": list(series.columns),
        "window": window,
        "horizon": horizon,
        "season": m,
        "target_scaler": {"shift": float(shift[k]), "scale": float(spread[k])},
        "train_series": target_values[:n_train].tolist(),  # original units, for MASE
        "spans": {"train": n_train, "val": n_val, "test": n_test},
        "start": {label: stamp(series.time[a]) for label, (a, b) in bounds.items() if b > a},
        "test_dates": [stamp(t) for t in series.time[test_start:]],
        # the window before the first test target, for context in the report
        "context_dates": [stamp(t) for t in series.time[max(test_start - window, 0) : test_start]],
        "context_values": target_values[max(test_start - window, 0) : test_start].tolist(),
    }
    return DataBundle(
        name=name or series.source,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        task_type="forecasting",
        input_shape=(window, len(series.columns)),
        feature_names=list(series.columns),
        scaler=scaler,
        model_sizes={"input_size": len(series.columns)},
        extras=extras,
    )


# --- built-in series -----------------------------------------------------------------------


def _statsmodels(module: str):
    from statsmodels import datasets

    return getattr(datasets, module).load_pandas().data


def _yearly(
    frame: pd.DataFrame, year: str, column: str, target: str, season: int, source: str
) -> Series:
    time = pd.Index(frame[year].astype(int), name="year")
    values = frame[[column]].to_numpy(np.float64)
    return Series(time, values, [target], target, season, source)


@register_dataset("sunspots")
def sunspots(
    split: dict[str, float],
    scale: str = "standard",
    window: int | None = None,
    horizon: int = 1,
    fill: Fill | None = None,
    season: int = 11,
    test_steps: int | None = None,
    val_steps: int | None = None,
) -> DataBundle:
    """Yearly sunspot numbers 1700-2008 (309 years, an ~11-year cycle): forecast the next years.

    Args:
        split: Fractions of the years held out for validation and test (the latest years).
        scale: "standard", "minmax" or "none", fitted on the training years.
        window: Input length in years (default two seasons, 22).
        horizon: Years ahead to forecast (multi-step: one output per year).
        fill: How to fill missing values (the series has none).
        season: Period of the seasonal-naive baseline, in years.
        test_steps: Hold out exactly this many final years for test (e.g. 30).
        val_steps: Hold out exactly this many years before the test span for validation.
    """
    frame = _statsmodels("sunspots")
    series = _yearly(frame, "YEAR", "SUNACTIVITY", "sunactivity", season, "sunspots")
    series = fill_missing(series, fill)
    return forecasting_bundle(
        series, window=window, horizon=horizon, split=split, scale=scale,
        test_steps=test_steps, val_steps=val_steps, name="sunspots",
    )  # fmt: skip


@register_dataset("nile")
def nile(
    split: dict[str, float],
    scale: str = "standard",
    window: int | None = None,
    horizon: int = 1,
    fill: Fill | None = None,
    season: int = 1,
    test_steps: int | None = None,
    val_steps: int | None = None,
) -> DataBundle:
    """Yearly flow of the Nile at Aswan 1871-1970 (100 years, 10^8 m^3); naive baseline (season 1).

    Args:
        split: Fractions of the years held out for validation and test (the latest years).
        scale: "standard", "minmax" or "none", fitted on the training years.
        window: Input length in years (default 8).
        horizon: Years ahead to forecast (multi-step: one output per year).
        fill: How to fill missing values (the series has none).
        season: Period of the seasonal-naive baseline, in years (1: the naive last value).
        test_steps: Hold out exactly this many final years for test.
        val_steps: Hold out exactly this many years before the test span for validation.
    """
    series = _yearly(_statsmodels("nile"), "year", "volume", "volume", season, "nile")
    series = fill_missing(series, fill)
    return forecasting_bundle(
        series, window=window, horizon=horizon, split=split, scale=scale,
        test_steps=test_steps, val_steps=val_steps, name="nile",
    )  # fmt: skip


@register_dataset("co2")
def co2(
    split: dict[str, float],
    scale: str = "standard",
    window: int | None = None,
    horizon: int = 1,
    fill: Fill | None = None,
    resample: Literal["month", "quarter", "year"] | None = None,
    season: int | None = None,
    test_steps: int | None = None,
    val_steps: int | None = None,
) -> DataBundle:
    """Weekly atmospheric CO2 at Mauna Loa 1958-2001 (ppm; 2,284 weeks, 59 of them missing).

    Args:
        resample: Average the weeks into "month", "quarter" or "year" means first (a mean over
            the weeks that have a value; a period with none stays missing).
        season: Period of the seasonal-naive baseline (default: 52 weeks, 12 months, 4 quarters
            or 1 year).
        fill: Required for the weekly series: "ffill", "interpolate" or "drop" the missing weeks.
        split: Fractions of the steps held out for validation and test (the latest steps).
        scale: "standard", "minmax" or "none", fitted on the training steps.
        window: Input length in steps (default two seasons).
        horizon: Steps ahead to forecast (multi-step: one output per step).
        test_steps: Hold out exactly this many final steps for test.
        val_steps: Hold out exactly this many steps before the test span for validation.
    """
    data = _statsmodels("co2")["co2"]
    period = 52
    if resample is not None:
        if resample not in RESAMPLE:
            raise ConfigError(
                f"data.resample: {resample!r} is not a period (choices: {', '.join(RESAMPLE)})"
            )
        rule, period = RESAMPLE[resample]
        data = data.resample(rule).mean()
    m = period if season is None else season
    series = Series(data.index, data.to_numpy(np.float64)[:, None], ["co2"], "co2", m, "co2")
    series = fill_missing(series, fill)
    return forecasting_bundle(
        series, window=window, horizon=horizon, split=split, scale=scale,
        test_steps=test_steps, val_steps=val_steps, name="co2",
    )  # fmt: skip


# --- the user's own CSV --------------------------------------------------------------------


def read_series_csv(
    path: str, target: str, time: str | None, columns: list[str] | None, delimiter: str
) -> tuple[pd.Index, np.ndarray, list[str]]:
    """(timestamps, values (T, F) with NaN for empty cells, value column names) of a CSV."""
    from deepworks.data.files import _existing, _missing

    p = _existing(path)
    try:
        frame = pd.read_csv(
            p, sep=delimiter, dtype=str, keep_default_na=False, skipinitialspace=True
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: is not a readable CSV ({reason}); check the delimiter") from exc
    header = [str(c).strip() for c in frame.columns]
    frame.columns = header
    time = header[0] if time is None else time
    if time not in header:
        raise _missing(path, "column", time, header, "time")
    if target not in header:
        raise _missing(path, "column", target, header, "target")
    names = [c for c in header if c != time] if columns is None else list(columns)
    for name in names:
        if name not in header or name == time:
            raise _missing(path, "column", name, [c for c in header if c != time], "columns")
    if target not in names:
        names.append(target)  # the target's own past is always an input
    if frame.empty:
        raise DataError(f"{path}: no data rows below the header; add the series' values")
    cells = frame[names].apply(lambda c: c.str.strip())
    values = cells.replace("", "nan")
    numeric = values.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & (values.apply(lambda c: c.str.lower()) != "nan")
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise DataError(
            f"{path}: line {row + 2}, column {names[col]!r}: {cells.iat[row, col]!r} is not a "
            "number; value columns must be numeric (leave a missing value empty)"
        )
    stamps = frame[time].str.strip()
    as_number = pd.to_numeric(stamps, errors="coerce")
    if as_number.notna().all():
        index = pd.Index(as_number.to_numpy())
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas warns when it guesses the date format
            parsed = pd.to_datetime(stamps, errors="coerce")
        if parsed.isna().any():
            row = int(np.argmax(parsed.isna().to_numpy()))
            raise DataError(
                f"{path}: line {row + 2}, column {time!r}: {stamps.iat[row]!r} is not a date or "
                "a number; the time column needs a timestamp on every row"
            )
        index = pd.DatetimeIndex(parsed)
    if not index.is_monotonic_increasing or index.has_duplicates:
        row = int(np.argmax(~np.asarray(index[1:] > index[:-1]))) + 1
        hint = close_match(time, [c for c in header if c != time])
        raise DataError(
            f"{path}: line {row + 2}: the time column {time!r} must increase row by row "
            f"(found {stamps.iat[row]!r} after {stamps.iat[row - 1]!r}); sort the file"
            + (f" or check that time is the right column (not {hint!r})" if hint else "")
        )
    return index, numeric.to_numpy(np.float64), names


def regular_grid(index: pd.Index, values: np.ndarray) -> tuple[pd.Index, np.ndarray]:
    """Insert rows of NaN for timestamps missing from an evenly spaced series.

    The step is read from the first timestamps (a number step, or a pandas frequency for dates);
    a series that does not sit on such a grid is kept as it is (its steps are just its rows).
    """
    if len(index) < 4:
        return index, values
    if isinstance(index, pd.DatetimeIndex):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            freq = pd.infer_freq(index[:4])
        if freq is None:
            return index, values
        grid = pd.date_range(index[0], index[-1], freq=freq)
    else:
        step = float(index[1] - index[0])
        if step <= 0:
            return index, values
        grid = pd.Index(index[0] + step * np.arange(round((index[-1] - index[0]) / step) + 1))
        nearest = np.clip(np.searchsorted(grid, index), 0, len(grid) - 1)
        if not np.allclose(grid[nearest], index):
            return index, values
    if len(grid) == len(index) or not index.isin(grid).all():
        return index, values
    full = pd.DataFrame(values, index=index).reindex(grid)
    return grid, full.to_numpy(np.float64)


@register_dataset("series_csv")
def series_csv(
    path: str,
    target: str,
    split: dict[str, float],
    scale: str = "standard",
    time: str | None = None,
    columns: list[str] | None = None,
    delimiter: str = ",",
    window: int | None = None,
    horizon: int = 1,
    fill: Fill | None = None,
    season: int = 1,
    test_steps: int | None = None,
    val_steps: int | None = None,
) -> DataBundle:
    """The user's own series: a CSV with a time column and one or more value columns.

    Args:
        path: The CSV file; its first row names the columns, rows are in time order.
        target: The column to forecast.
        time: The time column: dates (``2020-01-31``) or numbers (years); default the first.
        columns: Value columns fed to the model (default all but time); the target is always
            one of them.
        delimiter: The separator between values.
        season: Period of the seasonal-naive baseline in steps (1: the naive last value).
        fill: "ffill", "interpolate" or "drop" for empty cells and for timestamps missing from
            an evenly spaced series; without it they are an error naming the first one.
        split: Fractions of the rows held out for validation and test (the latest rows).
        scale: "standard", "minmax" or "none", fitted on the training rows.
        window: Input length in steps (default max(2 * season, 8)).
        horizon: Steps ahead to forecast (multi-step: one output per step).
        test_steps: Hold out exactly this many final steps for test (instead of a fraction).
        val_steps: Hold out exactly this many steps before the test span for validation.
    """
    index, values, names = read_series_csv(path, target, time, columns, delimiter)
    index, values = regular_grid(index, values)
    series = fill_missing(Series(index, values, names, target, season, path), fill)
    return forecasting_bundle(
        series, window=window, horizon=horizon, split=split, scale=scale,
        test_steps=test_steps, val_steps=val_steps, name=path,
    )  # fmt: skip

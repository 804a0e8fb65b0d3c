"""Report sections of a forecasting run: forecasts against the actual series, model vs baseline.

``predictions.npz`` holds (N, H) arrays in the series' units: ``y_true``, ``y_pred`` (the model)
and ``y_naive`` (the seasonal-naive forecast), row i forecasting from origin i of the test span.
``data.json`` ("extras") gives the dates of the test span, the window before it (drawn as
context), the seasonal period and the training series for MASE. Without dates the x-axis counts
steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from deepworks.evaluate.forecasting import forecast_metrics, mase_scale
from deepworks.report import plots
from deepworks.report.markup import esc, figure, fmt, table
from deepworks.report.run_files import RunFiles
from deepworks.report.sections import register_sections
from deepworks.report.style import ACCENT, TRAIN, VAL

ACTUAL = "#111827"
CONTEXT = "#9ca3af"
ORIGINS = 4  # multi-step forecasts drawn from this many origins


@register_sections("forecasting", tasks=("forecasting",))
def sections(run: RunFiles, split: str) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of each forecasting section that ``run`` has data for."""
    preds = run.predictions
    if preds is None or "y_pred" not in preds or np.size(preds["y_true"]) == 0:
        return []
    y_true = np.asarray(preds["y_true"], np.float64).reshape(len(preds["y_true"]), -1)
    y_pred = np.asarray(preds["y_pred"], np.float64).reshape(y_true.shape)
    y_naive = preds.get("y_naive")
    y_naive = None if y_naive is None else np.asarray(y_naive, np.float64).reshape(y_true.shape)
    extras = (run.data or {}).get("extras") or {}
    # dates of the test span (the only span whose dates a run keeps); else step numbers
    dates = _dates(extras.get("test_dates") if split == "test" else None, y_true)
    context = None if dates is None else _context(extras, dates)
    if dates is None:
        dates = np.arange(len(y_true) + y_true.shape[1] - 1)
    season = int(extras.get("season", 1))
    figs = [
        figure(
            plots.fig_to_data_uri(one_step_figure(dates, y_true, y_pred, y_naive, season, context)),
            "forecast vs actual",
            f"One-step-ahead forecasts over the {split} span: actual (black), model (blue), "
            f"seasonal naive with period {season} (orange, dashed)"
            + ("; grey: the input window before the span" if context is not None else ""),
        )
    ]
    horizon = y_true.shape[1]
    if horizon > 1:
        figs.append(
            figure(
                plots.fig_to_data_uri(multi_step_figure(dates, y_true, y_pred, context)),
                "multi-step forecasts",
                f"{horizon}-step forecasts from {min(ORIGINS, len(y_true))} origins: each line "
                "starts at the last value known at its origin",
            )
        )
    out = [("forecast", "Forecast vs actual", f'<div class="figs">{"".join(figs)}</div>')]
    if y_naive is not None:
        out.append(("baseline", "Model vs seasonal naive", _table(extras, y_true, y_pred, y_naive)))
    return out


def _dates(stamps: list[str] | None, y_true: np.ndarray) -> np.ndarray | None:
    """x-axis positions of the span's N + H - 1 target steps (years or dates), or None."""
    n = len(y_true) + y_true.shape[1] - 1
    return _axis(stamps[:n]) if stamps and len(stamps) >= n else None


def _axis(stamps: list[str]) -> np.ndarray | None:
    """Timestamps as numbers (years) or datetime64 (dates); None when they are neither."""
    numbers = pd.to_numeric(pd.Series(stamps), errors="coerce")
    if numbers.notna().all():
        return numbers.to_numpy()
    parsed = pd.to_datetime(pd.Series(stamps), errors="coerce")
    if parsed.notna().all():
        return parsed.to_numpy()
    return None


def _context(extras: dict[str, Any], dates: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The input window before the span, on the same kind of axis as ``dates`` (else None)."""
    stamps, values = extras.get("context_dates"), extras.get("context_values")
    if not stamps or not values or len(stamps) != len(values):
        return None
    axis = _axis(stamps)
    if axis is None or np.issubdtype(axis.dtype, np.datetime64) != np.issubdtype(
        dates.dtype, np.datetime64
    ):
        return None
    return axis, np.asarray(values, np.float64)


def _actual(y_true: np.ndarray) -> np.ndarray:
    """The span's actual series (N + H - 1,): each origin's first target, then the last row."""
    return np.concatenate([y_true[:, 0], y_true[-1, 1:]])


def one_step_figure(
    dates: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    y_naive: np.ndarray | None,
    season: int,
    context: tuple[np.ndarray, np.ndarray] | None = None,
):
    """Actual series vs one-step-ahead forecasts of the model and of the seasonal naive."""
    n = len(y_true)
    with plots.report_style():
        fig = plots.new_figure(9.0, 3.4)
        ax = fig.add_subplot()
        if context is not None:
            ax.plot(*context, color=CONTEXT, lw=1.2, label="before the span")
        ax.plot(dates, _actual(y_true), color=ACTUAL, lw=1.4, label="actual")
        ax.plot(dates[:n], y_pred[:, 0], color=TRAIN, lw=1.6, label="model (1 step ahead)")
        if y_naive is not None:
            label = f"seasonal naive (m={season})" if season > 1 else "naive (last value)"
            ax.plot(dates[:n], y_naive[:, 0], color=VAL, lw=1.3, ls="--", label=label)
        ax.set_title("Forecast vs actual")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def multi_step_figure(
    dates: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    context: tuple[np.ndarray, np.ndarray] | None = None,
):
    """The actual series with the full H-step forecast from a few evenly spaced origins."""
    n, horizon = y_true.shape
    actual = _actual(y_true)
    origins = np.unique(np.linspace(0, n - 1, min(ORIGINS, n)).round().astype(int))
    colours = (TRAIN, ACCENT, VAL, "#a855f7", "#ec4899")
    with plots.report_style():
        fig = plots.new_figure(9.0, 3.4)
        ax = fig.add_subplot()
        if context is not None:
            ax.plot(*context, color=CONTEXT, lw=1.2, label="before the span")
        ax.plot(dates, actual, color=ACTUAL, lw=1.4, label="actual")
        for j, i in enumerate(origins):
            colour = colours[j % len(colours)]
            xs, ys = dates[i : i + horizon], y_pred[i]
            if i > 0:  # start the line at the last value known at the origin
                xs, ys = (
                    np.concatenate([dates[i - 1 : i], xs]),
                    np.concatenate([[actual[i - 1]], ys]),
                )
            elif context is not None:
                xs = np.concatenate([context[0][-1:], xs])
                ys = np.concatenate([context[1][-1:], ys])
            ax.plot(
                xs,
                ys,
                color=colour,
                lw=1.8,
                marker="o",
                ms=3,
                label=f"{_label(xs[-len(ys[-horizon:])])}–{_label(xs[-1])}",
            )
        ax.set_title(f"{horizon}-step forecasts")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _label(value: Any) -> str:
    if isinstance(value, np.datetime64):
        return str(pd.Timestamp(value).date())
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _table(
    extras: dict[str, Any], y_true: np.ndarray, y_pred: np.ndarray, y_naive: np.ndarray
) -> str:
    """MAE, RMSE and MASE of the model and of the seasonal naive, over all steps and step 1."""
    train, season = extras.get("train_series"), int(extras.get("season", 1))
    scale = mase_scale(np.asarray(train), season) if train and len(train) > season else 0.0
    model = forecast_metrics(y_true, y_pred, y_naive, scale)
    naive = forecast_metrics(y_true, y_naive, None, scale)
    rows_of = [("MAE", "mae"), ("RMSE", "rmse"), ("MASE", "mase")]
    rows_of += [("MAE, 1 step ahead", "mae_h1"), ("RMSE, 1 step ahead", "rmse_h1")]
    rows_of += [("MASE, 1 step ahead", "mase_h1")]
    rows = []
    for label, key in rows_of:
        if key not in model:
            continue
        a, b = model[key], naive[key]
        ratio = a / b if b else float("nan")
        better = "better" if ratio < 1 else "worse"
        rows.append([esc(label), esc(fmt(a)), esc(fmt(b)), f"{esc(fmt(ratio))} ({better})"])
    html = table(["metric", "model", "seasonal naive", "model ÷ naive"], rows, [False] + [True] * 3)
    note = (
        f'<p class="note">Seasonal naive: the value one season ({season} steps) before each '
        "target, known at the forecast origin. MASE divides the MAE by the seasonal naive's "
        "one-step MAE on the training span; a ratio below 1 means the model beats the baseline."
        "</p>"
    )
    return html + note

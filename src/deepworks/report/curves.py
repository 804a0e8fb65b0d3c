"""Learning curves: loss, metrics and learning rate per epoch, from ``history.csv`` rows."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from deepworks.evaluate.specs import MetricSpec, default_label, find
from deepworks.report.style import ACCENT, TRAIN, VAL, new_figure, report_style


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _series(rows: Sequence[Mapping], column: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) for ``column`` over epochs, keeping only rows where both are finite."""
    x = np.array([_float(r.get("epoch", i + 1)) for i, r in enumerate(rows)])
    y = np.array([_float(r.get(column)) for r in rows])
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _plot_series(ax, x, y, color, label, linestyle="-") -> None:
    marker = "o" if len(x) <= 30 else None
    ax.plot(x, y, color=color, label=label, linestyle=linestyle, marker=marker, markersize=3.5)


def _mark_best(ax, x, y, spec: MetricSpec | None, color: str) -> None:
    """Star the best point of a validation curve, as its spec says which way is better, and
    label it with its value and epoch (no star for a value that is not a declared score)."""
    if len(y) == 0 or spec is None or spec.direction is None:
        return
    lower = spec.direction == "min"
    i = int(np.argmin(y) if lower else np.argmax(y))
    ax.scatter([x[i]], [y[i]], s=110, marker="*", color=color, edgecolor="white", zorder=5)
    # Keep the label inside the axes: right-align it near the right edge, left-align near the left.
    where = (x[i] - x.min()) / (x.max() - x.min()) if x.max() > x.min() else 0.5
    ha = "right" if where > 0.75 else "left" if where < 0.25 else "center"
    below = not lower  # a maximum is labelled below the curve, a minimum above
    ax.annotate(
        f"best {y[i]:.4g} @ {x[i]:g}",
        (x[i], y[i]),
        xytext=(0, -14 if below else 9),
        textcoords="offset points",
        ha=ha,
        fontsize=8,
        color=color,
    )


def _finish_axes(ax, ylabel: str | None, series: list[np.ndarray]) -> None:
    ax.set_xlabel("epoch")
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.xaxis.get_major_locator().set_params(integer=True)
    epochs = np.unique(np.concatenate([line.get_xdata() for line in ax.get_lines()] or [[]]))
    if epochs.size == 1:  # one epoch: centre it instead of zooming into ±0.05 of an epoch
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    values = np.concatenate(series) if series else np.array([])
    # Losses that fall by orders of magnitude read better on a log axis.
    if values.size and values.min() > 0 and values.max() / values.min() > 100:
        ax.set_yscale("log")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")


def learning_curves(
    history_rows: Sequence[Mapping], specs: Sequence[MetricSpec] = ()
) -> list[Figure]:
    """Figures of a run's history: losses, validation metrics, and learning rate if it varies.

    Args:
        history_rows: One mapping per epoch, as read from ``history.csv`` (``epoch``, ``lr``,
            ``train/loss``, ``val/loss``, ``val/accuracy``, ...). Missing or empty values are
            skipped, so a run without a validation split still gets its training curves.
        specs: The run's metric specs (``deepworks.train.specs.run_metrics``): which way is
            better (the ★ of each validation curve) and the panels' titles.

    Returns:
        Up to three figures, in order: losses (train vs val), one panel per metric (val solid,
        train dashed), learning rate. A figure with nothing to show is left out. Each figure's
        ``get_label()`` says which it is: ``"loss"``, ``"metrics"`` or ``"lr"``.
    """
    rows = list(history_rows)
    columns = list(dict.fromkeys(c for r in rows for c in r))
    plotted = {c for c in columns if _series(rows, c)[1].size}
    figures = []
    with report_style():
        losses = [c for c in plotted if c.split("/")[0] in ("train", "val") and "loss" in c]
        if losses:
            figures.append(_loss_figure(rows, sorted(losses, key=columns.index), specs))
        metrics = _metric_names(columns, plotted)
        if metrics:
            figures.append(_metrics_figure(rows, metrics, specs))
        if "lr" in plotted and np.unique(_series(rows, "lr")[1]).size > 1:
            fig = new_figure(4.6, 3.5)
            ax = fig.add_subplot()
            x, y = _series(rows, "lr")
            _plot_series(ax, x, y, ACCENT, None)
            ax.set_title("Learning rate")
            _finish_axes(ax, "learning rate", [y])
            fig.set_label("lr")
            figures.append(fig)
    return figures


def _loss_figure(rows: Sequence[Mapping], losses: list[str], specs) -> Figure:
    fig = new_figure(5.8, 3.5)
    ax = fig.add_subplot()
    names = list(dict.fromkeys(c.split("/", 1)[1] for c in losses))
    styles = ["-", "--", ":", "-."]
    series = []
    for column in losses:
        split, name = column.split("/", 1)
        x, y = _series(rows, column)
        series.append(y)
        style = styles[names.index(name) % len(styles)]
        _plot_series(ax, x, y, TRAIN if split == "train" else VAL, column, style)
        if column == "val/loss":
            _mark_best(ax, x, y, find(column, specs), VAL)
    ax.set_title("Loss")
    _finish_axes(ax, "loss", series)
    fig.set_label("loss")
    return fig


def _metric_names(columns: list[str], plotted: set[str]) -> list[str]:
    """Metric names (without split prefix) to plot: validation ones, else training ones."""

    def names(split: str) -> list[str]:
        return [
            c.split("/", 1)[1]
            for c in columns
            if c in plotted and c.startswith(split + "/") and "loss" not in c and "per_s" not in c
        ]

    return names("val") or names("train")


def _metrics_figure(rows: Sequence[Mapping], metrics: list[str], specs) -> Figure:
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = new_figure(3.5 * ncols + 0.2, 2.9 * nrows)
    for i, name in enumerate(metrics):
        spec = find(name, specs)
        ax = fig.add_subplot(nrows, ncols, i + 1)
        series = []
        for split, color, style in (("train", TRAIN, "--"), ("val", VAL, "-")):
            x, y = _series(rows, f"{split}/{name}")
            if y.size:
                series.append(y)
                _plot_series(ax, x, y, color, split, style)
                if split == "val":
                    _mark_best(ax, x, y, spec, color)
        ax.set_title(spec.label_for(name) if spec is not None else default_label(name))
        _finish_axes(ax, None, series)
        ax.margins(y=0.15)
    fig.set_label("metrics")
    return fig

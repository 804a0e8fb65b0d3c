"""Figures for run reports, for the report itself and for any module that wants the same look.

Every helper returns a :class:`matplotlib.figure.Figure` drawn off-screen (Agg); pass it to
:func:`fig_to_data_uri` to embed it in HTML as ``<img src="data:image/png;base64,...">``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from deepworks.report.curves import learning_curves
from deepworks.report.style import (
    ACCENT,
    GRID,
    TRAIN,
    VAL,
    WRONG,
    fig_to_data_uri,
    new_figure,
    report_style,
)

__all__ = [
    "confusion_matrix_figure",
    "fig_to_data_uri",
    "as_images",
    "grid_rows",
    "image_grid",
    "image_mosaic",
    "learning_curves",
    "new_figure",
    "regression_scatter",
    "report_style",
    "residual_histogram",
]


def confusion_matrix_figure(
    cm: Sequence[Sequence[float]] | np.ndarray,
    class_names: Sequence[str] | None = None,
    normalize: bool = False,
) -> Figure:
    """Heatmap of a confusion matrix, rows = true class, columns = predicted class.

    Args:
        cm: (K, K) counts.
        class_names: K axis labels; defaults to ``0..K-1``.
        normalize: Divide each row by its total, so cells read as the fraction of each true
            class (the diagonal is per-class recall); annotated as percentages.

    Returns:
        The figure; cells are annotated when K <= 30 (text colour chosen for contrast), with a
        colour bar instead for more classes.
    """
    counts = np.asarray(cm, dtype=float)
    k = counts.shape[0]
    names = [str(n) for n in class_names] if class_names is not None else [str(i) for i in range(k)]
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    else:
        values = counts
    size = min(max(0.3 * k + 1.9, 3.6), 12.0)
    fontsize = 8.5 if k <= 10 else 7 if k <= 20 else 5.5
    annotate = k <= 30
    with report_style():
        fig = new_figure(size if annotate else size + 0.8, size)
        ax = fig.add_subplot()
        ax.grid(False)
        vmax = 1.0 if normalize else max(values.max(), 1.0)
        image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
        if not annotate:  # too many cells to label: a colour scale instead
            fig.colorbar(image, ax=ax, shrink=0.8, format="{x:.0%}" if normalize else None)
        else:
            for (i, j), v in np.ndenumerate(values):
                text = f"{v:.0%}" if normalize else f"{int(round(v)):d}"
                color = "white" if v > 0.55 * vmax else "#1f2937" if v > 0 else "#9ca3af"
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=color)
        ticks = np.arange(k)
        labels = names if k <= 50 else [""] * k
        ax.set_xticks(
            ticks,
            labels,
            rotation=45 if max(map(len, names), default=0) > 3 else 0,
            ha="right" if max(map(len, names), default=0) > 3 else "center",
        )
        ax.set_yticks(ticks, labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.tick_params(length=0)
        ax.set_title("Row-normalized (recall)" if normalize else "Counts")
    return fig


def _to_display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """One image as (H, W) or (H, W, 3) in [0, 1], rescaled per image; plus a colormap."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3 and not (a.shape[0] > 4 and a.shape[-1] <= 4):
        a = np.moveaxis(a, 0, -1)  # (C, H, W) -> (H, W, C); (H, W, C) input is left as is
    if a.ndim == 3:
        a = a[..., :3] if a.shape[-1] in (3, 4) else a[..., 0]  # RGB(A) -> RGB, else channel 0
    a = np.nan_to_num(a)
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return a, ("gray" if a.ndim == 2 else None)


def image_grid(
    images: Sequence[np.ndarray] | np.ndarray,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    title_color: str = WRONG,
) -> Figure:
    """A grid of images with small titles, e.g. misclassified examples titled ``true→pred``.

    Args:
        images: N images, each (C, H, W), (H, W, C) or (H, W); each is min-max rescaled on its
            own, so normalized inputs display correctly. One channel is drawn in grey.
        titles: N titles, one per image.
        ncols: Images per row.
        title_color: Colour of the titles.
    """
    images = list(images)
    n = max(len(images), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    lines = max((str(t).count("\n") + 1 for t in titles or ()), default=0)
    cell, gap = 1.3, 0.15  # inches: image side, space between images
    title = 0.15 * lines + 0.05 if lines else 0.0
    width = ncols * cell + (ncols - 1) * gap + 0.1
    height = nrows * (cell + title) + (nrows - 1) * gap + 0.1
    with report_style():
        # Placed by hand: constrained layout is slow with dozens of axes and adds nothing here.
        fig = new_figure(width, height, constrained=False)
        fig.subplots_adjust(
            left=0.05 / width,
            right=1 - 0.05 / width,
            bottom=0.05 / height,
            top=1 - (0.05 + title) / height,
            wspace=gap / cell,
            hspace=(title + gap) / cell,
        )
        for i, image in enumerate(images):
            ax = fig.add_subplot(nrows, ncols, i + 1)
            data, cmap = _to_display(image)
            ax.imshow(data, cmap=cmap, interpolation="nearest" if data.shape[0] <= 64 else None)
            ax.set_axis_off()
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8, color=title_color, fontweight="normal")
    return fig


def as_images(a: np.ndarray, lead: int = 1) -> np.ndarray | None:
    """Arrays of images in the shape :func:`image_mosaic` draws, or None when they are not images.

    The first ``lead`` axes index the images (e.g. 1 for N samples, 2 for P interpolations of T
    frames); what follows is one image: (C, H, W) channels first, drawn grey from channel 0 when
    C < 3 and in colour from the first three channels otherwise; (H, W) grey; or (D,) flat
    features of a square s x s image (D = s², s > 1). Returns (..., H, W) grey or
    (..., H, W, 3) colour float32 arrays.
    """
    a = np.asarray(a, dtype=np.float32)
    image = a.shape[lead:]
    if len(image) == 3:
        return np.moveaxis(a[..., :3, :, :], -3, -1) if image[0] >= 3 else a[..., 0, :, :]
    if len(image) == 2:
        return a
    if len(image) == 1:
        side = math.isqrt(image[0])
        if side > 1 and side * side == image[0]:  # flat features of a square image
            return a.reshape(*a.shape[:lead], side, side)
    return None


def grid_rows(images: np.ndarray, ncols: int) -> np.ndarray:
    """N images (N, H, W[, 3]) as rows of ``ncols`` for :func:`image_mosaic`: an array
    (ceil(N / ncols), ncols, H, W[, 3]) whose last row is padded with NaN tiles (drawn white)."""
    images = np.asarray(images, dtype=np.float32)
    ncols = max(1, ncols)
    rows = max(1, math.ceil(len(images) / ncols))
    out = np.full((rows * ncols, *images.shape[1:]), np.nan, np.float32)
    out[: len(images)] = images
    return out.reshape(rows, ncols, *images.shape[1:])


def image_mosaic(
    images: np.ndarray,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    vrange: tuple[float, float] = (0.0, 1.0),
    cmap: str = "gray",
    cell: float = 0.5,
) -> Figure:
    """A rows x columns table of images on ONE fixed value range, drawn as a single mosaic.

    Unlike :func:`image_grid`, which rescales every image on its own, all tiles share
    ``vrange``, so a faint sample looks faint and signed weights keep their sign. The tiles are
    pasted into one RGB array with white gaps and drawn by one ``imshow`` on one axes: fast
    however many images there are (one axes per image costs seconds for a 100-sample grid).

    Args:
        images: (R, K, H, W) grey or (R, K, H, W, 3) colour images. NaN pixels are drawn white,
            so ragged rows can be padded with NaN tiles (see :func:`grid_rows`).
        row_labels: R labels drawn left of the rows.
        col_labels: K labels drawn above the columns.
        vrange: (lo, hi): values at or below lo take the colour map's first colour (black for
            "gray"), at or above hi its last; colour images are scaled the same way per channel.
        cmap: Matplotlib colour map for grey images, e.g. "RdBu_r" with ``vrange=(-1, 1)`` for
            signed filters (red positive, blue negative).
        cell: Side of one tile (image plus gap), in inches.
    """
    a = np.asarray(images, dtype=np.float32)
    colour = a.ndim == 5 and a.shape[-1] == 3
    if a.ndim != 4 and not colour:
        raise ValueError(f"image_mosaic takes (R, K, H, W[, 3]) images, got shape {a.shape}")
    rows, cols, h, w = a.shape[:4]
    if not a.size:
        raise ValueError(f"image_mosaic got no images (shape {a.shape})")
    lo, hi = (float(v) for v in vrange)
    scaled = np.clip((a - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)  # NaN stays NaN
    blank = np.isnan(scaled).any(axis=-1) if colour else np.isnan(scaled)
    scaled = np.nan_to_num(scaled)
    rgb = scaled if colour else matplotlib.colormaps[cmap](scaled)[..., :3].astype(np.float32)
    rgb[blank] = 1.0
    gap = max(1, round(min(h, w) / 8))  # white pixels between tiles
    tiles = np.ones((rows, cols, h + gap, w + gap, 3), np.float32)
    tiles[:, :, :h, :w] = rgb
    # (R, K, h', w', 3) → (R·h', K·w', 3), then drop the gap after the last row and column
    mosaic = tiles.transpose(0, 2, 1, 3, 4).reshape(rows * (h + gap), cols * (w + gap), 3)
    mosaic = mosaic[:-gap, :-gap]
    scale = cell / (max(h, w) + gap)  # inches per pixel
    longest = max((len(str(s)) for s in row_labels or ()), default=0)
    left = 0.15 + 0.065 * longest if row_labels else 0.05
    top = 0.25 if col_labels else 0.05
    ax_w, ax_h = mosaic.shape[1] * scale, mosaic.shape[0] * scale
    width, height = left + ax_w + 0.05, top + ax_h + 0.05
    with report_style():
        fig = new_figure(width, height, constrained=False)
        ax = fig.add_axes((left / width, 0.05 / height, ax_w / width, ax_h / height))
        ax.imshow(mosaic, interpolation="nearest", aspect="auto")
        ax.set_xticks([(w + gap) * c + (w - 1) / 2 for c in range(cols)] if col_labels else [])
        ax.set_yticks([(h + gap) * r + (h - 1) / 2 for r in range(rows)] if row_labels else [])
        if col_labels:
            ax.set_xticklabels(_fit(col_labels, cols), fontsize=8, color="#374151")
            ax.xaxis.tick_top()
        if row_labels:
            ax.set_yticklabels(_fit(row_labels, rows), fontsize=8, color="#374151")
        ax.tick_params(length=0)
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
    return fig


def _fit(labels: Sequence[str], n: int) -> list[str]:
    """Exactly ``n`` labels: extra ones dropped, missing ones blank."""
    labels = [str(s) for s in labels][:n]
    return labels + [""] * (n - len(labels))


def regression_scatter(y_true: np.ndarray, y_pred: np.ndarray, max_points: int = 5000) -> Figure:
    """Predicted vs true values with the identity line and R², MAE in the corner."""
    y_true = np.asarray(y_true, dtype=float).ravel()
    y_pred = np.asarray(y_pred, dtype=float).ravel()
    keep = np.isfinite(y_true) & np.isfinite(y_pred)
    y_true, y_pred = y_true[keep], y_pred[keep]
    with report_style():
        fig = new_figure(5.0, 4.6)
        ax = fig.add_subplot()
        idx = np.arange(y_true.size)
        if idx.size > max_points:  # keep the plot light; the statistics use every point
            idx = np.random.default_rng(0).choice(idx, max_points, replace=False)
        alpha = 0.7 if idx.size < 500 else 0.35
        ax.scatter(y_true[idx], y_pred[idx], s=12, alpha=alpha, color=TRAIN, edgecolors="none")
        if y_true.size:
            lo = float(min(y_true.min(), y_pred.min()))
            hi = float(max(y_true.max(), y_pred.max()))
            ax.plot([lo, hi], [lo, hi], color=ACCENT, linestyle="--", linewidth=1.4, label="y = x")
            ss_res = float(((y_true - y_pred) ** 2).sum())
            ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
            r2 = 1 - ss_res / ss_tot if ss_tot > 0 else math.nan
            mae = float(np.abs(y_true - y_pred).mean())
            ax.text(
                0.04,
                0.96,
                f"R² = {r2:.3f}\nMAE = {mae:.4g}\nn = {y_true.size:,}",
                transform=ax.transAxes,
                va="top",
                fontsize=9,
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": GRID},
            )
            ax.legend(loc="lower right")
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
        ax.set_title("Predicted vs true")
    return fig


def residual_histogram(y_true: np.ndarray, y_pred: np.ndarray) -> Figure:
    """Histogram of residuals (predicted − true) with their mean and standard deviation."""
    residuals = np.asarray(y_pred, dtype=float).ravel() - np.asarray(y_true, dtype=float).ravel()
    residuals = residuals[np.isfinite(residuals)]
    with report_style():
        fig = new_figure(5.0, 4.6)
        ax = fig.add_subplot()
        if residuals.size:
            bins = int(np.clip(np.sqrt(residuals.size), 10, 60))
            ax.hist(residuals, bins=bins, color=VAL, alpha=0.85, edgecolor="white", linewidth=0.5)
            ax.axvline(0.0, color=ACCENT, linestyle="--", linewidth=1.4)
            ax.text(
                0.97,
                0.96,
                f"mean = {residuals.mean():.4g}\nstd = {residuals.std():.4g}",
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize=9,
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": GRID},
            )
        ax.set_xlabel("residual (predicted − true)")
        ax.set_ylabel("count")
        ax.set_title("Residuals")
    return fig

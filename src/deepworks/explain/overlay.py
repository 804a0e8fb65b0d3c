"""Pictures of attributions: image | heatmap | overlay rows, feature bars, sanity-check grids.

Attributions are computed in the model's input space (scaled inputs), but people look at the
original image, so :func:`unscale` undoes the run's scaler before drawing. An image's map is the
sum of its channels' attributions (a pixel's total contribution). Signed maps (IG, DeepLIFT,
gradient x input, KernelSHAP, LIME, occlusion) use a diverging colour scale centred on 0 — red
speaks for the target, blue against it; unsigned maps (saliency, SmoothGrad, Grad-CAM, attention)
a sequential one. The overlay lays the map's magnitude over the grey image.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from deepworks.data.bundle import invert_scaler
from deepworks.report.style import new_figure, report_style
from deepworks.utils import atomic_write_bytes

SIGNED_CMAP, UNSIGNED_CMAP = "RdBu_r", "inferno"


def unscale(x: np.ndarray, scaler: dict[str, Any] | None) -> np.ndarray:
    """Inputs in the data's original units: the inverse of ``apply_scaler``."""
    return invert_scaler(torch.as_tensor(np.asarray(x, dtype=np.float32)), scaler).numpy()


def pixel_map(values: np.ndarray) -> np.ndarray:
    """(N, H, W) per-pixel attribution of (N, C, H, W) values: the sum over channels."""
    return np.asarray(values).sum(axis=1)


def _display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) image → (H, W) grey or (H, W, 3) colour scaled to [0, 1] for imshow."""
    lo, hi = float(image.min()), float(image.max())
    image = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    if image.shape[0] == 1:
        return image[0], "gray"
    return np.moveaxis(image[:3], 0, -1), None


def attribution_figure(
    images: np.ndarray, maps: np.ndarray, titles: Sequence[str], signed: bool
) -> Figure:
    """One row per input: the image, the attribution heatmap, the heatmap over the image.

    Args:
        images: (N, C, H, W) images in original units.
        maps: (N, H, W) per-pixel attributions.
        titles: N row titles (e.g. "true 3, pred 3").
        signed: Diverging colours centred on 0 (else sequential from 0).
    """
    n = len(images)
    with report_style():
        fig = new_figure(3 * 1.6, n * 1.75)
        for i in range(n):
            grey, cmap = _display(images[i])
            m = maps[i]
            bound = float(np.abs(m).max()) or 1.0
            axes = [fig.add_subplot(n, 3, 3 * i + k + 1) for k in range(3)]
            axes[0].imshow(grey, cmap=cmap, interpolation="nearest")
            axes[0].set_title(titles[i], fontsize=8, fontweight="normal")
            cmap_map = SIGNED_CMAP if signed else UNSIGNED_CMAP
            lo = -bound if signed else min(0.0, float(m.min()))
            shown = dict(cmap=cmap_map, vmin=lo, vmax=bound, interpolation="nearest")
            axes[1].imshow(m, **shown)
            axes[1].set_title("attribution", fontsize=8, fontweight="normal")
            # the map over the grey image, opaque where the attribution is large
            axes[2].imshow(grey if cmap else grey.mean(-1), cmap="gray", interpolation="nearest")
            axes[2].imshow(m, alpha=np.clip(np.abs(m) / bound, 0, 1) * 0.85, **shown)
            axes[2].set_title("overlay", fontsize=8, fontweight="normal")
            for ax in axes:
                ax.set_axis_off()
    return fig


def feature_figure(
    values: np.ndarray, names: Sequence[str], titles: Sequence[str], top: int = 10
) -> Figure:
    """One bar chart per input: its ``top`` features by |attribution| (red for, blue against)."""
    n = len(values)
    with report_style():
        fig = new_figure(6.0, n * (0.22 * min(top, values.shape[1]) + 0.7))
        for i in range(n):
            order = np.argsort(-np.abs(values[i]))[:top][::-1]
            ax = fig.add_subplot(n, 1, i + 1)
            colors = ["#dc2626" if values[i, j] > 0 else "#2563eb" for j in order]
            ax.barh([str(names[j]) for j in order], values[i, order], color=colors)
            ax.axvline(0, color="#6b7280", linewidth=0.8)
            ax.set_title(titles[i], fontsize=9, loc="left")
            ax.tick_params(axis="y", labelsize=7)
    return fig


def map_grid(
    rows: Sequence[Sequence[np.ndarray]], col_titles: Sequence[str], row_titles: Sequence[str]
) -> Figure:
    """A grid of unsigned maps (each scaled to its own maximum), e.g. a sanity check: rows are
    inputs, columns the trained model and each randomization stage."""
    nrows, ncols = len(rows), len(col_titles)
    with report_style():
        fig = new_figure(ncols * 1.3, nrows * 1.35 + 0.3)
        for i, row in enumerate(rows):
            for j, m in enumerate(row):
                ax = fig.add_subplot(nrows, ncols, i * ncols + j + 1)
                ax.imshow(np.abs(m), cmap=UNSIGNED_CMAP, interpolation="nearest")
                ax.set_axis_off()
                if i == 0:
                    ax.set_title(col_titles[j], fontsize=7, fontweight="normal")
                if j == 0:
                    ax.text(
                        -0.1,
                        0.5,
                        row_titles[i],
                        fontsize=7,
                        rotation=90,
                        va="center",
                        ha="right",
                        transform=ax.transAxes,
                    )
    return fig


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """``fig`` encoded as PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white", bbox_inches="tight", pad_inches=0.1)
    return buf.getvalue()


def save_png(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG (atomically)."""
    atomic_write_bytes(path, png_bytes(fig, dpi))
    return Path(path)

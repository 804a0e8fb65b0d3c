"""Report sections of a segmentation run: predicted masks next to the true ones, per-class IoU.

``predictions.npz`` supplies the images (``x``) and the true and predicted masks (N, H, W);
``evaluation.json`` the per-class IoU and dice. When the latter is missing, both are computed
from the masks with :mod:`deepworks.evaluate.segmentation`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from deepworks.report import plots
from deepworks.report.markup import bar_cell, esc, figure, fmt, table
from deepworks.report.run_files import RunFiles
from deepworks.report.sections import register_sections

MAX_EXAMPLES = 12
PER_ROW = 4  # examples per row, three panels each: image, true mask, predicted mask
BACKGROUND = "#1f2937"  # class 0: dark, so the shapes stand out
PALETTE = (
    "#3b82f6",
    "#f59e0b",
    "#10b981",
    "#ef4444",
    "#a855f7",
    "#ec4899",
    "#14b8a6",
    "#eab308",
    "#6366f1",
    "#84cc16",
)


@register_sections("segmentation", tasks=("segmentation",))
def sections(run: RunFiles, split: str) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of each segmentation section that ``run`` has data for."""
    names, per_class = _evaluation(run)
    out = []
    masks = _masks(run, names, split)
    if masks:
        out.append(("segmentation", "Predicted masks", masks))
    if per_class:
        out.append(("per-class", "Per-class IoU", _per_class_table(per_class, names)))
    return out


def class_colors(k: int) -> list[str]:
    """One colour per class: dark background, then the palette (repeated for many classes)."""
    return [BACKGROUND] + [PALETTE[i % len(PALETTE)] for i in range(max(k - 1, 0))]


def _num_classes(run: RunFiles, names: list[str] | None) -> int:
    preds = run.predictions
    top = 0
    if preds is not None:
        top = int(max(preds["y_true"].max(initial=0), preds["y_pred"].max(initial=0))) + 1
    return max(len(names or ()), top, 1)


def _evaluation(run: RunFiles) -> tuple[list[str] | None, dict[str, list]]:
    """Class names and per-class metrics, from evaluation.json or else from the masks."""
    evaluation = run.evaluation or {}
    names = evaluation.get("class_names") or (run.data or {}).get("class_names")
    per_class = evaluation.get("per_class") or {}
    preds = run.predictions
    if not per_class and preds is not None and preds["y_true"].size:
        from deepworks.evaluate.segmentation import segmentation_details

        cm = _confusion(preds["y_true"], preds["y_pred"], _num_classes(run, names))
        per_class = segmentation_details(cm, names or [])["per_class"]
    names = [str(n) for n in names] if names is not None else None
    return names, per_class


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    from deepworks.evaluate.segmentation import confusion_matrix

    return confusion_matrix(y_true.astype(np.int64), y_pred.astype(np.int64), k).numpy()


def _per_class_table(per_class: dict[str, list], names: list[str] | None) -> str:
    """IoU and dice (as bars) and pixel support per class, with foreground and overall means."""
    columns = [c for c in ("iou", "dice", "support") if c in per_class]
    k = max(len(per_class[c]) for c in columns) if columns else 0
    if not k:
        return ""
    names = names if names is not None and len(names) == k else [str(i) for i in range(k)]

    def value(column: str, i: int) -> Any:
        values = per_class[column]
        return values[i] if i < len(values) else None

    def cell(column: str, v: Any) -> str:
        if column != "support" and isinstance(v, (int, float)) and 0 <= v <= 1:
            return bar_cell(v)
        return esc(fmt(v))

    rows = [[esc(names[i])] + [cell(c, value(c, i)) for c in columns] for i in range(k)]
    footer = []
    for label, first in (("mean (foreground)", 1 if k > 1 else 0), ("mean (all classes)", 0)):
        row = [label]
        for c in columns:
            values = [v for v in per_class[c][first:] if isinstance(v, (int, float))]
            if c == "support":
                row.append(esc(fmt(int(sum(values)))))
            else:
                row.append(f"{np.mean(values):.3f}" if values else "—")
        footer.append(row)
    header = ["class"] + [{"iou": "IoU", "support": "pixels"}.get(c, c) for c in columns]
    html = table(header, rows, [False] + [c == "support" for c in columns], footer)
    note = (
        '<p class="note">IoU = |true ∩ predicted| / |true ∪ predicted| pixels; '
        "dice = 2 |true ∩ predicted| / (|true| + |predicted|). The headline IoU is the "
        "foreground mean; — marks a class in neither the truth nor the prediction.</p>"
    )
    return html + note


def _masks(run: RunFiles, names: list[str] | None, split: str) -> str:
    """A grid of up to MAX_EXAMPLES images, each with its true and predicted mask."""
    preds = run.predictions
    if preds is None or "x" not in preds or preds["y_true"].ndim != 3:
        return ""
    n = len(preds["y_true"])
    shown = np.arange(min(n, MAX_EXAMPLES))
    k = _num_classes(run, names)
    names = names if names is not None and len(names) == k else [str(i) for i in range(k)]
    fig = mask_grid(preds["x"][shown], preds["y_true"][shown], preds["y_pred"][shown], names)
    caption = (
        f"The first {len(shown)} of {n:,} {split} images: image, true mask, predicted mask; "
        "titles give the image's IoU over the shapes in either mask"
    )
    return figure(plots.fig_to_data_uri(fig), "predicted masks", caption)


def image_iou(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean IoU of one image over the foreground classes in either mask (1 when none is)."""
    ious = []
    for c in np.union1d(np.unique(y_true), np.unique(y_pred)):
        if c == 0:
            continue
        a, b = y_true == c, y_pred == c
        ious.append((a & b).sum() / (a | b).sum())
    return float(np.mean(ious)) if ious else 1.0


def _display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) → (H, W) grey or (H, W, 3) colour in [0, 1], min-max rescaled."""
    a = np.nan_to_num(np.asarray(image, dtype=np.float32))
    a = (
        np.moveaxis(a, 0, -1)[..., :3]
        if a.ndim == 3 and a.shape[0] >= 3
        else a.reshape(a.shape[-2:])
    )
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return a, ("gray" if a.ndim == 2 else None)


def mask_grid(
    images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]
) -> Figure:
    """Image | true mask | predicted mask for each example, colour-coded, with a legend.

    Args:
        images: (N, C, H, W) inputs.
        y_true: (N, H, W) true class per pixel.
        y_pred: (N, H, W) predicted class per pixel.
        class_names: K names, class 0 first (the background).
    """
    k = len(class_names)
    cmap = ListedColormap(class_colors(k))
    n = max(len(images), 1)
    per_row = max(1, min(PER_ROW, n))
    nrows = math.ceil(n / per_row)
    cell, gap, title, legend = 1.05, 0.08, 0.22, 0.4  # inches
    width = per_row * (3 * cell + 2 * gap) + (per_row - 1) * 0.3 + 0.1
    height = nrows * (cell + title) + (nrows - 1) * gap + legend + 0.1
    with plots.report_style():
        fig = plots.new_figure(width, height, constrained=False)
        spec = fig.add_gridspec(
            nrows,
            per_row * 4 - 1,  # three panels per example, a narrow spacer between examples
            width_ratios=(([cell] * 3 + [0.3]) * per_row)[:-1],
            left=0.05 / width,
            right=1 - 0.05 / width,
            bottom=0.05 / height,
            top=1 - (legend + title) / height,
            wspace=gap / cell,
            hspace=(title + gap) / cell,
        )
        for i in range(len(images)):
            r, c = divmod(i, per_row)
            picture, img_cmap = _display(images[i])
            panels = (
                (picture, img_cmap, f"#{i}"),
                (y_true[i], cmap, "true"),
                (y_pred[i], cmap, f"pred · IoU {image_iou(y_true[i], y_pred[i]):.2f}"),
            )
            for j, (data, cm, label) in enumerate(panels):
                ax = fig.add_subplot(spec[r, 4 * c + j])
                if cm is cmap:
                    ax.imshow(data, cmap=cmap, vmin=-0.5, vmax=k - 0.5, interpolation="nearest")
                else:
                    ax.imshow(data, cmap=cm, interpolation="nearest")
                ax.set_axis_off()
                ax.set_title(label, fontsize=7.5, fontweight="normal", color="#374151")
        handles = [
            Patch(facecolor=color, edgecolor="#9ca3af", label=name)
            for color, name in zip(class_colors(k), class_names, strict=True)
        ]
        fig.legend(
            handles=handles,
            loc="upper center",
            ncol=min(k, 10),
            bbox_to_anchor=(0.5, 1 - 0.02 / height),
            fontsize=8.5,
            handlelength=1.2,
        )
    return fig

"""Report sections of a detector: test images with true and predicted boxes, AP per class.

``predictions.npz`` holds ``x`` (N, C, H, W), ``y_true`` (N, M, 5) ``[class, x1, y1, x2, y2]`` and
``y_pred`` (N, D, 6) ``[class, score, x1, y1, x2, y2]`` (padding rows -1); ``evaluation.json``
holds ``per_class`` AP lists.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.patches import Rectangle

from deepworks.report import plots
from deepworks.report.markup import bar_cell, esc, figure, fmt, table
from deepworks.report.run_files import RunFiles
from deepworks.report.sections import register_sections
from deepworks.report.style import ACCENT, WRONG, new_figure, report_style

MAX_IMAGES = 12
DRAW_SCORE = 0.3  # predicted boxes below this score are left out of the pictures


@register_sections("detection", tasks=("detection",))
def sections(run: RunFiles, split: str) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of the detection sections ``run`` has data for."""
    out = []
    names = _class_names(run)
    pictures = _pictures(run, names, split)
    if pictures:
        out.append(("detections", "Detections", pictures))
    per_class = (run.evaluation or {}).get("per_class") or {}
    if per_class.get("ap50"):
        out.append(("per-class", "Average precision per class", _ap_table(per_class, names)))
    return out


def _class_names(run: RunFiles) -> list[str]:
    names = (run.evaluation or {}).get("class_names") or (run.data or {}).get("class_names")
    return [str(n) for n in names or ()]


def _name(names: list[str], k: int) -> str:
    return names[k] if 0 <= k < len(names) else str(k)


def boxes_figure(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    names: list[str],
    ncols: int = 6,
    min_score: float = DRAW_SCORE,
):
    """A grid of images with true boxes (green) and predicted boxes (red, ``class score``)."""
    n = max(len(images), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    cell = 2.0  # inches per image
    with report_style():
        fig = new_figure(ncols * cell, nrows * cell, constrained=False)
        fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99, wspace=0.05, hspace=0.05)
        for i, image in enumerate(images):
            ax = fig.add_subplot(nrows, ncols, i + 1)
            data, cmap = plots._to_display(image)
            # extent puts pixel edges at integers, the coordinates boxes are given in
            h, w = data.shape[:2]
            ax.imshow(data, cmap=cmap, interpolation="nearest", extent=(0, w, h, 0))
            ax.set_axis_off()
            for cls, x1, y1, x2, y2 in y_true[i]:
                if cls < 0:
                    continue
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.6, ec=ACCENT))
            for cls, score, x1, y1, x2, y2 in y_pred[i]:
                if cls < 0 or score < min_score:
                    continue
                ax.add_patch(
                    Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.2, ec=WRONG, ls="--")
                )
                ax.text(
                    x1,
                    y1,
                    f"{_name(names, int(cls))} {score:.2f}",
                    fontsize=6.5,
                    color="white",
                    va="bottom",
                    clip_on=True,
                    bbox={"facecolor": WRONG, "edgecolor": "none", "pad": 0.8, "alpha": 0.85},
                )
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
    return fig


def _pictures(run: RunFiles, names: list[str], split: str) -> str:
    preds = run.predictions
    if preds is None or "x" not in preds or preds["x"].ndim != 4:
        return ""
    y_true, y_pred = preds["y_true"], preds["y_pred"]
    if y_true.ndim != 3 or y_pred.ndim != 3 or y_pred.shape[-1] != 6:
        return ""
    shown = np.arange(min(MAX_IMAGES, len(y_true)))
    fig = boxes_figure(preds["x"][shown], y_true[shown], y_pred[shown], names)
    caption = (
        f"{len(shown)} {split} images: true boxes green, predicted boxes red dashed with class "
        f"and score (scores ≥ {DRAW_SCORE})"
    )
    return figure(plots.fig_to_data_uri(fig), "detections", caption)


def _ap_table(per_class: dict[str, list], names: list[str]) -> str:
    """AP@0.5 (and AP@0.5:0.95) per class as bars, with the number of true boxes and the mean."""
    columns = [c for c in ("ap50", "ap") if per_class.get(c)]
    labels = {"ap50": "AP@0.5", "ap": "AP@0.5:0.95"}
    k = len(per_class["ap50"])
    support = per_class.get("support") or [None] * k
    rows = []
    for i in range(k):
        cells = [esc(_name(names, i))]
        for c in columns:
            v = per_class[c][i]
            cells.append(bar_cell(v) if v is not None else "—")
        cells.append(esc(fmt(support[i])))
        rows.append(cells)
    footer = [["mean"]]
    for c in columns:
        values = [v for v in per_class[c] if v is not None]
        footer[0].append(f"{np.mean(values):.3f}" if values else "—")
    footer[0].append(esc(fmt(int(sum(s for s in support if s is not None)))))
    header = ["class", *(labels[c] for c in columns), "boxes"]
    return table(header, rows, [False] + [False] * len(columns) + [True], footer)

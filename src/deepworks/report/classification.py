"""Report sections of a classifier: confusion matrices, per-class metrics, misclassified images.

``evaluation.json`` supplies the confusion matrix and per-class metrics; when it is missing but
``predictions.npz`` is there, both are computed from the predictions with scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepworks.report import plots
from deepworks.report.markup import bar_cell, esc, figure, fmt, table
from deepworks.report.run_files import RunFiles
from deepworks.report.sections import register_sections

MAX_EXAMPLES = 32


@register_sections("classification", tasks=("classification",))
def classification_sections(run: RunFiles, split: str) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of each classification section that ``run`` has data for."""
    cm, names, per_class = _evaluation(run)
    out = []
    if cm is not None:
        figs = [
            figure(
                plots.fig_to_data_uri(plots.confusion_matrix_figure(cm, names)),
                "confusion matrix",
                f"Counts on the {split} split: rows true, columns predicted",
            ),
            figure(
                plots.fig_to_data_uri(plots.confusion_matrix_figure(cm, names, normalize=True)),
                "normalized confusion matrix",
                "Each row divided by its total: the diagonal is the recall of each class",
            ),
        ]
        out.append(("confusion", "Confusion matrix", f'<div class="figs">{"".join(figs)}</div>'))
    if per_class:
        out.append(("per-class", "Per-class metrics", _per_class_table(per_class, names)))
    examples = _misclassified(run, names, split)
    if examples:
        out.append(("mistakes", "Misclassified examples", examples))
    return out


def _evaluation(run: RunFiles) -> tuple[np.ndarray | None, list[str] | None, dict[str, list]]:
    """Confusion matrix, class names and per-class metrics, from evaluation.json or predictions."""
    evaluation = run.evaluation or {}
    names = evaluation.get("class_names") or (run.data or {}).get("class_names")
    cm = evaluation.get("confusion_matrix")
    per_class = evaluation.get("per_class") or {}
    preds = run.predictions
    if (cm is None or not per_class) and preds is not None and preds["y_true"].size:
        from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

        y_true = preds["y_true"].astype(np.int64).ravel()
        y_pred = preds["y_pred"].astype(np.int64).ravel()
        k = max(
            len(names or ()),
            preds["y_prob"].shape[-1] if "y_prob" in preds else 0,
            int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1,
        )
        labels = np.arange(k)
        if cm is None:
            cm = confusion_matrix(y_true, y_pred, labels=labels)
        if not per_class:
            p, r, f, s = precision_recall_fscore_support(
                y_true, y_pred, labels=labels, zero_division=0
            )
            per_class = {
                "precision": p.tolist(),
                "recall": r.tolist(),
                "f1": f.tolist(),
                "support": s.tolist(),
            }
    if cm is not None:
        cm = np.asarray(cm)
        if names is None or len(names) != len(cm):
            names = [str(i) for i in range(len(cm))]
    return cm, [str(n) for n in names] if names is not None else None, per_class


def _per_class_table(per_class: dict[str, list], names: list[str] | None) -> str:
    """Precision, recall, F1 (as bars) and support per class, with macro and weighted averages."""
    columns = [c for c in ("precision", "recall", "f1", "support") if c in per_class]
    columns += [c for c in per_class if c not in columns]
    k = max(len(v) for v in per_class.values())
    names = names if names is not None and len(names) == k else [str(i) for i in range(k)]
    fractions = [c for c in columns if c != "support"]

    def cell(column: str, value: Any) -> str:
        if column in fractions and isinstance(value, (int, float)) and 0 <= value <= 1:
            return bar_cell(value)
        return esc(fmt(value))

    rows = [
        [esc(names[i])]
        + [cell(c, per_class[c][i] if i < len(per_class[c]) else None) for c in columns]
        for i in range(k)
    ]
    footer = []
    support = np.asarray(per_class.get("support") or [], dtype=float)
    for label, weights in (("macro avg", np.ones(k)), ("weighted avg", support)):
        if len(weights) != k or weights.sum() <= 0:
            continue
        row = [label]
        for c in columns:
            values = np.asarray([np.nan if v is None else v for v in per_class[c]], dtype=float)
            if c == "support":
                row.append(esc(fmt(int(np.nansum(values)))))
            else:
                row.append(f"{np.average(np.nan_to_num(values), weights=weights):.3f}")
        footer.append(row)
    header = ["class"] + [("F1" if c == "f1" else c) for c in columns]
    numeric = [False] + [c == "support" for c in columns]
    html = table(header, rows, numeric, footer)
    if k > 20:  # a long table stays one click away
        html = f"<details><summary>Show all {k} classes</summary>{html}</details>"
    return html


def _misclassified(run: RunFiles, names: list[str] | None, split: str) -> str:
    """A grid of up to MAX_EXAMPLES wrong predictions, the most confident mistakes first."""
    preds = run.predictions
    if preds is None or "x" not in preds or preds["x"].ndim < 3:
        return ""
    y_true = preds["y_true"].astype(np.int64).ravel()
    y_pred = preds["y_pred"].astype(np.int64).ravel()
    wrong = np.flatnonzero(y_true != y_pred)
    if wrong.size == 0:
        return (
            f'<p class="note">Every example of the {esc(split)} split was classified correctly.</p>'
        )
    confidence = None
    if "y_prob" in preds and preds["y_prob"].ndim == 2:
        confidence = preds["y_prob"][wrong, np.clip(y_pred[wrong], 0, preds["y_prob"].shape[1] - 1)]
        order = np.argsort(-confidence, kind="stable")
        wrong, confidence = wrong[order], confidence[order]
    shown = wrong[:MAX_EXAMPLES]

    def name(i: int) -> str:
        text = names[i] if names is not None and 0 <= i < len(names) else str(i)
        return text if len(text) <= 12 else text[:11] + "…"  # titles must fit above the image

    titles = [f"{name(y_true[i])}→{name(y_pred[i])}" for i in shown]
    if confidence is not None:
        titles = [
            f"{t}\n{c:.0%} sure" for t, c in zip(titles, confidence[: len(shown)], strict=True)
        ]
    fig = plots.image_grid(preds["x"][shown], titles, ncols=8)
    ranked = ", most confident mistakes first" if confidence is not None else ""
    caption = (
        f"{len(shown)} of {len(wrong):,} misclassified {split} examples "
        f"({len(wrong) / len(y_true):.1%} of {len(y_true):,}), titled true→predicted{ranked}"
    )
    return figure(plots.fig_to_data_uri(fig), "misclassified examples", caption)

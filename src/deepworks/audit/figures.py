"""The card's pictures, each returned as PNG bytes: reliability diagram, robustness curve,
adversarial examples, attribution overlays, confusion matrix, misclassified examples, residuals.

All are drawn in the run report's style (:mod:`deepworks.report.style`) with the object API, so
making a card touches no global matplotlib state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from deepworks.explain import overlay
from deepworks.report import plots
from deepworks.report.style import ACCENT, TRAIN, VAL, WRONG, new_figure, report_style

MISCLASSIFIED = 16  # images in the misclassified grid


def png(fig: Figure) -> bytes:
    return overlay.png_bytes(fig)


def reliability_png(cal: dict[str, Any]) -> bytes:
    """Reliability diagram: accuracy per confidence bin (bars) against the diagonal, the gap to
    it shaded red, and below, how many predictions fall in each bin."""
    bins = cal["bins"]
    lower = np.array([b["lower"] for b in bins])
    width = np.array([b["upper"] - b["lower"] for b in bins])
    count = np.array([b["count"] for b in bins])
    acc = np.array([b["accuracy"] if b["count"] else 0.0 for b in bins])
    conf = np.array([b["confidence"] if b["count"] else 0.0 for b in bins])
    shown = count > 0
    with report_style():
        fig = new_figure(5.2, 5.0)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        top.bar(lower[shown], acc[shown], width[shown], align="edge", color=TRAIN, alpha=0.85,
                edgecolor="white", label="accuracy")  # fmt: skip
        # the gap between accuracy and mean confidence: hatched, so it reads over the bars
        gap_lo, gap_hi = np.minimum(acc, conf), np.maximum(acc, conf)
        top.bar(lower[shown], (gap_hi - gap_lo)[shown], width[shown], bottom=gap_lo[shown],
                align="edge", facecolor="none", edgecolor=WRONG, hatch="////", linewidth=0.8,
                label="gap to mean confidence")  # fmt: skip
        top.scatter(lower[shown] + width[shown] / 2, conf[shown], marker="_", s=60, color="#111827",
                    zorder=3, label="mean confidence")  # fmt: skip
        top.plot([0, 1], [0, 1], color="#6b7280", linestyle="--", linewidth=1.2,
                 label="perfect calibration")  # fmt: skip
        top.set_ylim(0, 1.02)
        top.set_ylabel("accuracy")
        top.set_title(
            f"ECE {cal['ece']:.3f} · MCE {cal['mce']:.3f} · Brier {cal['brier']:.3f}",
            fontsize=10,
        )
        top.legend(loc="upper left")
        bottom.bar(lower[shown], count[shown], width[shown], align="edge", color=VAL, alpha=0.8,
                   edgecolor="white")  # fmt: skip
        for x0, w, c in zip(lower[shown], width[shown], count[shown], strict=True):
            bottom.text(x0 + w / 2, c, str(int(c)), ha="center", va="bottom", fontsize=7)
        bottom.set_ylim(0, max(int(count.max()), 1) * 1.3)
        bottom.set_xlim(0, 1)
        bottom.set_xlabel("confidence of the predicted class")
        bottom.set_ylabel("count")
    return png(fig)


def robustness_png(rob: dict[str, Any]) -> bytes:
    """Robust accuracy against eps, one line per attack (eps = 0 is the clean accuracy)."""
    colors = (TRAIN, VAL, ACCENT, WRONG)
    with report_style():
        fig = new_figure(5.6, 3.6)
        ax = fig.add_subplot()
        for i, (name, rows) in enumerate(rob["curves"].items()):
            eps = [r["eps"] for r in rows]
            acc = [r["robust_accuracy"] for r in rows]
            ax.plot(eps, acc, marker="o", markersize=5, color=colors[i % len(colors)],
                    label=curve_label(name, rob))  # fmt: skip
            for e, a in zip(eps, acc, strict=True):
                ax.annotate(f"{a:.0%}", (e, a), textcoords="offset points", xytext=(4, 5),
                            fontsize=7, color=colors[i % len(colors)])  # fmt: skip
        ax.axvline(rob["middle_eps"], color="#9ca3af", linewidth=0.8, linestyle=":")
        ax.set_xlabel(f"ε (raw input units; inputs in [{rob['clip'][0]:g}, {rob['clip'][1]:g}])")
        ax.set_ylabel("accuracy under attack")
        ax.set_ylim(-0.02, 1.08)
        ax.legend(loc="upper right")
    return png(fig)


def curve_label(name: str, rob: dict[str, Any]) -> str:
    """``PGD (L∞)``: the attack and the norm its eps is measured in."""
    norm = rob.get("norms", {}).get(name, "linf")
    return f"{name.upper()} ({'L∞' if norm == 'linf' else 'L2'})"


def adversarial_png(ex: dict[str, Any], clip: tuple[float, float], names: Sequence[str]) -> bytes:
    """Clean, adversarial and perturbation rows for up to 8 samples, flipped ones first."""
    from deepworks.report.robustness import examples_figure

    y = ex["y"]
    flipped = ((ex["clean_pred"] == y) & (ex["adv_pred"] != y)).nonzero().squeeze(1).tolist()
    seen = set(flipped)
    idx = (flipped + [i for i in range(len(y)) if i not in seen])[:8]
    fig = examples_figure(
        ex["x"][idx].numpy(), ex["x_adv"][idx].numpy(), y[idx].numpy(),
        ex["clean_pred"][idx].numpy(), ex["adv_pred"][idx].numpy(), ex["eps"], clip,
        list(names) or None,
    )  # fmt: skip
    return png(fig)


def _name(names: Sequence[str], k: int) -> str:
    return names[k] if 0 <= k < len(names) else str(k)


def explain_png(run: Any, arrays: dict[str, Any], method: str, names: Sequence[str]) -> bytes:
    """Image | heatmap | overlay rows for images; top-feature bar charts for tabular inputs."""
    from deepworks.explain.runs import SIGNED

    x, labels, pred = arrays["x"], arrays["labels"], arrays["pred"]
    values = arrays[method]
    if run.regression:
        titles = [
            f"true {float(t):.3g}\npred {float(p):.3g}" for t, p in zip(labels, pred, strict=True)
        ]
    else:
        titles = [
            f"true {_name(names, int(t))}\npred {_name(names, int(p))}"
            for t, p in zip(labels, pred, strict=True)
        ]
    if x.ndim == 4:
        images = overlay.unscale(x.numpy(), run.info.get("scaler"))
        fig = overlay.attribution_figure(
            images, overlay.pixel_map(values), titles, signed=method in SIGNED
        )
        return png(fig)
    flat = values.reshape(len(x), -1)
    names_f = run.info.get("feature_names") or run.data.feature_names
    if not names_f or len(names_f) != flat.shape[1]:
        names_f = [f"x{j}" for j in range(flat.shape[1])]
    fig = overlay.feature_figure(flat, names_f, [t.replace("\n", ", ") for t in titles], top=8)
    return png(fig)


def confusion_png(errors: dict[str, Any]) -> bytes:
    """The row-normalized confusion matrix (the diagonal is each class's recall)."""
    cm, names = errors["confusion_matrix"], errors["class_names"]
    return png(plots.confusion_matrix_figure(cm, names, normalize=True))


def misclassified_png(run: Any, preds: dict[str, np.ndarray], names: Sequence[str]) -> bytes | None:
    """The most confident mistakes of the test split, titled true→predicted and confidence."""
    y_true = preds["y_true"].astype(np.int64).ravel()
    y_pred = preds["y_pred"].astype(np.int64).ravel()
    wrong = np.flatnonzero(y_true != y_pred)
    if wrong.size == 0:
        return None
    conf = preds["y_prob"][wrong, y_pred[wrong]]
    order = np.argsort(-conf, kind="stable")[:MISCLASSIFIED]
    shown = wrong[order]
    images = overlay.unscale(run.data.test.x[shown].numpy(), run.info.get("scaler"))
    titles = [
        f"{_name(names, y_true[i])}→{_name(names, y_pred[i])}\n{c:.0%} sure"
        for i, c in zip(shown, conf[order], strict=True)
    ]
    return png(plots.image_grid(list(images), titles, ncols=8))


def residuals_png(preds: dict[str, np.ndarray]) -> bytes:
    """Predicted against true values with the residual histogram beside it."""
    y_true = np.asarray(preds["y_true"], dtype=np.float64).reshape(-1)
    y_pred = np.asarray(preds["y_pred"], dtype=np.float64).reshape(len(y_true), -1)[:, 0]
    return png(plots.regression_scatter(y_true, y_pred))

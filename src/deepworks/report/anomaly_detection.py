"""Report sections of an anomaly-detection run: scores, threshold, ROC and PR curves.

- **Anomaly scores**: histograms of the reconstruction error of normal and anomalous test
  samples with the threshold (chosen on the validation split) as a vertical line. Little
  overlap means the score separates the two; the share of each histogram beyond the line is
  the recall (anomalies) and the false-positive rate (normal samples).
- **ROC and precision-recall curves** of the score, with their areas (the ROC-AUC is the
  probability that a random anomaly scores above a random normal sample; the PR-AUC is the
  average precision) and the operating point the threshold picks.
- The reconstructions and the latent space, as for any autoencoder (:mod:`.autoencoder`).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from deepworks.report import autoencoder, plots
from deepworks.report.markup import esc, figure
from deepworks.report.run_files import RunFiles
from deepworks.report.sections import register_sections
from deepworks.report.style import ACCENT, TRAIN, WRONG


@register_sections("anomaly_detection", tasks=("anomaly_detection",))
def sections(run: RunFiles, split: str) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of each section ``run`` has data for."""
    out = []
    preds = run.predictions
    threshold = (run.evaluation or {}).get("threshold")
    if preds is not None and "score" in preds and "is_anomaly" in preds:
        score, anomaly = preds["score"].astype(np.float64), preds["is_anomaly"].astype(int)
        fig = score_histogram(score, anomaly, threshold)
        caption = (
            f"Reconstruction error of the {len(score):,} {esc(split)} samples: normal "
            f"({int((anomaly == 0).sum())}) vs anomalous ({int(anomaly.sum())})"
        )
        if threshold is not None:
            caption += "; the line is the threshold chosen on the validation split"
        html = figure(plots.fig_to_data_uri(fig), "anomaly score histogram", caption)
        out.append(("scores", "Anomaly scores", html))
        if 0 < anomaly.sum() < len(anomaly):
            fig = roc_pr_figure(score, anomaly, threshold)
            caption = (
                "ROC curve (left) and precision-recall curve (right) of the score, anomaly = "
                "positive; the dot marks the threshold's operating point"
            )
            html = figure(plots.fig_to_data_uri(fig), "ROC and PR curves", caption)
            out.append(("roc-pr", "ROC and precision-recall", html))
    return out + autoencoder.sections(run, split)  # reconstructions and the latent space


def score_histogram(score: np.ndarray, anomaly: np.ndarray, threshold: float | None) -> Figure:
    """Overlaid histograms of normal and anomalous scores on shared bins, log x if skewed."""
    positive = score[score > 0]
    log = positive.size == score.size and score.size > 0 and score.max() / score.min() > 50
    values = np.log10(score) if log else score
    bins = np.histogram_bin_edges(values, bins=40)
    with plots.report_style():
        fig = plots.new_figure(6.4, 3.6)
        ax = fig.add_subplot()
        for flag, color, label in ((0, TRAIN, "normal"), (1, WRONG, "anomaly")):
            v = values[anomaly == flag]
            if v.size:
                ax.hist(v, bins=bins, alpha=0.55, color=color, label=f"{label} ({v.size})")
        if threshold is not None and (not log or threshold > 0):
            t = np.log10(threshold) if log else threshold
            ax.axvline(t, color="#111827", linestyle="--", linewidth=1.4, label="threshold")
        ax.set_xlabel("log10 reconstruction error" if log else "reconstruction error")
        ax.set_ylabel("samples")
        ax.legend(loc="best")
    return fig


def roc_pr_figure(score: np.ndarray, anomaly: np.ndarray, threshold: float | None) -> Figure:
    """ROC and precision-recall curves side by side, with the threshold's operating point."""
    from sklearn import metrics as skm

    fpr, tpr, _ = skm.roc_curve(anomaly, score)
    precision, recall, _ = skm.precision_recall_curve(anomaly, score)
    auc = skm.roc_auc_score(anomaly, score)
    ap = skm.average_precision_score(anomaly, score)
    with plots.report_style():
        fig = plots.new_figure(8.4, 3.8)
        roc, pr = fig.subplots(1, 2)
        roc.plot(fpr, tpr, color=TRAIN, label=f"ROC-AUC {auc:.3f}")
        roc.plot([0, 1], [0, 1], color="#9ca3af", linestyle=":", linewidth=1, label="chance")
        roc.set_xlabel("false-positive rate")
        roc.set_ylabel("true-positive rate (recall)")
        pr.step(recall, precision, where="post", color=TRAIN, label=f"PR-AUC (AP) {ap:.3f}")
        base = anomaly.mean()
        pr.axhline(base, color="#9ca3af", linestyle=":", linewidth=1, label="chance")
        pr.set_xlabel("recall")
        pr.set_ylabel("precision")
        if threshold is not None:
            flagged = score >= threshold
            tp = int((flagged & (anomaly == 1)).sum())
            fp = int((flagged & (anomaly == 0)).sum())
            r = tp / max(int(anomaly.sum()), 1)
            f = fp / max(int((anomaly == 0).sum()), 1)
            p = tp / max(tp + fp, 1)
            roc.scatter([f], [r], color=ACCENT, zorder=5, s=36, label="threshold")
            pr.scatter([r], [p], color=ACCENT, zorder=5, s=36, label="threshold")
        for ax in (roc, pr):
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.02)
            ax.legend(loc="lower right" if ax is roc else "lower left", fontsize=8)
    return fig

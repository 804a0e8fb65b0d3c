"""Metrics computed with scikit-learn from gathered predictions.

Flat names, as they appear in ``metrics.json`` and ``history.csv`` after a split prefix:
``accuracy``, ``top3_accuracy``, ``precision_macro``, ``f1_micro``, ``roc_auc``, ``log_loss``,
``mse``, ``r2`` ... each declared once in ``CLASSIFICATION_METRICS`` / ``REGRESSION_METRICS``
(see :mod:`deepworks.evaluate.specs`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn import metrics as skm

from deepworks.evaluate.specs import MetricSpec

FRACTION = ".2%"

#: What :func:`classification_metrics` (and :func:`headline_metrics`) emit.
CLASSIFICATION_METRICS = (
    MetricSpec("accuracy", "max", headline=True, fmt=FRACTION),
    MetricSpec("f1_macro", "max", headline=True, fmt=FRACTION),
    MetricSpec("roc_auc", "max", headline=True, label="ROC AUC", fmt=".4f"),
    MetricSpec("balanced_accuracy", "max", fmt=FRACTION),
    MetricSpec("top*_accuracy", "max", label="Top-{} accuracy", fmt=FRACTION),
    *(
        MetricSpec(f"{kind}_{avg}", "max", fmt=FRACTION)
        for kind in ("precision", "recall", "f1")
        for avg in ("macro", "micro", "weighted")
        if (kind, avg) != ("f1", "macro")
    ),
    MetricSpec("log_loss", "min", label="Log loss"),
)

#: What :func:`regression_metrics` emits.
REGRESSION_METRICS = (
    MetricSpec("r2", "max", headline=True),
    MetricSpec("rmse", "min", headline=True),
    MetricSpec("mae", "min", headline=True),
    MetricSpec("mse", "min"),
)


def classification_metrics(
    y_true: np.ndarray, prob: np.ndarray, top_k: tuple[int, ...] = (3, 5)
) -> dict[str, float]:
    """Scalar metrics of a classifier from true labels (N,) and class probabilities (N, K)."""
    y_true = np.asarray(y_true)
    prob = np.asarray(prob, dtype=np.float64)
    prob = prob / prob.sum(axis=1, keepdims=True)  # float32 softmax sums drift from 1
    k = prob.shape[1]
    labels = np.arange(k)
    y_pred = prob.argmax(axis=1)
    out: dict[str, float] = {"accuracy": skm.accuracy_score(y_true, y_pred)}
    out["balanced_accuracy"] = _quiet(skm.balanced_accuracy_score, y_true, y_pred)
    for n in top_k:
        if n < k:
            out[f"top{n}_accuracy"] = skm.top_k_accuracy_score(y_true, prob, k=n, labels=labels)
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=avg, zero_division=0
        )
        out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = p, r, f
    present = np.unique(y_true)
    if len(present) == k and k >= 2:  # ROC-AUC needs every class present
        if k == 2:
            out["roc_auc"] = skm.roc_auc_score(y_true, prob[:, 1])
        else:
            out["roc_auc"] = skm.roc_auc_score(y_true, prob, multi_class="ovr", labels=labels)
    out["log_loss"] = skm.log_loss(y_true, np.clip(prob, 1e-15, 1), labels=labels)
    return {name: float(v) for name, v in out.items()}


def headline_metrics(y_true: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 only: the cheap subset logged after every epoch."""
    y_pred = np.asarray(prob).argmax(axis=1)
    labels = np.arange(np.shape(prob)[1])
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "f1_macro": float(
            skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
    }


def classification_details(
    y_true: np.ndarray, prob: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """Confusion matrix and per-class precision / recall / F1 / support, for reports."""
    labels = np.arange(prob.shape[1])
    y_pred = np.asarray(prob).argmax(axis=1)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "task_type": "classification",
        "class_names": list(class_names),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "per_class": {
            "precision": p.tolist(),
            "recall": r.tolist(),
            "f1": f.tolist(),
            "support": s.tolist(),
        },
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R² of a regressor."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    mse = skm.mean_squared_error(y_true, y_pred)
    out = {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": skm.mean_absolute_error(y_true, y_pred)}
    if len(y_true) >= 2:
        out["r2"] = skm.r2_score(y_true, y_pred)
    return {name: float(v) for name, v in out.items()}


def _quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)

"""Calibration: do a classifier's probabilities mean what they say?

A classifier is *calibrated* when, among the inputs it gives confidence p, a fraction p is
classified correctly. Write ``conf_i = max_k p_ik`` (the top-class probability) and
``acc_i = [argmax_k p_ik = y_i]``. Split [0, 1] into M equal-width bins
``B_m = [(m-1)/M, m/M)`` (the last bin also holds 1.0) and compare, in each bin, the mean
confidence with the accuracy (Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural
Networks", ICML 2017):

    acc(B_m)  = 1/|B_m| sum_{i in B_m} acc_i
    conf(B_m) = 1/|B_m| sum_{i in B_m} conf_i

    ECE = sum_m |B_m|/N * |acc(B_m) - conf(B_m)|       expected calibration error
    MCE = max_{m: |B_m| > 0} |acc(B_m) - conf(B_m)|     maximum calibration error

A *reliability diagram* draws acc(B_m) against the bin centres: a calibrated model's bars follow
the diagonal, an over-confident one's fall below it.

The Brier score (Brier, 1950) scores the whole probability vector, not only the top class:

    Brier = 1/N sum_i sum_k (p_ik - [y_i = k])^2         in [0, 2]; 0 is perfect

(for two classes this is twice the one-column form ``mean((p_i1 - y_i)^2)``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from deepworks.errors import ConfigError
from deepworks.evaluate.specs import MetricSpec

DEFAULT_BINS = 15

#: What :func:`calibration` measures (``deepworks audit``).
CALIBRATION_METRICS = (
    MetricSpec("ece", "min", label="ECE"),
    MetricSpec("mce", "min", label="MCE"),
    MetricSpec("brier", "min", label="Brier score"),
)


@dataclass
class CalibrationBin:
    """One confidence bin of a reliability diagram."""

    lower: float
    upper: float
    count: int
    accuracy: float | None  # None for an empty bin
    confidence: float | None


@dataclass
class Calibration:
    """ECE, MCE and Brier score of a set of predictions, with the bins behind them."""

    ece: float
    mce: float
    brier: float
    accuracy: float
    mean_confidence: float
    samples: int
    bins: list[CalibrationBin] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) float64 probabilities and (N,) int labels; a one-line error otherwise."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if p.ndim != 2 or p.shape[0] != y.shape[0] or p.shape[0] == 0:
        raise ConfigError(
            f"calibration needs (N, K) probabilities and N labels, got {p.shape} and {y.shape}"
        )
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ConfigError(f"calibration: labels must lie in 0..{p.shape[1] - 1}")
    return p, y


def reliability_bins(
    probs: Any, labels: Any, n_bins: int = DEFAULT_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin (accuracy, confidence, count) of the top-class confidence, and the M+1 edges.

    Empty bins have accuracy and confidence 0 (their count says they are empty).
    """
    if n_bins < 1:
        raise ConfigError(f"calibration bins {n_bins}: use at least 1")
    p, y = _check(probs, labels)
    conf = p.max(axis=1)  # (N,)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin m holds [edges[m], edges[m+1]); 1.0 (and anything rounding above it) joins the last
    index = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    safe = np.maximum(count, 1)
    accuracy = np.bincount(index, weights=correct, minlength=n_bins) / safe
    confidence = np.bincount(index, weights=conf, minlength=n_bins) / safe
    return accuracy, confidence, count, edges


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = DEFAULT_BINS) -> float:
    """ECE: the count-weighted mean gap between accuracy and confidence over the bins."""
    acc, conf, count, _ = reliability_bins(probs, labels, n_bins)
    return float(np.sum(count / count.sum() * np.abs(acc - conf)))


def maximum_calibration_error(probs: Any, labels: Any, n_bins: int = DEFAULT_BINS) -> float:
    """MCE: the largest gap between accuracy and confidence over the non-empty bins."""
    acc, conf, count, _ = reliability_bins(probs, labels, n_bins)
    return float(np.max(np.abs(acc - conf)[count > 0]))


def brier_score(probs: Any, labels: Any) -> float:
    """Mean squared distance between the probability vector and the one-hot label."""
    p, y = _check(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def calibration(probs: Any, labels: Any, n_bins: int = DEFAULT_BINS) -> Calibration:
    """Every calibration figure of ``probs`` (N, K) against ``labels`` (N,) at once.

    Example:
        >>> cal = calibration(y_prob, y_true)
        >>> cal.ece, cal.mce, cal.brier
    """
    acc, conf, count, edges = reliability_bins(probs, labels, n_bins)
    p, y = _check(probs, labels)
    gaps = np.abs(acc - conf)
    bins = [
        CalibrationBin(
            lower=float(edges[m]),
            upper=float(edges[m + 1]),
            count=int(count[m]),
            accuracy=float(acc[m]) if count[m] else None,
            confidence=float(conf[m]) if count[m] else None,
        )
        for m in range(n_bins)
    ]
    return Calibration(
        ece=float(np.sum(count / count.sum() * gaps)),
        mce=float(np.max(gaps[count > 0])),
        brier=brier_score(p, y),
        accuracy=float(np.mean(p.argmax(axis=1) == y)),
        mean_confidence=float(np.mean(p.max(axis=1))),
        samples=len(y),
        bins=bins,
    )

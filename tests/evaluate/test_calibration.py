"""Calibration metrics: ECE, MCE, reliability bins and the Brier score."""

from __future__ import annotations

import numpy as np
import pytest

from deepworks.errors import ConfigError
from deepworks.evaluate.calibration import (
    brier_score,
    calibration,
    expected_calibration_error,
    maximum_calibration_error,
    reliability_bins,
)


def test_hand_computed_example():
    # top-class confidences 0.9, 0.8, 0.6, 0.55 with 4 bins of width 0.25:
    # bin [0.5, 0.75): conf (0.6 + 0.55) / 2 = 0.575, correct 1 of 2 -> gap 0.075
    # bin [0.75, 1.0]: conf (0.9 + 0.8) / 2 = 0.85, correct 2 of 2 -> gap 0.15
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]])
    labels = np.array([0, 1, 1, 1])
    acc, conf, count, edges = reliability_bins(probs, labels, n_bins=4)
    assert count.tolist() == [0, 0, 2, 2]
    assert acc[2:] == pytest.approx([0.5, 1.0])
    assert conf[2:] == pytest.approx([0.575, 0.85])
    assert edges == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert expected_calibration_error(probs, labels, 4) == pytest.approx(0.5 * 0.075 + 0.5 * 0.15)
    assert maximum_calibration_error(probs, labels, 4) == pytest.approx(0.15)
    # Brier: (0.01+0.01) + (0.04+0.04) + (0.36+0.36) + (0.2025+0.2025), over 4
    assert brier_score(probs, labels) == pytest.approx((0.02 + 0.08 + 0.72 + 0.405) / 4)
    cal = calibration(probs, labels, 4)
    assert cal.bins[0].accuracy is None and cal.bins[3].count == 2
    assert cal.accuracy == pytest.approx(0.75) and cal.samples == 4


def test_confidence_one_falls_in_the_last_bin():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    acc, _, count, _ = reliability_bins(probs, [0, 0], n_bins=10)
    assert count[-1] == 2 and acc[-1] == pytest.approx(0.5)
    assert expected_calibration_error(probs, [0, 1]) == pytest.approx(0.0)


def _reference_ece(probs, labels, n_bins):
    """A direct loop over the bins, as in Guo et al. (2017)."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, n_bins + 1)
    ece, mce = 0.0, 0.0
    for m in range(n_bins):
        hi_ok = conf <= edges[m + 1] if m == n_bins - 1 else conf < edges[m + 1]
        inside = (conf >= edges[m]) & hi_ok
        if inside.any():
            gap = abs((pred[inside] == labels[inside]).mean() - conf[inside].mean())
            ece += inside.mean() * gap
            mce = max(mce, gap)
    return ece, mce


@pytest.mark.parametrize("k, n_bins", [(2, 15), (10, 15), (5, 7)])
def test_matches_an_independent_loop_and_torchmetrics(k, n_bins):
    rng = np.random.default_rng(k)
    logits = rng.normal(size=(600, k)) * 2.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.where(rng.random(600) < 0.7, probs.argmax(1), rng.integers(0, k, 600))
    ece, mce = _reference_ece(probs, labels, n_bins)
    cal = calibration(probs, labels, n_bins)
    assert cal.ece == pytest.approx(ece, abs=1e-12)
    assert cal.mce == pytest.approx(mce, abs=1e-12)
    assert sum(b.count for b in cal.bins) == 600
    torchmetrics = pytest.importorskip("torchmetrics.functional.classification")
    import torch

    p, y = torch.tensor(probs), torch.tensor(labels)
    ref = torchmetrics.multiclass_calibration_error(p, y, k, n_bins=n_bins, norm="l1")
    ref_max = torchmetrics.multiclass_calibration_error(p, y, k, n_bins=n_bins, norm="max")
    assert cal.ece == pytest.approx(float(ref), abs=1e-6)
    assert cal.mce == pytest.approx(float(ref_max), abs=1e-6)


def test_brier_matches_scikit_learn():
    from sklearn.metrics import brier_score_loss

    rng = np.random.default_rng(0)
    p1 = rng.random(200)
    y = (rng.random(200) < p1).astype(int)
    probs = np.stack([1 - p1, p1], 1)
    # the one-column binary form is half of the sum over both classes
    assert brier_score(probs, y) == pytest.approx(2 * brier_score_loss(y, p1))
    logits = rng.normal(size=(200, 4))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 4, 200)
    expected = brier_score_loss(labels, probs, labels=[0, 1, 2, 3], scale_by_half=False)
    assert brier_score(probs, labels) == pytest.approx(expected)


def test_bad_input_is_one_line():
    with pytest.raises(ConfigError, match=r"\(N, K\) probabilities"):
        calibration(np.ones(5), np.zeros(5))
    with pytest.raises(ConfigError, match="labels must lie in 0..1"):
        calibration(np.full((2, 2), 0.5), [0, 2])
    with pytest.raises(ConfigError, match="at least 1"):
        calibration(np.full((2, 2), 0.5), [0, 1], n_bins=0)

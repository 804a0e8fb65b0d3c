"""Every metric against scikit-learn, computed independently from the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from deepworks.evaluate.metrics import (
    classification_details,
    classification_metrics,
    regression_metrics,
)


def random_probs(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and informative (not perfect) float32 softmax probabilities."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    e = np.exp(logits - logits.max(1, keepdims=True))
    return y, (e / e.sum(1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("k", [2, 4, 7])
def test_classification_metrics_equal_sklearn(k):
    y, prob = random_probs(300, k, seed=k)
    m = classification_metrics(y, prob, top_k=(2, 3, 5))
    p64 = prob.astype(np.float64)
    p64 /= p64.sum(1, keepdims=True)
    pred = prob.argmax(1)
    labels = np.arange(k)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    for avg in ("macro", "micro", "weighted"):
        assert m[f"precision_{avg}"] == pytest.approx(
            skm.precision_score(y, pred, average=avg, zero_division=0)
        )
        assert m[f"recall_{avg}"] == pytest.approx(
            skm.recall_score(y, pred, average=avg, zero_division=0)
        )
        assert m[f"f1_{avg}"] == pytest.approx(skm.f1_score(y, pred, average=avg, zero_division=0))
    for n in (2, 3, 5):
        if n < k:
            assert m[f"top{n}_accuracy"] == pytest.approx(
                skm.top_k_accuracy_score(y, p64, k=n, labels=labels)
            )
        else:
            assert f"top{n}_accuracy" not in m
    if k == 2:
        assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p64[:, 1]))
    else:
        assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p64, multi_class="ovr"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p64), rel=1e-9)
    assert all(isinstance(v, float) for v in m.values())


def test_top_k_by_hand():
    """Top-k from its definition: the true class is among the k highest probabilities."""
    y, prob = random_probs(200, 6, seed=1)
    m = classification_metrics(y, prob, top_k=(3,))
    ranks = (-prob).argsort(1)[:, :3]
    assert m["top3_accuracy"] == pytest.approx(
        np.mean([t in r for t, r in zip(y, ranks, strict=True)])
    )
    assert m["top3_accuracy"] >= m["accuracy"]


def test_micro_f1_equals_accuracy_for_single_label():
    y, prob = random_probs(150, 5, seed=2)
    m = classification_metrics(y, prob)
    assert m["f1_micro"] == pytest.approx(m["accuracy"])


def test_perfect_and_constant_predictions():
    y = np.array([0, 1, 2, 2, 1, 0])
    perfect = np.eye(3)[y]
    m = classification_metrics(y, perfect)
    assert m["accuracy"] == m["f1_macro"] == m["roc_auc"] == 1.0
    assert m["log_loss"] == pytest.approx(0.0, abs=1e-12)
    constant = np.tile([1.0, 0.0, 0.0], (6, 1))
    c = classification_metrics(y, constant)
    assert c["accuracy"] == pytest.approx(1 / 3)
    assert c["precision_macro"] == pytest.approx(
        skm.precision_score(y, np.zeros(6, int), average="macro", zero_division=0)
    )
    assert np.isfinite(c["log_loss"])  # log(0) is clipped


def test_roc_auc_left_out_when_a_class_is_missing():
    y = np.array([0, 1, 0, 1, 0, 1])
    prob = np.full((6, 3), 1 / 3)
    m = classification_metrics(y, prob)
    assert "roc_auc" not in m
    # log loss still knows there are three classes
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, prob, labels=[0, 1, 2]))


def test_unnormalized_probabilities_are_renormalized():
    y, prob = random_probs(100, 3, seed=3)
    m = classification_metrics(y, prob * 1.001)
    p64 = prob.astype(np.float64)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p64 / p64.sum(1, keepdims=True)))


def test_details_equal_sklearn_confusion_matrix_and_per_class():
    y, prob = random_probs(250, 4, seed=4)
    names = ["a", "b", "c", "d"]
    d = classification_details(y, prob, names)
    pred = prob.argmax(1)
    assert d["class_names"] == names and d["task_type"] == "classification"
    assert d["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, zero_division=0)
    np.testing.assert_allclose(d["per_class"]["precision"], p)
    np.testing.assert_allclose(d["per_class"]["recall"], r)
    np.testing.assert_allclose(d["per_class"]["f1"], f)
    assert d["per_class"]["support"] == s.tolist() == np.bincount(y).tolist()
    report = skm.classification_report(y, pred, output_dict=True, zero_division=0)
    for i in range(4):
        assert d["per_class"]["f1"][i] == pytest.approx(report[str(i)]["f1-score"])


def test_details_keep_absent_classes_as_rows():
    y = np.array([0, 0, 1, 1])
    prob = np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.3, 0.7, 0], [0.6, 0.4, 0]])
    d = classification_details(y, prob, ["x", "y", "z"])
    assert d["confusion_matrix"] == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    assert d["per_class"]["support"] == [2, 2, 0]


def test_regression_metrics_equal_sklearn():
    rng = np.random.default_rng(5)
    y = rng.normal(50, 10, size=120)
    pred = (y + rng.normal(0, 4, size=120)).astype(np.float32)
    m = regression_metrics(y, pred)
    assert m["mse"] == pytest.approx(skm.mean_squared_error(y, pred))
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred))
    # column vectors (N, 1) are the same predictions
    assert regression_metrics(y[:, None], pred[:, None]) == m


def test_regression_r2_needs_two_samples():
    m = regression_metrics(np.array([3.0]), np.array([2.0]))
    assert m == {"mse": 1.0, "rmse": 1.0, "mae": 1.0}

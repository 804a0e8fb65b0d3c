"""k-fold cross-validation: disjoint folds covering the data (as sklearn's splitters draw them),
mean and std consistent with the folds, a tiny training budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import KFold, StratifiedKFold

import deepworks as dw
from deepworks.data import pipeline
from deepworks.data.pipeline import load_raw
from deepworks.errors import ConfigError

CONFIG = {
    "name": "cv",
    "seed": 3,
    "data": {"name": "iris", "split": {"val": 0.2}},
    "model": {"name": "mlp", "hidden": [8]},
    "task": {"name": "classification"},
    "train": {
        "epochs": 3,
        "batch_size": 32,
        "optimizer": {"name": "adam", "lr": 0.05},
        "device": "cpu",
    },
}


class Spy:
    """The (train, test) indices and the bundle of every fold crossval builds."""

    def __init__(self):
        self.indices: list[tuple[np.ndarray, np.ndarray]] = []
        self.bundles = []


@pytest.fixture
def folds_seen(monkeypatch):
    spy = Spy()
    real = pipeline.bundle_from_indices

    def record(raw, train_idx, test_idx, **kw):
        spy.indices.append((np.asarray(train_idx), np.asarray(test_idx)))
        spy.bundles.append(real(raw, train_idx, test_idx, **kw))
        return spy.bundles[-1]

    monkeypatch.setattr(pipeline, "bundle_from_indices", record)
    return spy


def test_three_folds_mean_std_and_disjoint_covering_test_sets(folds_seen, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = dw.crossval(CONFIG, folds=3)
    assert len(result["folds"]) == 3 and len(folds_seen.indices) == 3
    for key in ("test/accuracy", "test/loss", "test/f1_macro"):
        values = [f[key] for f in result["folds"]]
        assert result["mean"][key] == pytest.approx(np.mean(values))
        assert result["std"][key] == pytest.approx(np.std(values))
    assert result["mean"]["test/accuracy"] > 0.7  # iris is easy even with 3 epochs
    assert set(result["mean"]) == set(result["std"]) == set(result["folds"][0])

    raw = load_raw("iris")
    tests = [t for _, t in folds_seen.indices]
    assert sorted(np.concatenate(tests).tolist()) == list(range(len(raw.y)))  # cover, disjoint
    for train, test in folds_seen.indices:
        assert not set(train) & set(test)
        assert len(train) + len(test) == len(raw.y)
    expected = StratifiedKFold(3, shuffle=True, random_state=3).split(np.zeros(len(raw.y)), raw.y)
    for (train, test), (e_train, e_test) in zip(folds_seen.indices, expected, strict=True):
        assert np.array_equal(np.sort(test), np.sort(e_test))
        assert np.array_equal(np.sort(train), np.sort(e_train))
    assert list(tmp_path.iterdir()) == []  # nothing written: no run directory, no checkpoints
    # each fold scales with statistics of its own training part only
    for data in folds_seen.bundles:
        assert torch.allclose(data.train.x.mean(0), torch.zeros(4), atol=1e-5)
        assert not torch.allclose(data.test.x.mean(0), torch.zeros(4), atol=1e-3)


def test_regression_uses_plain_kfold_and_reports_regression_metrics(folds_seen):
    config = CONFIG | {
        "data": {"name": "diabetes", "split": {"val": 0.1}},
        "task": {"name": "regression"},
    }
    result = dw.crossval(config, folds=2, overrides=["train.epochs=2", "model.hidden=[4]"])
    assert len(result["folds"]) == 2
    assert {"test/mse", "test/rmse", "test/mae", "test/r2"} <= set(result["mean"])
    raw = load_raw("diabetes")
    expected = KFold(2, shuffle=True, random_state=3).split(np.zeros(len(raw.y)))
    for (_, test), (_, e_test) in zip(folds_seen.indices, expected, strict=True):
        assert np.array_equal(np.sort(test), np.sort(e_test))


def test_folds_are_reproducible():
    a = dw.crossval(CONFIG, folds=2, overrides=["train.epochs=1"])
    b = dw.crossval(CONFIG, folds=2, overrides=["train.epochs=1"])
    assert a["folds"] == b["folds"]


def test_fewer_than_two_folds_is_a_config_error():
    with pytest.raises(ConfigError, match="at least 2 folds"):
        dw.crossval(CONFIG, folds=1)

"""``data.train_classes``: the training split keeps some classes, validation and test all."""

from __future__ import annotations

import numpy as np
import pytest

from deepworks.data.pipeline import load_dataset
from deepworks.errors import DataError


def test_training_split_keeps_only_the_given_classes():
    whole = load_dataset("breast_cancer", split={"val": 0.2, "test": 0.3}, seed=0)
    normal = load_dataset(
        "breast_cancer", split={"val": 0.2, "test": 0.3}, seed=0, train_classes=[1]
    )
    assert set(normal.train.y.tolist()) == {1}
    assert len(normal.train) == int((whole.train.y == 1).sum())
    for split in ("val", "test"):  # held-out splits are the same samples, with both classes
        a, b = getattr(whole, split), getattr(normal, split)
        assert set(b.y.tolist()) == {0, 1} and np.array_equal(a.y.numpy(), b.y.numpy())
    # the scaler is fitted on the normal training samples only
    mean = normal.train.x.mean(0)
    assert float(mean.abs().max()) < 1e-4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "breast_cancer", "train_classes": [2]}, r"must be labels in 0\.\.1"),
        ({"name": "diabetes", "train_classes": [0]}, "has no class labels"),
    ],
)
def test_bad_train_classes_are_one_line_errors(kwargs, match):
    with pytest.raises(DataError, match=match):
        load_dataset(**kwargs)

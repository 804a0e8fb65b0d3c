"""Built-in datasets: sizes, shapes, label types, and that every registered one validates."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import deepworks.tasks  # noqa: F401  (registers the tasks)
from deepworks.data.pipeline import load_raw
from deepworks.registry import DATASETS, TASKS

# Sequence datasets (those taking ``split``) build their own bundles; their tests are their own.
NEEDS_NO_ARGUMENTS = [
    name
    for name in DATASETS.names()
    if "split" not in inspect.signature(DATASETS.get(name)).parameters
    and all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in inspect.signature(DATASETS.get(name)).parameters.values()
    )
]


def test_builtins_are_registered():
    assert {"digits", "iris", "wine", "breast_cancer", "diabetes"} <= set(NEEDS_NO_ARGUMENTS)


@pytest.mark.parametrize("name", NEEDS_NO_ARGUMENTS)
def test_every_argument_free_dataset_loads_and_validates(name):
    raw = load_raw(name)  # validates
    assert raw.source and len(raw.x) == len(raw.y) > 0
    assert raw.task_type in TASKS, f"{name}: task_type {raw.task_type!r} is no registered task"
    if raw.task_type == "classification":
        assert raw.y.min() == 0 and raw.y.max() == len(raw.class_names) - 1


def test_digits():
    raw = load_raw("digits")
    assert raw.x.shape == (1797, 64) and raw.x.dtype == np.float32
    assert raw.x.min() == 0 and raw.x.max() == 1
    assert raw.task_type == "classification" and raw.class_names == [str(i) for i in range(10)]
    assert len(raw.feature_names) == 64 and not raw.is_image


def test_digits_as_image():
    raw = load_raw("digits", {"as_image": True})
    assert raw.x.shape == (1797, 1, 8, 8) and raw.is_image and raw.input_shape == (1, 8, 8)
    assert raw.x.min() >= 0 and raw.x.max() <= 1
    assert raw.feature_names is None
    np.testing.assert_array_equal(raw.x.reshape(1797, 64), load_raw("digits").x)


@pytest.mark.parametrize(
    ("name", "shape", "classes"),
    [("iris", (150, 4), 3), ("wine", (178, 13), 3), ("breast_cancer", (569, 30), 2)],
)
def test_tabular_classification(name, shape, classes):
    raw = load_raw(name)
    assert raw.x.shape == shape and raw.task_type == "classification"
    assert len(raw.class_names) == classes and np.unique(raw.y).tolist() == list(range(classes))
    assert len(raw.feature_names) == shape[1]


def test_iris_and_breast_cancer_class_names():
    assert load_raw("iris").class_names == ["setosa", "versicolor", "virginica"]
    assert load_raw("breast_cancer").class_names == ["malignant", "benign"]


def test_diabetes_is_regression_with_float_targets():
    raw = load_raw("diabetes")
    assert raw.x.shape == (442, 10) and raw.task_type == "regression"
    assert raw.class_names is None and raw.y.dtype == np.float32
    assert raw.y.min() >= 25 and raw.y.max() <= 346  # unscaled disease progression
    assert len(np.unique(raw.y)) > 20

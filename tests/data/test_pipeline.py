"""load_dataset: splits, scaling fitted on train only, rebalancing and class weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils.class_weight import compute_class_weight

from deepworks.data.bundle import Split, apply_scaler
from deepworks.data.pipeline import load_dataset, split_indices
from deepworks.errors import DataError

N = 200
COUNTS = (120, 50, 30)  # imbalanced classes 0, 1, 2


@pytest.fixture
def ids_npz(write_npz):
    """200 samples whose first feature is the sample's id, so splits can be traced back."""
    rng = np.random.default_rng(0)
    y = rng.permutation(np.repeat(np.arange(3), COUNTS))
    x = np.column_stack([np.arange(N), rng.normal(5, 3, size=(N, 2))]).astype(np.float32)
    return write_npz(x=x, y=y)


def ids(split: Split) -> np.ndarray:
    return split.x[:, 0].numpy().astype(int)


def raw_labels(path: str) -> np.ndarray:
    return np.load(path)["y"]


def test_split_sizes(ids_npz):
    data = load_dataset("npz", path=ids_npz, split={"val": 0.1, "test": 0.2}, scale="none")
    n_test = round(0.2 * N)
    n_val = round(0.1 / 0.8 * (N - n_test))
    assert (len(data.train), len(data.val), len(data.test)) == (N - n_test - n_val, n_val, n_test)
    assert data.describe()["sizes"] == {"train": 140, "val": 20, "test": 40}


def test_default_split_of_digits():
    data = load_dataset("digits")
    assert len(data.test) == round(0.2 * 1797)
    assert len(data.train) + len(data.val) + len(data.test) == 1797


def test_splits_are_disjoint_and_cover_the_data(ids_npz):
    data = load_dataset("npz", path=ids_npz, split={"val": 0.15, "test": 0.25}, scale="none")
    train, val, test = ids(data.train), ids(data.val), ids(data.test)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert sorted(np.concatenate([train, val, test])) == list(range(N))
    y = raw_labels(ids_npz)
    for split, part in ((data.train, train), (data.val, val), (data.test, test)):
        assert torch.equal(split.y, torch.as_tensor(y[part]))  # labels travel with their rows


def test_no_val_split(ids_npz):
    data = load_dataset("npz", path=ids_npz, split={"test": 0.25})
    assert data.val is None and len(data.test) == 50 and len(data.train) == 150


def test_same_seed_same_split_other_seed_other_split(ids_npz):
    def split(seed):
        data = load_dataset("npz", path=ids_npz, seed=seed, scale="none")
        return ids(data.train), ids(data.val), ids(data.test)

    a, b, c = split(0), split(0), split(1)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not np.array_equal(np.sort(a[2]), np.sort(c[2]))


def test_stratified_split_keeps_class_proportions(ids_npz):
    y = raw_labels(ids_npz)
    parts = split_indices(y, {"val": 0.1, "test": 0.2}, seed=3, stratify=True)
    _, expected_test = train_test_split(np.arange(N), test_size=40, random_state=3, stratify=y)
    np.testing.assert_array_equal(np.sort(parts["test"]), np.sort(expected_test))
    for part in parts.values():
        counts = np.bincount(y[part], minlength=3)
        expected = np.asarray(COUNTS) * len(part) / N
        assert np.all(np.abs(counts - expected) <= 1), (counts, expected)


@pytest.mark.parametrize(
    ("kind", "reference"), [("standard", StandardScaler), ("minmax", MinMaxScaler)]
)
def test_scaler_is_fitted_on_train_only(kind, reference):
    split = {"val": 0.2, "test": 0.2}
    plain = load_dataset("wine", split=split, seed=4, scale="none")
    scaled = load_dataset("wine", split=split, seed=4, scale=kind)
    sk = reference().fit(plain.train.x.numpy().astype(np.float64))
    for name in ("train", "val", "test"):
        expected = sk.transform(getattr(plain, name).x.numpy().astype(np.float64))
        np.testing.assert_allclose(getattr(scaled, name).x.numpy(), expected, atol=1e-5)
    train = scaled.train.x.numpy()
    if kind == "standard":
        np.testing.assert_allclose(train.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(train.std(0), 1, atol=1e-5)
        assert np.abs(scaled.test.x.numpy().mean(0)).max() > 1e-3  # test stats are not used
    else:
        np.testing.assert_allclose(train.min(0), 0, atol=1e-6)
        np.testing.assert_allclose(train.max(0), 1, atol=1e-6)
    # predict-time scaling with the stored scaler reproduces the test split
    torch.testing.assert_close(apply_scaler(plain.test.x, scaled.scaler), scaled.test.x)


def test_image_scaler_is_per_channel():
    data = load_dataset("digits", as_image=True, scale="standard")
    assert data.is_image and data.input_shape == (1, 8, 8)
    assert np.asarray(data.scaler["shift"]).shape == (1, 1, 1)
    x = data.train.x.double()
    assert abs(x.mean().item()) < 1e-5 and abs(x.std(unbiased=False).item() - 1) < 1e-5


def test_unknown_scaling():
    with pytest.raises(DataError, match="'zscore' is not a scaling"):
        load_dataset("iris", scale="zscore")


@pytest.mark.parametrize("how", ["oversample", "undersample"])
def test_resampling_balances_train_only(ids_npz, how):
    base = load_dataset("npz", path=ids_npz, seed=2, scale="none")
    data = load_dataset("npz", path=ids_npz, seed=2, scale="none", imbalance=how)
    before = np.bincount(base.train.y.numpy(), minlength=3)
    after = np.bincount(data.train.y.numpy(), minlength=3)
    target = before.max() if how == "oversample" else before.min()
    assert after.tolist() == [target] * 3
    train_ids = set(ids(base.train))
    assert set(ids(data.train)) <= train_ids  # only training samples, never val/test ones
    if how == "oversample":
        assert set(ids(data.train)) == train_ids
    for name in ("val", "test"):
        assert torch.equal(getattr(data, name).x, getattr(base, name).x)
        assert torch.equal(getattr(data, name).y, getattr(base, name).y)
    for row, label in zip(ids(data.train), data.train.y.numpy(), strict=True):
        assert raw_labels(ids_npz)[row] == label


def test_resampling_errors(ids_npz):
    with pytest.raises(DataError, match="'smote' is not a resampling"):
        load_dataset("npz", path=ids_npz, imbalance="smote")
    with pytest.raises(DataError, match="diabetes is a regression dataset"):
        load_dataset("diabetes", imbalance="oversample")


def test_class_weights_match_sklearn(ids_npz):
    data = load_dataset("npz", path=ids_npz, seed=1)
    y = data.train.y.numpy()
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(data.class_weights().numpy(), expected, rtol=1e-6)
    assert data.class_weights().dtype == torch.float32
    assert data.class_counts().tolist() == np.bincount(y).tolist()


def test_bundle_metadata(write_csv):
    rows = "".join(f"{i},{i % 4},{['lo', 'hi'][i % 2]}\n" for i in range(40))
    data = load_dataset("csv", path=write_csv("a,b,level\n" + rows), target="level")
    assert data.task_type == "classification" and data.num_classes == 2
    assert data.class_names == ["hi", "lo"] and data.feature_names == ["a", "b"]
    assert data.input_shape == (2,) and data.num_outputs == 2
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64


def test_regression_split():
    data = load_dataset("diabetes", split={"val": 0.1, "test": 0.1})
    assert data.task_type == "regression" and data.num_classes is None and data.num_outputs == 1
    assert data.train.y.dtype == torch.float32
    assert len(data.train) + len(data.val) + len(data.test) == 442


def test_split_fraction_that_leaves_an_empty_split(write_npz):
    path = write_npz(x=np.ones((10, 2)), y=np.arange(10) % 2)
    with pytest.raises(DataError, match="the val split of 10 samples at .* is empty"):
        load_dataset("npz", path=path, split={"val": 0.02, "test": 0.2})


def test_split_fractions_must_leave_training_data():
    with pytest.raises(DataError, match="must be >= 0 and sum to less than 1"):
        load_dataset("iris", split={"val": 0.5, "test": 0.5})
    with pytest.raises(DataError, match="must be >= 0"):
        load_dataset("iris", split={"val": -0.1})


def test_nothing_left_for_training(write_npz):
    path = write_npz(x=np.ones((3, 2)), y=np.array([0, 1, 0]))
    with pytest.raises(DataError, match="nothing is left for training"):
        load_dataset("npz", path=path, split={"val": 0.49, "test": 0.5})

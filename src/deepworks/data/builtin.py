"""Built-in datasets that ship with scikit-learn: no download, available offline."""

from __future__ import annotations

import numpy as np

from deepworks.data.bundle import RawData
from deepworks.registry import register_dataset


def _sklearn(loader_name: str, task_type: str, **kwargs) -> RawData:
    from sklearn import datasets

    bunch = getattr(datasets, loader_name)(**kwargs)
    class_names = None
    if task_type == "classification":
        class_names = [str(n) for n in getattr(bunch, "target_names", np.unique(bunch.target))]
    return RawData(
        x=np.asarray(bunch.data, dtype=np.float32),
        y=np.asarray(bunch.target),
        task_type=task_type,
        class_names=class_names,
        feature_names=[str(n) for n in getattr(bunch, "feature_names", [])] or None,
        source=loader_name.removeprefix("load_"),
    )


@register_dataset("digits")
def digits(as_image: bool = False) -> RawData:
    """Handwritten digits 0-9: 1,797 grayscale 8x8 images (64 features, or 1x8x8 images).

    Pixel intensities are scaled from 0..16 to [0, 1]; the 64 features are named
    ``pixel_0_0`` .. ``pixel_7_7`` (row, column).

    Args:
        as_image: Give each sample as a 1x8x8 image (for convolutional models) instead of 64
            flat features.
    """
    raw = _sklearn("load_digits", "classification")
    raw.x = raw.x / 16.0  # pixel intensities are 0..16
    if as_image:
        raw.x = raw.x.reshape(-1, 1, 8, 8)
        raw.is_image = True
        raw.feature_names = None
    return raw


@register_dataset("iris")
def iris() -> RawData:
    """Iris flowers: 150 samples, 4 features, 3 classes."""
    return _sklearn("load_iris", "classification")


@register_dataset("wine")
def wine() -> RawData:
    """Wine cultivars: 178 samples, 13 chemical features, 3 classes."""
    return _sklearn("load_wine", "classification")


@register_dataset("breast_cancer")
def breast_cancer() -> RawData:
    """Breast cancer diagnosis: 569 samples, 30 features, binary (malignant / benign)."""
    return _sklearn("load_breast_cancer", "classification")


@register_dataset("diabetes")
def diabetes() -> RawData:
    """Diabetes progression: 442 samples, 10 features, regression target."""
    raw = _sklearn("load_diabetes", "regression", scaled=False)
    raw.y = raw.y.astype(np.float32)
    return raw

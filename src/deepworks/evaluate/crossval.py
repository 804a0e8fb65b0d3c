"""k-fold splits for cross-validation: every sample is tested exactly once.

Each fold holds out 1/k of the samples as its test set. Classification labels are stratified
(every fold keeps the class proportions) when the rarest class has at least k samples; otherwise,
and for regression, the folds are plain shuffled slices. Training on the folds is
:func:`deepworks.recipes.crossval.crossval` (``deepworks crossval CONFIG``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold


def kfold_indices(
    y: np.ndarray, folds: int, seed: int, classes: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) of each of ``folds`` folds of the labels ``y``.

    Args:
        y: One label (or target) per sample.
        folds: k, at least 2.
        seed: Seed of the shuffle.
        classes: Whether ``y`` holds class labels (then the folds are stratified if they can be).
    """
    y = np.asarray(y)
    if classes and np.bincount(y).min() >= folds:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed)
    yield from splitter.split(np.zeros(len(y)), y)

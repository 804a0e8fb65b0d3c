"""Rebalancing a training split by random over- or under-sampling of its classes."""

from __future__ import annotations

import numpy as np

from deepworks.errors import DataError


def resample(x: np.ndarray, y: np.ndarray, how: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (x, y) with every class at the size of the largest ("oversample") or the smallest
    ("undersample") class, drawing samples at random with a seeded generator."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    if how == "oversample":
        target, replace = counts.max(), True
    elif how == "undersample":
        target, replace = counts.min(), False
    else:
        raise DataError(
            f"data.imbalance: {how!r} is not a resampling (choices: none, oversample, undersample)"
        )
    picks = []
    for c, n in zip(classes, counts, strict=True):
        members = np.flatnonzero(y == c)
        if how == "oversample":
            extra = rng.choice(members, size=target - n, replace=replace)
            picks.append(np.concatenate([members, extra]))
        else:
            picks.append(rng.choice(members, size=target, replace=False))
    order = rng.permutation(np.concatenate(picks))
    return x[order], y[order]

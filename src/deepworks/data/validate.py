"""Checks that turn bad data into one clear line instead of a NaN loss ten minutes later."""

from __future__ import annotations

import numpy as np

from deepworks.data.bundle import RawData
from deepworks.errors import DataError


def validate_raw(raw: RawData) -> None:
    """Raise :class:`DataError` for empty data, x/y length mismatch, NaN/Inf or bad labels."""
    src = raw.source or "data"
    n_y = len(raw.y)
    if n_y == 0:
        raise DataError(f"{src}: the dataset is empty (0 samples); check the file or its filter")
    if raw.y.ndim != 1:
        raise DataError(f"{src}: targets must be one value per sample, got shape {raw.y.shape}")
    if raw.dataset is None:
        n_x = len(raw.x)
        if n_x != n_y:
            raise DataError(
                f"{src}: x has {n_x} samples but y has {n_y}; they must have the same length"
            )
        if not np.issubdtype(raw.x.dtype, np.number):
            raise DataError(f"{src}: inputs must be numeric, got dtype {raw.x.dtype}")
        bad = ~np.isfinite(raw.x)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DataError(
                f"{src}: inputs contain {int(bad.sum())} NaN/Inf value(s), first in sample {row}; "
                "clean or impute them before training"
            )
    if raw.task_type == "classification":
        if not np.issubdtype(raw.y.dtype, np.integer):
            raise DataError(f"{src}: class labels must be integers, got dtype {raw.y.dtype}")
        k = len(raw.class_names) if raw.class_names else None
        lo, hi = int(raw.y.min()), int(raw.y.max())
        if lo < 0 or (k is not None and hi >= k):
            bound = f"0..{k - 1}" if k is not None else ">= 0"
            raise DataError(f"{src}: labels must be in {bound}, found {lo if lo < 0 else hi}")
    else:
        y = raw.y.astype(np.float64)
        if not np.isfinite(y).all():
            raise DataError(f"{src}: regression targets contain NaN/Inf values")

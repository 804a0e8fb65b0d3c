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
    _check_target_shape(raw, src)
    if raw.dataset is None:
        n_x = len(raw.x)
        if n_x != n_y:
            raise DataError(
                f"{src}: x has {n_x} samples but y has {n_y}; they must have the same length"
            )
        if not np.issubdtype(raw.x.dtype, np.number):
            raise DataError(f"{src}: inputs must be numeric, got dtype {raw.x.dtype}")
        # NaN is allowed where the pipeline imputes it (fitted on the training split); Inf never
        bad = np.isinf(raw.x) if raw.impute else ~np.isfinite(raw.x)
        if bad.any():
            row, *cell = (int(i) for i in np.argwhere(bad)[0])
            names = raw.feature_names
            column = f" (column {names[cell[0]]!r})" if names and raw.x.ndim == 2 else ""
            fix = "replace them" if raw.impute else "clean them, or set data.impute (csv data)"
            raise DataError(
                f"{src}: inputs contain {int(bad.sum())} NaN/Inf value(s), first in sample "
                f"{row}{column}; {fix}"
            )
    if raw.task_type in ("classification", "segmentation"):
        if not np.issubdtype(raw.y.dtype, np.integer):
            raise DataError(f"{src}: class labels must be integers, got dtype {raw.y.dtype}")
        k = len(raw.class_names) if raw.class_names else None
        lo, hi = int(raw.y.min()), int(raw.y.max())
        if lo < 0 or (k is not None and hi >= k):
            bound = f"0..{k - 1}" if k is not None else ">= 0"
            raise DataError(f"{src}: labels must be in {bound}, found {lo if lo < 0 else hi}")
    elif raw.task_type == "regression":
        y = raw.y.astype(np.float64)
        if not np.isfinite(y).all():
            raise DataError(f"{src}: regression targets contain NaN/Inf values")


def _check_target_shape(raw: RawData, src: str) -> None:
    y = raw.y
    if raw.task_type in ("classification", "regression"):
        if y.ndim != 1:
            raise DataError(f"{src}: targets must be one value per sample, got shape {y.shape}")
        return
    if raw.dataset is not None or raw.x.ndim != 4:
        raise DataError(f"{src}: {raw.task_type} needs in-memory images (N, C, H, W)")
    h, w = raw.x.shape[2:]
    if raw.task_type == "segmentation":
        if y.ndim != 3 or y.shape[1:] != (h, w):
            raise DataError(
                f"{src}: masks have shape {y.shape[1:]}, the images {(h, w)}; give one mask per "
                "image with the image's height and width"
            )
        return
    if y.ndim != 3 or y.shape[2] != 5:
        raise DataError(
            f"{src}: boxes must be (N, M, 5) rows [class, x1, y1, x2, y2], got {y.shape}"
        )
    boxes = y[y[..., 0] >= 0]  # (K, 5) real boxes, padding rows are -1
    if not np.isfinite(boxes).all():
        raise DataError(f"{src}: boxes contain NaN/Inf values")
    k = len(raw.class_names) if raw.class_names else None
    if k is not None and len(boxes) and (boxes[:, 0] >= k).any():
        bad = int(boxes[:, 0].max())
        raise DataError(f"{src}: a box has class {bad}; classes must be in 0..{k - 1}")
    outside = (boxes[:, 1] < 0) | (boxes[:, 2] < 0) | (boxes[:, 3] > w) | (boxes[:, 4] > h)
    inverted = (boxes[:, 3] <= boxes[:, 1]) | (boxes[:, 4] <= boxes[:, 2])
    if outside.any() or inverted.any():
        i = int(np.argmax(outside | inverted))
        raise DataError(
            f"{src}: box {boxes[i, 1:].tolist()} lies outside the {w}x{h} image or has x2 <= x1 / "
            "y2 <= y1; clip boxes to the image and order the corners"
        )

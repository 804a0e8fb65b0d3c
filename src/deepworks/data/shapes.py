"""``shapes``: a generated dataset of circles, squares and triangles on noisy backgrounds.

Every image comes with its class label, a per-pixel mask and the boxes of its shapes, so one
generator serves classification, segmentation and detection, offline and in seconds.
"""

from __future__ import annotations

import numpy as np

from deepworks.data.bundle import RawData
from deepworks.errors import DataError
from deepworks.registry import register_dataset

CLASSES = ("circle", "square", "triangle")


def _shape_mask(kind: int, cx: float, cy: float, r: float, yy, xx) -> np.ndarray:
    """Boolean (H, W) mask of one shape centred at (cx, cy) with half-size r."""
    if kind == 0:  # circle
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    if kind == 1:  # axis-aligned square
        return (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
    # upward triangle: inside all three half-planes of its edges
    top, left, right = (cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)

    def side(a, b):
        return (b[0] - a[0]) * (yy - a[1]) - (b[1] - a[1]) * (xx - a[0])

    s1, s2, s3 = side(top, right), side(right, left), side(left, top)
    return ((s1 >= 0) & (s2 >= 0) & (s3 >= 0)) | ((s1 <= 0) & (s2 <= 0) & (s3 <= 0))


def generate(
    n: int, image_size: int, max_objects: int, noise: float, seed: int, color: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images (N, C, S, S) in [0, 1], labels (N,), masks (N, S, S), boxes (N, M, 5)."""
    rng = np.random.default_rng(seed)
    s = image_size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    c = 3 if color else 1
    images = np.empty((n, c, s, s), np.float32)
    labels = np.empty(n, np.int64)
    masks = np.zeros((n, s, s), np.int64)
    boxes = np.full((n, max_objects, 5), -1.0, np.float32)
    for i in range(n):
        background = rng.uniform(0.0, 0.35, size=(c, 1, 1))
        img = background + noise * rng.standard_normal((c, s, s))
        count = rng.integers(1, max_objects + 1)
        placed = 0
        for _ in range(count * 10):  # rejection sampling: shapes do not overlap
            if placed == count:
                break
            kind = int(rng.integers(0, len(CLASSES)))
            r = rng.uniform(0.12, 0.22) * s
            cx, cy = rng.uniform(r + 1, s - r - 1, size=2)
            shape = _shape_mask(kind, cx, cy, r, yy, xx)
            if (masks[i][shape] > 0).any():
                continue
            fill = rng.uniform(0.6, 1.0, size=(c, 1, 1))
            img = np.where(shape[None], fill + noise * rng.standard_normal((c, s, s)), img)
            masks[i][shape] = kind + 1
            ys, xs = np.nonzero(shape)
            boxes[i, placed] = (kind, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            if placed == 0:
                labels[i] = kind
            placed += 1
        images[i] = np.clip(img, 0.0, 1.0)
    return images, labels, masks, boxes


@register_dataset("shapes")
def shapes(
    task: str = "classification",
    n: int = 1000,
    image_size: int = 32,
    max_objects: int | None = None,
    noise: float = 0.08,
    color: bool = False,
    seed: int = 0,
) -> RawData:
    """Generated circles, squares and triangles with labels, masks and boxes (any task).

    Args:
        task: "classification" (one shape per image, its class), "segmentation" (a mask per
            pixel: 0 background, 1 circle, 2 square, 3 triangle) or "detection" (boxes).
        n: Number of images.
        image_size: Height and width in pixels.
        max_objects: Shapes per image, at most (default: 1 for classification, else 3).
        noise: Standard deviation of the gaussian pixel noise.
        color: RGB images (random colours) instead of grayscale.
        seed: Seed of the generator (the data, not the split).
    """
    if task not in ("classification", "segmentation", "detection"):
        raise DataError(
            f"data.task: {task!r} is not a shapes task (choices: classification, segmentation, "
            "detection)"
        )
    if image_size < 16:
        raise DataError(f"data.image_size: {image_size} is too small for shapes; use >= 16")
    objects = max_objects or (1 if task == "classification" else 3)
    x, labels, masks, boxes = generate(n, image_size, objects, noise, seed, color)
    if task == "classification":
        return RawData(x, labels, task, class_names=list(CLASSES), is_image=True, source="shapes")
    if task == "segmentation":
        names = ["background", *CLASSES]
        return RawData(x, masks, task, class_names=names, is_image=True, source="shapes")
    return RawData(x, boxes, task, class_names=list(CLASSES), is_image=True, source="shapes")

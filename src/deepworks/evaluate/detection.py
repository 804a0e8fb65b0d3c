"""Detection evaluation: box IoU, class-wise (batched) non-maximum suppression, VOC-style mAP.

Boxes are ``[x1, y1, x2, y2]`` in pixels. Ground truth comes as (N, M, 5) rows
``[class, x1, y1, x2, y2]`` and detections as (N, D, 6) rows ``[class, score, x1, y1, x2, y2]``,
both padded with rows of -1 (class < 0 marks padding).
"""

from __future__ import annotations

import numpy as np
import torch

from deepworks.evaluate.specs import MetricSpec

#: What :func:`detection_metrics` emits.
DETECTION_METRICS = (
    MetricSpec("map50", "max", headline=True, fmt=".2%"),
    MetricSpec("map", "max", headline=True, label="mAP@0.5:0.95", fmt=".2%"),
)

#: IoU thresholds of the COCO-style ``map`` (mean over 0.50, 0.55, ..., 0.95).
COCO_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2).tolist())


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every pair: a (..., N, 4), b (..., M, 4) → (..., N, M)."""
    area_a = (a[..., 2] - a[..., 0]).clamp_min(0) * (a[..., 3] - a[..., 1]).clamp_min(0)
    area_b = (b[..., 2] - b[..., 0]).clamp_min(0) * (b[..., 3] - b[..., 1]).clamp_min(0)
    top_left = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])  # (..., N, M, 2)
    bottom_right = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])  # (..., N, M, 2)
    wh = (bottom_right - top_left).clamp_min(0)
    inter = wh[..., 0] * wh[..., 1]  # (..., N, M)
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    return inter / union.clamp_min(1e-9)


def greedy_keep(overlaps: torch.Tensor) -> torch.Tensor:
    """Greedy NMS from a suppression matrix, without a Python loop over boxes.

    ``overlaps[..., j, i]`` says box j (scored higher, j < i) would suppress box i. Greedy NMS
    keeps box i iff no *kept* higher box suppresses it:
    ``keep[i] = not any_j(keep[j] and overlaps[j, i])``.
    That recursion has exactly one solution (it is fixed box by box, highest first), so iterating
    it from "keep all" until nothing changes finds it; each pass fixes at least one more box, and
    in practice a handful of passes suffice.

    Args:
        overlaps: (..., N, N) bool, only the strict upper triangle is read.

    Returns:
        (..., N) bool keep mask.
    """
    n = overlaps.shape[-1]
    overlaps = overlaps & torch.ones(n, n, dtype=torch.bool, device=overlaps.device).triu(1)
    keep = torch.ones(overlaps.shape[:-1], dtype=torch.bool, device=overlaps.device)
    for _ in range(n + 1):
        new = ~(overlaps & keep[..., :, None]).any(dim=-2)  # (..., N)
        if torch.equal(new, keep):
            break
        keep = new
    return keep


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Class-wise NMS: boxes of different classes never suppress each other.

    Args:
        boxes: (N, 4) ``[x1, y1, x2, y2]``.
        scores: (N,).
        classes: (N,) integer class (or any group id).
        iou_threshold: A box is dropped when its IoU with a kept, higher-scored box of the same
            class is above this.

    Returns:
        Indices (into ``boxes``) of the kept boxes, highest score first (like torchvision's).
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True, stable=True)  # (N,)
    b, c = boxes[order], classes[order]
    same_class = c[:, None] == c[None, :]  # (N, N)
    keep = greedy_keep((box_iou(b, b) > iou_threshold) & same_class)
    return order[keep]


# --- average precision ---------------------------------------------------------------------


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision-recall curve with all-point interpolation (VOC 2010+).

    The precision at recall r is taken as the best precision at any recall >= r (the upper
    envelope), and the area is summed over the points where recall changes.
    """
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # envelope: running max from the right
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def _match(
    dets: np.ndarray, gts: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """True/false positives of one class's detections, per IoU threshold (VOC matching).

    Within each image, detections are taken best score first; each one is matched with the
    ground-truth box it overlaps most; it is a true positive if that IoU reaches the threshold and
    the box is not matched yet; otherwise (a miss or a duplicate) a false positive.

    Args:
        dets: (N, D, 5) ``[score, x1, y1, x2, y2]`` of one class, score -inf for padding, sorted
            by score within each image.
        gts: (N, M, 5) ``[valid, x1, y1, x2, y2]`` of that class.
        thresholds: (T,) IoU thresholds.

    Returns:
        (scores (P,), tp (T, P) bool) over the P real detections.
    """
    n, d = dets.shape[:2]
    iou = box_iou(torch.from_numpy(dets[..., 1:]), torch.from_numpy(gts[..., 1:])).numpy()
    iou = np.where(gts[:, None, :, 0] > 0, iou, -1.0)  # padding boxes never match: (N, D, M)
    best = iou.argmax(-1)  # (N, D) the ground-truth box each detection overlaps most (M >= 1)
    best_iou = np.take_along_axis(iou, best[..., None], -1)[..., 0]  # (N, D)
    taken = np.zeros((len(thresholds), n, gts.shape[1]), bool)  # (T, N, M)
    tp = np.zeros((len(thresholds), n, d), bool)  # (T, N, D)
    rows = np.arange(n)
    for r in range(d):  # rank within the image: all images at once
        j = best[:, r]  # (N,)
        hit = (best_iou[None, :, r] >= thresholds[:, None]) & ~taken[:, rows, j]  # (T, N)
        tp[:, :, r] = hit
        taken[:, rows, j] |= hit
    real = np.isfinite(dets[..., 0])  # (N, D)
    return dets[..., 0][real], tp[:, real]


def average_precision(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    num_classes: int,
    thresholds: tuple[float, ...] = (0.5,),
) -> np.ndarray:
    """VOC-style AP per class and IoU threshold.

    Args:
        y_true: (N, M, 5) ground truth ``[class, x1, y1, x2, y2]``, padding rows -1.
        y_pred: (N, D, 6) detections ``[class, score, x1, y1, x2, y2]``, padding rows -1.
        num_classes: K.
        thresholds: IoU thresholds.

    Returns:
        (T, K) average precisions; NaN for a class with no ground-truth box.
    """
    y_true = np.asarray(y_true, np.float64)
    y_pred = np.asarray(y_pred, np.float64).reshape(len(y_true), -1, 6)
    t = np.asarray(thresholds, np.float64)
    ap = np.full((len(t), num_classes), np.nan)
    for k in range(num_classes):
        gt_k = y_true[..., 0] == k  # (N, M)
        n_gt = int(gt_k.sum())
        if n_gt == 0:
            continue
        gts = np.concatenate([gt_k[..., None].astype(np.float64), y_true[..., 1:]], -1)
        mine = y_pred[..., 0] == k  # (N, D)
        score = np.where(mine, y_pred[..., 1], -np.inf)
        order = np.argsort(-score, axis=1, kind="stable")  # best first within each image
        dets = np.concatenate([score[..., None], y_pred[..., 2:]], -1)
        dets = np.take_along_axis(dets, order[..., None], 1)
        scores, tp = _match(dets, gts, t)
        if scores.size == 0:
            ap[:, k] = 0.0
            continue
        rank = np.argsort(-scores, kind="stable")  # all images pooled, best first
        tp = tp[:, rank]
        tp_cum = np.cumsum(tp, axis=1)  # (T, P)
        fp_cum = np.cumsum(~tp, axis=1)
        for i in range(len(t)):
            recall = tp_cum[i] / n_gt
            precision = tp_cum[i] / np.maximum(tp_cum[i] + fp_cum[i], 1)
            ap[i, k] = voc_ap(recall, precision)
    return ap


def detection_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, coco: bool = True
) -> tuple[dict[str, float], dict[str, list[float | None]]]:
    """``map50`` (mean over classes of AP at IoU 0.5) and ``map`` (also averaged over IoU
    0.50:0.95), plus per-class AP lists (None for classes without ground truth)."""
    thresholds = COCO_THRESHOLDS if coco else (0.5,)
    ap = average_precision(y_true, y_pred, num_classes, thresholds)  # (T, K)
    present = ~np.isnan(ap[0])
    metrics = {"map50": float(ap[0, present].mean()) if present.any() else 0.0}
    per_class = {"ap50": [None if np.isnan(v) else float(v) for v in ap[0]]}
    if coco:
        per_class_map = ap.mean(0)
        metrics["map"] = float(per_class_map[present].mean()) if present.any() else 0.0
        per_class["ap"] = [None if np.isnan(v) else float(v) for v in per_class_map]
    return metrics, per_class

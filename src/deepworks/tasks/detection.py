"""Object detection, CenterNet style: boxes ↔ dense maps of centre heatmaps, sizes and offsets.

A model (e.g. ``models/centernet.py``) returns one map (B, K + 4, h, w) at 1/stride of the
input: K heatmap logits, box size (w, h) and centre offset (dx, dy), sizes and offsets in output
cells. Training encodes the target boxes (B, M, 5) ``[class, x1, y1, x2, y2]`` (pixels, padding
rows -1) into the same layout (:func:`encode_targets`); evaluation decodes the map back into
boxes (:func:`decode`) and scores them with VOC-style mAP (``deepworks.evaluate.detection``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepworks.config import LossConfig
from deepworks.data.bundle import DataBundle
from deepworks.errors import ConfigError
from deepworks.evaluate.detection import (
    DETECTION_METRICS,
    box_iou,
    detection_metrics,
    greedy_keep,
)
from deepworks.registry import register_loss, register_task
from deepworks.tasks.base import Task

# --- boxes → targets -------------------------------------------------------------------------


def gaussian_radius(w: torch.Tensor, h: torch.Tensor, min_overlap: float = 0.7) -> torch.Tensor:
    """CenterNet's radius rule (from CornerNet): the largest shift of a box's corners that still
    leaves IoU >= ``min_overlap`` with the true box, the smallest of three cases (both corners
    inside, both outside, one each). Written as in the reference code, elementwise on tensors."""
    b1 = h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + (b1**2 - 4 * c1).clamp_min(0).sqrt()) / 2
    b2 = 2 * (h + w)
    c2 = (1 - min_overlap) * w * h
    r2 = (b2 + (b2**2 - 16 * c2).clamp_min(0).sqrt()) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (h + w)
    c3 = (min_overlap - 1) * w * h
    r3 = (b3 + (b3**2 - 4 * a3 * c3).clamp_min(0).sqrt()) / 2
    return torch.minimum(torch.minimum(r1, r2), r3).floor().clamp_min(0)


def encode_targets(
    boxes: torch.Tensor, num_classes: int, out_size: tuple[int, int], stride: tuple[float, float]
) -> dict[str, torch.Tensor]:
    """Boxes → CenterNet targets, for a whole batch at once.

    Args:
        boxes: (B, M, 5) ``[class, x1, y1, x2, y2]`` in input pixels; class < 0 is padding.
        num_classes: K.
        out_size: (h, w) of the output map.
        stride: (sy, sx) input pixels per output cell.

    Returns:
        ``heatmap`` (B, K, h, w): a gaussian splat per object, exactly 1 at its centre cell;
        ``size`` (B, M, 2) and ``offset`` (B, M, 2) targets in output cells; ``index`` (B, M) the
        flat centre cell ``cy * w + cx``; ``valid`` (B, M) bool.
    """
    h, w = out_size
    sy, sx = stride
    valid = boxes[..., 0] >= 0  # (B, M)
    cls = boxes[..., 0].long().clamp_min(0)  # (B, M)
    x1, y1, x2, y2 = (boxes[..., i] for i in (1, 2, 3, 4))  # (B, M) each, pixels
    bw, bh = (x2 - x1) / sx, (y2 - y1) / sy  # box size in cells
    cx, cy = (x1 + x2) / (2 * sx), (y1 + y2) / (2 * sy)  # centre in cells
    ix = cx.floor().clamp(0, w - 1)  # integer centre cell (B, M)
    iy = cy.floor().clamp(0, h - 1)
    radius = gaussian_radius(bw, bh)  # (B, M)
    sigma = (2 * radius + 1) / 6
    xs = torch.arange(w, device=boxes.device, dtype=boxes.dtype)  # (w,)
    ys = torch.arange(h, device=boxes.device, dtype=boxes.dtype)  # (h,)
    dx = xs - ix[..., None]  # (B, M, w)
    dy = ys - iy[..., None]  # (B, M, h)
    g = torch.exp(
        -(dy[..., :, None] ** 2 + dx[..., None, :] ** 2) / (2 * sigma[..., None, None] ** 2)
    )
    r = radius[..., None, None]
    window = (dy.abs()[..., :, None] <= r) & (dx.abs()[..., None, :] <= r)  # the official crop
    g = torch.where(window & valid[..., None, None], g, torch.zeros_like(g))  # (B, M, h, w)
    onehot = F.one_hot(cls, num_classes).to(g.dtype) * valid[..., None]  # (B, M, K)
    # overlapping splats of one class keep their maximum, as in the reference code
    heatmap = (g[:, :, None] * onehot[..., None, None]).amax(dim=1)  # (B, K, h, w)
    return {
        "heatmap": heatmap,
        "size": torch.stack([bw, bh], -1),  # (B, M, 2)
        "offset": torch.stack([cx - ix, cy - iy], -1),  # (B, M, 2) in [0, 1)
        "index": (iy * w + ix).long(),  # (B, M)
        "valid": valid,
    }


# --- the loss --------------------------------------------------------------------------------


def focal_heatmap_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
) -> torch.Tensor:
    """Penalty-reduced pixel-wise focal loss (CornerNet / CenterNet).

    At object centres (target = 1): ``-(1 - p)^alpha log p``; elsewhere
    ``-(1 - y)^beta p^alpha log(1 - p)``: cells near a centre (y close to 1) are barely punished
    for firing. Summed and divided by the number of objects.
    """
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)  # stable log p, log(1 - p)
    pos = target.eq(1).to(logits.dtype)
    pos_loss = (1 - p) ** alpha * log_p * pos
    neg_loss = (1 - target) ** beta * p**alpha * log_not_p * (1 - pos)
    num_pos = pos.sum().clamp_min(1)
    return -(pos_loss.sum() + neg_loss.sum()) / num_pos


class CenterNetLoss(nn.Module):
    """Focal loss on the heatmap + L1 on size and offset at the object centres.

    ``image_size`` (H, W) of the inputs gives the stride (input pixels per output cell); the
    detection task sets it from the data.
    """

    def __init__(self, heatmap_weight: float, size_weight: float, offset_weight: float):
        super().__init__()
        self.heatmap_weight, self.size_weight = heatmap_weight, size_weight
        self.offset_weight = offset_weight
        self.image_size: tuple[int, int] | None = None

    def stride(self, outputs: torch.Tensor) -> tuple[float, float]:
        h, w = outputs.shape[-2:]
        if self.image_size is None:
            return 1.0, 1.0
        return self.image_size[0] / h, self.image_size[1] / w

    def forward(self, outputs: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """outputs (B, K + 4, h, w), boxes (B, M, 5) → scalar loss."""
        outputs = outputs.float()
        k = outputs.shape[1] - 4
        t = encode_targets(boxes.float(), k, tuple(outputs.shape[-2:]), self.stride(outputs))
        heat = focal_heatmap_loss(outputs[:, :k], t["heatmap"])
        # read size and offset predictions at each object's centre cell
        reg = outputs[:, k:].flatten(2)  # (B, 4, h*w)
        at = reg.gather(2, t["index"][:, None, :].expand(-1, 4, -1)).transpose(1, 2)  # (B, M, 4)
        mask = t["valid"][..., None].to(at.dtype)  # (B, M, 1)
        n = mask.sum().clamp_min(1)
        size = ((at[..., :2] - t["size"]).abs() * mask).sum() / n
        offset = ((at[..., 2:] - t["offset"]).abs() * mask).sum() / n
        return self.heatmap_weight * heat + self.size_weight * size + self.offset_weight * offset


@register_loss("centernet")
def centernet(
    heatmap_weight: float = 1.0,
    size_weight: float = 0.1,
    offset_weight: float = 1.0,
    weight: torch.Tensor | None = None,
) -> nn.Module:
    """CenterNet loss: penalty-reduced focal loss on centre heatmaps + weighted L1 on box size
    and centre offset (weights 1, 0.1, 1 as in the paper)."""
    return CenterNetLoss(heatmap_weight, size_weight, offset_weight)


# --- dense map → boxes -----------------------------------------------------------------------


def decode(
    outputs: torch.Tensor,
    stride: tuple[float, float],
    image_size: tuple[int, int] | None = None,
    top_k: int = 100,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    max_detections: int = 50,
) -> torch.Tensor:
    """Dense maps → detections, batched: peaks, top-k, boxes, threshold, class-wise NMS.

    Args:
        outputs: (B, K + 4, h, w) heatmap logits, sizes and offsets.
        stride: (sy, sx) input pixels per output cell.
        image_size: (H, W) to clip boxes to (default: h * sy, w * sx).

    Returns:
        (B, D, 6) rows ``[class, score, x1, y1, x2, y2]`` in input pixels, best first, padded
        with -1; D = the most detections any image kept (at least 1).
    """
    b, c, h, w = outputs.shape
    k = c - 4
    sy, sx = stride
    height, width = image_size or (h * sy, w * sx)
    heat = torch.sigmoid(outputs[:, :k].float())  # (B, K, h, w)
    # a peak is a cell no lower than its 8 neighbours: the 3x3 max-pool stands in for NMS
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    scores, idx = peaks.flatten(1).topk(min(top_k, k * h * w), dim=1)  # (B, T)
    cls = idx // (h * w)
    cell = idx % (h * w)
    cy, cx = (cell // w).float(), (cell % w).float()
    reg = outputs[:, k:].float().flatten(2).gather(2, cell[:, None].expand(-1, 4, -1))  # (B, 4, T)
    bw, bh = reg[:, 0].clamp_min(0) * sx, reg[:, 1].clamp_min(0) * sy  # pixels
    px, py = (cx + reg[:, 2]) * sx, (cy + reg[:, 3]) * sy  # centre in pixels
    boxes = torch.stack(
        [
            (px - bw / 2).clamp(0, width),
            (py - bh / 2).clamp(0, height),
            (px + bw / 2).clamp(0, width),
            (py + bh / 2).clamp(0, height),
        ],
        -1,
    )  # (B, T, 4)
    # class-wise NMS for all images at once: a box is suppressed only by a better box of the
    # same class in the same image; topk already sorted each image best first
    same = cls[:, :, None] == cls[:, None, :]  # (B, T, T)
    keep = greedy_keep((box_iou(boxes, boxes) > iou_threshold) & same)
    keep &= scores >= score_threshold  # (B, T)
    rank = keep.long().cumsum(1) - 1  # position among the kept, best first
    keep &= rank < max_detections
    d = max(1, int(keep.sum(1).max()) if b else 1)
    rows = torch.cat([cls[..., None].float(), scores[..., None], boxes], -1)  # (B, T, 6)
    out = torch.full((b, d, 6), -1.0, device=outputs.device)
    bi, ti = keep.nonzero(as_tuple=True)
    out[bi, rank[bi, ti]] = rows[bi, ti]
    return out


# --- the task --------------------------------------------------------------------------------


@register_task("detection")
class Detection(Task):
    """Find every object: a class and a box per object (CenterNet-style dense prediction).

    Args:
        score_threshold: Keep detections scoring at least this (low, so mAP sees the whole
            precision-recall curve; the report draws only confident ones).
        iou_threshold: Class-wise NMS drops a box overlapping a better one of its class more.
        top_k: Heatmap peaks considered per image.
        max_detections: Detections kept per image.
        coco_map: Also compute ``map`` (AP averaged over IoU 0.50:0.95).
    """

    name = "detection"
    losses = ("centernet",)
    metrics = DETECTION_METRICS

    def __init__(
        self,
        score_threshold: float = 0.05,
        iou_threshold: float = 0.5,
        top_k: int = 100,
        max_detections: int = 50,
        coco_map: bool = True,
    ):
        super().__init__()
        self.score_threshold, self.iou_threshold = score_threshold, iou_threshold
        self.top_k, self.max_detections, self.coco_map = top_k, max_detections, coco_map
        self.image_size: list[int] | None = None
        self.num_classes: int | None = None

    def num_outputs(self, data: DataBundle, loss: LossConfig) -> int:
        if data.task_type != "detection":
            raise ConfigError(
                f"task.name: 'detection' needs boxes, but {data.name} has {data.task_type} "
                "targets; use data with boxes (e.g. data: {name: shapes, task: detection})"
            )
        return data.num_classes

    def setup(self, data: DataBundle, loss: LossConfig, device: torch.device, model=None) -> None:
        self.num_outputs(data, loss)
        super().setup(data, loss, device, model)
        self.image_size = [int(s) for s in data.input_shape[-2:]]
        self.num_classes = data.num_classes
        self.loss_fn.image_size = tuple(self.image_size)

    def state(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "num_classes": self.num_classes}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if self.loss_fn is not None and self.image_size is not None:
            self.loss_fn.image_size = tuple(self.image_size)

    def stride(self, outputs: torch.Tensor) -> tuple[float, float]:
        h, w = outputs.shape[-2:]
        if self.image_size is None:
            raise ConfigError("detection: the task has no image size; call setup() first")
        return self.image_size[0] / h, self.image_size[1] / w

    def detections(self, outputs: torch.Tensor) -> torch.Tensor:
        """(N, D, 6) ``[class, score, x1, y1, x2, y2]`` per image, padded with -1."""
        chunks = [
            decode(
                part,
                self.stride(outputs),
                tuple(self.image_size),
                top_k=self.top_k,
                score_threshold=self.score_threshold,
                iou_threshold=self.iou_threshold,
                max_detections=self.max_detections,
            )
            for part in outputs.split(256)  # bounds the (B, T, T) NMS matrices
        ]
        d = max(c.shape[1] for c in chunks)
        return torch.cat([F.pad(c, (0, 0, 0, d - c.shape[1]), value=-1.0) for c in chunks])

    def evaluate(self, outputs, y, full=True):
        loss = float(self.loss_fn(outputs.float(), y.to(outputs.device)))
        y_true = y.float().cpu().numpy()  # (N, M, 5)
        y_pred = self.detections(outputs).cpu().numpy()  # (N, D, 6)
        k = self.num_classes or outputs.shape[1] - 4
        coco = self.coco_map and full
        scores, per_class = detection_metrics(y_true, y_pred, k, coco=coco)
        metrics = {"loss": loss} | scores
        if not full:
            return metrics, None, {}
        names = self.data_info.get("class_names") or [str(i) for i in range(k)]
        counts = np.bincount(y_true[..., 0][y_true[..., 0] >= 0].astype(np.int64), minlength=k)
        details = {
            "task_type": "detection",
            "class_names": list(names),
            "per_class": per_class | {"support": counts.tolist()},
        }
        preds = {"y_true": y_true.astype(np.float32), "y_pred": y_pred.astype(np.float32)}
        return metrics, details, preds

    def predict(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        return {"y_pred": self.detections(outputs).cpu().numpy().astype(np.float32)}

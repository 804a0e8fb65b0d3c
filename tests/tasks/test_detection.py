"""Detection: the CenterNet model, target encoding against decoding, batched NMS against a loop
reference, VOC mAP on hand-computed cases, training, a full run with its report, and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import deepworks as dw
from deepworks.config import LossConfig
from deepworks.data.bundle import RawData
from deepworks.data.pipeline import load_dataset
from deepworks.data.validate import validate_raw
from deepworks.errors import ConfigError, DataError
from deepworks.evaluate.detection import average_precision, batched_nms, box_iou, voc_ap
from deepworks.models import create_model
from deepworks.tasks.detection import Detection, decode, encode_targets
from deepworks.train.trainer import Trainer

CPU = torch.device("cpu")
PAD = [-1.0] * 5


@pytest.fixture(scope="module")
def shapes():
    return load_dataset(
        "shapes",
        task="detection",
        n=96,
        image_size=32,
        split={"val": 0.25, "test": 0.25},
        scale="none",
        seed=0,
    )


def centernet(k: int = 3, **kw):
    torch.manual_seed(0)
    return create_model("centernet", in_channels=1, num_classes=k, image_size=32, **kw)


# --- the model -----------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [2, 4])
def test_model_output_shape(stride):
    model = centernet(width=8, stride=stride)
    x = torch.randn(2, 1, 32, 32)
    out = model(x)
    assert out.shape == (2, 3 + 4, 32 // stride, 32 // stride)
    assert model.forward_features(x).shape[-2:] == (32 // stride, 32 // stride)
    torch.testing.assert_close(model.eval()(x), model.forward_head(model.forward_features(x)))
    # the heatmap starts at the prior 0.1 everywhere (bias -2.19)
    assert torch.sigmoid(model(x)[:, :3]).mean().item() == pytest.approx(0.1, abs=0.05)


def test_reset_classifier_rebuilds_the_heatmap_head():
    model = centernet(width=8)
    size_head = model.size_head[-1].weight.clone()
    model.reset_classifier(5)
    out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 5 + 4, 8, 8)
    assert model.get_config()["num_classes"] == 5
    assert torch.equal(model.size_head[-1].weight, size_head)  # size and offset heads are kept
    rebuilt = type(model).from_config(model.get_config())
    assert rebuilt(torch.randn(1, 1, 32, 32)).shape == (1, 9, 8, 8)


def test_image_size_must_fit_the_stride():
    with pytest.raises(ConfigError, match="multiple of model.stride"):
        create_model("centernet", in_channels=1, num_classes=3, image_size=30, stride=4)


# --- targets and decoding ------------------------------------------------------------------


def random_boxes(n: int, m: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """(n, m, 5) non-overlapping-ish boxes with random padding."""
    g = np.random.default_rng(seed)
    out = np.full((n, m, 5), -1.0, np.float32)
    for i in range(n):
        for j in range(g.integers(1, m + 1)):
            w, h = g.uniform(6, 14, size=2)
            x1, y1 = (j * 10 + g.uniform(0, 2), g.uniform(0, size - h))
            x1 = min(x1, size - w)
            out[i, j] = (g.integers(0, 3), x1, y1, x1 + w, y1 + h)
    return torch.from_numpy(out)


def test_targets_peak_at_box_centres():
    boxes = torch.tensor([[[0, 4, 4, 14, 12], [2, 16, 18, 30, 30], PAD]])
    t = encode_targets(boxes, 3, (8, 8), (4.0, 4.0))
    heat = t["heatmap"][0]  # (K, h, w)
    assert heat.shape == (3, 8, 8)
    # centres (9, 8) and (23, 24) px fall in cells (x 2, y 2) and (x 5, y 6)
    assert heat[0, 2, 2] == 1 and heat[2, 6, 5] == 1
    assert (heat == 1).sum() == 2 and heat[1].max() == 0
    assert heat.min() >= 0 and heat.max() <= 1
    assert t["index"][0, :2].tolist() == [2 * 8 + 2, 6 * 8 + 5]
    torch.testing.assert_close(t["size"][0, :2], torch.tensor([[2.5, 2.0], [3.5, 3.0]]))
    torch.testing.assert_close(t["offset"][0, :2], torch.tensor([[0.25, 0.0], [0.75, 0.0]]))
    assert t["valid"][0].tolist() == [True, True, False]


def test_larger_boxes_get_wider_gaussians():
    boxes = torch.tensor([[[0, 0, 0, 8, 8], PAD], [[0, 0, 0, 32, 32], PAD]])
    heat = encode_targets(boxes, 1, (32, 32), (1.0, 1.0))["heatmap"][:, 0]
    assert (heat[1] > 0).sum() > (heat[0] > 0).sum() > 1


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_decode_of_encoded_targets_recovers_the_boxes(stride):
    boxes = random_boxes(6, 3)
    h = w = 32 // stride
    t = encode_targets(boxes, 3, (h, w), (float(stride), float(stride)))
    # a perfect model's map: heatmap logits from the target, size/offset at every centre cell
    logits = torch.logit(t["heatmap"].clamp(1e-6, 1 - 1e-6))
    reg = torch.zeros(6, 4, h * w)
    b, m = t["valid"].nonzero(as_tuple=True)
    values = torch.cat([t["size"], t["offset"]], -1)[b, m]  # (P, 4)
    reg[b, :, t["index"][b, m]] = values
    outputs = torch.cat([logits, reg.reshape(6, 4, h, w)], 1)
    dets = decode(outputs, (stride, stride), (32, 32), score_threshold=0.5)
    for i in range(6):
        true = boxes[i][boxes[i, :, 0] >= 0]
        found = dets[i][dets[i, :, 0] >= 0]
        assert len(found) == len(true)
        iou = box_iou(true[:, 1:], found[:, 2:])
        best = iou.max(1)
        assert (best.values > 0.9).all(), iou
        assert torch.equal(found[best.indices, 0], true[:, 0])  # and the class
        assert (found[:, 1] > 0.99).all()


# --- NMS -----------------------------------------------------------------------------------


def nms_reference(boxes, scores, classes, threshold):
    """Textbook greedy NMS with plain Python loops, class by class."""

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if all(classes[j] != classes[i] or iou(boxes[i], boxes[j]) <= threshold for j in keep):
            keep.append(i)
    return keep


def test_box_iou_known_values():
    a = torch.tensor([[0.0, 0, 2, 2]])
    b = torch.tensor([[1.0, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6], [0, 0, 1, 2]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0, 0.5]]))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_batched_nms_matches_the_loop_reference(seed, threshold):
    g = torch.Generator().manual_seed(seed)
    n = 60
    xy = torch.rand(n, 2, generator=g) * 20  # crowded: many overlaps at every threshold
    wh = torch.rand(n, 2, generator=g) * 20 + 5
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(n, generator=g)
    classes = torch.randint(0, 3, (n,), generator=g)
    got = batched_nms(boxes, scores, classes, threshold).tolist()
    want = nms_reference(boxes.tolist(), scores.tolist(), classes.tolist(), threshold)
    assert got == want
    assert len(got) < n  # the case is not trivial


def test_batched_nms_empty_and_single():
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), 0.5).numel() == 0
    kept = batched_nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0.3]), torch.tensor([1]), 0.5)
    assert kept.tolist() == [0]


# --- mAP -----------------------------------------------------------------------------------


def gt(*rows, m: int = 3) -> np.ndarray:
    out = np.full((m, 5), -1.0)
    out[: len(rows)] = rows
    return out


def det(*rows, d: int = 4) -> np.ndarray:
    out = np.full((d, 6), -1.0)
    if rows:
        out[: len(rows)] = rows
    return out


Y_TRUE = np.stack([gt([0, 0, 0, 10, 10], [1, 20, 20, 30, 30]), gt([0, 5, 5, 15, 15])])


def ap(y_pred, y_true=Y_TRUE, k=2, thresholds=(0.5,)):
    return average_precision(y_true, np.stack(y_pred), k, thresholds)


def test_map_perfect_detections_is_one():
    y_pred = [det([0, 0.9, 0, 0, 10, 10], [1, 0.8, 20, 20, 30, 30]), det([0, 0.7, 5, 5, 15, 15])]
    np.testing.assert_allclose(ap(y_pred, thresholds=(0.5, 0.75, 0.95)), 1.0)


def test_map_all_false_is_zero():
    y_pred = [
        det([0, 0.9, 40, 40, 50, 50], [1, 0.8, 0, 0, 10, 10]),  # wrong place, wrong class
        det([1, 0.7, 5, 5, 15, 15]),  # right box, wrong class
    ]
    np.testing.assert_allclose(ap(y_pred), 0.0)
    np.testing.assert_allclose(ap([det(), det()]), 0.0)  # no detections at all


def test_map_one_miss_out_of_two():
    # class 0 has 2 true boxes, one found: recall 0.5 at precision 1 → AP 0.5; class 1 perfect
    y_pred = [det([0, 0.9, 0, 0, 10, 10], [1, 0.8, 20, 20, 30, 30]), det()]
    np.testing.assert_allclose(ap(y_pred)[0], [0.5, 1.0])


def test_duplicates_count_as_false_positives():
    # a duplicate of a found box ranks between the two true positives of class 0:
    # TP, FP, TP → precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 → AP = 0.5 * 1 + 0.5 * 2/3
    y_pred = [
        det([0, 0.9, 0, 0, 10, 10], [0, 0.8, 0.5, 0, 10.5, 10], [1, 0.8, 20, 20, 30, 30]),
        det([0, 0.7, 5, 5, 15, 15]),
    ]
    np.testing.assert_allclose(ap(y_pred)[0], [0.5 + 0.5 * 2 / 3, 1.0])
    # ... unless NMS removes it first (IoU 0.9 with the better box)
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.5, 0, 10.5, 10]])
    assert batched_nms(boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), 0.5).tolist() == [0]


def test_map_iou_threshold_and_missing_class():
    # a box shifted by 2 px: IoU 64/136 = 0.47 < 0.5, so a false positive at 0.5, a hit at 0.4
    y_true = np.stack([gt([0, 0, 0, 10, 10])])
    y_pred = [det([0, 0.9, 2, 2, 12, 12])]
    got = ap(y_pred, y_true, k=2, thresholds=(0.4, 0.5))
    assert got[0, 0] == 1.0 and got[1, 0] == 0.0
    assert np.isnan(got[:, 1]).all()  # class 1 has no true box: undefined, left out of the mean


def test_voc_ap_interpolates_the_precision_envelope():
    # recall 0.5 @ 0.5 precision, then recall 1 @ 2/3: the envelope lifts the first step to 2/3
    assert voc_ap(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5, 2 / 3])) == pytest.approx(2 / 3)


# --- the task ------------------------------------------------------------------------------


def test_task_trains_with_finite_loss(shapes):
    model = centernet(width=8, stride=4)
    trainer = Trainer(epochs=2, batch_size=16, progress=False, checkpoint=None, device="cpu")
    result = trainer.fit(model, shapes, "detection")
    losses = [row["train/loss"] for row in result.history]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert losses[1] < losses[0]
    assert {"val/loss", "val/map50"} <= set(result.history[-1])
    test = trainer.test(model, shapes)
    assert 0.0 <= test.metrics["test/map50"] <= 1.0 and "test/map" in test.metrics
    assert test.details["task_type"] == "detection"
    assert len(test.details["per_class"]["ap50"]) == 3
    y_true, y_pred = test.predictions["y_true"], test.predictions["y_pred"]
    assert y_true.shape == (len(shapes.test), 3, 5) and y_true.dtype == np.float32
    assert y_pred.ndim == 3 and y_pred.shape[0] == len(shapes.test) and y_pred.shape[2] == 6
    real = y_pred[..., 0] >= 0
    assert ((y_pred[..., 1] >= 0.05) | ~real).all()  # scores over the threshold, or padding


def test_full_run_writes_boxes_and_a_report(tmp_path):
    config = {
        "name": "det",
        "data": {"name": "shapes", "task": "detection", "n": 64, "image_size": 32, "scale": "none"},
        "model": {"name": "centernet", "width": 8},
        "task": {"name": "detection"},
        "train": {"epochs": 1, "batch_size": 16, "progress": False},
    }
    run = dw.train(config, out=tmp_path)
    assert "test/map50" in run.metrics
    preds = np.load(run.dir / "predictions.npz")
    assert preds["y_true"].shape[1:] == (3, 5) and preds["y_pred"].shape[2] == 6
    assert preds["x"].shape[1:] == (1, 32, 32)
    html = (run.dir / "report.html").read_text()
    assert 'id="detections"' in html and 'id="per-class"' in html
    assert html.count("data:image/png;base64,") >= 2  # curves and the boxes
    assert "AP@0.5" in html


def test_detection_on_classification_data_is_a_config_error():
    data = load_dataset("iris", split={"val": 0.2, "test": 0.2}, seed=0)
    with pytest.raises(ConfigError) as err:
        Detection().setup(data, LossConfig(), CPU)
    assert "\n" not in str(err.value) and "boxes" in str(err.value)


def test_boxes_outside_the_image_are_a_data_error():
    x = np.zeros((2, 1, 16, 16), np.float32)
    y = np.full((2, 2, 5), -1.0, np.float32)
    y[0, 0] = (0, 2, 2, 8, 8)
    y[1, 0] = (1, 10, 10, 20, 12)  # x2 = 20 > 16
    raw = RawData(x, y, "detection", class_names=["a", "b"], is_image=True, source="boxes")
    with pytest.raises(DataError, match="outside the 16x16 image"):
        validate_raw(raw)

"""Segmentation: the U-Net's shapes and interface, IoU / dice against scikit-learn, the dice
losses, the task through the Trainer and a whole run (masks in predictions.npz and the report),
and the one-line errors for mismatched tasks, data and masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm
from torch import nn

import deepworks as dw
from deepworks.config import LossConfig
from deepworks.data.bundle import RawData
from deepworks.data.validate import validate_raw
from deepworks.errors import ConfigError, DataError
from deepworks.evaluate.segmentation import (
    confusion_matrix,
    dice_per_class,
    iou_per_class,
    segmentation_metrics,
)
from deepworks.models import create_model
from deepworks.models.unet import UNet
from deepworks.registry import LOSSES
from deepworks.report.run_files import RunFiles
from deepworks.tasks.classification import Classification
from deepworks.tasks.segmentation import Segmentation

CPU = torch.device("cpu")
FAST = {"progress": False, "checkpoint": None, "device": "cpu"}


@pytest.fixture(scope="module")
def seg_data():
    return dw.load_dataset(
        "shapes", task="segmentation", n=60, image_size=16, scale="none",
        split={"val": 0.2, "test": 0.2}, seed=0,
    )  # fmt: skip


def unet(seed=0, **kw):
    torch.manual_seed(seed)
    kw = {"in_channels": 1, "num_classes": 4, "base_channels": 4, "depth": 2} | kw
    return create_model("unet", **kw)


# --- the model ------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [(32, 32), (33, 47), (17, 20)])
@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_unet_output_has_the_input_size(depth, size, upsample):
    model = unet(in_channels=3, num_classes=5, depth=depth, upsample=upsample).eval()
    x = torch.randn(2, 3, *size)
    features = model.forward_features(x)
    assert features.shape == (2, 4, *size)  # (B, base_channels, H, W)
    out = model(x)
    assert out.shape == (2, 5, *size)
    torch.testing.assert_close(out, model.forward_head(features))


def test_unet_padding_does_not_leak_into_the_image():
    """An odd-sized image gives the same logits as the same image inside a padded canvas."""
    model = unet(depth=2, batch_norm=False).eval()
    x = torch.randn(1, 1, 13, 14)
    out = model(x)
    padded = model(F.pad(x, (0, 2, 0, 3)))[..., :13, :14]  # 16 × 16: no padding inside
    torch.testing.assert_close(out, padded)


def test_unet_reset_classifier_swaps_the_1x1_conv():
    model = unet()
    model.reset_classifier(7)
    assert isinstance(model.head, nn.Conv2d) and model.head.kernel_size == (1, 1)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 7, 16, 16)
    assert model.get_config()["num_classes"] == 7


def test_unet_config_round_trip():
    model = unet(image_size=[24, 20], dropout=0.1, upsample="bilinear").eval()
    config = model.get_config()
    assert config["image_size"] == [24, 20] and config["upsample"] == "bilinear"
    json.dumps(config)  # plain values, as config.yaml stores them
    clone = UNet.from_config(config).eval()
    clone.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 24, 20)
    torch.testing.assert_close(clone(x), model(x))


@pytest.mark.parametrize("bad", [{"depth": 0}, {"upsample": "nearest"}, {"widht": 3}])
def test_unet_bad_arguments_are_config_errors(bad):
    with pytest.raises(ConfigError) as err:
        unet(**bad)
    assert "\n" not in str(err.value)


# --- metrics against scikit-learn -----------------------------------------------------------


def random_masks(k=4, absent=2, seed=0):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, size=(6, 12, 10))
    y_pred = np.where(rng.random(y_true.shape) < 0.7, y_true, rng.integers(0, k, y_true.shape))
    y_true[y_true == absent] = 0  # one class in neither mask: it has no IoU
    y_pred[y_pred == absent] = 1
    return y_true, y_pred


def test_confusion_matrix_matches_sklearn():
    y_true, y_pred = random_masks()
    cm = confusion_matrix(torch.as_tensor(y_true), torch.as_tensor(y_pred), 4)
    expected = skm.confusion_matrix(y_true.ravel(), y_pred.ravel(), labels=range(4))
    np.testing.assert_array_equal(cm.numpy(), expected)


def test_iou_and_dice_match_sklearn_and_the_definition():
    y_true, y_pred = random_masks()
    cm = confusion_matrix(y_true, y_pred, 4)
    iou = iou_per_class(cm)
    assert np.isnan(iou[2])  # absent from both masks
    present = [0, 1, 3]
    t, p = y_true.ravel(), y_pred.ravel()
    np.testing.assert_allclose(iou[present], skm.jaccard_score(t, p, labels=present, average=None))
    fg = [1, 3]
    metrics = segmentation_metrics(cm)
    assert metrics["iou"] == pytest.approx(skm.jaccard_score(t, p, labels=fg, average="macro"))
    assert metrics["iou_all"] == pytest.approx(
        skm.jaccard_score(t, p, labels=present, average="macro")
    )
    assert metrics["pixel_accuracy"] == pytest.approx(skm.accuracy_score(t, p))
    dice = dice_per_class(cm)
    for c in present:
        a, b = t == c, p == c
        assert dice[c] == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))
    assert metrics["dice"] == pytest.approx(np.mean(dice[fg]))


def test_perfect_masks_score_one():
    y_true, _ = random_masks()
    metrics = segmentation_metrics(confusion_matrix(y_true, y_true, 4))
    assert metrics == {"pixel_accuracy": 1.0, "iou": 1.0, "iou_all": 1.0, "dice": 1.0}


# --- losses ---------------------------------------------------------------------------------


def loss(name, **kw):
    return LOSSES.build(name, kw, weight=kw.pop("weight", None))


@pytest.mark.parametrize("name", ["dice", "dice_ce"])
def test_dice_losses_have_finite_gradients(name):
    logits = torch.randn(3, 4, 9, 11, requires_grad=True)
    y = torch.randint(0, 4, (3, 9, 11))
    value = loss(name)(logits, y)
    value.backward()
    assert torch.isfinite(value) and value > 0
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("include_background", [False, True])
def test_dice_loss_is_zero_for_perfect_predictions(include_background):
    y = torch.randint(0, 4, (2, 8, 8))
    logits = (30.0 * F.one_hot(y, 4).permute(0, 3, 1, 2).float()).requires_grad_()
    value = loss("dice", include_background=include_background)(logits, y)
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-6)
    assert logits.grad.abs().max() < 1e-6


def test_dice_loss_matches_the_formula():
    logits, y = torch.randn(2, 3, 5, 6), torch.randint(0, 3, (2, 5, 6))
    p, t = logits.softmax(1), F.one_hot(y, 3).permute(0, 3, 1, 2).float()
    dice = [
        (2 * (p[:, c] * t[:, c]).sum() + 1) / (p[:, c].sum() + t[:, c].sum() + 1) for c in (1, 2)
    ]
    expected = 1 - torch.stack(dice).mean()
    torch.testing.assert_close(loss("dice")(logits, y), expected)
    combined = loss("dice_ce", dice_weight=0.5, ce_weight=2.0)(logits, y)
    torch.testing.assert_close(combined, 0.5 * expected + 2.0 * F.cross_entropy(logits, y))
    weight = torch.tensor([1.0, 3.0, 1.0])
    weighted = loss("dice", weight=weight)(logits, y)
    torch.testing.assert_close(weighted, 1 - (3 * dice[0] + dice[1]) / 4)


# --- the task -------------------------------------------------------------------------------


def test_trainer_fits_the_segmentation_task(seg_data):
    model = unet(num_classes=seg_data.num_classes)
    trainer = dw.Trainer(epochs=2, batch_size=16, optimizer={"name": "adam", "lr": 0.01}, **FAST)
    result = trainer.fit(model, seg_data, task="segmentation")
    logs = result.history[-1]
    for key in ("train/loss", "train/pixel_accuracy", "val/loss", "val/iou", "val/iou_all"):
        assert np.isfinite(logs[key]), key
    assert 0 <= logs["train/pixel_accuracy"] <= 1
    test = trainer.test(model, seg_data)
    assert set(test.metrics) >= {"test/loss", "test/pixel_accuracy", "test/iou", "test/dice"}
    assert test.details["task_type"] == "segmentation"
    assert len(test.details["per_class"]["iou"]) == 4
    n = len(seg_data.test)
    assert test.predictions["y_pred"].shape == (n, 16, 16)
    assert test.predictions["y_pred"].dtype == np.uint8
    np.testing.assert_array_equal(test.predictions["y_true"], seg_data.test.y.numpy())
    pred = trainer.predict(model, seg_data.test.x)
    np.testing.assert_array_equal(pred["y_pred"], test.predictions["y_pred"])


def test_task_metrics_match_the_confusion_matrix(seg_data):
    task = Segmentation()
    task.setup(seg_data, LossConfig(), CPU)
    y = seg_data.test.y
    logits = 5.0 * F.one_hot(y, 4).permute(0, 3, 1, 2).float()
    logits[:, :, :4] = 0.0
    logits[:, 0, :4] = 1.0  # the top rows predicted background
    metrics, details, preds = task.evaluate(logits, y)
    pred = y.clone()
    pred[:, :4] = 0
    expected = segmentation_metrics(confusion_matrix(y, pred, 4))
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value)
    quick, none, empty = task.evaluate(logits, y, full=False)
    assert quick["iou"] == pytest.approx(metrics["iou"]) and none is None and empty == {}


def test_whole_run_writes_masks_and_a_report(tmp_path):
    config = {
        "name": "tiny_seg",
        "seed": 0,
        "data": {"name": "shapes", "task": "segmentation", "n": 40, "image_size": 16,
                 "scale": "none", "split": {"val": 0.2, "test": 0.3}},
        "model": {"name": "unet", "base_channels": 4, "depth": 2},
        "task": {"name": "segmentation"},
        "train": {"epochs": 1, "batch_size": 16, "progress": False,
                  "checkpoint": {"monitor": "val/iou"}},
    }  # fmt: skip
    run = dw.train(config, out=tmp_path)
    assert np.isfinite(run.metrics["test/iou"])
    with np.load(run.dir / "predictions.npz") as npz:
        assert npz["y_true"].shape == npz["y_pred"].shape == (12, 16, 16)
        assert npz["y_pred"].dtype == np.uint8
        assert npz["x"].shape == (12, 1, 16, 16)
    evaluation = json.loads((run.dir / "evaluation.json").read_text())
    assert evaluation["class_names"] == ["background", "circle", "square", "triangle"]
    assert len(evaluation["per_class"]["iou"]) == 4
    html = (run.dir / "report.html").read_text()
    masks = html[html.index('<section id="segmentation">') :]
    masks = masks[: masks.index("</section>")]
    assert "Predicted masks" in masks and "data:image/png;base64," in masks
    assert "Per-class IoU" in html and "triangle" in html


def test_report_sections_without_evaluation_json():
    """Per-class IoU comes from the masks when evaluation.json is missing."""
    from deepworks.report.segmentation import sections

    y_true, y_pred = random_masks()
    x = np.random.default_rng(0).random((6, 3, 12, 10))
    run = RunFiles(
        run_dir=None,
        data={"task_type": "segmentation", "class_names": ["bg", "a", "b", "c"]},
        predictions={"y_true": y_true.astype(np.uint8), "y_pred": y_pred.astype(np.uint8), "x": x},
    )
    found = {anchor: html for anchor, _, html in sections(run, "test")}
    assert set(found) == {"segmentation", "per-class"}
    assert "data:image/png;base64," in found["segmentation"]
    iou = iou_per_class(confusion_matrix(y_true, y_pred, 4))
    assert f"{iou[1]:.3f}" in found["per-class"] and "—" in found["per-class"]


# --- one-line errors ------------------------------------------------------------------------


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and message
    return message


def test_segmentation_task_on_classification_data(seg_data):
    labels = dw.load_dataset("shapes", n=30, image_size=16, scale="none", seed=0)
    with pytest.raises(ConfigError) as err:
        Segmentation().num_outputs(labels, LossConfig())
    assert "segmentation" in one_line(err) and "classification" in str(err.value)
    with pytest.raises(ConfigError) as err:
        Classification().num_outputs(seg_data, LossConfig())
    one_line(err)


def test_classification_losses_do_not_fit_segmentation(seg_data):
    with pytest.raises(ConfigError) as err:
        Segmentation().num_outputs(seg_data, LossConfig(name="focal"))
    assert "dice_ce" in one_line(err)


def test_model_without_dense_outputs_is_a_config_error(seg_data):
    task = Segmentation()
    task.setup(seg_data, LossConfig(), CPU)
    flat = create_model("mlp", in_features=256, num_classes=4, hidden=[8])
    with pytest.raises(ConfigError) as err:
        task.training_step(flat, seg_data.train.x[:2], seg_data.train.y[:2])
    assert "unet" in one_line(err)


def test_mask_size_mismatch_names_the_shapes():
    x = np.zeros((4, 1, 16, 16), np.float32)
    y = np.zeros((4, 15, 16), np.int64)
    raw = RawData(x, y, "segmentation", class_names=["bg", "fg"], is_image=True, source="masks")
    with pytest.raises(DataError) as err:
        validate_raw(raw)
    message = one_line(err)
    assert "(15, 16)" in message and "(16, 16)" in message

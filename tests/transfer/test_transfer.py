"""Transfer learning: backbone loading, feature extraction, discriminative LRs, gradual
unfreezing, and a pretraining stage run from a config."""

from __future__ import annotations

import pytest
import torch

import deepworks as dw
from deepworks.errors import CheckpointError, ConfigError
from deepworks.run import load_backbone
from deepworks.train.callbacks import Callback, GradualUnfreeze
from deepworks.transfer import split_parameters

FAST = {"progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    cfg = {
        "name": "src",
        "data": {"name": "digits", "classes": [0, 1, 2, 3, 4]},
        "model": {"name": "mlp", "hidden": [32, 16]},
        "train": {"epochs": 2, "batch_size": 64} | FAST,
    }
    return dw.train(cfg, out=tmp_path_factory.mktemp("runs"))


def mlp(num_classes=5):
    torch.manual_seed(1)
    return dw.create_model("mlp", in_features=64, num_classes=num_classes, hidden=[32, 16])


def test_load_backbone_copies_every_backbone_tensor_and_leaves_the_head(source_run):
    model = mlp(num_classes=3)  # a different label set: the head cannot be reused
    head_before = model.head.weight.clone()
    loaded = load_backbone(model, source_run.dir)
    saved = source_run.model.state_dict()
    assert loaded == sorted(k for k in saved if not k.startswith("head."))
    for k in loaded:
        assert torch.equal(model.state_dict()[k], saved[k].cpu())
    assert torch.equal(model.head.weight, head_before)


def test_load_backbone_refuses_another_architecture(source_run):
    other = dw.create_model("mlp", in_features=64, num_classes=5, hidden=[64])
    with pytest.raises(CheckpointError, match="do not fit this model's backbone"):
        load_backbone(other, source_run.dir)


def digits_5_to_9():
    return dw.load_dataset("digits", classes=[5, 6, 7, 8, 9], train_per_class=20, seed=0)


def test_classes_and_train_per_class_select_a_few_labels():
    data = digits_5_to_9()
    assert data.class_names == ["5", "6", "7", "8", "9"]
    assert torch.bincount(data.train.y).tolist() == [20] * 5
    assert len(data.test) > 100  # evaluation stays whole


def test_feature_extraction_trains_the_head_only(source_run):
    model = mlp()
    load_backbone(model, source_run.dir)
    backbone, head = split_parameters(model)
    before = [p.detach().clone() for p in backbone]
    head_before = [p.detach().clone() for p in head]
    dw.Trainer(epochs=2, batch_size=32, freeze_backbone=True, **FAST).fit(model, digits_5_to_9())
    assert all(torch.equal(a, b) for a, b in zip(before, backbone, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(head_before, head, strict=True))


def test_discriminative_learning_rates():
    trainer = dw.Trainer(
        epochs=1, batch_size=32, optimizer={"name": "adam", "lr": 1e-2}, backbone_lr=1e-4, **FAST
    )
    model = mlp()
    trainer.fit(model, digits_5_to_9())
    backbone, head = split_parameters(model)
    lr_of = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert {lr_of[id(p)] for p in backbone} == {1e-4}
    assert {lr_of[id(p)] for p in head} == {1e-2}


def test_gradual_unfreeze_frees_groups_from_the_head_down():
    seen = []

    class Spy(Callback):
        order = 5  # after GradualUnfreeze

        def on_epoch_start(self, trainer):
            seen.append([p.requires_grad for p in trainer.model.features.parameters()])

    model = mlp()
    first = [p.detach().clone() for p in model.features.parameters()]
    dw.Trainer(
        epochs=3,
        batch_size=64,
        callbacks=[GradualUnfreeze(every=1, start_epoch=1), Spy()],
        **FAST,
    ).fit(model, digits_5_to_9())
    assert seen[0] == [False] * len(first)  # epoch 0: head only
    assert all(seen[1]) and all(seen[2])  # the mlp backbone is one group (its `features`)
    assert not all(
        torch.equal(a, b) for a, b in zip(first, model.features.parameters(), strict=True)
    )


def test_pretrained_config_is_trained_first_inside_the_run(tmp_path):
    pre = tmp_path / "pre.yaml"
    pre.write_text(
        "name: pre\ndata: {name: digits, classes: [0, 1, 2, 3, 4]}\n"
        "model: {name: mlp, hidden: [32, 16]}\ntrain: {epochs: 1, progress: false}\n"
    )
    cfg = {
        "name": "tl",
        "data": {"name": "digits", "classes": [5, 6, 7, 8, 9], "train_per_class": 20},
        "model": {"name": "mlp", "hidden": [32, 16], "pretrained": str(pre)},
        "train": {"epochs": 1} | FAST,
    }
    run = dw.train(cfg, out=tmp_path / "runs")
    pretrained = run.dir / "pretrained" / "pre"
    assert (pretrained / "checkpoints" / "best" / "model.safetensors").exists()
    assert "test/accuracy" in run.metrics


def test_a_bad_pretrained_source_leaves_no_run_behind(tmp_path):
    cfg = {
        "name": "tl",
        "data": {"name": "digits"},
        "model": {"name": "mlp", "pretrained": str(tmp_path / "missing")},
        "train": {"epochs": 1} | FAST,
    }
    with pytest.raises(ConfigError, match="neither a run directory nor a YAML config"):
        dw.train(cfg, out=tmp_path / "runs")
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())

"""The deep belief network: greedy layer-wise pretraining copies each stage's RBM into its layer
(with the input rescaling folded into the first), stages continue from their checkpoints, and a
DBN trains through ``deepworks.recipes.train`` (pretraining, then fine-tuning)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from deepworks.data.bundle import DataBundle, Split
from deepworks.data.pipeline import load_dataset
from deepworks.errors import CheckpointError, ConfigError
from deepworks.models import create_model
from deepworks.models.rbm import RBM
from deepworks.recipes import train
from deepworks.recipes.pretrain import layerwise_pretrain
from deepworks.train.checkpoint import load_checkpoint

QUICK = {"pretrain_epochs": 2, "pretrain_batch_size": 50}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", split={"val": 0.1, "test": 0.2}, seed=0, scale="none")


def subset(data: DataBundle, n: int = 300) -> DataBundle:
    return DataBundle(
        name=data.name,
        train=Split(data.train.x[:n], data.train.y[:n]),
        val=Split(data.val.x[:60], data.val.y[:60]),
        test=None,
        task_type="classification",
        input_shape=data.input_shape,
        num_classes=10,
    )


def dbn(hidden=(24, 12), **kwargs):
    torch.manual_seed(0)
    return create_model("dbn", in_features=64, num_classes=10, hidden=list(hidden), **kwargs)


def stage_rbm(run_dir, layer: int, visible: int, hidden: int) -> RBM:
    """The RBM of pretraining stage ``layer`` as its last checkpoint holds it."""
    tensors, _ = load_checkpoint(run_dir / "pretrain" / f"layer-{layer}" / "checkpoints" / "last")
    rbm = RBM(in_features=visible, hidden=hidden)
    rbm.load_state_dict(tensors["model"])
    return rbm


def test_pretraining_copies_each_rbm_into_its_layer(digits, tmp_path):
    data = subset(digits)
    model = dbn(**QUICK)
    summary = layerwise_pretrain(model, data, run_dir=tmp_path, seed=0)
    assert [s["layer"] for s in summary] == [1, 2]
    assert [(s["visible"], s["hidden"]) for s in summary] == [(64, 24), (24, 12)]
    assert json.loads((tmp_path / "pretrain" / "summary.json").read_text()) == summary
    rbm1 = stage_rbm(tmp_path, 1, 64, 24)
    rbm2 = stage_rbm(tmp_path, 2, 24, 12)
    for layer, rbm in zip(model.layers, (rbm1, rbm2), strict=True):
        assert torch.equal(layer.weight, rbm.weight)
        assert torch.equal(layer.bias, rbm.hidden_bias)
    # the network's features are RBM 2's p(h | RBM 1's p(h | v))
    x = data.val.x
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), rbm2.p_h(rbm1.p_h(x)))
    # a second call finds both stages finished in their checkpoints: same weights, no training
    again = dbn(**QUICK)
    layerwise_pretrain(again, data, run_dir=tmp_path, seed=0)
    for la, lb in zip(model.layers, again.layers, strict=True):
        assert torch.equal(la.weight, lb.weight) and torch.equal(la.bias, lb.bias)
    for layer in (1, 2):
        history = tmp_path / "pretrain" / f"layer-{layer}" / "history.json"
        assert len(json.loads(history.read_text())) == 2  # the two epochs of the first call


def test_standardized_inputs_are_rescaled_for_the_rbm_and_folded_into_layer_one(tmp_path):
    data = subset(load_dataset("digits", split={"val": 0.1, "test": 0.2}, seed=0))
    assert float(data.train.x.min()) < 0  # standardized: not probabilities
    model = dbn(hidden=[16], **QUICK)
    layerwise_pretrain(model, data, run_dir=tmp_path, seed=0)
    rbm = stage_rbm(tmp_path, 1, 64, 16)
    x = data.train.x
    lo, hi = x.min(0).values, x.max(0).values
    scale = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    with torch.no_grad():  # the network on raw inputs == the RBM on min-max rescaled inputs
        want = rbm.p_h(((x - lo) / scale).clamp(0, 1))
        torch.testing.assert_close(model.forward_features(x), want, atol=1e-5, rtol=1e-5)


def test_no_pretraining_is_a_plain_sigmoid_mlp(digits, tmp_path):
    model = dbn(pretrain_epochs=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert layerwise_pretrain(model, digits, run_dir=tmp_path, seed=0) == []
    assert not (tmp_path / "pretrain").exists()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    x = digits.val.x[:4]
    h = x
    for layer in model.layers:
        h = torch.sigmoid(layer(h))
    torch.testing.assert_close(model(x), model.head(h))


def test_bad_arguments_are_one_line_errors():
    for kwargs, message in (
        ({"hidden": []}, "hidden must list"),
        ({"pretrain_k": 0}, "pretrain_k"),
    ):
        with pytest.raises(ConfigError, match=message) as info:
            create_model("dbn", in_features=64, num_classes=10, **kwargs)
        assert "\n" not in str(info.value)


def test_dbn_trains_through_run_train(tmp_path):
    config = {
        "name": "dbn",
        "data": {"name": "digits", "scale": "none"},
        "model": {"name": "dbn", "hidden": [64, 32], "pretrain_epochs": 3},
        "task": {"name": "classification"},
        "train": {"epochs": 8, "batch_size": 32, "optimizer": {"name": "adam", "lr": 0.003}},
    }
    run = train(config, out=tmp_path, progress=False)
    assert run.metrics["test/accuracy"] > 0.85
    summary = json.loads((run.dir / "pretrain" / "summary.json").read_text())
    assert [s["hidden"] for s in summary] == [64, 32]
    assert summary[0]["val/recon_error"] < 0.07  # RBM 1 learned (an untrained one: ~0.11)
    for layer in (1, 2):
        history = run.dir / "pretrain" / f"layer-{layer}" / "history.json"
        assert len(json.loads(history.read_text())) == 3
    saved = (run.dir / "config.yaml").read_text()
    assert "pretrain_epochs: 3" in saved


def test_a_run_stopped_during_pretraining_resumes_it(tmp_path):
    config = {
        "name": "dbn",
        "data": {"name": "digits", "scale": "none"},
        "model": {"name": "dbn", "hidden": [32], "pretrain_epochs": 1},
        "task": {"name": "classification"},
        "train": {"epochs": 1, "batch_size": 64},
    }
    run = train(config, out=tmp_path, progress=False)
    shutil.rmtree(run.dir / "checkpoints")  # as if killed before fine-tuning wrote one
    (run.dir / "metrics.json").unlink()
    lines = []
    resumed = train(resume=run.dir, progress=False, warn=lines.append)
    assert resumed.dir == run.dir and (run.dir / "metrics.json").is_file()
    assert any("continuing the pretraining" in line for line in lines)
    shutil.rmtree(run.dir / "pretrain")
    shutil.rmtree(run.dir / "checkpoints")
    with pytest.raises(CheckpointError, match="no valid checkpoint"):
        train(resume=run.dir, progress=False)

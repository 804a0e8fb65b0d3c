"""Callbacks: hook order, early stopping with restored best weights, checkpoints, LR monitor and
the history files."""

from __future__ import annotations

import copy
import csv
import json
import math

import pytest
import torch
from torch.optim.lr_scheduler import StepLR

from deepworks.data.pipeline import load_dataset
from deepworks.errors import ConfigError
from deepworks.models import create_model
from deepworks.tasks.classification import Classification
from deepworks.train.callbacks import Callback, EarlyStopping
from deepworks.train.callbacks.base import resolve_mode
from deepworks.train.checkpoint import load_checkpoint, verify_checkpoint
from deepworks.train.trainer import Trainer

FAST = {"progress": False, "checkpoint": None, "device": "cpu"}


@pytest.fixture(scope="module")
def data():
    """Iris: 150 samples, small enough that an epoch with validation takes milliseconds."""
    return load_dataset("iris", split={"val": 0.2, "test": 0.2}, seed=0)


def mlp(seed=0, **kw):
    torch.manual_seed(seed)
    return create_model("mlp", in_features=4, num_classes=3, hidden=[8], **kw)


def steps_per_epoch(data, batch_size):
    return math.ceil(len(data.train) / batch_size)


class Recorder(Callback):
    def __init__(self):
        self.events: list[str] = []
        self.exceptions: list[BaseException] = []
        self.weights: list[dict[str, torch.Tensor]] = []  # at every epoch end

    def on_train_start(self, trainer):
        self.events.append("train_start")

    def on_epoch_start(self, trainer):
        self.events.append("epoch_start")

    def on_batch_end(self, trainer, loss):
        assert isinstance(loss, torch.Tensor)
        self.events.append("batch_end")

    def on_validation_end(self, trainer, logs):
        assert "val/loss" in logs
        self.events.append("validation_end")

    def on_epoch_end(self, trainer, logs):
        self.events.append("epoch_end")
        self.weights.append(copy.deepcopy(trainer.model.state_dict()))

    def on_train_end(self, trainer):
        self.events.append("train_end")

    def on_exception(self, trainer, exc):
        self.events.append("exception")
        self.exceptions.append(exc)


class Script(Callback):
    """Replace the monitored value with a scripted sequence, one value per epoch."""

    def __init__(self, key, values):
        self.key, self.values = key, list(values)

    def on_validation_end(self, trainer, logs):
        logs[self.key] = self.values[int(logs["epoch"])]


def test_hooks_are_called_in_order(data):
    rec = Recorder()
    Trainer(epochs=2, batch_size=32, callbacks=[rec], **FAST).fit(mlp(), data)
    steps = steps_per_epoch(data, 32)
    epoch = ["epoch_start", *["batch_end"] * steps, "validation_end", "epoch_end"]
    assert rec.events == ["train_start", *epoch, *epoch, "train_end"]


def test_batch_end_is_called_per_optimizer_step_with_accumulation(data):
    rec = Recorder()
    Trainer(epochs=1, batch_size=16, accumulate=2, callbacks=[rec], **FAST).fit(mlp(), data)
    assert rec.events.count("batch_end") == math.ceil(steps_per_epoch(data, 16) / 2)


def test_on_exception_receives_the_error_and_train_end_is_not_called(data):
    class Boom(Callback):
        def on_batch_end(self, trainer, loss):
            if trainer.global_step == 2:
                raise RuntimeError("boom")

    rec = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        Trainer(epochs=2, batch_size=32, callbacks=[rec, Boom()], **FAST).fit(mlp(), data)
    assert rec.events[-1] == "exception" and "train_end" not in rec.events
    assert len(rec.exceptions) == 1 and str(rec.exceptions[0]) == "boom"


def test_early_stopping_stops_after_patience_and_restores_the_best_weights(data, tmp_path):
    val_loss = [1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3]
    rec = Recorder()
    trainer = Trainer(
        epochs=10,
        batch_size=32,
        early_stopping={"patience": 3},
        callbacks=[Script("val/loss", val_loss), rec],
        run_dir=tmp_path,
        seed=0,
        **(FAST | {"checkpoint": {}}),
    )
    model = mlp()
    result = trainer.fit(model, data)
    assert result.epochs_run == 5  # best at epoch 1, then 3 epochs without improvement
    assert "early stopping" in result.stop_reason
    assert result.best == {"monitor": "val/loss", "value": 0.5, "epoch": 1}
    final = model.state_dict()
    best_ckpt, _ = load_checkpoint(tmp_path / "checkpoints" / "best")
    last_ckpt, _ = load_checkpoint(tmp_path / "checkpoints" / "last")
    for k, v in final.items():
        assert torch.equal(v, best_ckpt["model"][k])
        assert torch.equal(v, rec.weights[1][k])  # the weights at the end of epoch 1
        assert torch.equal(last_ckpt["model"][k], rec.weights[-1][k])
    assert any(not torch.equal(final[k], rec.weights[-1][k]) for k in final)


def test_early_stopping_without_restore_keeps_the_last_weights(data):
    rec = Recorder()
    model = mlp()
    result = Trainer(
        epochs=10,
        batch_size=32,
        callbacks=[Script("val/loss", [1, 0.5, 2, 2, 2, 2]), rec],
        early_stopping={"patience": 2, "restore_best": False},
        **FAST,
    ).fit(model, data)
    assert result.epochs_run == 4
    assert all(torch.equal(v, rec.weights[-1][k]) for k, v in model.state_dict().items())


def test_early_stopping_min_delta_and_max_mode(data):
    # accuracy rises by less than min_delta: no improvement counts
    acc = [0.5, 0.505, 0.509, 0.6, 0.6]
    result = Trainer(
        epochs=5,
        batch_size=64,
        callbacks=[Script("val/accuracy", acc)],
        early_stopping={"monitor": "val/accuracy", "patience": 2, "min_delta": 0.01},
        **FAST,
    ).fit(mlp(), data)
    assert result.epochs_run == 3
    assert result.best["value"] == 0.5 and result.best["epoch"] == 0
    # mode auto: the direction the task declares
    assert resolve_mode("val/accuracy", "auto", Classification) == "max"
    assert resolve_mode("val/loss", "auto", Classification) == "min"
    assert resolve_mode("val/loss", "max", Classification) == "max"


def test_early_stopping_on_an_unlogged_metric_is_a_config_error(data):
    rec = Recorder()
    trainer = Trainer(
        epochs=2, batch_size=64, early_stopping={"monitor": "val/acuracy"}, callbacks=[rec], **FAST
    )
    with pytest.raises(ConfigError) as info:
        trainer.fit(mlp(), data)
    assert str(info.value).startswith(
        "train.early_stopping.monitor: 'val/acuracy' is not a metric of the classification task; "
        "did you mean 'val/accuracy'?"
    )
    assert trainer.global_step == 0  # refused before the first step


def test_reduce_on_plateau_mode_auto_follows_the_metric_spec(data):
    scheduler = {"name": "reduce_on_plateau", "monitor": "val/accuracy", "patience": 0}
    trainer = Trainer(epochs=1, batch_size=64, scheduler=scheduler, **FAST)
    trainer.fit(mlp(), data)
    assert trainer.scheduler.mode == "max"
    with pytest.raises(ConfigError, match="train.scheduler.monitor: 'val/acc' is not a metric"):
        Trainer(epochs=1, scheduler=scheduler | {"monitor": "val/acc"}, **FAST).fit(mlp(), data)


def test_early_stopping_state_round_trip():
    es = EarlyStopping(patience=4)
    es.best, es.best_epoch, es.wait = 0.25, 3, 2
    other = EarlyStopping(patience=4)
    other.load_state_dict(json.loads(json.dumps(es.state_dict())))
    assert (other.best, other.best_epoch, other.wait) == (0.25, 3, 2)


def test_model_checkpoint_writes_best_and_last_with_a_manifest(data, tmp_path):
    rec = Recorder()
    trainer = Trainer(
        epochs=4,
        batch_size=32,
        callbacks=[rec],
        run_dir=tmp_path,
        optimizer={"name": "adam", "lr": 0.05},
        **(FAST | {"checkpoint": {}}),
    )
    result = trainer.fit(mlp(), data)
    root = tmp_path / "checkpoints"
    val_losses = [h["val/loss"] for h in result.history]
    best_epoch = val_losses.index(min(val_losses))
    assert result.best == {"monitor": "val/loss", "value": min(val_losses), "epoch": best_epoch}
    for name, epoch in (("best", best_epoch), ("last", 3)):
        files = verify_checkpoint(root / name)
        assert {"model.safetensors", "state.json"} <= set(files)
        assert (root / name / "manifest.json").is_file()
        tensors, _ = load_checkpoint(root / name)
        for k, v in rec.weights[epoch].items():
            assert torch.equal(tensors["model"][k], v), (name, k)
        # the checkpoint rebuilds a model that predicts like the trained one did
        model = mlp(seed=1)
        model.load_state_dict(tensors["model"])
        ref = mlp(seed=2)
        ref.load_state_dict(rec.weights[epoch])
        model.eval(), ref.eval()
        assert torch.equal(model(data.test.x), ref(data.test.x))


def test_no_checkpoints_without_a_run_dir(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Trainer(epochs=1, batch_size=64, **(FAST | {"checkpoint": {}})).fit(mlp(), data)
    assert list(tmp_path.iterdir()) == []


def test_model_checkpoint_best_without_validation_is_not_the_worst_epoch(data, tmp_path):
    no_val = copy.copy(data)
    no_val.val = None
    trainer = Trainer(
        epochs=4,
        batch_size=16,
        run_dir=tmp_path,
        optimizer={"name": "adam", "lr": 0.01},
        **(FAST | {"checkpoint": {"monitor": "val/accuracy"}}),
    )
    try:
        result = trainer.fit(mlp(), no_val)
    except ConfigError:
        return  # refusing the unlogged monitor is a fine answer too
    losses = [h["train/loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.best["epoch"] == losses.index(min(losses))


def test_lr_monitor_logs_the_optimizer_lr(data):
    config = {"callbacks": [{"name": "lr_monitor", "log_momentum": True}]}
    result = Trainer(
        config,
        epochs=2,
        batch_size=64,
        optimizer={"name": "sgd", "lr": 0.03, "momentum": 0.9},
        **FAST,
    ).fit(mlp(), data)
    assert [h["lr"] for h in result.history] == [0.03, 0.03]
    assert [h["momentum"] for h in result.history] == [0.9, 0.9]


def test_lr_monitor_follows_a_step_schedule(data):
    """A per-step cosine schedule: the logged lr is the optimizer's lr as the epoch started."""
    rec, start = [], []

    class LR(Callback):
        order = 60  # after the LR monitor wrote the logs

        def on_epoch_start(self, trainer):
            start.append(trainer.optimizer.param_groups[0]["lr"])

        def on_epoch_end(self, trainer, logs):
            rec.append((logs["lr"], start[-1]))

    Trainer(
        epochs=3,
        batch_size=32,
        scheduler={"name": "cosine"},
        callbacks=[LR()],
        optimizer={"name": "sgd", "lr": 0.1},
        **FAST,
    ).fit(mlp(), data)
    assert [a for a, _ in rec] == [b for _, b in rec]
    assert rec[0][0] == 0.1 and rec[1][0] < rec[0][0] and rec[2][0] < rec[1][0]


def test_lr_monitor_logs_the_lr_each_epoch_trained_with(data):
    result = Trainer(
        epochs=3,
        batch_size=64,
        optimizer={"name": "sgd", "lr": 0.1},
        scheduler={"name": "step", "step_size": 1, "gamma": 0.5},
        **FAST,
    ).fit(mlp(), data)
    # the lr used in epoch e, by torch's own StepLR
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched, expected = StepLR(opt, step_size=1, gamma=0.5), []
    for _ in range(3):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [h["lr"] for h in result.history] == pytest.approx(expected)


def test_history_csv_and_json_have_one_row_per_epoch(data, tmp_path):
    result = Trainer(epochs=3, batch_size=32, run_dir=tmp_path, **FAST).fit(mlp(), data)
    with open(tmp_path / "history.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames
    assert len(rows) == result.epochs_run == 3
    assert columns == list(result.history[0])
    for key in (
        "epoch",
        "step",
        "train/loss",
        "train/accuracy",
        "val/loss",
        "val/accuracy",
        "lr",
        "time",
    ):
        assert key in columns
    for row, logs in zip(rows, result.history, strict=True):
        for key in columns:
            assert float(row[key]) == pytest.approx(float(logs[key]))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    saved = json.loads((tmp_path / "history.json").read_text())
    assert len(saved) == 3
    for row, logs in zip(saved, result.history, strict=True):
        assert row == pytest.approx(logs)


def test_callbacks_from_the_config_registry(data):
    config = {"callbacks": [{"name": "early_stopping", "patience": 1}]}
    result = Trainer(
        config, epochs=5, batch_size=32, callbacks=[Script("val/loss", [1, 2, 3, 4, 5])], **FAST
    ).fit(mlp(), data)
    assert result.epochs_run == 2


def test_unknown_callback_name_is_a_config_error(data):
    with pytest.raises(ConfigError, match="did you mean 'early_stopping'"):
        Trainer({"callbacks": [{"name": "early_stoping"}]}, epochs=1, **FAST).fit(mlp(), data)

"""EMA of the weights: the average itself, evaluation with it, exact resume."""

from __future__ import annotations

import pytest
import torch

from deepworks.data.pipeline import load_dataset
from deepworks.models import create_model
from deepworks.train.callbacks import EMA, Callback
from deepworks.train.checkpoint import CheckpointDir
from deepworks.train.trainer import Trainer

FAST = {"progress": False, "checkpoint": None, "device": "cpu"}
ADAM = {"name": "adam", "lr": 0.01}


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", split={"val": 0.1, "test": 0.1}, seed=0)


def mlp():
    torch.manual_seed(0)
    return create_model("mlp", in_features=64, num_classes=10, hidden=[32])


class Weights(Callback):
    """Record the live weights after every optimizer step (runs before the EMA's update)."""

    order = -100

    def __init__(self):
        self.seen = []

    def on_train_start(self, trainer):
        self.seen.append([p.detach().clone() for p in trainer.model.parameters()])

    def on_batch_end(self, trainer, loss):
        self.seen.append([p.detach().clone() for p in trainer.model.parameters()])


def test_final_weights_are_the_moving_average(data):
    spy = Weights()
    model = mlp()
    Trainer(epochs=2, batch_size=64, optimizer=ADAM, callbacks=[spy, EMA(0.9)], **FAST).fit(
        model, data
    )
    expected = [p.clone() for p in spy.seen[0]]
    for t, weights in enumerate(spy.seen[1:], start=1):
        decay = min(0.9, (1 + t) / (10 + t))
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, weights, strict=True)]
    for got, want in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)
    assert not torch.equal(next(model.parameters()), spy.seen[-1][0])  # not the last iterate


def test_validation_uses_the_average_and_training_the_live_weights(data):
    class Check(Callback):
        def __init__(self, ema):
            self.ema, self.ok = ema, []

        def on_validation_end(self, trainer, logs):
            now = [p.detach() for p in trainer.model.parameters()]
            self.ok.append(
                all(torch.equal(a, b) for a, b in zip(now, self.ema.shadow, strict=True))
            )
            self.live = [r.clone() for r in self.ema.raw]

        def on_epoch_start(self, trainer):
            if trainer.epoch > 0:  # the live weights are back for training
                now = [p.detach() for p in trainer.model.parameters()]
                self.ok.append(all(torch.equal(a, b) for a, b in zip(now, self.live, strict=True)))

    ema = EMA(0.95)
    check = Check(ema)
    Trainer(epochs=3, batch_size=64, optimizer=ADAM, callbacks=[ema, check], **FAST).fit(
        mlp(), data
    )
    assert check.ok == [True] * 5


def test_resume_with_ema_is_exact(data, tmp_path):
    def fit(epochs, run_dir, resume=None):
        trainer = Trainer(
            epochs=epochs,
            batch_size=64,
            optimizer=ADAM,
            ema=0.95,
            seed=3,
            progress=False,
            device="cpu",
            checkpoint={"monitor": "val/accuracy"},
        )
        trainer.run_dir = run_dir
        model = mlp()
        trainer.fit(model, data, resume=resume)
        return model

    straight = fit(3, tmp_path / "a")
    fit(2, tmp_path / "b")
    last = CheckpointDir(tmp_path / "b" / "checkpoints").newest_valid()
    resumed = fit(3, tmp_path / "b", resume=last)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_ema_config_option_adds_the_callback(data):
    trainer = Trainer(epochs=1, batch_size=64, ema=0.99, **FAST)
    trainer.fit(mlp(), data)
    assert any(isinstance(cb, EMA) for cb in trainer.callbacks)
    with pytest.raises(ValueError, match="decay"):
        EMA(1.5)

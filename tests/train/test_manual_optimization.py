"""Tasks that step their own optimizers (``manual_optimization``), several optimizers in one
``OptimizerSet``, a task's own callbacks, and the stop on ``Diverged``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepworks.data.bundle import DataBundle, Split
from deepworks.errors import ConfigError
from deepworks.tasks.base import Diverged
from deepworks.tasks.classification import Classification
from deepworks.train.callbacks import Callback
from deepworks.train.optimizers import OptimizerSet
from deepworks.train.trainer import NonFiniteError, Trainer

FAST = {"progress": False, "checkpoint": None, "device": "cpu"}


def toy_data(n=96, seed=0) -> DataBundle:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return DataBundle(
        name="toy",
        train=Split(x, y),
        val=Split(x[:32], y[:32]),
        test=None,
        task_type="classification",
        input_shape=(6,),
        num_classes=2,
        class_names=["a", "b"],
    )


class TwoParts(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(6, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


def model(seed=0) -> TwoParts:
    torch.manual_seed(seed)
    return TwoParts()


class ManualClassification(Classification):
    """Classification with two optimizers stepped by hand: body (SGD) and head (Adam)."""

    manual_optimization = True

    def __init__(self, diverge_at: int | None = None):
        super().__init__()
        self.diverge_at, self.steps = diverge_at, 0

    def configure_optimizers(self, model, train, steps_per_epoch):
        self.opts = OptimizerSet(
            body=torch.optim.SGD(model.body.parameters(), lr=0.1, momentum=0.9),
            head=torch.optim.Adam(model.head.parameters(), lr=0.01),
        )
        return self.opts, None, None

    def training_step(self, model, x, y):
        self.steps += 1
        if self.steps == self.diverge_at:
            raise Diverged("head loss is nan")
        out = model(x)
        loss = F.cross_entropy(out, y)
        self.opts.zero_grad()
        loss.backward()
        self.opts["body"].step()
        self.opts["head"].step()
        return loss.detach(), out


def hand_loop(data: DataBundle, epochs: int, batch_size: int) -> TwoParts:
    """The same training as ``ManualClassification`` in plain PyTorch."""
    m = model()
    body = torch.optim.SGD(m.body.parameters(), lr=0.1, momentum=0.9)
    head = torch.optim.Adam(m.head.parameters(), lr=0.01)
    x, y = data.train.x, data.train.y
    g = torch.Generator().manual_seed(0)  # the Trainer's batch order: randperm per epoch
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            loss = F.cross_entropy(m(x[idx]), y[idx])
            body.zero_grad(), head.zero_grad()
            loss.backward()
            body.step(), head.step()
    return m


def test_optimizer_set_round_trips_every_optimizer_state():
    m = model()
    opts = OptimizerSet(
        body=torch.optim.SGD(m.body.parameters(), lr=0.1, momentum=0.9),
        head=torch.optim.Adam(m.head.parameters(), lr=0.01),
    )
    F.cross_entropy(m(torch.randn(4, 6)), torch.tensor([0, 1, 0, 1])).backward()
    opts.step()
    assert len(opts.param_groups) == 2
    state = opts.state_dict()
    m2 = model()
    fresh = OptimizerSet(
        body=torch.optim.SGD(m2.body.parameters(), lr=0.1, momentum=0.9),
        head=torch.optim.Adam(m2.head.parameters(), lr=0.01),
    )
    fresh.load_state_dict(state)
    assert torch.equal(
        fresh["head"].state_dict()["state"][0]["exp_avg"], state["head"]["state"][0]["exp_avg"]
    )
    with pytest.raises(KeyError, match="expected"):
        fresh.load_state_dict({"body": state["body"]})


def test_manual_task_trains_like_the_hand_written_loop():
    data = toy_data()
    trainer = Trainer(epochs=3, batch_size=32, **FAST)
    trained = trainer.fit(model(), data, task=ManualClassification()).model
    reference = hand_loop(data, epochs=3, batch_size=32)
    expected = reference.state_dict()
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(value, expected[name], msg=name)
    assert trainer.global_step == 9  # the Trainer still counts the task's steps


class Crash(Callback):
    """Dies after step ``at``, once its checkpoint is written: a crash mid-epoch."""

    order = 100  # after ModelCheckpoint

    def __init__(self, at: int):
        self.at = at

    def on_batch_end(self, trainer, loss):
        if trainer.global_step == self.at:
            raise RuntimeError("crash")


def test_manual_task_resumes_both_optimizers_exactly(tmp_path):
    data = toy_data()
    full = Trainer(epochs=2, batch_size=32, **FAST).fit(model(), data, ManualClassification())
    cfg = FAST | {"checkpoint": {"every_n_steps": 1, "keep_last": 1}}
    first = Trainer(epochs=2, batch_size=32, run_dir=tmp_path, callbacks=[Crash(4)], **cfg)
    with pytest.raises(RuntimeError, match="crash"):
        first.fit(model(), data, ManualClassification())
    second = Trainer(epochs=2, batch_size=32, run_dir=tmp_path, **cfg)
    last = tmp_path / "checkpoints" / "last"
    resumed = second.fit(model(1), data, ManualClassification(), resume=last)
    pairs = zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True)
    for a, b in pairs:
        torch.testing.assert_close(a, b)
    head_state = second.optimizer["head"].state_dict()["state"]
    assert int(head_state[0]["step"]) == 6


def test_manual_task_refuses_options_of_the_automatic_step():
    with pytest.raises(ConfigError, match="steps its own optimizers"):
        Trainer(epochs=1, accumulate=2, **FAST).fit(model(), toy_data(), ManualClassification())


def test_diverged_stops_and_names_the_last_good_checkpoint(tmp_path):
    cfg = FAST | {"checkpoint": {"every_n_steps": 1, "keep_last": 2}}
    trainer = Trainer(epochs=3, batch_size=32, run_dir=tmp_path, **cfg)
    fit = trainer.fit(model(), toy_data(), ManualClassification(diverge_at=5))
    last = (tmp_path / "checkpoints" / "last").resolve()
    assert fit.stop_reason.startswith("diverged: head loss is nan at step 5 (epoch 1)")
    assert str(last) in fit.stop_reason
    assert last.name == "step-00000004"
    assert fit.epochs_run == 1  # the diverged epoch is neither logged nor checkpointed


def test_diverged_raises_when_asked():
    trainer = Trainer(epochs=1, batch_size=32, on_nonfinite="raise", **FAST)
    with pytest.raises(NonFiniteError, match="no checkpoint was written before it"):
        trainer.fit(model(), toy_data(), ManualClassification(diverge_at=2))


def test_a_task_adds_its_own_callbacks():
    seen = []

    class Counter(Callback):
        def on_epoch_end(self, trainer, logs):
            seen.append(logs["epoch"])

    class WithCallback(Classification):
        def callbacks(self):
            return [Counter()]

    Trainer(epochs=2, batch_size=32, **FAST).fit(model(), toy_data(), WithCallback())
    assert seen == [0, 1]

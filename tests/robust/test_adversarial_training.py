"""PGD adversarial training and TRADES: one step against a hand computation, the TRADES loss,
exact resume, robust accuracy in the test metrics, and config errors."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepworks.config import LossConfig
from deepworks.data.bundle import DataBundle, Split
from deepworks.data.pipeline import load_dataset
from deepworks.errors import ConfigError
from deepworks.registry import TASKS
from deepworks.report.robustness import sections
from deepworks.tasks.adversarial import trades_loss
from deepworks.train.callbacks import Callback
from deepworks.train.trainer import Trainer

FAST = {"progress": False, "checkpoint": None, "device": "cpu"}


def digits(n: int = 240, scale: str = "none") -> DataBundle:
    """The first n training digits (flat, 64 features in [0, 1] unless scaled), small splits."""
    data = load_dataset("digits", split={"val": 0.1, "test": 0.2}, seed=0, scale=scale)
    data.train = Split(data.train.x[:n], data.train.y[:n])
    data.val = Split(data.val.x[:60], data.val.y[:60])
    data.test = Split(data.test.x[:80], data.test.y[:80])
    return data


class Net(nn.Module):
    """Batch norm and dropout, so that train / eval mode matters."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2))
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.body(x))


def task(name: str, data: DataBundle, model: nn.Module, **kwargs):
    t = TASKS.build(name, kwargs, where="task")
    t.setup(data, LossConfig(), torch.device("cpu"), model)
    return t


def test_pgd_at_step_matches_a_hand_computation():
    data = digits(64)
    x, y = data.train.x, data.train.y
    eps, alpha, steps = 0.1, 0.03, 3
    model = Net()
    model.train()
    t = task("adversarial_training", data, model, eps=eps, alpha=alpha, steps=steps)
    hand = copy.deepcopy(model)
    torch.manual_seed(5)
    loss, outputs = t.training_step(model, x, y)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    assert model.training and model.body[3].training  # train mode is back after the attack
    # by hand: PGD in eval mode (batch norm's running statistics, no dropout) ...
    torch.manual_seed(5)
    hand.eval()
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(hand(x_adv), y), x_adv)
        x_adv = x_adv.detach() + alpha * g.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    # ... then the training step on the adversarial batch in train mode
    hand.train()
    expected = F.cross_entropy(hand(x_adv), y)
    expected.backward()
    torch.testing.assert_close(loss, expected)
    # batch norm saw the adversarial batch once, in train mode; the attack's passes left no trace
    torch.testing.assert_close(model.state_dict(), hand.state_dict())
    for a, p in zip(grads, hand.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)


def test_pgd_at_attacks_in_the_raw_input_space_of_a_scaled_run():
    data = digits(64, scale="standard")
    model = Net()
    t = task("adversarial_training", data, model, eps=0.1, steps=2)
    assert (t.clip_min, t.clip_max) == pytest.approx((0.0, 1.0), abs=1e-5)  # raw pixel range
    raw = t.to_raw(data.train.x)
    x_adv = t.adversarial_raw(model, data.train.x, data.train.y)
    assert (x_adv - raw).abs().max() <= 0.1 + 1e-5
    assert (x_adv - raw).abs().max() > 0.09
    assert x_adv.min() >= -1e-6 and x_adv.max() <= 1 + 1e-6


def test_mix_adds_the_clean_loss():
    data = digits(64)
    x, y = data.train.x, data.train.y
    model = Net()
    model.eval()  # no dropout: the two calls see the same network
    pure = task("adversarial_training", data, model, eps=0.1, steps=2)
    mixed = task("adversarial_training", data, model, eps=0.1, steps=2, mix=0.5)
    torch.manual_seed(1)
    adv_loss, _ = pure.training_step(model, x, y)
    torch.manual_seed(1)
    mix_loss, _ = mixed.training_step(model, x, y)
    clean = F.cross_entropy(model(x), y)
    torch.testing.assert_close(mix_loss, 0.5 * adv_loss + 0.5 * clean)


def test_trades_loss_matches_the_reference_formula():
    g = torch.Generator().manual_seed(0)
    clean, adv = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    p, q = clean.softmax(1), adv.softmax(1)
    kl = (p * (p.log() - q.log())).sum(1).mean()  # KL(f(x) || f(x')), averaged over the batch
    expected = F.cross_entropy(clean, y) + 6.0 * kl
    torch.testing.assert_close(trades_loss(clean, adv, y, 6.0), expected)
    # the TRADES code's form: KLDivLoss(sum) / batch size
    reference = nn.KLDivLoss(reduction="sum")(F.log_softmax(adv, 1), F.softmax(clean, 1)) / 8
    torch.testing.assert_close(
        trades_loss(clean, adv, y, 1.0) - F.cross_entropy(clean, y), reference
    )


def test_trades_step_maximizes_the_kl_inside_the_ball():
    data = digits(64)
    x, y = data.train.x, data.train.y
    model = Net()
    model.train()
    t = task("trades", data, model, eps=0.1, steps=5, beta=6.0)
    torch.manual_seed(0)
    x_adv = t.kl_adversarial_raw(model, x)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    model.eval()
    with torch.no_grad():
        p = model(x).softmax(1)
        kl_adv = F.kl_div(model(x_adv).log_softmax(1), p, reduction="batchmean")
        noise = (x + 0.1 * torch.randn_like(x).sign()).clamp(0, 1)
        kl_noise = F.kl_div(model(noise).log_softmax(1), p, reduction="batchmean")
    assert kl_adv > 3 * kl_noise  # far worse than a random corner of the same ball
    model.eval()  # no dropout: the step and the hand computation see the same network
    torch.manual_seed(0)
    loss, clean = t.training_step(model, x, y)
    torch.manual_seed(0)
    x_adv = t.kl_adversarial_raw(model, x)
    torch.testing.assert_close(loss, trades_loss(model(x), model(x_adv), y, 6.0))
    torch.testing.assert_close(clean, model(x))


class Crash(Callback):
    def __init__(self, at: int):
        self.at = at

    def on_batch_end(self, trainer, loss):
        if trainer.global_step == self.at:
            raise RuntimeError("crash")


@pytest.mark.parametrize("name", ["adversarial_training", "trades"])
def test_resume_continues_exactly(tmp_path, name):
    data = digits(96)
    kwargs = {"eps": 0.1, "steps": 2, "eval_eps": []}
    full = Trainer(epochs=2, batch_size=32, **FAST).fit(Net(), data, TASKS.build(name, kwargs))
    cfg = FAST | {"checkpoint": {"every_n_steps": 1, "keep_last": 1}}
    first = Trainer(epochs=2, batch_size=32, run_dir=tmp_path, callbacks=[Crash(4)], **cfg)
    with pytest.raises(RuntimeError, match="crash"):
        first.fit(Net(), data, TASKS.build(name, kwargs))
    second = Trainer(epochs=2, batch_size=32, run_dir=tmp_path, **cfg)
    last = tmp_path / "checkpoints" / "last"
    resumed = second.fit(Net(1), data, TASKS.build(name, kwargs), resume=last)
    pairs = zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True)
    for a, b in pairs:
        torch.testing.assert_close(a, b)


def test_test_metrics_add_robust_accuracy_and_the_curve(tmp_path):
    data = digits(240)
    model = Net()
    t = TASKS.build(
        "adversarial_training", {"eps": 0.1, "steps": 3, "eval_eps": [0.05, 0.1], "eval_steps": 5}
    )
    trainer = Trainer(epochs=3, batch_size=32, optimizer={"name": "adam", "lr": 0.01}, **FAST)
    fit = trainer.fit(model, data, t)
    assert "val/robust_accuracy@0.1" not in fit.history[-1]  # quick per-epoch validation
    metrics = trainer.test(model, data).metrics
    clean = metrics["test/accuracy"]
    assert clean >= metrics["test/robust_accuracy@0.05"] >= metrics["test/robust_accuracy@0.1"]
    assert metrics["test/robust_accuracy@0.1"] > 0.05
    t.save_pictures(model, data, tmp_path)
    saved = json.loads((tmp_path / "robustness.json").read_text())
    curve = {p["eps"]: p["accuracy"] for p in saved["curve"]}
    assert curve[0.0] == pytest.approx(clean)
    assert curve[0.1] == pytest.approx(metrics["test/robust_accuracy@0.1"])
    assert curve[0.3] <= curve[0.1]
    # the report draws it
    (anchor, title, html), *_ = sections(SimpleNamespace(run_dir=tmp_path), "test")
    assert anchor == "robustness" and "PGD-5, measured after training" in html
    assert html.count("<img") == 1


def test_config_errors_name_the_key_and_the_range():
    data = digits(64)
    with pytest.raises(ConfigError, match=r"task.eps: eps 1.5 is outside the input range \[0, 1\]"):
        task("adversarial_training", data, Net(), eps=1.5)
    with pytest.raises(ConfigError, match="task.eval_eps"):
        task("trades", data, Net(), eval_eps=[-0.1])
    with pytest.raises(ConfigError, match="task.mix"):
        TASKS.build("adversarial_training", {"mix": 2.0}, where="task")
    with pytest.raises(ConfigError, match="does not fit the adversarial_training task"):
        task("adversarial_training", data, Net()).loss_name(LossConfig(name="focal"))
    regression = load_dataset("diabetes", split={"val": 0.1, "test": 0.2}, seed=0, scale="none")
    with pytest.raises(ConfigError, match="needs one class label per sample"):
        TASKS.build("trades", {}).num_outputs(regression, LossConfig())

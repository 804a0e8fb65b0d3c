"""Registry-driven tests: every registered model, optimizer, scheduler, loss and callback.

Each test is parametrized over a registry, so a component is tested the moment it is registered.
A model class may give hints: ``example_input_shape`` (one sample's shape), ``example_kwargs``
(constructor arguments besides ``num_classes``) and ``example_input(n, generator)`` (the
arguments of ``forward`` for a batch of n, e.g. token ids). Without them a model taking
``in_features`` gets 12 flat features, and one taking ``in_channels`` / ``image_size`` gets
1 x 16 x 16 images.
Classifiers must return (B, num_classes); sequence models (B, L, num_classes); dense models
(segmentation, detection) return maps whose dim 1 grows with ``num_classes``. Losses get
outputs and targets in the form of the task that lists them (``Task.losses``).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
import yaml

import deepworks as dw
from deepworks.registry import (
    CALLBACKS,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    REGISTRIES,
    SCHEDULERS,
    TASKS,
    accepted_kwargs,
)
from deepworks.train.callbacks import Callback
from deepworks.train.checkpoint import join_tensors, split_tensors

NUM_CLASSES = 3


# --- models --------------------------------------------------------------------------------


#: Models that map an input to predictions (classifiers, regressors, sequence and dense
#: predictors). Generative models (``family = "generative"``: autoencoders, VAEs, GANs, RBMs) have
#: no classification head and are tested in their own files.
PREDICTORS = [n for n in MODELS.names() if getattr(MODELS.get(n), "family", "") != "generative"]


def hints(name: str) -> tuple[tuple[int, ...], dict]:
    """(one sample's shape, constructor kwargs besides num_classes) for a registered model:
    the model's own hints, else sizes like those a run takes from its data."""
    factory = MODELS.get(name)
    accepted, _ = accepted_kwargs(factory)
    shape = getattr(factory, "example_input_shape", None)
    if shape is None:
        shape = (12,) if "in_features" in accepted else (1, 16, 16)
    kwargs = getattr(factory, "example_kwargs", None)
    if kwargs is None:
        kwargs = {}
        if "in_features" in accepted:
            kwargs["in_features"] = math.prod(shape)
        if "in_channels" in accepted and len(shape) == 3:
            kwargs["in_channels"] = shape[0]
        if "image_size" in accepted and len(shape) == 3:
            kwargs["image_size"] = list(shape[1:])
    return tuple(shape), dict(kwargs)


def input_shape(name: str) -> tuple[int, ...]:
    return hints(name)[0]


def make_model(name: str, num_classes: int = NUM_CLASSES, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return dw.create_model(name, num_classes=num_classes, **(hints(name)[1] | kwargs))


B = 3  # one batch size everywhere: convnets on CPU pay a first-call cost per input shape


class Inputs(tuple):
    """The arguments of ``forward`` for models that take more than one tensor."""


def batch(name: str, n: int = B, seed: int = 0) -> tuple[torch.Tensor | Inputs, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    example = getattr(MODELS.get(name), "example_input", None)
    if example is not None:
        x = example(n, g)
        x = Inputs(x) if isinstance(x, tuple) else x
    else:
        x = torch.randn(n, *input_shape(name), generator=g)
    y = torch.arange(n) % NUM_CLASSES
    return x, y


def call(model: torch.nn.Module, x, features: bool = False) -> torch.Tensor:
    args = x if isinstance(x, Inputs) else (x,)
    if features:
        return model.forward_head(model.forward_features(*args))
    return model(*args)


def class_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the class dim: per sample (B, K), per position of a sequence (B, L, K),
    or per cell of a dense map (B, C, H, W); every position / cell of sample i is labelled y[i]."""
    if out.ndim == 3:
        return F.cross_entropy(out.transpose(1, 2), y.view(-1, 1).expand(-1, out.shape[1]))
    if out.ndim > 2:
        y = y.view(-1, *([1] * (out.ndim - 2))).expand(out.shape[0], *out.shape[2:])
    return F.cross_entropy(out, y)


@pytest.mark.parametrize("name", PREDICTORS)
@torch.no_grad()
def test_model_forward_shape(name):
    model = make_model(name)
    x, _ = batch(name)
    out = call(model, x)
    assert out.shape[0] == B
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    if out.ndim == 2:  # a classifier: one logit per class
        assert out.shape == (B, NUM_CLASSES)
    if out.ndim == 3:  # a sequence model: one logit per class and position
        assert out.shape[2] == NUM_CLASSES


@pytest.mark.parametrize("name", PREDICTORS)
def test_model_forward_is_head_of_features(name):
    model = make_model(name).eval()
    x, _ = batch(name)
    with torch.no_grad():
        full = call(model, x)
        split = call(model, x, features=True)
    torch.testing.assert_close(full, split)


@pytest.mark.parametrize("name", PREDICTORS)
@torch.no_grad()
def test_model_reset_classifier(name):
    model = make_model(name)
    x, _ = batch(name)
    before = call(model, x).shape
    model.reset_classifier(7)
    after = call(model, x).shape
    if len(before) == 3:  # (B, L, num_classes)
        assert after == (*before[:2], 7)
    else:  # num_classes is the width of dim 1 (dense models may add channels, e.g. box sizes)
        assert after == (B, before[1] + 7 - NUM_CLASSES, *before[2:])
    config = model.get_config()
    assert config["num_classes"] == 7
    rebuilt = type(model).from_config(config)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == want


@pytest.mark.parametrize("name", PREDICTORS)
def test_model_config_round_trip(name):
    model = make_model(name)
    config = model.get_config()
    # config.yaml of a run stores it: it must survive YAML as plain data.
    assert yaml.safe_load(yaml.safe_dump(config)) == config
    rebuilt = type(model).from_config(config)
    assert type(rebuilt) is type(model)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    assert got == want
    assert rebuilt.get_config() == config
    # and through the registry by name, as a run directory rebuilds it
    again = MODELS.build(name, {k: v for k, v in config.items()})
    assert {k: tuple(v.shape) for k, v in again.state_dict().items()} == want


@pytest.mark.parametrize("name", PREDICTORS)
def test_model_backward_gives_finite_gradients(name):
    model = make_model(name)
    x, y = batch(name)
    class_loss(call(model, x), y).backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", PREDICTORS)
def test_model_overfits_a_tiny_batch(name):
    # up to 30 Adam steps on a tiny batch; done as soon as the loss has halved (convnets are
    # slow on CPU, and most models get there in a few steps)
    model = make_model(name)
    x, y = batch(name)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = class_loss(call(model, x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if losses[-1] < 0.5 * losses[0]:
            break
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", [n for n in PREDICTORS if input_shape(n) == (12,)])
def test_flat_model_flattens_image_input(name):
    model = make_model(name, in_features=64)
    x = torch.randn(6, 1, 8, 8)
    assert model(x).shape == (6, NUM_CLASSES)
    torch.testing.assert_close(model.eval()(x), model(x.reshape(6, 64)))


# --- optimizers ----------------------------------------------------------------------------

TORCH_OPTIMIZER = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}
LR = {"sgd": 0.1, "adagrad": 0.1}  # others: 0.01


@pytest.fixture(scope="module")
def iris():
    return dw.load_dataset("iris", split={"val": 0.2, "test": 0.2}, seed=0)


def small_mlp(data) -> torch.nn.Module:
    torch.manual_seed(0)
    return dw.create_model(
        "mlp", in_features=data.num_features, num_classes=data.num_classes, hidden=[16]
    )


def trainer(**kwargs) -> dw.Trainer:
    settings = {"batch_size": 16, "progress": False, "checkpoint": None, "device": "cpu"}
    return dw.Trainer(**(settings | kwargs))


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizer_lowers_training_loss(name, iris):
    lr = LR.get(name, 0.01)
    t = trainer(epochs=2, optimizer={"name": name, "lr": lr})
    result = t.fit(small_mlp(iris), iris, "classification")
    losses = [row["train/loss"] for row in result.history]
    assert len(losses) == 2
    assert losses[-1] < losses[0], losses
    assert isinstance(t.optimizer, TORCH_OPTIMIZER.get(name, torch.optim.Optimizer))


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizer_does_not_decay_biases(name, iris):
    t = trainer(epochs=1, optimizer={"name": name, "lr": 0.01, "weight_decay": 0.1})
    model = small_mlp(iris)
    t.fit(model, iris, "classification")
    seen = []
    for group in t.optimizer.param_groups:
        for p in group["params"]:
            seen.append(id(p))
            want = 0.1 if p.ndim >= 2 else 0.0
            assert group["weight_decay"] == want, (tuple(p.shape), group["weight_decay"])
    assert any(p.ndim == 1 for p in model.parameters())
    assert sorted(seen) == sorted(id(p) for p in model.parameters())  # each exactly once


# --- schedulers ----------------------------------------------------------------------------


class StepLR(Callback):
    """Records the learning rate after every optimizer step."""

    def __init__(self):
        self.lrs: list[float] = []

    def on_batch_end(self, trainer, loss) -> None:
        self.lrs.append(trainer.optimizer.param_groups[0]["lr"])


SCHEDULER_KWARGS = {
    "step": {"step_size": 1, "gamma": 0.5},
    "exponential": {"gamma": 0.5},
    "warmup": {"warmup_epochs": 1, "after": "cosine"},
}


def fit_with_scheduler(data, name: str, epochs: int = 3, lr: float = 0.01):
    steps = StepLR()
    t = trainer(
        epochs=epochs,
        optimizer={"name": "sgd", "lr": lr},
        scheduler={"name": name, **SCHEDULER_KWARGS.get(name, {})},
        callbacks=[steps],
    )
    result = t.fit(small_mlp(data), data, "classification")
    epoch_lrs = [row["lr"] for row in result.history]
    assert len(epoch_lrs) == epochs
    steps_per_epoch = len(steps.lrs) // epochs
    return epoch_lrs, steps.lrs, steps_per_epoch


@pytest.mark.parametrize("name", [n for n in SCHEDULERS.names() if n != "reduce_on_plateau"])
def test_scheduler_changes_lr(name, iris):
    lr = 0.01
    epoch_lrs, step_lrs, per_epoch = fit_with_scheduler(iris, name, lr=lr)
    assert per_epoch >= 3
    if name in ("step", "exponential"):
        # an epoch schedule: constant within an epoch, x0.5 from one epoch to the next
        for e in range(3):
            assert len(set(step_lrs[e * per_epoch : (e + 1) * per_epoch])) == 1
        for a, b in zip(epoch_lrs, epoch_lrs[1:], strict=False):
            assert b == pytest.approx(0.5 * a)
        assert epoch_lrs[0] in (pytest.approx(lr), pytest.approx(0.5 * lr))
    elif name == "cosine":
        # per step: strictly decreasing, a quarter down after a third of the steps, then ~0
        assert all(b < a for a, b in zip(step_lrs, step_lrs[1:], strict=False))
        third = lr * (1 + math.cos(math.pi / 3)) / 2
        assert step_lrs[per_epoch - 1] == pytest.approx(third, rel=1e-6)
        assert step_lrs[-1] < 1e-3 * lr
        assert all(b < a for a, b in zip(epoch_lrs, epoch_lrs[1:], strict=False))
    elif name == "one_cycle":
        # rises to the maximum (the optimizer's lr) at ~pct_start, then anneals far below start;
        # the value set after the very last step is never used (and lies past the cycle)
        used = step_lrs[:-1]
        peak = max(range(len(used)), key=used.__getitem__)
        assert 0 < peak < len(used) - 1
        assert used[peak] == pytest.approx(lr, rel=0.05)
        assert all(b >= a for a, b in zip(used[:peak], used[1 : peak + 1], strict=False))
        assert all(b <= a for a, b in zip(used[peak:], used[peak + 1 :], strict=False))
        assert used[-1] < used[0] / 100
    elif name == "warmup":
        # linear warmup over the first epoch's steps, then cosine decay
        warm = step_lrs[: per_epoch - 1]
        assert all(b > a for a, b in zip(warm, warm[1:], strict=False))
        assert max(step_lrs) == pytest.approx(lr)
        rest = step_lrs[per_epoch:]
        assert all(b < a for a, b in zip(rest, rest[1:], strict=False))
    else:  # a new scheduler: at least it must move the LR
        assert len(set(step_lrs) | set(epoch_lrs)) > 1


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_scheduler_survives_very_short_runs(name):
    # one epoch of 1..8 steps: the tiny budgets of smoke tests and of `--set train.epochs=1`
    for steps_per_epoch in range(1, 9):
        param = torch.nn.Parameter(torch.zeros(2))
        optimizer = torch.optim.SGD([param], lr=0.1, momentum=0.9)
        sched, interval = SCHEDULERS.build(
            name,
            SCHEDULER_KWARGS.get(name, {}),
            optimizer=optimizer,
            steps_per_epoch=steps_per_epoch,
            epochs=1,
        )
        for _ in range(steps_per_epoch):
            optimizer.step()
            if interval == "step":
                sched.step()
        if interval == "epoch":
            sched.step()
        elif interval == "plateau":
            sched.step(1.0)
        lr = optimizer.param_groups[0]["lr"]
        assert math.isfinite(lr) and lr >= 0, (steps_per_epoch, lr)


def test_reduce_on_plateau_reduces_when_stalled():
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([param], lr=1.0)
    sched, interval = SCHEDULERS.build(
        "reduce_on_plateau",
        {"patience": 1, "factor": 0.5},
        optimizer=optimizer,
        steps_per_epoch=10,
        epochs=5,
    )
    assert interval == "plateau"
    lrs = []
    for value in (1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.1):  # improves, then stalls
        sched.step(value)
        lrs.append(optimizer.param_groups[0]["lr"])
    # patience 1: the second stalled epoch halves the LR, then two more stalls halve it again
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_reduce_on_plateau_in_the_loop(iris):
    # mode "max" on a loss that keeps falling: every epoch is a stall, so the LR drops each time
    t = trainer(
        epochs=3,
        optimizer={"name": "sgd", "lr": 0.1},
        scheduler={
            "name": "reduce_on_plateau",
            "monitor": "train/loss",
            "mode": "max",
            "patience": 0,
            "factor": 0.5,
        },
    )
    result = t.fit(small_mlp(iris), iris, "classification")
    lrs = [row["lr"] for row in result.history]
    losses = [row["train/loss"] for row in result.history]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    assert lrs[0] == pytest.approx(0.1)  # the first value is the best so far
    assert all(b <= a for a, b in zip(lrs, lrs[1:], strict=False)), lrs
    assert lrs[-1] < 0.1
    # halved after epochs 1 and 2 (the history may log the LR an epoch used, or the next one)
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.025)


# --- losses --------------------------------------------------------------------------------


def task_of(loss: str) -> str:
    """The task a loss belongs to (its ``losses`` tuple names it): the basic tasks first."""
    basic = ["classification", "regression"]
    for name in basic + [n for n in TASKS.names() if n not in basic]:
        if loss in getattr(TASKS.get(name), "losses", ()):
            return name
    raise AssertionError(f"loss {loss!r} is not listed by any task's `losses`")


def loss_inputs(loss: str, n: int = 16, k: int = 4):
    """(outputs, targets) in the form the loss's task gives it."""
    g = torch.Generator().manual_seed(0)
    task = task_of(loss)
    if loss == "bce":
        return torch.randn(n, 1, generator=g), torch.arange(n) % 2
    if task == "classification":
        return torch.randn(n, k, generator=g), torch.arange(n) % k
    if task == "segmentation":  # logits (B, K, H, W), masks (B, H, W)
        return torch.randn(2, k, 6, 5, generator=g), torch.randint(0, k, (2, 6, 5), generator=g)
    if task == "detection":  # maps (B, K + 4, h, w), boxes (B, M, 5) [class, x1, y1, x2, y2]
        boxes = torch.tensor(
            [[[1, 2, 3, 8, 11], [0, 10, 1, 14, 5]], [[2, 4, 4, 12, 12], [-1, -1, -1, -1, -1]]],
            dtype=torch.float32,
        )
        return torch.randn(2, k + 4, 16, 16, generator=g), boxes
    return torch.randn(n, 1, generator=g), torch.randn(n, generator=g)


def dice_reference(logits, y, weight=None, smooth=1.0) -> torch.Tensor:
    """1 - mean over the foreground classes of (2 |P ∩ Y| + s) / (|P| + |Y| + s)."""
    p = logits.softmax(1)
    scores, weights = [], []
    for c in range(1, logits.shape[1]):
        truth = (y == c).float()
        overlap = (p[:, c] * truth).sum()
        scores.append((2 * overlap + smooth) / (p[:, c].sum() + truth.sum() + smooth))
        weights.append(1.0 if weight is None else float(weight[c]))
    scores, weights = torch.stack(scores), torch.tensor(weights)
    return 1 - (scores * weights).sum() / weights.sum()


CLASS_WEIGHT = torch.tensor([1.0, 2.0, 0.5, 3.0])


def reference(name: str, out: torch.Tensor, y: torch.Tensor) -> list[tuple[dict, dict, float]]:
    """[(registry kwargs, fixed args, torch reference value)] for a known loss."""
    w = CLASS_WEIGHT
    if name == "cross_entropy":
        return [
            ({}, {}, F.cross_entropy(out, y)),
            (
                {"label_smoothing": 0.1},
                {"weight": w},
                F.cross_entropy(out, y, weight=w, label_smoothing=0.1),
            ),
        ]
    if name == "focal":
        p_t = out.softmax(-1).gather(1, y[:, None]).squeeze(1)
        return [
            ({"gamma": 0.0}, {}, F.cross_entropy(out, y)),
            ({"gamma": 0.0}, {"weight": w}, F.cross_entropy(out, y, weight=w)),
            ({"gamma": 2.0}, {}, (-((1 - p_t) ** 2) * p_t.log()).mean()),
        ]
    if name == "bce":
        t = y.float()
        return [
            ({}, {}, F.binary_cross_entropy_with_logits(out.squeeze(1), t)),
            (
                {},
                {"weight": torch.tensor([2.0, 3.0])},  # class weights -> pos_weight 3/2
                F.binary_cross_entropy_with_logits(
                    out.squeeze(1), t, pos_weight=torch.tensor([1.5])
                ),
            ),
        ]
    if name == "hinge":
        return [
            ({}, {}, F.multi_margin_loss(out, y)),
            ({"margin": 0.5}, {"weight": w}, F.multi_margin_loss(out, y, margin=0.5, weight=w)),
        ]
    if name == "mse":
        return [({}, {}, F.mse_loss(out.squeeze(1), y))]
    if name == "mae":
        return [({}, {}, F.l1_loss(out.squeeze(1), y))]
    if name == "huber":
        return [
            ({}, {}, F.huber_loss(out.squeeze(1), y)),
            ({"delta": 0.3}, {}, F.huber_loss(out.squeeze(1), y, delta=0.3)),
        ]
    if name == "dice":
        return [
            ({}, {}, dice_reference(out, y)),
            ({"smooth": 0.5}, {"weight": w}, dice_reference(out, y, w, smooth=0.5)),
        ]
    if name == "dice_ce":
        return [
            ({}, {}, dice_reference(out, y) + F.cross_entropy(out, y)),
            (
                {"dice_weight": 0.5, "ce_weight": 2.0},
                {"weight": w},
                0.5 * dice_reference(out, y, w) + 2.0 * F.cross_entropy(out, y, weight=w),
            ),
        ]
    if name == "centernet":
        return centernet_cases(out, y)
    return []


def centernet_cases(out, boxes):
    """At stride 1 the box [2, 3, 8, 11] of image 0 is centred in cell (x 5, y 7), size (6, 8),
    offset (0, 0). Moving only the prediction there from exact to (5, 10, 0.25, -0.5) must raise
    the L1 size term by (1 + 2) / 3 objects and the offset term by (0.25 + 0.5) / 3."""
    exact, off = out.clone(), out.clone()
    exact[0, -4:, 7, 5] = torch.tensor([6.0, 8.0, 0.0, 0.0])
    off[0, -4:, 7, 5] = torch.tensor([5.0, 10.0, 0.25, -0.5])
    only = {"heatmap_weight": 0.0, "size_weight": 0.0, "offset_weight": 0.0}
    cases = []
    for term, delta in (("size_weight", 3.0), ("offset_weight", 0.75)):
        kwargs = only | {term: 1.0}
        want = LOSSES.build("centernet", kwargs)(exact, boxes) + delta / 3
        cases.append((kwargs, {}, want, off))
    return cases


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_matches_torch_reference(name):
    out, y = loss_inputs(name)
    cases = reference(name, out, y)
    if not cases:  # a new loss without a reference here: it must at least work
        loss = LOSSES.build(name, {})(out, y)
        assert loss.ndim == 0 and torch.isfinite(loss)
        return
    for kwargs, fixed, want, *given in cases:
        got = LOSSES.build(name, kwargs, **fixed)(given[0] if given else out, y)
        assert got.ndim == 0
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=f"{name} {kwargs}")


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_gradient_is_finite(name):
    out, y = loss_inputs(name)
    out.requires_grad_(True)
    LOSSES.build(name, {})(out, y).backward()
    assert out.grad is not None and torch.isfinite(out.grad).all()


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_is_listed_by_a_task(name):
    assert task_of(name) in TASKS


# --- callbacks -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", CALLBACKS.names())
def test_callback_state_round_trip(name, iris):
    cb = CALLBACKS.build(name, {})
    assert isinstance(cb, Callback)
    # checkpoints store a state as JSON plus its tensors in safetensors
    json.dumps(split_tensors(cb.state_dict())[0])
    # state after a short fit (early stopping watches val/loss, history has rows, ...)
    trainer(epochs=2, callbacks=[cb]).fit(small_mlp(iris), iris, "classification")
    skeleton, tensors = split_tensors(cb.state_dict())
    state = join_tensors(json.loads(json.dumps(skeleton)), tensors)
    fresh = CALLBACKS.build(name, {})
    fresh.load_state_dict(state)
    again, again_tensors = split_tensors(fresh.state_dict())
    assert again == skeleton
    assert again_tensors.keys() == tensors.keys()
    assert all(torch.equal(again_tensors[k], tensors[k]) for k in tensors)


# --- deepworks list ------------------------------------------------------------------------


def table_names(stdout: str) -> list[str]:
    """First cells of the body rows of a rich table."""
    names = []
    for line in stdout.splitlines():
        if line.startswith("│"):
            first = line.split("│")[1].strip()
            if first:
                names.append(first)
    return names


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_cli_list_prints_every_name(kind, cli):
    rc, out, err = cli("list", kind)
    assert rc == 0, err
    registry = REGISTRIES[kind]
    # components the tests register in this process (e.g. the toy recipe) are not deepworks'
    own = [n for n in registry.names() if registry.get(n).__module__.startswith("deepworks")]
    assert sorted(table_names(out)) == own


def test_step_schedules_end_at_max_steps(iris):
    """With train.max_steps, a one-cycle schedule anneals by the end of the epoch in which
    training stops (here: 12 steps = 2 epochs of 6), not after all 10 epochs."""

    class Steps(Callback):
        def __init__(self):
            self.lrs = []

        def on_batch_end(self, trainer, loss):
            self.lrs.append(trainer.optimizer.param_groups[0]["lr"])

    steps = Steps()
    t = trainer(
        epochs=10,
        max_steps=12,
        batch_size=16,
        optimizer={"name": "sgd", "lr": 0.01},
        scheduler={"name": "one_cycle"},
        callbacks=[steps],
    )
    t.fit(small_mlp(iris), iris, "classification")
    assert len(steps.lrs) == 12
    assert steps.lrs[-2] < 0.01 / 100  # annealed: the cycle fits into the 12 steps

"""Trainer.fit against a hand-written PyTorch loop: same seed, init, batch order and optimizer give
the same weights; accumulation, clipping, L1/L2 and loss options match their manual versions."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from deepworks.data.bundle import DataBundle, LazySplit, Split
from deepworks.data.pipeline import load_dataset
from deepworks.errors import DeepworksError
from deepworks.models import create_model
from deepworks.tasks.classification import Classification
from deepworks.train.trainer import Trainer

FAST = {"progress": False, "checkpoint": None, "device": "cpu"}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", split={"val": 0.1, "test": 0.2}, seed=0)


@pytest.fixture(scope="module")
def cancer():
    return load_dataset("breast_cancer", split={"val": 0.15, "test": 0.2}, seed=0)


def bundle(x, y, val=None, test=None, num_classes=None, task_type="classification"):
    if task_type == "classification" and num_classes is None:
        num_classes = int(y.max()) + 1
    return DataBundle(
        name="toy",
        train=Split(x, y),
        val=val,
        test=test,
        task_type=task_type,
        input_shape=tuple(x.shape[1:]),
        num_classes=num_classes,
        class_names=[str(i) for i in range(num_classes)] if num_classes else None,
    )


@pytest.fixture(scope="module")
def small(digits):
    """200 digits (not a multiple of the batch sizes used: the last batch is partial)."""
    return bundle(digits.train.x[:200], digits.train.y[:200], num_classes=10)


def mlp(seed=0, in_features=64, num_classes=10, **kw):
    torch.manual_seed(seed)
    kw.setdefault("hidden", [32])
    return create_model("mlp", in_features=in_features, num_classes=num_classes, **kw)


def reference_fit(
    model,
    x,
    y,
    *,
    epochs,
    batch_size,
    seed,
    optimizer,
    loss_fn=F.cross_entropy,
    penalty=None,
    clip=None,
):
    """The plain PyTorch loop the Trainer must reproduce; returns the mean loss of each epoch."""
    g = torch.Generator().manual_seed(seed)
    opt = optimizer(model.parameters())
    means = []
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        losses = []
        for i in range(0, len(y), batch_size):
            idx = perm[i : i + batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            if penalty is not None:
                loss = loss + penalty(model)
            opt.zero_grad()
            loss.backward()
            if clip is not None:
                clip(model.parameters())
            opt.step()
            losses.append(loss.item())
        means.append(sum(losses) / len(losses))
    return means


def assert_same_weights(a: nn.Module, b: nn.Module, atol=1e-6, rtol=1e-5):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.allclose(sa[k], sb[k], atol=atol, rtol=rtol), k


def differs(a: nn.Module, b: nn.Module, atol=1e-4) -> bool:
    return any(
        not torch.allclose(p, q, atol=atol)
        for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


# --- the loop against a plain PyTorch loop --------------------------------------------------


def test_fit_equals_plain_pytorch_loop_with_adam(small):
    model = mlp()
    init = copy.deepcopy(model)
    ref = copy.deepcopy(model)
    result = Trainer(
        epochs=2, batch_size=32, optimizer={"name": "adam", "lr": 0.01}, seed=3, **FAST
    ).fit(model, small)
    means = reference_fit(
        ref,
        small.train.x,
        small.train.y,
        epochs=2,
        batch_size=32,
        seed=3,
        optimizer=lambda p: torch.optim.Adam(p, lr=0.01),
    )
    assert_same_weights(model, ref)
    assert differs(model, init)  # it did train
    assert [h["train/loss"] for h in result.history] == pytest.approx(means, rel=1e-5)
    assert result.history[-1]["step"] == 2 * math.ceil(200 / 32)


def test_gradient_accumulation_equals_the_larger_batch(small):
    """accumulate=2 with batch 16 takes the same SGD steps as batch 32 (no BN, no dropout)."""
    sgd = {"name": "sgd", "lr": 0.5}
    x, y = small.train.x[:128], small.train.y[:128]
    data = bundle(x, y, num_classes=10)
    acc, big, plain, ref = mlp(), mlp(), mlp(), mlp()
    r_acc = Trainer(epochs=2, batch_size=16, accumulate=2, optimizer=sgd, seed=1, **FAST).fit(
        acc, data
    )
    Trainer(epochs=2, batch_size=32, optimizer=sgd, seed=1, **FAST).fit(big, data)
    Trainer(epochs=2, batch_size=16, optimizer=sgd, seed=1, **FAST).fit(plain, data)
    reference_fit(
        ref, x, y, epochs=2, batch_size=32, seed=1, optimizer=lambda p: torch.optim.SGD(p, lr=0.5)
    )
    assert_same_weights(acc, big)
    assert_same_weights(acc, ref)
    assert differs(acc, plain)  # without accumulation: twice the steps, another result
    assert r_acc.history[-1]["step"] == 2 * 128 // 32


@pytest.mark.parametrize(
    "option, value, clip",
    [
        ("grad_clip_norm", 0.05, lambda p: nn.utils.clip_grad_norm_(p, 0.05)),
        ("grad_clip_value", 0.002, lambda p: nn.utils.clip_grad_value_(p, 0.002)),
    ],
)
def test_gradient_clipping_equals_torch_clip(small, option, value, clip):
    sgd = {"name": "sgd", "lr": 0.5}
    model, ref, unclipped = mlp(), mlp(), mlp()
    Trainer(epochs=1, batch_size=32, optimizer=sgd, seed=2, **{option: value}, **FAST).fit(
        model, small
    )
    Trainer(epochs=1, batch_size=32, optimizer=sgd, seed=2, **FAST).fit(unclipped, small)
    reference_fit(
        ref,
        small.train.x,
        small.train.y,
        epochs=1,
        batch_size=32,
        seed=2,
        clip=clip,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.5),
    )
    assert_same_weights(model, ref)
    assert differs(model, unclipped)


def test_a_model_default_clip_norm_applies_unless_the_config_sets_one(small):
    """Recurrent models declare ``default_grad_clip_norm``; ``grad_clip_norm: 0`` turns it off."""
    sgd = {"name": "sgd", "lr": 0.5}
    default, explicit, off, plain = mlp(), mlp(), mlp(), mlp()
    for m in (default, off):
        m.default_grad_clip_norm = 0.05
    Trainer(epochs=1, batch_size=32, optimizer=sgd, seed=2, **FAST).fit(default, small)
    Trainer(epochs=1, batch_size=32, optimizer=sgd, seed=2, grad_clip_norm=0.05, **FAST).fit(
        explicit, small
    )
    Trainer(epochs=1, batch_size=32, optimizer=sgd, seed=2, grad_clip_norm=0, **FAST).fit(
        off, small
    )
    Trainer(epochs=1, batch_size=32, optimizer=sgd, seed=2, **FAST).fit(plain, small)
    assert_same_weights(default, explicit)
    assert_same_weights(off, plain)
    assert differs(default, plain)


@pytest.mark.parametrize("l1, l2", [(1e-3, 0.0), (0.0, 1e-2), (1e-3, 1e-2)])
def test_l1_l2_penalties_equal_a_manual_penalty(small, l1, l2):
    def penalty(m):  # on weight matrices, not biases (as Keras kernel regularizers)
        weights = [p for p in m.parameters() if p.ndim >= 2]
        return l1 * sum(p.abs().sum() for p in weights) + l2 * sum(p.pow(2).sum() for p in weights)

    sgd = {"name": "sgd", "lr": 0.2}
    model, ref, plain = mlp(), mlp(), mlp()
    result = Trainer(epochs=2, batch_size=32, optimizer=sgd, seed=4, l1=l1, l2=l2, **FAST).fit(
        model, small
    )
    Trainer(epochs=2, batch_size=32, optimizer=sgd, seed=4, **FAST).fit(plain, small)
    means = reference_fit(
        ref,
        small.train.x,
        small.train.y,
        epochs=2,
        batch_size=32,
        seed=4,
        penalty=penalty,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.2),
    )
    assert_same_weights(model, ref)
    assert differs(model, plain)
    assert [h["train/loss"] for h in result.history] == pytest.approx(means, rel=1e-5)
    # the L1 penalty shrinks the weights, the L2 one too
    norm = sum(p.abs().sum() for p in model.parameters() if p.ndim >= 2)
    assert norm < sum(p.abs().sum() for p in plain.parameters() if p.ndim >= 2)


def test_label_smoothing_and_class_weights_equal_torch_cross_entropy(small):
    weights = [1.0, 2.0, 0.5, 1.5, 1.0, 3.0, 1.0, 0.7, 1.2, 2.5]
    loss = {"name": "cross_entropy", "label_smoothing": 0.1, "class_weights": weights}
    model, ref, plain = mlp(), mlp(), mlp()
    adam = {"name": "adam", "lr": 0.01}
    Trainer(epochs=1, batch_size=32, optimizer=adam, seed=5, loss=loss, **FAST).fit(model, small)
    Trainer(epochs=1, batch_size=32, optimizer=adam, seed=5, **FAST).fit(plain, small)
    reference = nn.CrossEntropyLoss(weight=torch.tensor(weights), label_smoothing=0.1)
    reference_fit(
        ref,
        small.train.x,
        small.train.y,
        epochs=1,
        batch_size=32,
        seed=5,
        loss_fn=reference,
        optimizer=lambda p: torch.optim.Adam(p, lr=0.01),
    )
    assert_same_weights(model, ref)
    assert differs(model, plain)


# --- loaders, precision, devices ------------------------------------------------------------


def test_dataloader_path_trains_as_well_as_the_tensor_batcher(cancer):
    results = {}
    for loader in ("tensor", "dataloader"):
        trainer = Trainer(epochs=4, batch_size=32, loader=loader, seed=0, **FAST)
        model = mlp(in_features=30, num_classes=2, hidden=[16])
        trainer.fit(model, cancer)
        results[loader] = trainer.test(model, cancer).metrics["test/accuracy"]
    expected = DataLoader if loader == "dataloader" else object
    assert isinstance(trainer.loader(cancer.train, train=True), expected)
    assert results["tensor"] > 0.9 and results["dataloader"] > 0.9
    assert abs(results["tensor"] - results["dataloader"]) <= 0.05


def test_lazy_split_trains_and_evaluates(cancer):
    def lazy(split):
        return LazySplit(TensorDataset(split.x, split.y), split.y)

    data = copy.copy(cancer)
    data.train, data.val, data.test = lazy(cancer.train), lazy(cancer.val), lazy(cancer.test)
    trainer = Trainer(epochs=4, batch_size=32, seed=0, **FAST)
    assert isinstance(trainer.loader(data.train, train=True), DataLoader)
    model = mlp(in_features=30, num_classes=2, hidden=[16])
    result = trainer.fit(model, data)
    losses = [h["train/loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.metrics["val/accuracy"] > 0.85
    assert trainer.test(model, data).metrics["test/accuracy"] > 0.9


def head_dtypes(model: nn.Module) -> list[torch.dtype]:
    """Record the dtype of the output layer's result during training forwards."""
    seen: list[torch.dtype] = []
    model.head.register_forward_hook(
        lambda m, args, out: seen.append(out.dtype) if m.training else None
    )
    return seen


def test_bf16_autocast_on_cpu_trains_with_finite_loss(cancer):
    model = mlp(in_features=30, num_classes=2, hidden=[16])
    seen = head_dtypes(model)
    result = Trainer(epochs=3, batch_size=32, precision="bf16", seed=0, **FAST).fit(model, cancer)
    assert set(seen) == {torch.bfloat16}  # autocast really was on
    assert all(math.isfinite(h["train/loss"]) for h in result.history)
    assert result.metrics["val/accuracy"] > 0.85
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32


def test_auto_precision_is_fp32_on_cpu(cancer):
    model = mlp(in_features=30, num_classes=2, hidden=[16])
    seen = head_dtypes(model)
    Trainer(epochs=1, batch_size=64, seed=0, **FAST).fit(model, cancer)
    assert seen and set(seen) == {torch.float32}


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto picks cuda where there is one")
def test_device_auto_is_cpu_without_an_accelerator():
    assert Trainer(progress=False).device == torch.device("cpu")
    assert Trainer(progress=False, device="cpu").device == torch.device("cpu")


@pytest.mark.slow
def test_compile_gives_the_eager_result(small):
    eager, compiled = mlp(), mlp()
    adam = {"name": "adam", "lr": 0.01}
    Trainer(epochs=1, batch_size=32, optimizer=adam, seed=0, **FAST).fit(eager, small)
    Trainer(epochs=1, batch_size=32, optimizer=adam, seed=0, compile=True, **FAST).fit(
        compiled, small
    )
    assert_same_weights(eager, compiled, atol=1e-4, rtol=1e-3)


# --- seeding, stopping ----------------------------------------------------------------------


def without_time(history):
    return [{k: v for k, v in row.items() if k != "time"} for row in history]


def test_same_seed_is_bitwise_reproducible_other_seed_differs(cancer):
    def run(seed, scramble):
        model = mlp(in_features=30, num_classes=2, hidden=[16], dropout=0.3)
        torch.rand(scramble)  # whatever the global generator did before, fit seeds it
        result = Trainer(epochs=2, batch_size=32, seed=seed, **FAST).fit(model, cancer)
        return model, without_time(result.history)

    (a, ha), (b, hb), (c, hc) = run(0, 1), run(0, 7), run(1, 1)
    assert all(
        torch.equal(p, q)
        for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert ha == hb
    assert differs(a, c) and ha != hc


def test_max_steps_stops_at_that_global_step(small):
    batches = math.ceil(200 / 32)  # 7 steps per epoch
    trainer = Trainer(epochs=5, batch_size=32, max_steps=10, seed=0, **FAST)
    result = trainer.fit(mlp(), small)
    assert trainer.global_step == 10
    assert result.epochs_run == 2 and result.history[-1]["step"] == 10
    assert "max_steps" in result.stop_reason
    # the same 10 steps as a plain loop (one full epoch, then 3 batches of the second)
    ref, model = mlp(), mlp()
    Trainer(epochs=5, batch_size=32, max_steps=batches + 3, seed=0, **FAST).fit(model, small)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    steps = 0
    for _ in range(2):
        perm = torch.randperm(200, generator=g)
        for i in range(0, 200, 32):
            if steps == batches + 3:
                break
            idx = perm[i : i + 32]
            opt.zero_grad()
            F.cross_entropy(ref(small.train.x[idx]), small.train.y[idx]).backward()
            opt.step()
            steps += 1
    assert_same_weights(model, ref)


class NaNAt(Classification):
    """A task whose ``at``-th training batch has a NaN input."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, 0

    def training_step(self, model, x, y):
        self.calls += 1
        if self.calls == self.at:
            x = x.clone()
            x[0, 0] = float("nan")
        return super().training_step(model, x, y)


def test_nan_loss_raises_a_one_line_error_naming_the_loss(small):
    trainer = Trainer(epochs=3, batch_size=32, on_nonfinite="raise", seed=0, **FAST)
    with pytest.raises(DeepworksError, match="loss") as err:
        trainer.fit(mlp(), small, task=NaNAt(3))
    assert "\n" not in str(err.value) and "nan" in str(err.value).lower()


def test_nan_loss_stops_with_the_last_finite_weights(small):
    model, two_steps = mlp(), mlp()
    result = Trainer(epochs=3, batch_size=32, on_nonfinite="stop", seed=0, **FAST).fit(
        model, small, task=NaNAt(3)
    )
    Trainer(epochs=3, batch_size=32, max_steps=2, seed=0, **FAST).fit(two_steps, small)
    assert "non-finite" in result.stop_reason
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert_same_weights(model, two_steps)  # the NaN batch took no step


def test_huge_learning_rate_diverges_with_an_error(small):
    with pytest.raises(DeepworksError, match="loss"):
        Trainer(
            epochs=3,
            batch_size=32,
            optimizer={"name": "sgd", "lr": 1e6},
            on_nonfinite="raise",
            seed=0,
            **FAST,
        ).fit(mlp(), small)

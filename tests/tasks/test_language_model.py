"""The language_model task: loss and bits per character against torch's cross-entropy, the
carried state of truncated BPTT, exact resume, samples, and one-line errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepworks.config import LossConfig
from deepworks.data.pipeline import load_dataset
from deepworks.errors import ConfigError
from deepworks.models import create_model
from deepworks.tasks.language_model import LanguageModel
from deepworks.train.callbacks import Callback
from deepworks.train.trainer import Trainer

CPU = torch.device("cpu")
FAST = {"progress": False, "checkpoint": None, "device": "cpu"}
SMALL = {"max_chars": 30_000, "max_file_chars": 1_500, "bptt": 16}
B = 8


@pytest.fixture(scope="module")
def plain():
    return load_dataset("stdlib_code", split={"val": 0.1, "test": 0.1}, seed=0, **SMALL)


@pytest.fixture(scope="module")
def stateful():
    return load_dataset(
        "stdlib_code", split={"val": 0.1, "test": 0.1}, stateful=True, batch_size=B, **SMALL
    )


def lstm(data, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(
        "rnn",
        num_classes=data.num_classes,
        vocab_size=data.num_classes,
        cell="lstm",
        output="sequence",
        hidden_size=24,
        embedding_dim=16,
    )


def test_metrics_match_torch_cross_entropy(plain):
    model = lstm(plain)
    trainer = Trainer(**FAST, batch_size=B, eval_batch_size=64, epochs=1, max_steps=40)
    task = LanguageModel(samples=0)
    result = trainer.fit(model, plain, task)
    assert result.epochs_run and "train/bits_per_char" in result.metrics
    ev = trainer.test(model, plain)
    x, y = plain.test.x, plain.test.y
    with torch.no_grad():
        logits = model.eval()(x)[:, -y.shape[1] :]  # the scored window after the context
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        acc = (logits.argmax(-1) == y).float().mean()
    m = ev.metrics
    assert m["test/loss"] == pytest.approx(float(nll), rel=1e-5)
    assert m["test/bits_per_char"] == pytest.approx(float(nll) / math.log(2), rel=1e-5)
    assert m["test/perplexity"] == pytest.approx(math.exp(float(nll)), rel=1e-5)
    assert m["test/token_accuracy"] == pytest.approx(float(acc), abs=1e-6)
    assert m["test/bits_per_char"] < math.log2(plain.num_classes)  # learned something
    assert ev.predictions["y_true"].shape == ev.predictions["y_pred"].shape == tuple(y.shape)
    assert len(ev.details["loss_by_position"]) == y.shape[1]


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_training_bits_per_char_is_the_nll_with_or_without_label_smoothing(plain, smoothing):
    """The per-step training sums reuse the loss when it is the plain NLL; with label smoothing
    they compute the NLL apart. Either way train/bits_per_char is the epoch's mean NLL."""
    model = lstm(plain)
    task = LanguageModel(samples=0)
    task.setup(plain, LossConfig(name="cross_entropy", label_smoothing=smoothing), CPU, model)
    x, y = plain.train.x[:B], plain.train.y[:B]
    loss, logits = task.training_step(model, x, y)
    stats = task.batch_stats(logits.detach(), y)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
    assert float(stats[0]) == pytest.approx(float(nll), rel=1e-5)
    assert (float(loss) * y.numel() == pytest.approx(float(nll), rel=1e-5)) == (smoothing == 0)


def test_bits_per_char_divides_by_characters_per_token():
    task = LanguageModel(samples=0)
    task.chars_per_token = 3.0
    task.chars_per_token_by_targets = {"8": 2.0}
    outputs = torch.zeros(2, 4, 3)
    outputs[..., 0] = math.log(2)  # one bit per token
    y = torch.zeros(2, 4, dtype=torch.int64)
    metrics, _, _ = task.evaluate(outputs, y, full=False)
    assert metrics["bits_per_char"] == pytest.approx(0.5)  # 2 characters per token of this split
    metrics, _, _ = task.evaluate(outputs[:1], y[:1], full=False)
    assert metrics["bits_per_char"] == pytest.approx(1 / 3)  # unknown split: the train ratio


def test_stateful_step_carries_the_detached_state(stateful):
    model = lstm(stateful)
    task = LanguageModel()
    task.setup(stateful, LossConfig(), CPU, model)
    assert task.stateful and not task.shuffle_train
    x, y = stateful.train.x, stateful.train.y
    x1, y1, x2, y2 = x[:B], y[:B], x[B : 2 * B], y[B : 2 * B]
    task.training_step(model, x1, y1)
    assert task._state is not None and not any(s.requires_grad for s in task._state)
    loss2, _ = task.training_step(model, x2, y2)
    # batch 2 continues batch 1 row for row: its loss equals that of the second half of one
    # pass over both
    with torch.no_grad():
        full = model(torch.cat([x1, x2], dim=1))[:, x1.shape[1] :]
        ref = F.cross_entropy(full.reshape(-1, full.shape[-1]), y2.reshape(-1))
    assert float(loss2.detach()) == pytest.approx(float(ref), rel=1e-5)
    saved = task.carry_state()
    other = LanguageModel()
    other.load_carry_state(saved)
    assert all(torch.equal(a, b) for a, b in zip(other._state, task._state, strict=True))
    task.start_epoch()
    assert task._state is None and task.carry_state() == {}


class Crash(Exception):
    pass


class CrashAt(Callback):
    """Dies right after step ``step`` (after that step's checkpoint is written)."""

    order = 100

    def __init__(self, step: int):
        self.step = step

    def on_batch_end(self, trainer, loss) -> None:
        if trainer.global_step == self.step:
            raise Crash


def test_stateful_resume_is_exact(stateful, tmp_path):
    """A run that dies mid-epoch and resumes from its checkpoint ends with the weights of one
    uninterrupted run: the carried state is part of the checkpoint."""
    cfg = FAST | {"batch_size": B, "epochs": 1, "max_steps": 6}
    whole = lstm(stateful)
    Trainer(**cfg).fit(whole, stateful, LanguageModel(samples=0))

    run = tmp_path / "run"
    ckpt = {"every_n_steps": 3, "save_best": False}
    crashing = Trainer(**cfg | {"checkpoint": ckpt}, run_dir=run, callbacks=[CrashAt(3)])
    with pytest.raises(Crash):
        crashing.fit(lstm(stateful), stateful, LanguageModel(samples=0))
    task = LanguageModel(samples=0)
    resumed = lstm(stateful, seed=1)  # other initial weights: the checkpoint replaces them
    trainer = Trainer(**cfg)
    trainer.fit(resumed, stateful, task, resume=run / "checkpoints" / "step-00000003")
    assert trainer.global_step == 6
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_samples_in_details(plain):
    model = lstm(plain)
    task = LanguageModel(samples=2, sample_length=25, prompts=["def ", "x = "])
    trainer = Trainer(**FAST, batch_size=B, max_steps=2)
    trainer.fit(model, plain, task)
    details = trainer.test(model, plain).details
    samples = details["samples"]
    assert [s["prompt"] for s in samples] == ["def ", "x = "]
    for s in samples:
        assert s["text"].startswith(s["prompt"]) and len(s["text"]) <= len(s["prompt"]) + 25
    again = trainer.test(model, plain).details["samples"]
    assert again == samples  # seeded
    assert details["task_type"] == "language_model"


def test_batch_size_must_match_the_stateful_layout(stateful):
    with pytest.raises(ConfigError, match=r"train\.batch_size: 16 does not match the 8") as info:
        Trainer(**FAST, batch_size=16).fit(lstm(stateful), stateful, LanguageModel())
    assert "\n" not in str(info.value)


def test_bad_setups(plain, stateful):
    with pytest.raises(ConfigError, match=r"task\.stateful: true needs"):
        LanguageModel(stateful=True).setup(plain, LossConfig(), CPU, lstm(plain))
    with pytest.raises(ConfigError, match="has no forward_with_state"):
        LanguageModel().setup(stateful, LossConfig(), CPU, nn.Linear(2, 2))
    digits = load_dataset("digits")
    with pytest.raises(ConfigError, match="'language_model' needs a token stream"):
        LanguageModel().num_outputs(digits, LossConfig())
    with pytest.raises(ConfigError, match="prompts"):
        LanguageModel(prompts=[])


def test_cli_mismatched_stateful_batch_size_is_one_line(cli, tmp_path):
    """Through the real script: exit code 2, one line naming the key, no run directory left."""
    out = tmp_path / "runs"
    result = cli(
        "train",
        Path(__file__).resolve().parents[2] / "examples" / "stdlib_char_lstm.yaml",
        "--out",
        out,
        "--set",
        "data.max_chars=20000",
        "--set",
        "train.batch_size=24",
        "-q",
    )
    assert result.rc == 2, str(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "train.batch_size: 24 does not match" in lines[0], str(result)
    assert not out.exists() or not any(out.iterdir())

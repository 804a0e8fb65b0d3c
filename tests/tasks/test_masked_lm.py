"""masked_lm: BERT's 15% / 80-10-10 masking, the loss over masked positions only (against
torch's cross-entropy), fixed evaluation masks, and a tiny pretraining run whose loss falls."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import deepworks as dw
from deepworks.config import LossConfig
from deepworks.data.bundle import DataBundle, Split
from deepworks.errors import ConfigError
from deepworks.models.transformer_encoder import TransformerEncoder
from deepworks.tasks.masked_lm import IGNORE_INDEX, MaskedLM, mask_tokens

SPECIAL = [0, 1, 2, 3]


def test_masking_rates_follow_bert():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(4, 1000, (400, 250), generator=g)
    x[:, :2] = 2  # specials (a [CLS]-like token) and padding are never chosen
    x[:, -20:] = 0
    inputs, targets = mask_tokens(x, 3, 1000, SPECIAL, 0.15, torch.Generator().manual_seed(1))
    chosen = targets != IGNORE_INDEX
    maskable = x >= 4
    assert not chosen[~maskable].any()
    assert (targets[chosen] == x[chosen]).all()
    assert chosen.sum() / maskable.sum() == pytest.approx(0.15, abs=0.005)
    n = chosen.sum()
    masked = (inputs == 3) & chosen
    kept = (inputs == x) & chosen
    replaced = chosen & ~masked & ~kept
    assert masked.sum() / n == pytest.approx(0.8, abs=0.01)
    assert replaced.sum() / n == pytest.approx(0.1, abs=0.01)
    assert kept.sum() / n == pytest.approx(0.1, abs=0.01)
    assert (inputs[~chosen] == x[~chosen]).all()  # only chosen tokens change
    assert not torch.isin(inputs[replaced], torch.tensor(SPECIAL)).any()


def token_data(n: int = 64, length: int = 16, vocab: int = 30, seed: int = 0) -> DataBundle:
    """A tiny corpus of four "sentences" (random ids >= 4) repeated with varied padding, so a
    masked token follows from the rest of its sentence."""
    g = torch.Generator().manual_seed(seed)
    sentences = torch.randint(4, vocab, (4, length), generator=g)
    x = sentences[torch.arange(n) % 4]  # (n, L)
    lengths = torch.randint(length // 2, length + 1, (n,), generator=g)
    x = x.masked_fill(torch.arange(length) >= lengths[:, None], 0)
    y = torch.zeros(n, dtype=torch.long)
    cut = n * 3 // 4
    return DataBundle(
        name="counting",
        train=Split(x[:cut], y[:cut]),
        val=Split(x[cut:], y[cut:]),
        test=Split(x[cut:], y[cut:]),
        task_type="classification",
        input_shape=(length,),
        num_classes=1,
        class_names=["text"],
        model_sizes={"vocab_size": vocab, "pad_id": 0},
    )


def small_model(vocab: int = 30) -> TransformerEncoder:
    torch.manual_seed(0)
    return TransformerEncoder(
        num_classes=vocab, vocab_size=vocab, dim=32, depth=2, num_heads=4, max_len=16,
        output="sequence", dropout=0.0,
    )  # fmt: skip


def ready_task(data: DataBundle) -> MaskedLM:
    task = MaskedLM()
    task.setup(data, LossConfig(), torch.device("cpu"))
    return task


def test_loss_is_cross_entropy_over_masked_positions_only():
    data = token_data()
    task, model = ready_task(data), small_model()
    x, y = data.train.x[:8], data.train.y[:8]
    torch.manual_seed(5)
    loss, logits = task.training_step(model, x, y)
    torch.manual_seed(5)
    inputs, targets = mask_tokens(x, task.mask_id, 30, task.special_ids)
    chosen = targets != IGNORE_INDEX
    want = F.cross_entropy(model(inputs)[chosen], x[chosen])
    torch.testing.assert_close(loss, want)
    assert task.mask_id == 1 and 1 in task.special_ids  # <unk> stands in for a mask token
    stats = task.batch_stats(logits.detach(), y)
    torch.testing.assert_close(stats[0] / stats[2], want.detach())


def test_evaluation_masks_are_fixed_and_metrics_consistent():
    data = token_data()
    task, model = ready_task(data), small_model().eval()
    x, y = data.val.x, data.val.y
    with torch.no_grad():
        a, b = task.eval_step(model, x, y), task.eval_step(model, x, y)
    torch.testing.assert_close(a, b)
    metrics, details, preds = task.evaluate(a, y)
    nll, chosen, pred, original = a.unbind(-1)
    assert details["masked_tokens"] == int(chosen.sum()) > 0
    assert metrics["loss"] == pytest.approx(float(nll.sum() / chosen.sum()), rel=1e-6)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]), rel=1e-6)
    real = preds["y_true"] != IGNORE_INDEX
    assert (real == chosen.bool().numpy()).all()
    assert metrics["masked_accuracy"] == pytest.approx(
        float((preds["y_true"][real] == preds["y_pred"][real]).mean())
    )


def test_tiny_pretraining_lowers_the_loss():
    data = token_data(n=96)
    model = small_model()
    trainer = dw.Trainer(
        epochs=12, batch_size=16, optimizer={"name": "adamw", "lr": 3e-3},
        progress=False, checkpoint=None, device="cpu",
    )  # fmt: skip
    result = trainer.fit(model, data, MaskedLM())
    losses = [row["train/loss"] for row in result.history]
    assert losses[-1] < 0.6 * losses[0], losses
    val = trainer.validate(model, data).metrics
    assert val["val/masked_accuracy"] > 0.3  # chance is 1 / 26
    assert val["val/perplexity"] < 10  # uniform over the 26 ids: 26


def test_errors():
    data = token_data()
    task = MaskedLM()
    task.setup(data, LossConfig(), torch.device("cpu"))
    last = TransformerEncoder(num_classes=30, vocab_size=30, dim=16, depth=1, num_heads=2)
    with pytest.raises(ConfigError, match="masked_lm needs output: sequence"):
        task.training_step(last, data.train.x[:4], data.train.y[:4])
    flat = DataBundle(
        name="flat", train=Split(torch.randn(8, 3), torch.zeros(8, dtype=torch.long)),
        val=None, test=None, task_type="classification", input_shape=(3,), num_classes=1,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="needs token-id sequences"):
        MaskedLM().num_outputs(flat, LossConfig())
    with pytest.raises(ConfigError, match="mask_rate"):
        MaskedLM(mask_rate=1.5)

"""Sequence tasks: token classification against masked torch cross-entropy and scikit-learn on
the real positions; sequence classification's checks; text trained end to end with the rnn."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm
from sklearn.utils.class_weight import compute_class_weight

import deepworks as dw
from deepworks.config import LossConfig
from deepworks.data.bundle import DataBundle, Split
from deepworks.data.pipeline import load_dataset
from deepworks.data.text.datasets import IGNORE_INDEX
from deepworks.errors import ConfigError
from deepworks.tasks.sequence import SequenceClassification, TokenClassification

CPU = torch.device("cpu")


def tagging_data(n=12, length=7, k=3, seed=0) -> DataBundle:
    """Random token ids right-padded to ``length``, a tag per real token, -100 at padding."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, length + 1, (n,), generator=g)
    real = torch.arange(length) < lengths[:, None]  # (N, L)
    x = torch.randint(1, 20, (n, length), generator=g).masked_fill(~real, 0)
    y = torch.randint(0, k, (n, length), generator=g).masked_fill(~real, IGNORE_INDEX)
    return DataBundle(
        "tags", Split(x, y), None, None, "classification", (length,), k, ["a", "b", "c"][:k],
        model_sizes={"vocab_size": 20, "pad_id": 0},
    )  # fmt: skip


def token_task(data: DataBundle, **loss) -> TokenClassification:
    task = TokenClassification()
    assert task.num_outputs(data, LossConfig(**loss)) == data.num_classes
    task.setup(data, LossConfig(**loss), CPU)
    return task


# --- token_classification --------------------------------------------------------------------


def test_token_loss_and_metrics_count_real_positions_only():
    data = tagging_data()
    task = token_task(data)
    y = data.train.y
    logits = torch.randn(*y.shape, 3, generator=torch.Generator().manual_seed(1))  # (N, L, K)
    real = y != IGNORE_INDEX
    # reference: cross-entropy of the real positions alone
    expected = F.cross_entropy(logits[real], y[real])
    loss, _ = task.training_step(lambda x: logits, data.train.x, y)
    torch.testing.assert_close(loss, expected)
    metrics, details, preds = task.evaluate(logits, y)
    assert metrics["loss"] == pytest.approx(float(expected), rel=1e-5)
    y_true, y_pred = y[real].numpy(), logits.argmax(-1)[real].numpy()
    assert metrics["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    f1 = skm.f1_score(y_true, y_pred, average="macro", labels=[0, 1, 2], zero_division=0)
    assert metrics["f1_macro"] == pytest.approx(f1)
    whole = [bool((logits.argmax(-1)[i] == y[i])[real[i]].all()) for i in range(len(y))]
    assert metrics["sequence_accuracy"] == pytest.approx(np.mean(whole))
    cm = skm.confusion_matrix(y_true, y_pred, labels=[0, 1, 2])
    assert details["confusion_matrix"] == cm.tolist()
    assert preds["y_true"].shape == preds["y_pred"].shape == tuple(y.shape)
    assert (preds["y_pred"][~real.numpy()] == IGNORE_INDEX).all()
    # padding logits do not matter
    noisy = logits.clone()
    noisy[~real] = 100 * torch.randn(int((~real).sum()), 3)
    assert task.evaluate(noisy, y, full=False)[0] == task.evaluate(logits, y, full=False)[0]


def test_token_batch_stats_give_token_accuracy():
    data = tagging_data()
    task = token_task(data)
    y = data.train.y
    logits = torch.randn(*y.shape, 3, generator=torch.Generator().manual_seed(2))
    stats = task.batch_stats(logits[:5], y[:5]) + task.batch_stats(logits[5:], y[5:])
    real = y != IGNORE_INDEX
    expected = (logits.argmax(-1) == y)[real].float().mean().item()
    assert task.stats_metrics(stats, len(y))["accuracy"] == pytest.approx(expected)


def test_token_balanced_weights_count_real_tokens():
    data = tagging_data(n=30)
    task = token_task(data, class_weights="balanced")
    y = data.train.y[data.train.y != IGNORE_INDEX].numpy()
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(task.loss_fn.weight.numpy(), expected, rtol=1e-6)


def test_token_task_refuses_what_does_not_fit():
    data = tagging_data()
    task = token_task(data)
    with pytest.raises(ConfigError, match=r"do not fit per-token labels .* output: sequence"):
        task.evaluate(torch.randn(len(data.train), 3), data.train.y)
    per_text = tagging_data()
    per_text.train = Split(per_text.train.x, torch.zeros(len(per_text.train), dtype=torch.int64))
    with pytest.raises(ConfigError, match="needs a label per token .*sequence_classification"):
        TokenClassification().num_outputs(per_text, LossConfig())
    iris = load_dataset("iris")
    with pytest.raises(ConfigError, match=r"needs token-id sequences .* torch.float32 inputs"):
        TokenClassification().num_outputs(iris, LossConfig())
    with pytest.raises(ConfigError, match="does not fit the token_classification task"):
        TokenClassification().num_outputs(data, LossConfig(name="focal"))


# --- sequence_classification -----------------------------------------------------------------


def test_sequence_classification_checks_its_data_and_outputs():
    tags = tagging_data()
    with pytest.raises(ConfigError, match="one label per sequence.*token_classification"):
        SequenceClassification().num_outputs(tags, LossConfig())
    with pytest.raises(ConfigError, match="needs token-id sequences"):
        SequenceClassification().num_outputs(load_dataset("iris"), LossConfig())
    texts = tagging_data()
    texts.train = Split(texts.train.x, torch.tensor([0, 1, 2] * 4))
    task = SequenceClassification()
    assert task.num_outputs(texts, LossConfig()) == 3
    task.setup(texts, LossConfig(), CPU)
    with pytest.raises(ConfigError, match=r"not one row per sequence.*output: last"):
        task.training_step(lambda x: torch.randn(*x.shape, 3), texts.train.x, texts.train.y)
    loss, out = task.training_step(lambda x: torch.zeros(len(x), 3), texts.train.x, texts.train.y)
    assert loss.item() == pytest.approx(np.log(3))


# --- end to end ------------------------------------------------------------------------------

TEXTS = {
    "sport": [
        "The striker scored twice in the second half",
        "A late goal won the match for the home side",
        "The keeper saved a penalty in extra time",
        "Fans cheered as the team lifted the cup",
        "The coach praised the defence after the win",
        "The referee showed two red cards in the match",
        "The club signed a young winger before the match",
        "A record crowd watched the derby and the goal",
    ],
    "cooking": [
        "Whisk the eggs with sugar until pale",
        "Simmer the sauce for twenty minutes",
        "Bake the bread until the crust is golden",
        "Chop the onions and fry them in butter",
        "Season the soup with salt and pepper",
        "Roast the vegetables in a hot oven",
        "Knead the dough for ten minutes and bake it",
        "Grate the cheese over the warm pasta sauce",
    ],
}


def test_text_csv_trains_with_the_rnn_end_to_end(tmp_path):
    rows = [f'"{t}",{label}' for label, texts in TEXTS.items() for t in texts]
    (tmp_path / "topics.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    config = {
        "name": "topics",
        "data": {"name": "text_csv", "path": str(tmp_path / "topics.csv"), "split": {
            "val": 0.25, "test": 0.25}},
        "model": {"name": "rnn", "cell": "gru", "hidden_size": 16, "embedding_dim": 8},
        "task": {"name": "sequence_classification"},
        "train": {"epochs": 15, "batch_size": 4, "progress": False, "device": "cpu",
                  "optimizer": {"name": "adam", "lr": 0.02}},
    }  # fmt: skip
    run = dw.train(config, out=tmp_path / "runs")
    for key in ("test/accuracy", "test/f1_macro", "val/loss", "train/loss"):
        assert key in run.metrics
    losses = [h["train/loss"] for h in run.history]
    assert losses[-1] < losses[0] / 2  # it learns the training texts
    saved = json.loads((run.dir / "config.yaml").with_name("data.json").read_text())
    assert saved["extras"]["tokenizer"]["kind"] == "word"
    assert run.config.model.kwargs["vocab_size"] == len(saved["extras"]["tokenizer"]["tokens"]) + 4
    report = (run.dir / "report.html").read_text()
    assert "Confusion matrix" in report


def test_stdlib_calls_trains_token_classification_end_to_end(tmp_path):
    config = {
        "name": "calls",
        "data": {"name": "stdlib_calls", "n": 120, "length": 32, "files": 4},
        "model": {"name": "rnn", "cell": "gru", "output": "sequence", "bidirectional": True,
                  "hidden_size": 16, "embedding_dim": 8},
        "task": {"name": "token_classification"},
        "train": {"epochs": 1, "batch_size": 16, "progress": False, "device": "cpu"},
    }  # fmt: skip
    run = dw.train(config, out=tmp_path / "runs")
    assert {"test/accuracy", "test/f1_macro", "test/sequence_accuracy"} <= set(run.metrics)
    preds = np.load(run.dir / "predictions.npz")
    assert preds["y_pred"].shape == preds["y_true"].shape and preds["y_pred"].ndim == 2
    assert "Per-class metrics" in (run.dir / "report.html").read_text()


@pytest.mark.slow
def test_bidirectional_gru_beats_unidirectional_on_stdlib_calls(tmp_path):
    """A name's role depends on the character after it: only a bidirectional model sees it."""
    scores = {}
    for bidirectional in (True, False):
        overrides = {"model.bidirectional": bidirectional, "data.n": 800, "train.epochs": 3}
        overrides |= {"train.checkpoint": None, "train.progress": False}
        run = dw.train(
            "examples/sequence_gru_bidirectional.yaml", overrides=overrides, out=tmp_path
        )
        scores[bidirectional] = run.metrics["test/f1_macro"]
    assert scores[True] > 0.97
    assert scores[True] > scores[False] + 0.05

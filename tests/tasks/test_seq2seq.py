"""The seq2seq task: loss, teacher-forcing schedule, decoding, metrics and a whole tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import deepworks as dw
from deepworks.config import LossConfig, TrainConfig
from deepworks.data.text.dates import dates
from deepworks.data.text.vocab import PAD_ID, CharTokenizer
from deepworks.errors import ConfigError
from deepworks.evaluate.text import sequence_metrics
from deepworks.models.seq2seq import Seq2Seq
from deepworks.tasks.seq2seq import Seq2SeqTask


@pytest.fixture(scope="module")
def data():
    return dates({"val": 0.2, "test": 0.2}, seed=0, n=200)


def make(data, attention="bahdanau", **task_kwargs):
    torch.manual_seed(0)
    model = Seq2Seq(
        vocab_size=data.model_sizes["vocab_size"],
        num_classes=data.num_classes,
        embed_dim=8,
        hidden=16,
        attention=attention,
    )
    task = Seq2SeqTask(**task_kwargs)
    task.setup(data, LossConfig(), torch.device("cpu"), model)
    return model, task


def test_training_step_is_cross_entropy_without_padding(data):
    model, task = make(data)
    x, y = data.train.x[:8], data.train.y[:8]
    y = y.clone()
    y[:, -3:] = PAD_ID  # pretend some targets are shorter
    loss, logits = task.training_step(model, x, y)
    assert logits.shape == (8, y.shape[1] - 1, data.num_classes)
    real = y[:, 1:] != PAD_ID
    want = F.cross_entropy(logits[real], y[:, 1:][real])
    torch.testing.assert_close(loss, want)
    stats = task.batch_stats(logits, y)
    assert int(stats[1]) == int(real.sum())
    assert int(stats[0]) == int(((logits.argmax(-1) == y[:, 1:]) & real).sum())


def test_teacher_forcing_falls_linearly_over_training(data):
    model, task = make(data, teacher_forcing=1.0, teacher_forcing_end=0.5)
    train = TrainConfig(epochs=3)
    task.configure_optimizers(model, train, steps_per_epoch=4)  # 12 steps in all
    ratios = []
    for _ in range(12):
        ratios.append(task.teacher_forcing_ratio())
        task.training_step(model, data.train.x[:4], data.train.y[:4])
    np.testing.assert_allclose(ratios, np.linspace(1.0, 0.5, 12))
    assert task.carry_state()["step"] == 12
    other = make(data, teacher_forcing=1.0, teacher_forcing_end=0.5)[1]
    other.configure_optimizers(model, train, steps_per_epoch=4)
    other.load_carry_state(task.carry_state())  # a resumed run continues the schedule
    assert other.teacher_forcing_ratio() == pytest.approx(0.5)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_eval_step_rows_concatenate_and_evaluate_matches_metrics(data, beam_size):
    model, task = make(data, beam_size=beam_size, examples=5, attention_examples=2)
    model.eval()
    x, y = data.test.x, data.test.y
    with torch.no_grad():
        out = torch.cat([task.eval_step(model, x[i : i + 16], y[i : i + 16]) for i in (0, 16)])
        decode = model.beam_search if beam_size > 1 else model.greedy
        args = (beam_size, 21) if beam_size > 1 else (21,)
        want_ids = decode(x[:32], *args)[0]
        tf_logits = model(x[:32], y[:32, :-1])
    metrics, details, preds = task.evaluate(out, y[:32])
    assert np.array_equal(preds["y_pred"], want_ids.numpy())  # width: 11 target tokens + 10 = 21
    assert np.array_equal(preds["source"], x[:32].numpy())
    want = sequence_metrics(want_ids.numpy(), y[:32].numpy())
    for key in ("exact_match", "token_accuracy", "bleu"):
        assert metrics[key] == pytest.approx(want[key])
    loss = F.cross_entropy(tf_logits.transpose(1, 2), y[:32, 1:], ignore_index=PAD_ID)
    assert metrics["loss"] == pytest.approx(float(loss), rel=1e-5)
    tgt = CharTokenizer.from_dict(data.extras["target_tokenizer"])
    src = CharTokenizer.from_dict(data.extras["tokenizer"])
    assert len(details["examples"]) == 5
    first = details["examples"][0]
    assert first["source"] == src.decode(x[0]) and first["target"] == tgt.decode(y[0])
    assert first["prediction"] == tgt.decode(want_ids[0])
    assert len(details["attention"]) == 2
    att = details["attention"][1]
    assert att["source"] == list(src.decode(x[1]))
    w = np.array(att["weights"])
    assert w.shape == (len(att["output"]), len(att["source"]))
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-3)
    quick, none, empty = task.evaluate(out, y[:32], full=False)
    assert quick == pytest.approx(metrics) and none is None and empty == {}


def test_no_attention_model_keeps_no_maps(data):
    model, task = make(data, attention="none")
    with torch.no_grad():
        out = task.eval_step(model.eval(), data.test.x[:8], data.test.y[:8])
    _, details, _ = task.evaluate(out, data.test.y[:8])
    assert details["attention"] == [] and len(details["examples"]) == 8


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"beam_size": 0}, "task.beam_size: 0 must be at least 1"),
        ({"teacher_forcing": 1.5}, r"task.teacher_forcing: 1.5 must be a probability"),
        ({"teacher_forcing_end": -0.1}, r"task.teacher_forcing_end: -0.1 must be"),
        ({"max_decode_len": 0}, "task.max_decode_len: 0 must be at least 1"),
    ],
)
def test_bad_task_options_are_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message) as err:
        Seq2SeqTask(**kwargs)
    assert "\n" not in str(err.value)


def test_seq2seq_task_needs_seq2seq_data():
    iris = dw.load_dataset("iris")
    with pytest.raises(ConfigError, match="'seq2seq' needs source and target sequences"):
        Seq2SeqTask().num_outputs(iris, LossConfig())


def test_tiny_run_writes_the_report_with_attention(tmp_path):
    config = {
        "name": "tiny_dates",
        "seed": 0,
        "data": {"name": "dates", "n": 300, "split": {"val": 0.1, "test": 0.1}},
        "model": {"name": "seq2seq", "embed_dim": 8, "hidden": 16, "attention": "luong"},
        "task": {"name": "seq2seq", "teacher_forcing_end": 0.8, "beam_size": 2},
        "train": {"epochs": 2, "batch_size": 32, "progress": False,
                  "optimizer": {"name": "adam", "lr": 0.01}},
    }  # fmt: skip
    run = dw.train(config, out=tmp_path)
    for key in ("test/exact_match", "test/bleu", "test/token_accuracy", "test/loss"):
        assert np.isfinite(run.metrics[key])
    assert run.model.get_config()["vocab_size"] > 20  # taken from the data
    evaluation = json.loads((run.dir / "evaluation.json").read_text())
    assert evaluation["task_type"] == "seq2seq" and evaluation["decoding"] == "beam 2"
    assert len(evaluation["attention"]) == 4
    with np.load(run.dir / "predictions.npz") as npz:
        assert npz["y_true"].shape == (30, 12) and npz["y_pred"].shape == (30, 21)
    html = (run.dir / "report.html").read_text()
    attention = html[html.index('<section id="attention">') :]
    assert "data:image/png;base64," in attention[: attention.index("</section>")]
    assert '<section id="examples">' in html and "exact match" in html

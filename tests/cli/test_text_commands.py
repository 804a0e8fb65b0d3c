"""The CLI with text: a text classifier trained from a CSV, predictions for new texts, warnings
as one line."""

from __future__ import annotations

import csv
import io

import pytest
import torch
import yaml

from deepworks.data.text.tokenizers import tokenizer_from_dict
from deepworks.data.text.vocab import pad_batch
from deepworks.run import load_run

SPORT = [
    "The striker scored twice in the second half",
    "A late goal won the match for the home side",
    "The keeper saved a penalty in extra time",
    "Fans cheered as the team lifted the cup",
    "The coach praised the defence after the win",
    "The referee showed two red cards in the match",
]
COOKING = [
    "Whisk the eggs with sugar until pale",
    "Simmer the sauce for twenty minutes",
    "Bake the bread until the crust is golden",
    "Chop the onions and fry them in butter",
    "Season the soup with salt and pepper",
    "Roast the vegetables in a hot oven",
]


@pytest.fixture(scope="module")
def text_run(cli, tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    rows = [(t, "sport") for t in SPORT] + [(t, "cooking") for t in COOKING]
    with open(folder / "topics.csv", "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    config = {
        "name": "topics",
        "data": {"name": "text_csv", "path": str(folder / "topics.csv"), "max_len": 6,
                 "split": {"val": 0.25, "test": 0.25}},
        "model": {"name": "rnn", "cell": "gru", "hidden_size": 8, "embedding_dim": 8},
        "task": {"name": "sequence_classification"},
        "train": {"epochs": 2, "batch_size": 4, "progress": False, "device": "cpu"},
    }  # fmt: skip
    (folder / "topics.yaml").write_text(yaml.safe_dump(config))
    rc, out, err = cli("train", folder / "topics.yaml", "--out", folder / "runs")
    assert rc == 0, err
    return folder, folder / "runs" / "topics", err


def test_warnings_print_as_one_line(text_run):
    _, _, err = text_run
    lines = [line for line in err.splitlines() if "max_len" in line]
    assert lines and all(line.startswith("warning: ") for line in lines), err
    assert "UserWarning" not in err and "warnings.warn" not in err


def expected_predictions(run, texts):
    cfg, model, _ = load_run(run)
    info = (run / "data.json").read_text()
    tok = tokenizer_from_dict(__import__("json").loads(info)["extras"]["tokenizer"])
    x, _ = pad_batch([tok.encode(t) for t in texts], max_len=6)
    with torch.no_grad():
        return model.eval()(x).softmax(-1)


@pytest.mark.parametrize("kind", ["txt", "csv", "folder"])
def test_predict_new_texts(cli, text_run, tmp_path, kind):
    _, run, _ = text_run
    texts = ["The goal in the last minute won the cup", "Fry the onions in butter"]
    if kind == "txt":
        source = tmp_path / "new.txt"
        source.write_text("\n".join(texts) + "\n\n")
    elif kind == "csv":
        source = tmp_path / "new.csv"
        with open(source, "w", newline="") as f:
            csv.writer(f).writerows([("text",), *[(t,) for t in texts]])
    else:
        source = tmp_path / "texts"
        source.mkdir()
        for i, t in enumerate(texts):
            (source / f"{i}.txt").write_text(t)
    rc, out, err = cli("predict", run, source)
    assert rc == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 2
    want = expected_predictions(run, texts)
    for row, probs in zip(rows, want, strict=True):
        assert float(row["p_sport"]) == pytest.approx(float(probs[1]), abs=1e-5)
        assert row["prediction"] == ("sport" if probs[1] > probs[0] else "cooking")


def test_predict_text_csv_without_the_text_column(cli, text_run, tmp_path):
    _, run, _ = text_run
    source = tmp_path / "bad.csv"
    source.write_text("body\nsome words\n")
    rc, _, err = cli("predict", run, source)
    assert rc == 2
    assert "no 'text' column (columns: body)" in err and "Traceback" not in err

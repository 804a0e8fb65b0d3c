"""Text datasets: CSV and folders of texts as padded id sequences, and the stdlib_calls tagging
data checked against Python's own tokenizer."""

from __future__ import annotations

import io
import sysconfig
import tokenize
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from deepworks.data.pipeline import load_dataset
from deepworks.data.text.datasets import (
    IGNORE_INDEX,
    call_tags,
    stdlib_calls,
    text_csv,
    text_folder,
)
from deepworks.data.text.tokenizers import tokenizer_from_dict
from deepworks.data.text.vocab import PAD_ID, UNK_ID
from deepworks.errors import ConfigError, DataError

SPORT = [
    "The striker scored twice in the second half",
    "A late goal won the match for the home side",
    "The keeper saved a penalty in extra time",
    "Fans cheered as the team lifted the cup",
    "The coach praised the defence after the win",
    "Rain stopped play before the final over",
    "She won the race by a full second",
    "The referee showed two red cards",
    "The club signed a young winger",
    "A record crowd watched the derby",
]
COOKING = [
    "Whisk the eggs with sugar until pale",
    "Simmer the sauce for twenty minutes",
    "Bake the bread until the crust is golden",
    "Chop the onions and fry them in butter",
    "Season the soup with salt and pepper",
    "Roast the vegetables in a hot oven",
    "Knead the dough for ten minutes",
    "Stir the rice so it does not stick",
    "Grate the cheese over the warm pasta",
    "Slice the apples thinly for the tart",
]
SPLIT = {"val": 0.2, "test": 0.2}
TEXTS = [t + f" w{i}" for i, t in enumerate(SPORT + COOKING)]  # as written by news_csv


def quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


@pytest.fixture
def news_csv(write_csv) -> str:
    """20 texts, two classes; each text ends with a word of its own (w0, w1, ...)."""
    rows = [(t, "sport") for t in SPORT] + [(t, "cooking") for t in COOKING]
    lines = ["id,text,topic"] + [f"{i},{quoted(t + f' w{i}')},{y}" for i, (t, y) in enumerate(rows)]
    return write_csv("\n".join(lines) + "\n")


def load(path, **kw):
    kw.setdefault("label", "topic")
    return text_csv(path, split=kw.pop("split", SPLIT), seed=kw.pop("seed", 0), **kw)


# --- text_csv --------------------------------------------------------------------------------


def test_text_csv_bundle(news_csv):
    data = load(news_csv)
    assert data.task_type == "classification"
    assert data.class_names == ["cooking", "sport"]  # sorted labels
    assert data.num_classes == 2
    assert [len(data.train), len(data.val), len(data.test)] == [12, 4, 4]
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == torch.int64 and split.y.dtype == torch.int64
        assert split.x.ndim == 2 and split.y.ndim == 1
    longest = max(len(t.split()) for t in SPORT + COOKING) + 1  # words + the w<i> word
    assert data.input_shape == (longest,)
    tok = tokenizer_from_dict(data.extras["tokenizer"])
    assert data.model_sizes == {"vocab_size": len(tok.vocab), "pad_id": 0}
    # stratified: two of each class in val and test
    assert torch.bincount(data.test.y).tolist() == [2, 2]
    assert torch.bincount(data.val.y).tolist() == [2, 2]


def test_texts_are_padded_with_zeros_and_decode_back(news_csv):
    data = load(news_csv)
    tok = tokenizer_from_dict(data.extras["tokenizer"])
    every = {t.lower() for t in SPORT + COOKING}
    for row in data.train.x:
        n = int((row != PAD_ID).sum())
        assert (row[n:] == PAD_ID).all() and (row[:n] != PAD_ID).all()  # right padding
        text = tok.decode(row)
        assert text.rsplit(" ", 1)[0] in every


def test_tokenizer_sees_training_texts_only(news_csv):
    data = load(news_csv)
    tok = tokenizer_from_dict(data.extras["tokenizer"])

    def last_word(row):
        return row[row != PAD_ID][-1].item()  # the w<i> word of each text

    assert all(last_word(r) != UNK_ID for r in data.train.x)
    assert all(last_word(r) == UNK_ID for r in torch.cat([data.val.x, data.test.x]))
    assert len(tok.vocab) == 4 + len({w for r in data.train.x for w in r.tolist()} - {0})


def test_split_is_seeded(news_csv):
    a, b, c = load(news_csv, seed=1), load(news_csv, seed=1), load(news_csv, seed=2)
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.test.x, c.test.x)


def test_through_load_dataset_with_other_tokenizers(news_csv):
    char = load_dataset("text_csv", path=news_csv, label="topic", tokenizer="char", split=SPLIT)
    assert char.input_shape == (max(len(t) for t in TEXTS),)
    bpe = load_dataset(
        "text_csv", path=news_csv, label="topic", tokenizer="bpe", vocab_size=120, split=SPLIT
    )
    assert bpe.model_sizes["vocab_size"] <= 120
    assert bpe.extras["tokenizer"]["kind"] == "bpe"
    with pytest.raises(ConfigError, match="char tokenizer keeps case"):
        load(news_csv, tokenizer="char", lowercase=True)


def test_long_texts_are_cut_with_a_warning_or_refused(news_csv):
    longest = max(len(t.split()) for t in SPORT + COOKING) + 1
    with pytest.warns(UserWarning, match=r"20 of 20 texts were cut to max_len=5 tokens"):
        data = load(news_csv, max_len=5)
    assert data.input_shape == (5,)
    with pytest.raises(DataError, match=rf"20 of 20 texts .* max_len=5 .*longest: {longest}"):
        load(news_csv, max_len=5, truncate=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is cut: no warning
        assert load(news_csv, max_len=100).input_shape == (longest,)


def test_integer_labels(write_csv):
    rows = [f"{quoted(t)},{7 if i < 10 else 3}" for i, t in enumerate(SPORT + COOKING)]
    data = load(write_csv("text,label\n" + "\n".join(rows) + "\n"), label="label")
    assert data.class_names == ["3", "7"]


# --- bad CSV files ---------------------------------------------------------------------------


def test_empty_text_names_the_line(write_csv):
    path = write_csv('text,topic\n"a good match",sport\n"  ",sport\n"hot soup",cooking\n')
    with pytest.raises(DataError, match=r"line 3: text 'text' is empty"):
        load(path)


def test_missing_columns_list_the_columns_and_a_close_match(news_csv):
    hint = r"no column 'txt'; did you mean 'text'\? .*id, text, topic"
    with pytest.raises(DataError, match=hint):
        load(news_csv, text="txt")
    with pytest.raises(DataError, match=r"no column 'label'.*set data.label"):
        load(news_csv, label="label")


def test_empty_csv_and_header_only(write_csv):
    with pytest.raises(DataError, match="the file is empty"):
        load(write_csv("", name="empty.csv"))
    with pytest.raises(DataError, match="no data rows below the header"):
        load(write_csv("text,topic\n", name="header.csv"))


def test_non_utf8_csv(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,topic\ncaf\xe9 au lait,food\n".encode("latin-1"))
    with pytest.raises(DataError, match="is not UTF-8 text"):
        load(str(path))


# --- text_folder -----------------------------------------------------------------------------


def write_folder(root: Path) -> Path:
    for name, texts in (("sport", SPORT), ("cooking", COOKING)):
        for i, text in enumerate(texts):
            path = root / name / ("nested" if i == 0 else "") / f"{i}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n")
    (root / "sport" / "notes.md").write_text("not a text sample")
    return root


def test_text_folder(tmp_path):
    root = write_folder(tmp_path / "texts")
    data = text_folder(str(root), split=SPLIT, seed=0)
    assert data.class_names == ["cooking", "sport"]
    assert len(data.train) + len(data.val) + len(data.test) == 20  # notes.md is not a text
    tok = tokenizer_from_dict(data.extras["tokenizer"])
    decoded = {tok.decode(r) for r in data.train.x}
    assert decoded <= {t.lower() for t in SPORT + COOKING}


def test_text_folder_bad_inputs(tmp_path):
    root = write_folder(tmp_path / "texts")
    (root / "weather").mkdir()
    with pytest.raises(DataError, match=r"class folder 'weather' holds no .txt files"):
        text_folder(str(root))
    (root / "weather" / "a.txt").write_bytes(b"sunny \xff\xfe spells")
    with pytest.raises(DataError, match=r"weather/a.txt: is not UTF-8 text"):
        text_folder(str(root))
    (root / "weather" / "a.txt").write_text("   \n")
    with pytest.raises(DataError, match=r"weather/a.txt: the text is empty"):
        text_folder(str(root))
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        text_folder(str(tmp_path / "flat"))


# --- stdlib_calls ----------------------------------------------------------------------------


def test_call_tags():
    assert call_tags("f(x)") == [2, 0, 1, 0]
    assert call_tags("a.b_1(c) + 2e5") == [1, 0, 2, 2, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert call_tags("print (x)")[:5] == [1] * 5  # a space before "(": not directly called


def test_call_tags_agree_with_pythons_tokenizer():
    """Reference: the NAME tokens of ``tokenize``, called iff the next token is an adjacent "("."""
    source = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text(encoding="utf-8")
    tags = np.array(call_tags(source))
    starts = np.cumsum([0] + [len(line) for line in source.splitlines(keepends=True)])
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    checked = 0
    for tok, nxt in zip(tokens, tokens[1:], strict=False):
        if tok.type != tokenize.NAME:
            continue
        a = starts[tok.start[0] - 1] + tok.start[1]
        called = nxt.string == "(" and nxt.start == tok.end
        assert set(tags[a : a + len(tok.string)]) == {2 if called else 1}, tok
        checked += 1
    assert checked > 500


def test_stdlib_calls_bundle():
    data = stdlib_calls(n=200, length=48, files=6, split={"val": 0.1, "test": 0.2}, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (140, 20, 40)
    assert data.class_names == ["other", "name", "call"]
    assert data.extras["targets"] == "per_token"
    tok = tokenizer_from_dict(data.extras["tokenizer"])
    for split in (data.train, data.test):
        assert split.x.shape == split.y.shape and split.x.shape[1] <= 48
        assert torch.equal(split.x == PAD_ID, split.y == IGNORE_INDEX)  # -100 exactly at pads
        real = split.y[split.y != IGNORE_INDEX]
        assert set(real.unique().tolist()) == {0, 1, 2}
    for row, tags in zip(data.train.x[:20], data.train.y[:20], strict=True):
        text = tok.decode(row)
        assert tags[: len(text)].tolist() == call_tags(text)
    again = stdlib_calls(n=200, length=48, files=6, split={"val": 0.1, "test": 0.2}, seed=0)
    assert torch.equal(again.test.x, data.test.x)
    with pytest.raises(ConfigError, match="n >= 10"):
        stdlib_calls(n=2)

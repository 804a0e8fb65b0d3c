"""The generated ``dates`` translation set: formats, splits, tokenizers and bad input."""

from __future__ import annotations

import datetime as dt

import pytest
import torch

import deepworks as dw
from deepworks.data.text.dates import FIRST_DAY, FORMATS, NUM_DAYS, dates, ordinal
from deepworks.data.text.vocab import BOS_ID, EOS_ID, CharTokenizer
from deepworks.errors import DataError

SPLIT = {"val": 0.1, "test": 0.2}


def texts(data, part: str) -> tuple[list[str], list[str]]:
    src = CharTokenizer.from_dict(data.extras["tokenizer"])
    tgt = CharTokenizer.from_dict(data.extras["target_tokenizer"])
    split = getattr(data, part)
    return [src.decode(r) for r in split.x], [tgt.decode(r) for r in split.y]


def test_formats_of_one_day():
    got = {f(dt.date(1997, 3, 3)) for f in FORMATS}
    want = {
        "3 March 1997",
        "Mar 3, 1997",
        "03/03/97",
        "monday, march 3rd 1997",
        "1997.03.03",
        "3-MAR-1997",
        "March 3, 1997",
        "03.03.1997",
        "Monday 3 March 1997",
        "1997-03-03",
        "3/3/1997",
        "the 3rd of march, 1997",
        "MAR 03 1997",
        "19970303",
        "Mon, 3 Mar 1997",
        "3 mar 97",
    }
    assert got == want
    assert [ordinal(d) for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"
    ]  # fmt: skip


@pytest.mark.parametrize("k", range(len(FORMATS)))
def test_every_format_is_unambiguous(k):
    # the source alone determines the date, for every day of the range (two-digit years too)
    days = [FIRST_DAY + dt.timedelta(days=i) for i in range(NUM_DAYS)]
    written = [FORMATS[k](d) for d in days]
    assert len(set(written)) == NUM_DAYS


def test_bundle_shapes_targets_and_sizes():
    data = dates(SPLIT, seed=0, n=500)
    assert data.task_type == "seq2seq"
    assert (len(data.train), len(data.val), len(data.test)) == (350, 50, 100)
    assert data.train.x.dtype == torch.int64 and data.train.y.dtype == torch.int64
    tgt = CharTokenizer.from_dict(data.extras["target_tokenizer"])
    src = CharTokenizer.from_dict(data.extras["tokenizer"])
    assert data.num_classes == len(tgt.vocab) == 4 + 11  # specials + 0-9 and "-"
    assert data.model_sizes == {"vocab_size": len(src.vocab), "pad_id": 0}
    assert data.input_shape == (data.train.x.shape[1],)
    y = data.test.y
    assert y.shape[1] == 12 and (y[:, 0] == BOS_ID).all() and (y[:, 11] == EOS_ID).all()
    sources, targets = texts(data, "test")
    for s, t in zip(sources, targets, strict=True):
        day = dt.date.fromisoformat(t)
        assert s in {f(day) for f in FORMATS}, (s, t)
    # the source tokenizer is fitted on the training sources only
    train_sources, _ = texts(data, "train")
    assert set(src.vocab.itos[4:]) == set("".join(train_sources))


def test_seeded_deterministic_and_no_date_in_two_splits():
    a, b, c = dates(SPLIT, seed=3, n=400), dates(SPLIT, seed=3, n=400), dates(SPLIT, seed=4, n=400)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.y, c.train.y)
    parts = [set(texts(a, p)[1]) for p in ("train", "val", "test")]
    assert sum(map(len, parts)) == 400  # all distinct
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_through_load_dataset_and_max_len():
    data = dw.load_dataset("dates", split={"val": 0.2, "test": 0.2}, seed=1, n=100, max_len=40)
    assert data.train.x.shape == (60, 40)
    longest = max(len(s) for s in texts(data, "train")[0] + texts(data, "test")[0])
    short = dates(SPLIT, seed=1, n=100, max_len=8, truncate=True)
    assert short.train.x.shape[1] == 8 and longest > 8


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 100, "max_len": 8}, "data.max_len: 8 is shorter than the longest date"),
        ({"n": 5}, "data.n: 5 dates leave the val split (0.1) empty; use a larger n"),
        ({"n": 0}, "data.n: 0 dates asked for"),
        ({"n": NUM_DAYS + 1}, f"data.n: {NUM_DAYS + 1} dates asked for"),
    ],
)
def test_bad_input_is_one_line(kwargs, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        dates(SPLIT, seed=0, **kwargs)
    assert "\n" not in str(err.value)


def test_nothing_left_for_training():
    with pytest.raises(DataError, match="leave nothing for training"):
        dates({"val": 0.5, "test": 0.5}, n=2)

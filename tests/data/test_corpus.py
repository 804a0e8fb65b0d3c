"""Language-model corpora: split by file, windows shifted by one, the stateful stream layout,
evaluation context, and one-line errors for bad input."""

from __future__ import annotations

import pytest
import torch

from deepworks.data.pipeline import load_dataset
from deepworks.data.text.corpus import stdlib_files, windows
from deepworks.data.text.tokenizers import tokenizer_from_dict
from deepworks.errors import ConfigError, DataError

SMALL = {"max_chars": 40_000, "max_file_chars": 2_000, "bptt": 16}


def text_of(data, split: str) -> str:
    """The text behind a split's windows (without any evaluation context)."""
    tok = tokenizer_from_dict(data.extras["tokenizer"])
    s = getattr(data, split)
    ctx = s.x.shape[1] - s.y.shape[1]
    return tok.decode(s.x[:, ctx:].reshape(-1).tolist())


@pytest.fixture(scope="module")
def stdlib():
    return load_dataset("stdlib_code", split={"val": 0.1, "test": 0.2}, seed=0, **SMALL)


def test_windows_are_shifted_by_one():
    ids = torch.arange(100)
    x, y = windows(ids, bptt=8)
    assert x.shape == y.shape == (12, 8)  # (100 - 1) // 8
    assert torch.equal(y, x + 1)
    assert torch.equal(x.reshape(-1), ids[:96])  # consecutive windows continue each other


def test_stateful_layout_continues_row_for_row():
    ids = torch.arange(1000)
    b, bptt = 4, 10
    x, y = windows(ids, bptt, streams=b)
    assert torch.equal(y, x + 1)
    rows = ids.view(b, -1)  # the stream cut into b parallel rows of 250
    k = len(x) // b
    assert len(x) == b * ((250 - 1) // bptt)
    for batch in range(1, k):
        for i in range(b):
            # sample k*B + i continues sample (k-1)*B + i
            assert x[batch * b + i, 0] == x[(batch - 1) * b + i, -1] + 1
    assert torch.equal(x[0::b].reshape(-1), rows[0, : k * bptt])


def test_context_windows_score_every_token_once():
    ids = torch.arange(200)
    x, y = windows(ids, bptt=10, context=5)
    assert x.shape == (19, 15) and y.shape == (19, 10)
    assert torch.equal(y, x[:, 5:] + 1)
    assert torch.equal(y.reshape(-1), torch.arange(6, 196))  # each target once, in order


def test_too_short_streams_give_no_windows():
    short = torch.arange(5)
    assert windows(short, bptt=8)[0].shape == (0, 8)
    assert windows(short, bptt=2, context=10)[0].shape == (0, 12)
    assert windows(short, bptt=2, streams=8)[0].shape == (0, 2)


def test_stdlib_files_are_sorted_and_skip_test_suites():
    files = stdlib_files()
    assert len(files) > 100
    names = [f.as_posix() for f in files]
    assert names == sorted(names)  # deterministic order
    assert all("/test/" not in n and "site-packages" not in n for n in names)
    assert any(n.endswith("/os.py") for n in names)


def test_stdlib_code_bundle(stdlib):
    d = stdlib
    assert d.task_type == "language_model"
    assert (
        d.num_classes
        == len(tokenizer_from_dict(d.extras["tokenizer"]).vocab)
        == 4 + len(set(text_of(d, "train")))
    )
    assert d.model_sizes == {"vocab_size": d.num_classes, "pad_id": 0}
    assert d.train.x.shape[1] == d.train.y.shape[1] == 16
    assert d.val.x.shape[1] == 32 and d.val.y.shape[1] == 16  # 16 tokens of context in front
    assert d.extras["chars_per_token"] == 1.0
    assert int(d.train.x.min()) > 0  # no padding in a token stream
    total = sum(d.extras["characters"].values())
    assert 0.9 * SMALL["max_chars"] <= total <= SMALL["max_chars"] + 2 * SMALL["max_file_chars"]
    assert d.extras["files"]["train"] >= 10  # the budget spreads over many files


def test_split_by_file_holds_files_out(stdlib):
    """No held-out text appears in the training text: whole files go to one split only."""
    train = text_of(stdlib, "train")
    test = text_of(stdlib, "test")
    # a long chunk of a held-out file would be found in the training text if files were mixed
    for start in range(0, len(test) - 400, 3000):
        assert test[start : start + 400] not in train


def test_deterministic_and_seeded():
    a = load_dataset("stdlib_code", seed=1, **SMALL)
    b = load_dataset("stdlib_code", seed=1, **SMALL)
    c = load_dataset("stdlib_code", seed=2, **SMALL)
    assert torch.equal(a.test.x, b.test.x)
    assert a.test.x.shape != c.test.x.shape or not torch.equal(a.test.x, c.test.x)


def test_stateful_bundle():
    d = load_dataset("stdlib_code", stateful=True, batch_size=4, **SMALL)
    assert len(d.train) % 4 == 0 and d.extras["streams"] == 4 and d.extras["stateful"]
    x = d.train.x
    assert torch.equal(x[4:, 0], d.train.y[:-4, -1])  # row i of batch k continues batch k-1


def test_text_file_folder_and_single_file(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(12):
        (folder / f"doc{i:02d}.txt").write_text(f"document {i}: " + "hello world. " * 60 + "\n")
    d = load_dataset("text_file", path=str(folder), bptt=8, max_chars=100_000)
    assert d.extras["files"]["test"] >= 1 and len(d.test) > 0
    tok = tokenizer_from_dict(d.extras["tokenizer"])
    assert set(tok.decode(d.train.x[0].tolist())) <= set("document0123456789: helowrd.\n")
    one = tmp_path / "one.txt"
    one.write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    d = load_dataset("text_file", path=str(one), bptt=8)
    assert len(d.train) > 0 and len(d.val) > 0 and len(d.test) > 0


def test_bpe_corpus_counts_characters_per_token():
    d = load_dataset("stdlib_code", tokenizer="bpe", vocab_size=300, **SMALL)
    by_targets = d.extras["chars_per_token_by_targets"]
    assert set(by_targets) == {str(s.y.numel()) for s in (d.train, d.val, d.test)}
    assert all(1.5 < v < 6 for v in by_targets.values())  # sub-words hold several characters


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"bptt": 1}, ConfigError, r"data\.bptt: 1 is too short"),
        ({"max_chars": 300}, DataError, r"data\.max_chars: 300 characters leave the \w+ split"),
        ({"stateful": True}, ConfigError, r"data\.batch_size: stateful: true"),
    ],
)
def test_bad_options(options, error, match):
    with pytest.raises(error, match=match) as info:
        load_dataset("stdlib_code", **(SMALL | options))
    assert "\n" not in str(info.value)


def test_no_files_found(tmp_path):
    with pytest.raises(DataError, match="no text files found") as info:
        load_dataset("text_file", path=str(tmp_path))
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("text_file", path=str(tmp_path / "missing"))
    (tmp_path / "empty.txt").write_text("   \n")
    with pytest.raises(DataError, match="holds no text"):
        load_dataset("text_file", path=str(tmp_path / "empty.txt"))

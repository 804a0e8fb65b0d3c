"""Tokenizers: text → tokens → ids, fitted on the training texts only.

Three granularities, one interface (``fit``, ``encode``, ``decode``, ``to_dict`` / ``from_dict``):

- ``char`` (:class:`~deepworks.data.text.vocab.CharTokenizer`): one token per character. Small
  vocabulary, long sequences, never an unknown word.
- ``word`` (:class:`WordTokenizer`): words and punctuation marks, split by the regular expression
  ``\\w+|[^\\w\\s]`` ("don't!" → ``don ' t !``). Rare words (fewer than ``min_freq`` training
  occurrences, or beyond ``max_size``) become ``<unk>``.
- ``bpe`` (:class:`BPETokenizer`): byte-pair encoding (Sennrich et al., 2016) trained with the
  Hugging Face ``tokenizers`` library. Starting from single characters, BPE repeatedly merges
  the most frequent adjacent pair of symbols into a new symbol until the vocabulary has
  ``vocab_size`` entries; frequent words end up as one token, rare words as a few sub-words, so
  almost nothing is unknown. Spaces become a visible ``▁`` prefix (the Metaspace scheme of
  SentencePiece), which lets ``decode`` put the text back together.

All three give the four special tokens the same ids (``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2,
``<eos>`` 3; see :mod:`deepworks.data.text.vocab`), so padding and masking work the same for every
tokenizer. ``build_tokenizer(kind, texts, **options)`` fits one by name and
``tokenizer_from_dict(d)`` restores any of them from the dict saved with a run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol

from deepworks.data.text.vocab import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIALS,
    UNK,
    CharTokenizer,
    Vocab,
)
from deepworks.errors import ConfigError, DataError

WORD_PATTERN = re.compile(r"\w+|[^\w\s]")
# ``decode`` of word tokens: no space before closing punctuation, none after opening brackets.
_NO_SPACE_BEFORE = set(".,!?;:%)]}'\"")
_NO_SPACE_AFTER = set("([{$'\"")
BPE_DEFAULT_VOCAB = 1000
TOKENIZER_KINDS = ("char", "word", "bpe")


class Tokenizer(Protocol):
    """What every tokenizer offers (``kind`` is "char", "word" or "bpe")."""

    kind: str

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int], strip: bool = True) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


class WordTokenizer:
    """Words and punctuation marks, optionally lower-cased.

    Args:
        vocab: The vocabulary (specials first).
        lowercase: Lower-case text before splitting (``"The"`` and ``"the"`` share an id).

    Example:
        >>> tok = WordTokenizer.fit(["The cat sat.", "the dog"])
        >>> tok.tokenize("The cat!")
        ['the', 'cat', '!']
        >>> tok.decode(tok.encode("the cat sat."))
        'the cat sat.'
    """

    kind = "word"

    def __init__(self, vocab: Vocab, lowercase: bool = True):
        self.vocab = vocab
        self.lowercase = lowercase

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        lowercase: bool = True,
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> WordTokenizer:
        """Count the words of the (training) texts; keep those seen ``min_freq`` times, the most
        frequent ``max_size`` (specials included) when given."""
        tok = cls(Vocab([]), lowercase)
        tokens = (t for text in texts for t in tok.tokenize(text))
        tok.vocab = Vocab.build(tokens, min_freq, max_size)
        return tok

    def tokenize(self, text: str) -> list[str]:
        return WORD_PATTERN.findall(text.lower() if self.lowercase else text)

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(self.tokenize(text))

    def decode(self, ids: Iterable[int], strip: bool = True) -> str:
        """Ids → text: tokens joined by spaces, except around punctuation (so the text is only
        approximately the original: ``"a , b"`` comes back as ``"a, b"``)."""
        out = ""
        for token in self.vocab.decode(ids, strip):
            glue = not out or token in _NO_SPACE_BEFORE or out[-1] in _NO_SPACE_AFTER
            out += token if glue else " " + token
        return out

    def __len__(self) -> int:
        return len(self.vocab)

    def to_dict(self) -> dict[str, Any]:
        tokens = self.vocab.itos[len(SPECIALS) :]
        return {"kind": self.kind, "lowercase": self.lowercase, "tokens": tokens}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WordTokenizer:
        return cls(Vocab(d["tokens"]), bool(d.get("lowercase", True)))


class BPETokenizer:
    """Byte-pair encoding trained with the ``tokenizers`` library (Metaspace pre-tokenization).

    Args:
        tokenizer: A trained ``tokenizers.Tokenizer`` whose first four ids are our specials.

    Example:
        >>> tok = BPETokenizer.fit(["low lower lowest"] * 10, vocab_size=30)
        >>> tok.decode(tok.encode("lowest low"))
        'lowest low'
    """

    kind = "bpe"

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        for i, special in enumerate(SPECIALS):
            if tokenizer.token_to_id(special) != i:
                raise DataError(f"BPE tokenizer: {special} must have id {i}; retrain it")

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        vocab_size: int = BPE_DEFAULT_VOCAB,
        min_freq: int = 1,
        lowercase: bool = False,
    ) -> BPETokenizer:
        """Learn BPE merges from the (training) texts until ``vocab_size`` tokens (at most)."""
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        if vocab_size <= len(SPECIALS):
            raise ConfigError(
                f"data.vocab_size: {vocab_size} leaves no room besides the {len(SPECIALS)} "
                "special tokens; use a larger vocabulary (e.g. 1000)"
            )
        tok = Tokenizer(models.BPE(unk_token=UNK, fuse_unk=True))
        steps = [normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else [])
        tok.normalizer = normalizers.Sequence(steps)
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_freq,
            special_tokens=list(SPECIALS),  # first, in order: ids 0..3
            # the initial alphabet counts towards vocab_size: keep its most frequent characters
            limit_alphabet=vocab_size - len(SPECIALS),
            show_progress=False,
        )
        tok.train_from_iterator(list(texts), trainer)
        return cls(tok)

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int], strip: bool = True) -> str:
        kept = []
        for i in ids:
            i = int(i)
            if strip and i == EOS_ID:
                break
            if strip and i in (PAD_ID, BOS_ID):
                continue
            kept.append(i)
        return self.tokenizer.decode(kept, skip_special_tokens=False)

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokenizer": self.tokenizer.to_str()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BPETokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(d["tokenizer"]))


def vocab_size_of(tokenizer: Tokenizer) -> int:
    """Number of ids a tokenizer gives out (specials included): a model's embedding rows."""
    vocab = getattr(tokenizer, "vocab", None)
    return len(vocab) if vocab is not None else len(tokenizer)


def build_tokenizer(
    kind: str,
    texts: Iterable[str],
    *,
    vocab_size: int | None = None,
    min_freq: int = 1,
    lowercase: bool = False,
) -> Tokenizer:
    """Fit a tokenizer of ``kind`` ("char", "word" or "bpe") on ``texts`` (the training part).

    Args:
        vocab_size: Largest vocabulary, specials included (None: every token kept for char and
            word, 1000 for bpe).
        min_freq: Keep tokens (char, word) or merges (bpe) seen at least this often.
        lowercase: Lower-case texts first (word and bpe; characters keep their case).
    """
    texts = list(texts)
    if kind == "char":
        return CharTokenizer.fit(texts, min_freq, vocab_size)
    if kind == "word":
        return WordTokenizer.fit(texts, lowercase, min_freq, vocab_size)
    if kind == "bpe":
        return BPETokenizer.fit(texts, vocab_size or BPE_DEFAULT_VOCAB, min_freq, lowercase)
    raise ConfigError(
        f"data.tokenizer: {kind!r} is not a tokenizer (choices: {', '.join(TOKENIZER_KINDS)})"
    )


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    """Restore a tokenizer saved with ``to_dict()`` (e.g. from a run's ``data.json`` extras)."""
    from deepworks.pretrained import WordPieceTokenizer  # a pretrained checkpoint's own

    kinds = {"char": CharTokenizer, "word": WordTokenizer, "bpe": BPETokenizer}
    kinds["wordpiece"] = WordPieceTokenizer
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind not in kinds:
        raise DataError(
            f"tokenizer: {kind!r} is not a saved tokenizer kind (choices: {', '.join(kinds)})"
        )
    return kinds[kind].from_dict(d)

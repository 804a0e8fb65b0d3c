"""A vocabulary maps tokens to ids; a tokenizer maps text to tokens and back.

Every vocabulary starts with the same four special tokens, so their ids are fixed:

====  =======  ==========================================================
id    token    meaning
====  =======  ==========================================================
0     <pad>    fills short sequences up to the batch length (masked out)
1     <unk>    a token never seen in the training text
2     <bos>    begin of sequence (a decoder's first input)
3     <eos>    end of sequence (a decoder stops when it emits it)
====  =======  ==========================================================

A tokenizer is saved with its run as a plain dict (``to_dict`` / ``from_dict``), so ``predict``
and sampling turn new text into the same ids the model was trained on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from deepworks.errors import DataError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)


class Vocab:
    """Tokens ↔ ids, the four special tokens first.

    Args:
        tokens: The ordinary tokens, in id order (specials are prepended).
    """

    def __init__(self, tokens: Iterable[str]):
        self.itos: list[str] = list(SPECIALS) + [t for t in tokens if t not in SPECIALS]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise DataError("vocabulary: a token appears twice; tokens must be unique")

    @classmethod
    def build(cls, tokens: Iterable[str], min_freq: int = 1, max_size: int | None = None) -> Vocab:
        """Count tokens (of the training text only) and keep the frequent ones, most frequent
        first, ties in first-seen order."""
        counts = Counter(tokens)
        kept = [t for t, c in counts.most_common() if c >= min_freq and t not in SPECIALS]
        if max_size is not None:
            kept = kept[: max(0, max_size - len(SPECIALS))]
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(t, UNK_ID) for t in tokens]

    def decode(self, ids: Iterable[int], strip: bool = True) -> list[str]:
        """Ids → tokens; ``strip`` drops padding and stops at the first ``<eos>``."""
        out = []
        for i in ids:
            i = int(i)
            if strip and i == EOS_ID:
                break
            if strip and i in (PAD_ID, BOS_ID):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return out


class CharTokenizer:
    """One token per character (``unk`` for characters not seen in the training text).

    Example:
        >>> tok = CharTokenizer.fit(["hello"])
        >>> tok.decode(tok.encode("hole"))
        'hole'
    """

    kind = "char"

    def __init__(self, vocab: Vocab):
        self.vocab = vocab

    @classmethod
    def fit(cls, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None):
        return cls(Vocab.build((c for text in texts for c in text), min_freq, max_size))

    def tokenize(self, text: str) -> list[str]:
        return list(text)

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(self.tokenize(text))

    def decode(self, ids: Iterable[int], strip: bool = True) -> str:
        return "".join(self.vocab.decode(ids, strip))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokens": self.vocab.itos[len(SPECIALS) :]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        return cls(Vocab(d["tokens"]))


def pad_batch(
    sequences: Sequence[Sequence[int]],
    max_len: int | None = None,
    bos: bool = False,
    eos: bool = False,
) -> tuple[torch.Tensor, int]:
    """Id lists → a (N, L) int64 tensor padded with ``PAD_ID`` (0), and how many were truncated.

    Args:
        max_len: Cut longer sequences to this length (after adding bos/eos); None: the longest.
        bos, eos: Put ``<bos>`` before / ``<eos>`` after each sequence.
    """
    seqs = [([BOS_ID] if bos else []) + list(s) + ([EOS_ID] if eos else []) for s in sequences]
    longest = max((len(s) for s in seqs), default=0)
    length = longest if max_len is None else max_len
    truncated = sum(len(s) > length for s in seqs)
    out = torch.full((len(seqs), max(length, 1)), PAD_ID, dtype=torch.int64)
    for i, s in enumerate(seqs):
        s = s[:length]
        out[i, : len(s)] = torch.tensor(s, dtype=torch.int64)
    return out, truncated

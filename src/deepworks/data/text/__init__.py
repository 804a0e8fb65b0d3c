"""Text as token ids: vocabularies, tokenizers and text datasets."""

from deepworks.data.text import (  # noqa: F401  (registers text datasets)
    corpus,
    datasets,
    dates,
    docstrings,
)
from deepworks.data.text.tokenizers import (
    BPETokenizer,
    WordTokenizer,
    build_tokenizer,
    tokenizer_from_dict,
)
from deepworks.data.text.vocab import BOS, EOS, PAD, SPECIALS, UNK, CharTokenizer, Vocab, pad_batch

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "SPECIALS",
    "UNK",
    "BPETokenizer",
    "CharTokenizer",
    "Vocab",
    "WordTokenizer",
    "build_tokenizer",
    "pad_batch",
    "tokenizer_from_dict",
]

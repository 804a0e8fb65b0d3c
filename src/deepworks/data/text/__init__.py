"""Text as token ids: vocabularies, tokenizers and text datasets."""

from deepworks.data.text.vocab import BOS, EOS, PAD, SPECIALS, UNK, CharTokenizer, Vocab, pad_batch

__all__ = ["BOS", "EOS", "PAD", "SPECIALS", "UNK", "CharTokenizer", "Vocab", "pad_batch"]

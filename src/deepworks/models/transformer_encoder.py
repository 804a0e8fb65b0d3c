"""A BERT-style Transformer encoder over token ids, for text classification and tagging.

**Embeddings.** Each token id becomes the sum of three learned vectors — what the token is,
where it stands, and which segment (sentence A or B) it belongs to — normalized::

    h_0 = LayerNorm(E_tok[x_t] + E_pos[t] + E_type[s_t])                     (B, L, D)

The position table has ``max_len`` rows, so a longer input is refused (one-line error).

**Blocks** (Vaswani et al., 2017; Devlin et al., 2019). ``depth`` identical post-norm blocks,
each self-attention then a two-layer MLP, both wrapped in a residual connection followed by
LayerNorm (the original, *post-norm* arrangement that BERT checkpoints were trained with)::

    a   = softmax(Q K^T / sqrt(d_head) + mask) V        per head, Q, K, V = h W_q, h W_k, h W_v
    h'  = LayerNorm(h + Dropout(a W_o))
    h'' = LayerNorm(h' + Dropout(W_2 GELU(W_1 h')))

Padding never takes part: the attention mask gives padded keys a weight of exactly zero, so
the states of real tokens do not depend on how much padding follows them. Inputs are padded on
the right, so the padding is the run of ``pad_id`` after a text's last token; a ``pad_id``
inside the text (a user's literal ``[PAD]``, which BERT's tokenizer maps to the pad id) is a
token like any other, as in the tokenizer's own attention mask. ``encode`` also takes that mask
explicitly.

**Pooling and heads.** ``output="last"`` pools one vector per text — ``pooling="cls"`` the
state of the first token (``[CLS]`` in BERT's vocabulary), ``pooling="mean"`` the average over
real tokens (what sentence-transformers use) — and a linear head gives (B, num_classes).
``output="sequence"`` keeps every position: (B, L, num_classes) for tagging or masked language
modelling.

**Pretrained weights.** ``weights: minilm`` (the packaged all-MiniLM-L6-v2) or the path of a
BERT-format directory reads the architecture from its ``config.json`` and copies its tensors
(see :mod:`deepworks.pretrained`); only the head starts fresh. Sizes given explicitly must
agree with the checkpoint. This is separate from ``model.pretrained`` (a deepworks run).
:func:`from_pretrained` gives the model and the checkpoint's own tokenizer in one call.

Shapes::

    token ids (B, L) -> embeddings (B, L, D) -> depth x block -> states (B, L, D)
    output="last":     pool -> (B, D) -> head -> (B, num_classes)
    output="sequence": (B, L, D) -> head -> (B, L, num_classes)
"""

from __future__ import annotations

import os
from typing import Any, Literal

import torch
from torch import nn

from deepworks.errors import ConfigError
from deepworks.layers.attention import LearnedPositions, TransformerBlock
from deepworks.models.base import Model
from deepworks.pretrained import (
    MINILM,
    WordPieceTokenizer,
    check_vocab,
    load_weights,
    read_config,
    sequence_length,
)
from deepworks.registry import (
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    register_model,
)

#: Sizes a checkpoint's config.json fixes, and their defaults without one.
ARCH_DEFAULTS = {
    "vocab_size": None,
    "dim": 256,
    "depth": 4,
    "num_heads": 4,
    "mlp_dim": None,  # 4 * dim
    "max_len": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "activation": "gelu",
    "pad_id": 0,
}


@register_model("transformer_encoder")
class TransformerEncoder(Model):
    """BERT-style encoder (token + position + segment embeddings, post-norm blocks).

    Args:
        num_classes: Outputs per text (``output="last"``) or per token ("sequence").
        vocab_size: Rows of the token embedding (from the data's tokenizer, or the weights).
        dim: Width of the token states.
        depth: Number of blocks.
        num_heads: Attention heads per block (``dim`` must divide evenly).
        mlp_dim: Hidden width of each block's MLP (default ``4 * dim``).
        max_len: Rows of the position table: the longest input.
        dropout: Dropout on embeddings, attention probabilities, residual branches and before
            the head (BERT: 0.1).
        pad_id: The padding id; padded positions are masked out of attention and pooling.
        output: "last" (one output per text) or "sequence" (one per token).
        pooling: For ``output="last"``: "cls" (the first token's state) or "mean" (over real
            tokens).
        type_vocab_size: Rows of the segment embedding.
        layer_norm_eps: LayerNorm epsilon (BERT: 1e-12).
        activation: The MLP's activation, "gelu" (exact) or "relu".
        weights: ``"minilm"`` or a BERT-format directory to initialize the encoder from;
            the sizes above are then read from its config.json.
    """

    default_grad_clip_norm = 1.0

    # hints for the registry tests: right-padded token ids of different lengths
    example_kwargs = {"vocab_size": 13, "dim": 16, "depth": 2, "num_heads": 2, "max_len": 16}
    example_input_shape = (7,)

    @staticmethod
    def example_input(n: int, generator: torch.Generator) -> torch.Tensor:
        x = torch.randint(1, 13, (n, 7), generator=generator)
        lengths = torch.randint(2, 8, (n,), generator=generator)
        lengths[0] = 7  # one full-length sequence
        return x.masked_fill(torch.arange(7) >= lengths[:, None], 0)

    def __init__(
        self,
        num_classes: PositiveInt,
        vocab_size: PositiveInt | None = None,
        dim: PositiveInt | None = None,
        depth: PositiveInt | None = None,
        num_heads: PositiveInt | None = None,
        mlp_dim: PositiveInt | None = None,
        max_len: PositiveInt | None = None,
        dropout: Probability = 0.1,
        pad_id: NonNegativeInt | None = None,
        output: Literal["last", "sequence"] = "last",
        pooling: Literal["cls", "mean"] = "mean",
        type_vocab_size: PositiveInt | None = None,
        layer_norm_eps: PositiveFloat | None = None,
        activation: Literal["gelu", "relu"] | None = None,
        weights: str | None = None,
    ):
        super().__init__()
        given = {
            "vocab_size": vocab_size, "dim": dim, "depth": depth, "num_heads": num_heads,
            "mlp_dim": mlp_dim, "max_len": max_len, "type_vocab_size": type_vocab_size,
            "layer_norm_eps": layer_norm_eps, "activation": activation, "pad_id": pad_id,
        }  # fmt: skip
        arch = self._resolve(given, weights)
        self._init_config.update(arch)  # config.yaml records the sizes actually built
        if arch["vocab_size"] is None:
            raise ConfigError("model: set vocab_size (the tokenizer's) or weights")
        if arch["dim"] % arch["num_heads"]:
            raise ConfigError(
                f"model.num_heads: dim {arch['dim']} is not divisible by {arch['num_heads']} heads"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout: {dropout} must be in [0, 1)")
        if pooling not in ("cls", "mean") or output not in ("last", "sequence"):
            raise ConfigError("model: pooling must be cls or mean, output last or sequence")
        D = arch["dim"]
        self.output, self.pooling = output, pooling
        self.pad_id, self.max_len = arch["pad_id"], arch["max_len"]
        self.token_embedding = nn.Embedding(arch["vocab_size"], D, padding_idx=self.pad_id)
        self.position_embedding = LearnedPositions(D, arch["max_len"])
        self.token_type_embedding = nn.Embedding(arch["type_vocab_size"], D)
        self.embed_norm = nn.LayerNorm(D, eps=arch["layer_norm_eps"])
        self.embed_drop = nn.Dropout(dropout)
        # +0.5: the block's MLP width is int(D * mlp_ratio), which must come out as mlp_dim
        # exactly despite float rounding (a checkpoint's tensors have that width)
        ratio = (arch["mlp_dim"] + 0.5) / D
        self.blocks = nn.ModuleList(
            TransformerBlock(
                D,
                arch["num_heads"],
                ratio,
                dropout,
                arch["activation"],
                norm_first=False,
                layer_norm_eps=arch["layer_norm_eps"],
            )  # fmt: skip
            for _ in range(arch["depth"])
        )
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Linear(D, num_classes)
        self.apply(self._init_weights)
        if weights is not None:
            load_weights(self, weights)

    @staticmethod
    def _resolve(given: dict, weights: str | None) -> dict:
        """Explicit sizes, else the checkpoint's, else the defaults; a conflict is an error."""
        arch = dict(ARCH_DEFAULTS)
        if weights is not None:
            saved = read_config(weights)
            for key, value in given.items():
                if value is not None and value != saved[key]:
                    fix = (
                        "tokenize with the weights' own tokenizer (data.tokenizer: pretrained)"
                        if key == "vocab_size"
                        else "leave it out"
                    )
                    raise ConfigError(
                        f"model.{key}: {value} does not match {saved[key]} of the weights "
                        f"{weights!r} (config.json); {fix}"
                    )
            arch |= saved
        arch |= {k: v for k, v in given.items() if v is not None}
        if arch["mlp_dim"] is None:
            arch["mlp_dim"] = 4 * arch["dim"]
        return arch

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # BERT's initialization: N(0, 0.02) weights, zero biases, unit LayerNorm
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                nn.init.zeros_(m.weight[m.padding_idx])

    # --- the encoder ---------------------------------------------------------------------------
    def _embed(self, x: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        if x.ndim != 2 or x.is_floating_point():
            raise ConfigError(
                f"model: transformer_encoder takes token ids (B, L) int64, got "
                f"{x.dtype} of shape {tuple(x.shape)}; use a text dataset"
            )
        length = x.shape[1]
        if length > self.max_len:
            raise ConfigError(
                f"model: input longer than the position table: {length} tokens > max_len="
                f"{self.max_len}; cut the input (data.max_len) or raise model.max_len"
            )
        positions = torch.arange(length, device=x.device)
        types = torch.zeros_like(x) if token_type_ids is None else token_type_ids
        h = self.token_embedding(x) + self.position_embedding(positions)
        h = h + self.token_type_embedding(types)
        return self.embed_drop(self.embed_norm(h))  # (B, L, D)

    def _padding(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L), True = padding (masked out as a key): the positions after the last token
        that is not ``pad_id``. Right padding only, so a ``pad_id`` inside a text is a token."""
        positions = torch.arange(x.shape[1], device=x.device)  # (L,)
        last = torch.where(x != self.pad_id, positions, -1).amax(1, keepdim=True)  # (B, 1)
        return positions > last

    def encode(
        self,
        x: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final token states (B, L, D) of token ids x (B, L).

        ``attention_mask`` (B, L), True (or 1) at the tokens of the texts, is the tokenizer's;
        without it the padding is the trailing run of ``pad_id`` (see :meth:`_padding`).
        """
        h = self._embed(x, token_type_ids)
        padding = self._padding(x) if attention_mask is None else ~attention_mask.bool()
        for block in self.blocks:
            h, _ = block(h, key_padding_mask=padding)
        return h

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Self-attention probabilities of every block: one (B, H, L, L) tensor per layer."""
        h, padding = self._embed(x, None), self._padding(x)
        maps = []
        for block in self.blocks:
            h, weights = block(h, key_padding_mask=padding, need_weights=True)
            maps.append(weights)
        return maps

    def pool(self, states: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One vector per text (B, D): the first token's state, or the mean over real tokens."""
        if self.pooling == "cls":
            return states[:, 0]
        mask = (~self._padding(x)).unsqueeze(-1).to(states.dtype)  # (B, L, 1)
        return (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        states = self.encode(x)  # (B, L, D)
        return states if self.output == "sequence" else self.pool(states, x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_drop(features))


def from_pretrained(
    source: str | os.PathLike = MINILM, num_classes: int = 2, **kwargs: Any
) -> tuple[TransformerEncoder, WordPieceTokenizer]:
    """(model, tokenizer) from a BERT-format directory or ``"minilm"``.

    Args:
        source: The directory, or ``"minilm"`` for the packaged all-MiniLM-L6-v2.
        num_classes: Width of the (freshly initialized) output head.
        **kwargs: Further :class:`TransformerEncoder` arguments (``output``, ``pooling``,
            ``dropout``, ...); architecture sizes are read from ``config.json``.

    Example:
        >>> from deepworks.pretrained import sentence_embeddings
        >>> model, tok = from_pretrained("minilm")
        >>> sentence_embeddings(model, tok, ["a cat", "a dog"]).shape
        torch.Size([2, 384])
    """
    model = TransformerEncoder(num_classes=num_classes, weights=str(source), **kwargs)
    tokenizer = WordPieceTokenizer.from_dir(source, max_len=sequence_length(source, model))
    check_vocab(tokenizer, model)
    return model, tokenizer

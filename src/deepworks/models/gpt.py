"""GPT: a decoder-only transformer language model (Radford et al., 2018/2019; nanoGPT layout).

A GPT predicts every next token of a sequence at once. Token ids are embedded, a position
signal is added, and ``depth`` pre-norm transformer blocks with *causal* self-attention (position
``i`` sees tokens ``0..i`` only, so it cannot read the token it must predict) turn the vectors
into a final LayerNorm and a linear head over the vocabulary::

    ids (B, L) -> tok_emb + pos (B, L, D) -> [x = x + attn(LN(x)); x = x + mlp(LN(x))] x depth
               -> LN (B, L, D) -> head (B, L, V) logits of token t+1 at every position t

Training is teacher-forced next-token cross-entropy over all positions of a window in one
parallel pass (no recurrence to unroll), which is what makes transformers fast to train.

**Positions.** ``learned`` (GPT-2): a trained table of ``max_len`` vectors; ``sinusoidal``: the
fixed sine/cosine vectors of the original Transformer; ``rotary`` (RoPE): queries and keys are
rotated by their position inside every attention layer, so scores depend on relative offsets
(see :mod:`deepworks.layers.attention`).

**Context window.** The model reads at most ``max_len`` tokens at a time (``context_length``).
A longer input is read in overlapping windows of ``max_len`` with a stride of ``max_len // 2``:
the first window gives the outputs of its positions, each later one only those of its newest
half, so every position past the first window is predicted from at least ``max_len // 2``
tokens of history, with positions the model was trained on.

**Generation with a key/value cache.** Sampling token ``t`` from scratch re-runs the model on
the whole prefix: O(t) tokens of work per new token. :meth:`GPT.forward_with_cache` keeps each
layer's keys and values (:class:`GPTCache`), so after the prompt each new token is one position
of work plus an attention over the cached keys. When the window is full, the last ``max_len``
tokens are re-read from scratch, which is exactly what the uncached generation does, so both
give the same tokens.

**Weight tying** (``tie_weights``): the output head shares its (V, D) matrix with the token
embedding (Press & Wolf, 2017): fewer parameters, and often a slightly better model.

**Initialization** follows GPT-2: weights N(0, 0.02), and the projections that write into the
residual stream (attention output, second MLP layer) scaled by ``1/sqrt(2 * depth)`` so the
residual's variance does not grow with depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from deepworks.errors import ConfigError
from deepworks.layers.attention import (
    KVCache,
    LearnedPositions,
    RotaryEmbedding,
    SinusoidalPositions,
    TransformerBlock,
)
from deepworks.models.base import Model
from deepworks.registry import (
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    register_model,
)

POSITIONS = ("learned", "sinusoidal", "rotary")


def _tied(model: GPT) -> bool:
    return model.head.weight is model.tok_emb.weight


def _drop_tied_head(model: GPT, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    if _tied(model):
        state_dict.pop(prefix + "head.weight", None)


def _restore_tied_head(model: GPT, state_dict: dict, prefix: str, *args) -> None:
    key, source = prefix + "head.weight", prefix + "tok_emb.weight"
    if _tied(model) and key not in state_dict and source in state_dict:
        state_dict[key] = state_dict[source]


@dataclass
class GPTCache:
    """What :meth:`GPT.forward_with_cache` carries from one step to the next.

    ``layers``: one :class:`KVCache` per block; ``ids``: (B, T) every token read so far (for
    the padding mask, and to re-read the window when it is full).
    """

    layers: list[KVCache]
    ids: Tensor

    @property
    def length(self) -> int:
        return self.layers[0].length if self.layers else 0


@register_model("gpt")
class GPT(Model):
    """Decoder-only transformer language model: (B, L) token ids -> (B, L, num_classes) logits.

    Args:
        num_classes: Output width, the vocabulary size of the predicted tokens.
        vocab_size: Input vocabulary (None: ``num_classes``).
        dim: Model width D.
        depth: Number of transformer blocks.
        num_heads: Attention heads per block (``dim`` must be divisible by it).
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        max_len: Context window: the most tokens read at once (the learned position table).
        dropout: Dropout on embeddings, attention probabilities and residual branches.
        positions: "learned", "sinusoidal" or "rotary".
        tie_weights: Share the output head's weights with the token embedding (needs
            ``num_classes == vocab_size``).
        pad_id: Padding token id: keys holding it are masked out of attention. ``None``: the data
            has no padding (no mask, and no look at the batch on the host: no GPU sync).
        bias: Biases in the linear layers and LayerNorms.
    """

    default_grad_clip_norm = 1.0

    # hints for the registry tests: token ids
    example_kwargs = {"vocab_size": 11, "dim": 16, "depth": 2, "num_heads": 2, "max_len": 16}
    example_input_shape = (7,)

    @staticmethod
    def example_input(n: int, generator: torch.Generator) -> Tensor:
        return torch.randint(1, 11, (n, 7), generator=generator)

    def __init__(
        self,
        num_classes: PositiveInt,
        vocab_size: PositiveInt | None = None,
        dim: PositiveInt = 128,
        depth: PositiveInt = 4,
        num_heads: PositiveInt = 4,
        mlp_ratio: PositiveFloat = 4.0,
        max_len: PositiveInt = 256,
        dropout: Probability = 0.0,
        positions: Literal["learned", "sinusoidal", "rotary"] = "learned",
        tie_weights: bool = False,
        pad_id: NonNegativeInt | None = 0,
        bias: bool = True,
    ):
        super().__init__()
        vocab_size = num_classes if vocab_size is None else vocab_size
        if positions not in POSITIONS:
            raise ConfigError(
                f"model.positions: {positions!r} is not one of {', '.join(POSITIONS)}"
            )
        if max_len < 2:
            raise ConfigError(f"model.max_len: {max_len} must be >= 2")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout: {dropout} must be in [0, 1)")
        if dim % num_heads:
            raise ConfigError(f"model.dim: {dim} is not divisible by num_heads {num_heads}")
        if tie_weights and num_classes != vocab_size:
            raise ConfigError(
                f"model.tie_weights: the head ({num_classes} outputs) and the embedding "
                f"({vocab_size} tokens) must have the same vocabulary; set tie_weights: false"
            )
        self.max_len = max_len
        self.context_length = max_len  # generate() cuts the window to this many tokens
        self.pad_id = pad_id
        self.positions = positions
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.pos_emb: nn.Module | None = None
        rotary = None
        if positions == "learned":
            self.pos_emb = LearnedPositions(dim, max_len)
        elif positions == "sinusoidal":
            self.pos_emb = SinusoidalPositions(dim)
        else:
            rotary = RotaryEmbedding(dim // num_heads)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                dim,
                num_heads,
                mlp_ratio,
                dropout,
                "gelu",
                norm_first=True,
                rotary=rotary,
                bias=bias,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, bias=bias)
        self.head = nn.Linear(dim, num_classes, bias=not tie_weights)
        self._init_weights(depth)
        if tie_weights:
            self.head.weight = self.tok_emb.weight
        # a state dict holds the shared matrix once (safetensors refuses tensors that share
        # memory); loading copies it back into the head's key
        self._register_state_dict_hook(_drop_tied_head)
        self.register_load_state_dict_pre_hook(_restore_tied_head)
        self.last_attention: list[Tensor] = []

    def _init_weights(self, depth: int) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for block in self.blocks:  # residual-stream writers
            for layer in (block.attn.out_proj, block.mlp.fc2):
                nn.init.normal_(layer.weight, std=0.02 / math.sqrt(2 * depth))

    # --- the network ------------------------------------------------------------------------

    def _embed(self, x: Tensor, offset: int = 0) -> Tensor:
        h = self.tok_emb(x)  # (B, L, D)
        if isinstance(self.pos_emb, LearnedPositions):  # bound checked on the host: no sync
            h = h + self.pos_emb.span(offset, x.shape[1], x.device)
        elif self.pos_emb is not None:
            h = h + self.pos_emb(torch.arange(offset, offset + x.shape[1], device=x.device))
        return self.drop(h)

    def _padding(self, ids: Tensor) -> Tensor | None:
        """(B, T) True at padding keys, or None when there is none (the fast causal path).

        Finding out reads the batch on the host (a sync per forward on a GPU); ``pad_id: null``
        declares that the data has no padding and skips it."""
        if self.pad_id is None:
            return None
        pad = ids == self.pad_id
        return pad if bool(pad.any()) else None

    def _window(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """Final hidden states (B, L, D) of at most ``max_len`` tokens, and attention maps."""
        h = self._embed(x)
        padding = self._padding(x)
        maps = []
        for block in self.blocks:
            h, w = block(h, key_padding_mask=padding, causal=True, need_weights=need_weights)
            if w is not None:
                maps.append(w)
        return self.norm(h), maps

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, L) ids -> (B, L, D) final hidden states (windows of ``max_len`` when longer)."""
        if x.is_floating_point():
            raise ValueError("GPT takes token ids (int64), not floats")
        length = x.shape[1]
        if length <= self.max_len:
            return self._window(x)[0]
        outs = [self._window(x[:, : self.max_len])[0]]
        done, stride = self.max_len, self.max_len // 2
        while done < length:
            end = min(done + stride, length)
            h = self._window(x[:, end - self.max_len : end])[0]
            outs.append(h[:, -(end - done) :])  # only the positions not predicted yet
            done = end
        return torch.cat(outs, dim=1)

    def forward_with_cache(
        self, x: Tensor, cache: GPTCache | None = None
    ) -> tuple[Tensor, GPTCache]:
        """Logits of the new tokens ``x`` (B, L) given the tokens in ``cache`` (None: none).

        Returns (logits (B, L', V), cache) with ``L' = min(L, max_len)``. Each layer's keys and
        values are appended to the cache, so the next call reads only its new tokens. When the
        window would overflow ``max_len``, the last ``max_len`` tokens are read afresh.
        """
        ids = x if cache is None else torch.cat([cache.ids, x], dim=1)
        if cache is None or ids.shape[1] > self.max_len:
            ids = ids[:, -self.max_len :]  # (re)start from the window's tokens
            cache = GPTCache([KVCache() for _ in self.blocks], ids[:, :0])
            x = ids
        offset = cache.length
        cache.ids = ids
        h = self._embed(x, offset)
        padding = self._padding(ids)
        for block, layer_cache in zip(self.blocks, cache.layers, strict=True):
            h, _ = block(h, key_padding_mask=padding, causal=True, cache=layer_cache)
        return self.head(self.norm(h)), cache

    @torch.no_grad()
    def attention_maps(self, x: Tensor) -> list[Tensor]:
        """Self-attention probabilities of every block: a list of (B, H, L, L), L <= max_len.

        Only the last ``max_len`` tokens of a longer input are read. The maps are also kept in
        ``self.last_attention``.
        """
        self.last_attention = self._window(x[:, -self.max_len :], need_weights=True)[1]
        return self.last_attention

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        self._init_config["tie_weights"] = False  # the new head has weights of its own

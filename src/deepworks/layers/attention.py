"""Transformer building blocks: multi-head attention, key/value cache, positions, blocks.

**Scaled dot-product attention.** Each query vector ``q_i`` compares itself with every key
``k_j`` and takes a weighted average of the values ``v_j``::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V

with ``Q`` (L, d) queries, ``K`` (S, d) keys and ``V`` (S, d) values. Dividing by ``sqrt(d)``
keeps the variance of the dot products near 1 whatever the width ``d``, so the softmax does
not saturate (one-hot weights, vanishing gradients) in wide layers. Row ``i`` of the softmax is
a probability distribution over the S keys: *where position i looks*.

**Heads.** Multi-head attention projects the input ``x`` (L, D) to queries, keys and values
with learned matrices, splits the width D into ``H`` heads of ``d = D / H`` and runs attention
in every head independently; the heads' outputs are concatenated and mixed by an output
projection::

    head_h = Attention(x W_q^h, c W_k^h, c W_v^h)        (c = x: self-attention,
    MHA(x, c) = concat(head_1 .. head_H) W_o              c = encoder output: cross-attention)

Different heads learn to look for different things (the previous token, a matching bracket,
the subject of a verb) at the cost of one attention of full width.

**Masks.** A mask removes query/key pairs before the softmax by adding ``-inf`` (here the most
negative float, so a row with no allowed key gives uniform weights instead of NaN) to their
scores:

- *padding mask* (``key_padding_mask`` (B, S), True = padding): padded keys get weight 0;
- *causal mask* (``causal=True``): position ``i`` sees keys ``j <= i`` only, so a language model
  cannot read the token it must predict. With a :class:`KVCache` holding ``T`` earlier steps,
  the new queries are positions ``T..T+L-1`` and query ``i`` sees keys ``j <= T + i``;
- ``attn_mask``: any other mask broadcastable to (B, H, L, S): bool with True = *not allowed*
  (the ``torch.nn.MultiheadAttention`` convention), or float, added to the scores.

The fast path calls ``F.scaled_dot_product_attention`` (fused flash / memory-efficient kernels
where the device has them, never materializing the (L, S) matrix). When the attention
probabilities are asked for (``need_weights``), the explicit ``softmax(QK^T/sqrt(d))V`` is
computed instead; both give the same result.

**Incremental decoding.** A decoder generating token ``t`` would recompute the keys and values
of tokens ``0..t-1`` at every step, O(t) work per token for the projections alone. A
:class:`KVCache` keeps them: each step projects only the new token and appends its key and
value, so the attention over the whole prefix costs one (1, t) product.

**Positions.** Attention is permutation-invariant: shuffling the keys shuffles nothing in the
output. Order enters through positions:

- :class:`SinusoidalPositions` (Vaswani et al., 2017): fixed vectors
  ``PE[p, 2i] = sin(p / 10000^(2i/D))``, ``PE[p, 2i+1] = cos(p / 10000^(2i/D))`` added to the
  token embeddings; defined for any length;
- :class:`LearnedPositions` (GPT-2, BERT): a trained table of ``max_len`` vectors; inputs longer
  than the table are an error;
- :class:`RotaryEmbedding` (RoPE, Su et al., 2021): rotate each pair of query/key features
  by an angle ``p * theta_i`` proportional to the position. Since rotations compose,
  ``<R(p) q, R(s) k> = <q, R(s - p) k>``: the attention score depends on the *relative*
  position ``s - p`` only, and nothing is added to the residual stream.

**Transformer block.** :class:`TransformerBlock` = self-attention, optional cross-attention to
a context (an encoder's output) and a two-layer MLP (``D -> mlp_ratio * D -> D``), each wrapped
in a residual connection with LayerNorm. *Post-norm* (the original Transformer, BERT) normalizes
after the residual sum, ``x = LN(x + f(x))``; *pre-norm* (GPT-2, ViT) normalizes the branch
input, ``x = x + f(LN(x))``, which keeps an identity path from input to output and trains deep
stacks stably without learning-rate warmup.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepworks.errors import ConfigError
from deepworks.layers.common import activation as make_activation

__all__ = [
    "KVCache",
    "LearnedPositions",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "SinusoidalPositions",
    "TransformerBlock",
]


class KVCache:
    """The keys and values one attention layer has seen so far, for incremental decoding.

    ``k`` and ``v`` are (B, H, T, d) tensors (None while empty), grown along T by
    :meth:`append`. One cache per layer; :class:`MultiHeadAttention` appends to it in place.
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None

    @property
    def length(self) -> int:
        """T, the number of positions cached (0 when empty)."""
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add the keys/values of new positions (B, H, L, d); returns all of them (B, H, T+L, d)."""
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=2)
            self.v = torch.cat([self.v, v], dim=2)
        return self.k, self.v

    def reset(self) -> None:
        self.k = None
        self.v = None


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal position vectors (no parameters, any length).

    ``PE[p, 2i] = sin(p * w_i)``, ``PE[p, 2i+1] = cos(p * w_i)`` with ``w_i = base^(-2i/D)``:
    wavelengths from 2*pi to about ``2*pi*base``, and ``PE[p + k]`` is a fixed linear function
    (a rotation) of ``PE[p]``, which lets attention pick out relative offsets.
    """

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ConfigError(f"model.dim: {dim} must be even for sinusoidal positions")
        self.dim = dim
        freqs = base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # (D/2,)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        """positions (L,) or (B, L) integers -> (L, D) or (B, L, D) position vectors."""
        angles = positions.to(self.freqs.dtype).unsqueeze(-1) * self.freqs  # (.., L, D/2)
        # interleave: even features sin, odd features cos
        return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class LearnedPositions(nn.Module):
    """A trained position table: ``max_len`` vectors of width ``dim`` (GPT-2, BERT)."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, dim)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, positions: Tensor) -> Tensor:
        """positions (L,) or (B, L) integers -> (L, D) or (B, L, D) position vectors."""
        if positions.numel() and int(positions.max()) >= self.max_len:
            raise ConfigError(
                f"input longer than the position table: {int(positions.max()) + 1} > max_len "
                f"{self.max_len}; raise model.max_len or cut the input"
            )
        return self.embedding(positions)

    def span(self, start: int, length: int, device: torch.device) -> Tensor:
        """Vectors of positions ``start .. start + length - 1``: (length, D). The bound is checked
        on the host, so no device value is read (no sync on a GPU)."""
        if start + length > self.max_len:
            raise ConfigError(
                f"input longer than the position table: {start + length} > max_len "
                f"{self.max_len}; raise model.max_len or cut the input"
            )
        return self.embedding(torch.arange(start, start + length, device=device))


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE), applied to the queries and keys of every head.

    Features are paired ``(x_i, x_{i + d/2})`` (the GPT-NeoX / LLaMA layout) and each pair at
    position ``p`` is rotated by the angle ``p * theta_i``, ``theta_i = base^(-2i/d)``::

        x' = x * cos(p theta) + rotate_half(x) * sin(p theta),  rotate_half(x) = (-x2, x1)

    Rotations compose, so the score of query ``p`` and key ``s`` depends on ``s - p`` only.

    Args:
        head_dim: Width of one head (even); ``dim / num_heads`` of the attention layer.
        base: Sets the longest wavelength (``2*pi*base`` positions).
    """

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ConfigError(f"rotary positions: head width {head_dim} must be even")
        self.head_dim = head_dim
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: Tensor, offset: int = 0, positions: Tensor | None = None) -> Tensor:
        """Rotate x (B, H, L, d) as positions ``offset .. offset + L - 1`` (or ``positions``)."""
        if positions is None:
            positions = torch.arange(offset, offset + x.shape[-2], device=x.device)
        angles = positions.to(self.inv_freq.dtype).unsqueeze(-1) * self.inv_freq  # (L, d/2)
        angles = torch.cat([angles, angles], dim=-1)  # (L, d): pair i with i + d/2
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class MultiHeadAttention(nn.Module):
    """Multi-head attention on ``F.scaled_dot_product_attention``; self- or cross-attention.

    Args:
        dim: Model width D (queries and output); split into ``num_heads`` heads of D / H.
        num_heads: Number of heads H.
        dropout: Dropout on the attention probabilities (training only).
        bias: Biases in the four projections.
        kdim: Width of the context keys/values are computed from (cross-attention from an
            encoder of another width); None: ``dim``.
        rotary: Rotate queries and keys by their positions (self-attention only).

    The projections are separate ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` linear layers,
    so pretrained weights map onto them one to one.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        rotary: RotaryEmbedding | None = None,
    ):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"model.dim: {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        kdim = dim if kdim is None else kdim
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(kdim, dim, bias=bias)
        self.v_proj = nn.Linear(kdim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.rotary = rotary

    def _heads(self, t: Tensor) -> Tensor:
        """(B, L, D) -> (B, H, L, d)."""
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def _mask(
        self,
        q: Tensor,
        k: Tensor,
        attn_mask: Tensor | None,
        key_padding_mask: Tensor | None,
        causal: bool,
        offset: int,
    ) -> Tensor | None:
        """One additive float mask broadcastable to (B, H, L, S), or None if nothing is masked."""
        length, keys = q.shape[2], k.shape[2]
        blocked: Tensor | None = None  # bool, True = not allowed
        if causal and not (length == 1 and offset == keys - 1):  # one new token sees all
            query_pos = torch.arange(offset, offset + length, device=q.device)[:, None]
            blocked = torch.arange(keys, device=q.device)[None, :] > query_pos  # (L, S)
        if key_padding_mask is not None:
            pad = key_padding_mask.to(torch.bool)[:, None, None, :]  # (B, 1, 1, S)
            blocked = pad if blocked is None else blocked | pad
        additive: Tensor | None = None
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                blocked = attn_mask if blocked is None else blocked | attn_mask
            else:
                additive = attn_mask.to(q.dtype)
        if blocked is None:
            return additive
        # the most negative finite value, not -inf: a row with every key blocked gets uniform
        # weights instead of NaN (e.g. a padded query whose keys are all padding)
        mask = torch.zeros(blocked.shape, dtype=q.dtype, device=q.device)
        mask = mask.masked_fill(blocked, torch.finfo(q.dtype).min)
        return mask if additive is None else mask + additive

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        attn_mask: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``x`` (B, L, D) to ``context`` (B, S, kdim) or to itself.

        Args:
            key_padding_mask: (B, S) bool, True = padding (the key gets weight 0).
            attn_mask: Bool (True = not allowed) or additive float, broadcastable to
                (B, H, L, S).
            causal: Query i attends to keys j <= i (offset by the cache length).
            cache: Self-attention: the new keys/values are appended to it and attention runs
                over all cached positions. Cross-attention: the context's keys/values are
                stored on the first call and reused afterwards (the context does not change
                while decoding).
            need_weights: Also return the attention probabilities (B, H, L, S).

        Returns:
            (output (B, L, D), probabilities (B, H, L, S) or None).
        """
        q = self._heads(self.q_proj(x))
        offset = 0
        if context is None:  # self-attention
            k, v = self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
            offset = cache.length if cache is not None else 0
            if self.rotary is not None:
                q, k = self.rotary(q, offset), self.rotary(k, offset)
            if cache is not None:
                k, v = cache.append(k, v)
        elif cache is not None and cache.length:  # cross-attention, context already projected
            k, v = cache.k, cache.v
        else:
            k, v = self._heads(self.k_proj(context)), self._heads(self.v_proj(context))
            if cache is not None:
                cache.append(k, v)
        dropout = self.dropout if self.training else 0.0
        causal = causal and context is None
        if need_weights:
            mask = self._mask(q, k, attn_mask, key_padding_mask, causal, offset)
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, L, S)
            if mask is not None:
                scores = scores + mask
            weights = scores.softmax(dim=-1)
            out = F.dropout(weights, dropout, self.training) @ v
        else:
            weights = None
            plain_causal = causal and offset == 0 and attn_mask is None and key_padding_mask is None
            if plain_causal:  # the fused kernels build the causal mask themselves
                out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
            else:
                mask = self._mask(q, k, attn_mask, key_padding_mask, causal, offset)
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        b, _, n, _ = out.shape
        out = out.transpose(1, 2).reshape(b, n, self.dim)  # concatenate the heads
        return self.out_proj(out), weights


class TransformerBlock(nn.Module):
    """Self-attention + (optional cross-attention) + MLP, residuals, LayerNorm.

    norm_first=True: pre-norm (GPT-2/ViT), ``x = x + f(LN(x))``; False: post-norm (original
    Transformer / BERT), ``x = LN(x + f(x))``.

    Args:
        dim: Model width D.
        num_heads: Attention heads (D must be divisible by it).
        mlp_ratio: Hidden width of the MLP as a multiple of D.
        dropout: Dropout on the attention probabilities, after the MLP activation and on each
            branch before the residual sum.
        activation: MLP activation by name ("gelu", "relu", ...).
        norm_first: Pre-norm (True) or post-norm (False).
        cross_attention: Add a cross-attention sub-layer attending to ``context`` (a decoder).
        layer_norm_eps: LayerNorm epsilon.
        rotary: Rotary positions for the self-attention (shared between blocks is fine).
        bias: Biases in the linear layers.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        activation: str = "gelu",
        norm_first: bool = True,
        cross_attention: bool = False,
        layer_norm_eps: float = 1e-5,
        rotary: RotaryEmbedding | None = None,
        bias: bool = True,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(dim, num_heads, dropout, bias=bias, rotary=rotary)
        self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.cross_attn: MultiHeadAttention | None = None
        if cross_attention:
            self.cross_attn = MultiHeadAttention(dim, num_heads, dropout, bias=bias)
            self.norm_cross = nn.LayerNorm(dim, eps=layer_norm_eps)
            self.dropout_cross = nn.Dropout(dropout)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(dim, hidden, bias=bias),
                act=make_activation(activation),
                drop=nn.Dropout(dropout),
                fc2=nn.Linear(hidden, dim, bias=bias),
            )
        )
        self.norm2 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.dropout2 = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        key_padding_mask: Tensor | None = None,
        context_padding_mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        need_weights: bool = False,
        cross_cache: KVCache | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, L, D) -> (B, L, D) and the self-attention probabilities (or None).

        ``key_padding_mask`` (B, L) masks padded positions of ``x`` as keys of the
        self-attention, ``context_padding_mask`` (B, S) those of ``context``. ``cache`` holds
        the self-attention keys/values for incremental decoding, ``cross_cache`` the projected
        context (``context`` is still passed on every call).
        """

        def self_attention(h: Tensor) -> tuple[Tensor, Tensor | None]:
            return self.attn(
                h,
                key_padding_mask=key_padding_mask,
                causal=causal,
                cache=cache,
                need_weights=need_weights,
            )

        def cross_attention(h: Tensor) -> Tensor:
            assert self.cross_attn is not None
            out, _ = self.cross_attn(
                h, context, key_padding_mask=context_padding_mask, cache=cross_cache
            )
            return out

        use_cross = self.cross_attn is not None
        if use_cross and context is None:
            raise ConfigError("TransformerBlock: cross_attention needs a context (B, S, D)")
        if self.norm_first:
            h, weights = self_attention(self.norm1(x))
            x = x + self.dropout1(h)
            if use_cross:
                x = x + self.dropout_cross(cross_attention(self.norm_cross(x)))
            x = x + self.dropout2(self.mlp(self.norm2(x)))
        else:
            h, weights = self_attention(x)
            x = self.norm1(x + self.dropout1(h))
            if use_cross:
                x = self.norm_cross(x + self.dropout_cross(cross_attention(x)))
            x = self.norm2(x + self.dropout2(self.mlp(x)))
        return x, weights

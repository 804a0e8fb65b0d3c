r"""Linear attention: attention in time and memory linear in the sequence length.

Softmax attention (Vaswani et al., 2017) compares every query with every key,

.. math::

    \mathrm{out}_i = \frac{\sum_j \exp(q_i^\top k_j / \sqrt{d})\, v_j}
                          {\sum_j \exp(q_i^\top k_j / \sqrt{d})},

so a sequence of length :math:`L` costs :math:`O(L^2 d)` time and, unless a fused kernel avoids
it, :math:`O(L^2)` memory for the score matrix. *Kernelized* linear attention (Katharopoulos et
al., 2020, "Transformers are RNNs") replaces the similarity :math:`\exp(q^\top k)` by a dot
product of feature maps, :math:`\mathrm{sim}(q, k) = \phi(q)^\top \phi(k)` with
:math:`\phi(x) = \mathrm{elu}(x) + 1` (positive, so the weights stay positive). Then the sums
factor: :math:`\phi(q_i)` comes out of the sum over keys,

.. math::

    \mathrm{out}_i = \frac{\phi(q_i)^\top \sum_j \phi(k_j) v_j^\top}
                          {\phi(q_i)^\top \sum_j \phi(k_j) + \varepsilon}
                   = \frac{\phi(q_i)^\top S}{\phi(q_i)^\top z + \varepsilon},
    \qquad S = \phi(K)^\top V \in \mathbb{R}^{d \times d_v},\; z = \phi(K)^\top \mathbf{1}.

:math:`S` and :math:`z` are computed once, in :math:`O(L d d_v)`, and shared by every query:
time :math:`O(L d d_v)` and memory :math:`O(d d_v)` besides the inputs, instead of
:math:`O(L^2 d)` and :math:`O(L^2)`. Padded keys get :math:`\phi(k_j) = 0`, so they drop out of
both sums. (:math:`\varepsilon` keeps a query that sees no key at all, e.g. a padded prefix, at
an output of zero instead of 0/0.)

**Causal** attention sums over :math:`j \le i` only, i.e. prefix sums
:math:`S_i = \sum_{j \le i} \phi(k_j) v_j^\top`, :math:`z_i = \sum_{j \le i} \phi(k_j)`. Storing
every :math:`S_i` would take :math:`O(L d d_v)` memory; instead the sequence is cut into chunks of
:math:`C` positions. Within a chunk, the (small, :math:`C \times C`) masked matrix
:math:`\phi(Q_c)\phi(K_c)^\top` is used directly; the earlier chunks enter through the state
:math:`S, z` summed over them (an exclusive cumulative sum over chunks). That costs
:math:`O(L C d + L d d_v)` time and :math:`O(L C + (L / C) d d_v)` memory: linear in :math:`L`
for a fixed :math:`C`, with the small dense products running at matrix-multiply speed.

The same state makes decoding recurrent: with a :class:`LinearAttentionState` the layer carries
:math:`(S, z)` from one call to the next, so each new token costs :math:`O(d d_v)` whatever the
length so far, where a softmax key/value cache grows by one row per token.

What is given up: the weights are a smooth kernel rather than a softmax, so attention is less
sharp (a query cannot single out one key as strongly), and an arbitrary additive mask cannot be
applied because the :math:`L \times S` matrix is never formed. ``need_weights=True`` forms it
anyway, in :math:`O(L S)`, for the attention heatmaps of a report.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepworks.errors import ConfigError

__all__ = [
    "LinearAttention",
    "LinearAttentionState",
    "feature_map",
    "linear_attention",
    "linear_attention_weights",
]

EPS = 1e-6
CHUNK = 64  # positions per chunk of the causal path: C x C blocks are cheap, L / C states few


def feature_map(x: Tensor) -> Tensor:
    """:math:`\\phi(x) = \\mathrm{elu}(x) + 1`: positive, and close to :math:`1 + x` near zero."""
    return F.elu(x) + 1.0


@dataclass
class LinearAttentionState:
    """The running sums of causal linear attention, carried between calls (incremental decoding).

    Attributes:
        s: :math:`\\sum_j \\phi(k_j) v_j^\\top`, shape (B, H, d, d_v).
        z: :math:`\\sum_j \\phi(k_j)`, shape (B, H, d).
        length: Positions summed so far.
    """

    s: Tensor | None = None
    z: Tensor | None = None
    length: int = 0

    def reset(self) -> None:
        self.s, self.z, self.length = None, None, 0


def _masked_features(k: Tensor, key_padding_mask: Tensor | None) -> Tensor:
    """:math:`\\phi(K)` with the rows of padded keys set to zero (they then add nothing)."""
    phi_k = feature_map(k)
    if key_padding_mask is not None:
        phi_k = phi_k.masked_fill(key_padding_mask[:, None, :, None], 0.0)
    return phi_k


def linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    key_padding_mask: Tensor | None = None,
    causal: bool = False,
    state: LinearAttentionState | None = None,
    eps: float = EPS,
    chunk_size: int = CHUNK,
) -> Tensor:
    """Kernelized linear attention on per-head tensors.

    Args:
        q: Queries (B, H, L, d).
        k: Keys (B, H, S, d).
        v: Values (B, H, S, d_v).
        key_padding_mask: (B, S) bool, True where the key is padding.
        causal: Position i attends to keys 0..i only (requires S == L).
        state: Causal only: the running sums of earlier calls, added to this call's prefix sums
            and then updated in place (so consecutive calls continue one sequence).
        eps: Added to the normalizer.
        chunk_size: Positions per chunk of the causal computation.

    Returns:
        (B, H, L, d_v).
    """
    phi_q = feature_map(q)
    phi_k = _masked_features(k, key_padding_mask)
    if not causal:
        if state is not None:
            raise ValueError("linear_attention: a state carries prefix sums; it needs causal=True")
        s = torch.einsum("bhsd,bhse->bhde", phi_k, v)  # S = phi(K)^T V: (B, H, d, d_v)
        z = phi_k.sum(dim=2)  # z = phi(K)^T 1: (B, H, d)
        num = torch.einsum("bhld,bhde->bhle", phi_q, s)
        den = torch.einsum("bhld,bhd->bhl", phi_q, z)
        return num / (den.unsqueeze(-1) + eps)
    if k.shape[2] != q.shape[2]:
        raise ValueError(
            f"linear_attention: causal attention needs as many keys as queries "
            f"({k.shape[2]} != {q.shape[2]})"
        )
    return _causal(phi_q, phi_k, v, state, eps, chunk_size)


def _causal(
    phi_q: Tensor,
    phi_k: Tensor,
    v: Tensor,
    state: LinearAttentionState | None,
    eps: float,
    chunk_size: int,
) -> Tensor:
    """Causal linear attention, chunked (see the module docstring)."""
    b, h, length, d = phi_q.shape
    dv = v.shape[-1]
    c = max(1, min(chunk_size, length))
    pad = (-length) % c
    if pad:  # zero features at the end: they neither attend nor are attended to
        phi_q, phi_k, v = (F.pad(t, (0, 0, 0, pad)) for t in (phi_q, phi_k, v))
    n = (length + pad) // c
    qc = phi_q.reshape(b, h, n, c, d)
    kc = phi_k.reshape(b, h, n, c, d)
    vc = v.reshape(b, h, n, c, dv)
    # Each chunk's own sums, then an exclusive cumulative sum: the state before each chunk.
    s_chunk = torch.einsum("bhncd,bhnce->bhnde", kc, vc)
    z_chunk = kc.sum(dim=3)
    s_incl = s_chunk.cumsum(dim=2)
    z_incl = z_chunk.cumsum(dim=2)
    s_prev = s_incl - s_chunk
    z_prev = z_incl - z_chunk
    if state is not None and state.s is not None:
        s_prev = s_prev + state.s.unsqueeze(2)
        z_prev = z_prev + state.z.unsqueeze(2)
    # Within a chunk: the masked C x C kernel matrix, lower triangle included.
    scores = torch.einsum("bhncd,bhnsd->bhncs", qc, kc)
    tril = torch.ones(c, c, dtype=torch.bool, device=scores.device).tril()
    scores = scores.masked_fill(~tril, 0.0)
    num = torch.einsum("bhncs,bhnse->bhnce", scores, vc)
    num = num + torch.einsum("bhncd,bhnde->bhnce", qc, s_prev)
    den = scores.sum(dim=-1) + torch.einsum("bhncd,bhnd->bhnc", qc, z_prev)
    out = (num / (den.unsqueeze(-1) + eps)).reshape(b, h, n * c, dv)[:, :, :length]
    if state is not None:
        s_total, z_total = s_incl[:, :, -1], z_incl[:, :, -1]
        state.s = s_total if state.s is None else state.s + s_total
        state.z = z_total if state.z is None else state.z + z_total
        state.length += length
    return out


def linear_attention_weights(
    q: Tensor,
    k: Tensor,
    *,
    key_padding_mask: Tensor | None = None,
    causal: bool = False,
    eps: float = EPS,
) -> Tensor:
    """The attention matrix that linear attention applies implicitly, (B, H, L, S), in O(L S).

    :math:`A_{ij} = \\phi(q_i)^\\top \\phi(k_j) / (\\sum_{j'} \\phi(q_i)^\\top \\phi(k_{j'}) +
    \\varepsilon)` over the visible keys; ``A @ V`` equals :func:`linear_attention`'s output.
    For heatmaps (and as the quadratic reference of the tests), not for the forward pass.
    """
    scores = feature_map(q) @ _masked_features(k, key_padding_mask).transpose(-1, -2)
    if causal:
        length, keys = scores.shape[-2:]
        visible = torch.ones(length, keys, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~visible, 0.0)
    return scores / (scores.sum(dim=-1, keepdim=True) + eps)


class LinearAttention(nn.Module):
    """Multi-head kernelized linear attention, a drop-in for softmax multi-head attention.

    The projections are named as in :class:`deepworks.layers.attention.MultiHeadAttention`
    (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``) and ``forward`` takes the same arguments,
    so a transformer block can swap one for the other.

    Args:
        dim: Model width D (queries, and keys/values unless ``kdim`` is given).
        num_heads: Heads; ``dim`` must be divisible by it.
        dropout: Dropout on the attended values before the output projection (the attention
            matrix is never formed, so there are no weights to drop).
        bias: Biases in the four projections.
        kdim: Width of the context of cross-attention (default ``dim``).
        eps: Added to the normalizer of every query.
        chunk_size: Positions per chunk of the causal path.

    Example:
        >>> attn = LinearAttention(64, num_heads=4)
        >>> out, _ = attn(torch.randn(2, 1000, 64), causal=True)
        >>> out.shape
        torch.Size([2, 1000, 64])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        eps: float = EPS,
        chunk_size: int = CHUNK,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"model.dim: {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.eps, self.chunk_size = eps, chunk_size
        kdim = kdim or dim
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(kdim, dim, bias=bias)
        self.v_proj = nn.Linear(kdim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: Tensor) -> Tensor:
        b, length, _ = x.shape
        return x.view(b, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        attn_mask: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        causal: bool = False,
        cache: LinearAttentionState | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``x`` to ``context`` (or to ``x`` itself).

        Args:
            x: Queries (B, L, D).
            context: Keys and values (B, S, kdim); None for self-attention.
            attn_mask: Not supported (an arbitrary mask needs the L x S matrix); must be None.
            key_padding_mask: (B, S) bool, True where the key is padding.
            causal: Position i attends to positions <= i (self-attention only).
            cache: A :class:`LinearAttentionState` for incremental causal decoding: the running
                sums of earlier calls, updated in place.
            need_weights: Also return the implicit attention matrix (B, H, L, S), formed in
                O(L S) (for visualization; not with ``cache``).

        Returns:
            (output (B, L, D), weights or None).
        """
        if attn_mask is not None:
            raise ValueError(
                "LinearAttention: attn_mask is not supported (the attention matrix is never "
                "formed); use key_padding_mask and causal, or softmax attention"
            )
        if cache is not None and not causal:
            raise ValueError("LinearAttention: a cache holds causal prefix sums; pass causal=True")
        if causal and context is not None:
            raise ValueError("LinearAttention: causal attention is self-attention; drop context")
        source = x if context is None else context
        q = self._heads(self.q_proj(x))
        k = self._heads(self.k_proj(source))
        v = self._heads(self.v_proj(source))
        out = linear_attention(
            q,
            k,
            v,
            key_padding_mask=key_padding_mask,
            causal=causal,
            state=cache,
            eps=self.eps,
            chunk_size=self.chunk_size,
        )
        b, _, length, _ = out.shape
        out = self.out_proj(self.dropout(out.transpose(1, 2).reshape(b, length, self.dim)))
        weights = None
        if need_weights:
            if cache is not None:
                raise ValueError("LinearAttention: need_weights is not available with a cache")
            weights = linear_attention_weights(
                q,
                k,
                key_padding_mask=key_padding_mask,
                causal=causal,
                eps=self.eps,
            )
        return out, weights

"""Encoder-decoder Transformer (Vaswani et al., 2017) for sequence-to-sequence tasks.

The encoder embeds the source ids, adds positions and runs ``encoder_layers`` pre-norm blocks of
self-attention in which padding positions are masked out as keys, so a source's encoding does
not depend on how much padding follows it. The decoder embeds the target inputs
``<bos> t_1 .. t_{m}``, adds positions and runs ``decoder_layers`` blocks of

    z <- z + SelfAttn(LN(z), causal)          position t sees target inputs 0..t only
    z <- z + CrossAttn(LN(z), memory)         queries from the decoder, keys/values the source
    z <- z + MLP(LN(z))

then a final LayerNorm and the linear ``head`` give next-token logits. Because of the causal
mask, one teacher-forced pass scores every position in parallel exactly as step-by-step decoding
would. At inference :meth:`TransformerSeq2Seq.greedy` decodes one token at a time, appending each
self-attention layer's keys and values to a KV cache so step t costs O(t) rather than O(t²);
:meth:`TransformerSeq2Seq.beam_search` keeps the ``k`` best hypotheses by summed log-probability
and ranks finished ones with the GNMT length penalty ``lp = ((5 + length) / 6) ** alpha``.

The alignment map of the seq2seq report is the last decoder layer's cross-attention, averaged
over heads: ``(B, T, S)``, rows summing to 1 over the real source positions.

Scheduled sampling (``teacher_forcing < 1``) in a parallel decoder follows Mihaylova & Liu
(2019): a first teacher-forced pass without gradients predicts every position; the decoder input
at step ``t > 0`` is then, per sample and step, the true token with probability
``teacher_forcing`` and the first pass's prediction for that position otherwise, and the second
pass (with gradients) runs on this mix. Unlike a recurrent decoder's sampling, each own
prediction was made from the true prefix, not from an already mixed one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepworks.data.text.vocab import BOS_ID, EOS_ID, PAD_ID
from deepworks.errors import ConfigError
from deepworks.layers.attention import (
    KVCache,
    LearnedPositions,
    SinusoidalPositions,
    TransformerBlock,
)
from deepworks.models.base import EncoderDecoder
from deepworks.models.beam import Beam
from deepworks.registry import (
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    register_model,
)


@contextmanager
def _cross_attention_weights(block: TransformerBlock) -> Iterator[dict[str, torch.Tensor]]:
    """Keep the cross-attention probabilities (B, H, T, S) of ``block`` while in the context.

    The block returns only its self-attention weights; hooks ask its cross-attention layer for
    its probabilities too (the same output by the explicit softmax path) and keep them.
    """
    kept: dict[str, torch.Tensor] = {}

    def ask(module, args, kwargs):
        return args, kwargs | {"need_weights": True}

    def keep(module, args, kwargs, output):
        kept["weights"] = output[1]

    hooks = [
        block.cross_attn.register_forward_pre_hook(ask, with_kwargs=True),
        block.cross_attn.register_forward_hook(keep, with_kwargs=True),
    ]
    try:
        yield kept
    finally:
        for hook in hooks:
            hook.remove()


@register_model("transformer_seq2seq")
class TransformerSeq2Seq(EncoderDecoder):
    """Encoder-decoder Transformer with a KV-cached greedy decoder and beam search.

    Args:
        vocab_size: Source vocabulary size (ids 0..vocab_size-1, 0 = padding).
        num_classes: Target vocabulary size (the decoder's inputs and outputs).
        pad_id: Padding id of source and target.
        dim: Token width of encoder and decoder.
        num_heads: Attention heads (must divide ``dim``).
        encoder_layers: Encoder blocks.
        decoder_layers: Decoder blocks (self-attention, cross-attention, MLP).
        mlp_ratio: Hidden width of each block's MLP, as a multiple of ``dim``.
        dropout: Dropout on the embeddings and in the blocks.
        positions: "learned" (a table of ``max_len`` rows) or "sinusoidal" (fixed).
        max_len: Longest source or target sequence the position table covers.
    """

    example_kwargs = {
        "vocab_size": 12,
        "dim": 16,
        "num_heads": 2,
        "encoder_layers": 1,
        "decoder_layers": 2,
    }
    #: The seq2seq task keeps the alignment maps of a model whose ``attention`` is not "none".
    attention = "cross"

    def __init__(
        self,
        vocab_size: PositiveInt = 64,
        num_classes: PositiveInt = 16,
        pad_id: NonNegativeInt = PAD_ID,
        dim: PositiveInt = 64,
        num_heads: PositiveInt = 4,
        encoder_layers: PositiveInt = 2,
        decoder_layers: PositiveInt = 2,
        mlp_ratio: PositiveFloat = 4.0,
        dropout: Probability = 0.0,
        positions: Literal["learned", "sinusoidal"] = "learned",
        max_len: PositiveInt = 256,
    ):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"model.num_heads: {num_heads} must divide model.dim ({dim})")
        if positions not in ("learned", "sinusoidal"):
            raise ConfigError(f"model.positions: {positions!r} must be 'learned' or 'sinusoidal'")
        self.pad_id, self.dim = pad_id, dim
        self.src_embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(num_classes, dim, padding_idx=pad_id)
        if positions == "learned":  # separate tables: source and target positions differ
            self.src_pos: nn.Module = LearnedPositions(dim, max_len)
            self.tgt_pos: nn.Module = LearnedPositions(dim, max_len)
        else:
            self.src_pos = self.tgt_pos = SinusoidalPositions(dim)
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio=mlp_ratio, dropout=dropout)
            for _ in range(encoder_layers)
        )
        self.encoder_norm = nn.LayerNorm(dim)
        self.decoder = nn.ModuleList(
            TransformerBlock(
                dim, num_heads, mlp_ratio=mlp_ratio, dropout=dropout, cross_attention=True
            )
            for _ in range(decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self._init_embeddings()

    def _init_embeddings(self) -> None:
        # Token embeddings of unit-scale norm per token (std dim^-1/2 per feature): with
        # N(0, 1) they would dwarf the learned positions and the residual branches.
        for emb in (self.src_embed, self.tgt_embed):
            nn.init.normal_(emb.weight, std=self.dim**-0.5)
            with torch.no_grad():
                emb.weight[self.pad_id].zero_()

    @staticmethod
    def example_input(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(src, tgt_in) for tests: source ids 4..11 with padding at the end of some rows, and a
        target input of ``<bos>`` and ids 1..2 (valid for any target vocabulary of 3 or more)."""
        src = torch.randint(4, 12, (n, 7), generator=generator)
        src[1::2, 5:] = PAD_ID
        tgt = torch.randint(1, 3, (n, 5), generator=generator)
        tgt[:, 0] = BOS_ID
        return src, tgt

    # --- encoder ----------------------------------------------------------------------------
    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Source ids (B, S) → (memory (B, S, dim), padding mask (B, S), True = padding)."""
        padding = src == self.pad_id
        positions = torch.arange(src.shape[1], device=src.device)
        z = self.drop(self.src_embed(src) + self.src_pos(positions))
        for block in self.encoder:
            z, _ = block(z, key_padding_mask=padding)
        return self.encoder_norm(z), padding

    # --- decoder ----------------------------------------------------------------------------
    def run_decoder(
        self,
        tgt_in: torch.Tensor,
        memory: torch.Tensor,
        padding: torch.Tensor,
        caches: list[tuple[KVCache, KVCache]] | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decoder features (B, T, dim) of target inputs (B, T) and, with ``need_weights``, the
        last layer's cross-attention averaged over heads (B, T, S).

        With ``caches`` (a self- and a cross-attention cache per layer) the inputs continue the
        cached prefix: their positions start at the cache length, they attend to the cached keys
        and values, and the source's projected keys/values are computed once.
        """
        start = caches[0][0].length if caches else 0
        positions = torch.arange(start, start + tgt_in.shape[1], device=tgt_in.device)
        z = self.drop(self.tgt_embed(tgt_in) + self.tgt_pos(positions))
        weights = None
        for i, block in enumerate(self.decoder):
            cache, cross_cache = caches[i] if caches else (None, None)
            kwargs = dict(context_padding_mask=padding, causal=True, cache=cache)
            if need_weights and i == len(self.decoder) - 1:
                with _cross_attention_weights(block) as kept:
                    z, _ = block(z, memory, cross_cache=cross_cache, **kwargs)
                weights = kept["weights"].mean(1)  # (B, H, T, S) -> (B, T, S)
            else:
                z, _ = block(z, memory, cross_cache=cross_cache, **kwargs)
        return self.decoder_norm(z), weights

    def decode(
        self, src: torch.Tensor, tgt_in: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced decoder features (B, T, dim) and cross-attention (B, T, S) or None."""
        memory, padding = self.encode(src)
        return self.run_decoder(tgt_in, memory, padding, need_weights=need_weights)

    def forward_features(
        self, src: torch.Tensor, tgt_in: torch.Tensor, teacher_forcing: float = 1.0
    ) -> torch.Tensor:
        memory, padding = self.encode(src)
        if teacher_forcing < 1.0:  # scheduled sampling: a first pass predicts every position
            with torch.no_grad():
                own = self.head(self.run_decoder(tgt_in, memory, padding)[0]).argmax(-1)
            coin = torch.rand(tgt_in.shape, device=tgt_in.device) < teacher_forcing
            mixed = torch.where(coin[:, 1:], tgt_in[:, 1:], own[:, :-1])
            tgt_in = torch.cat([tgt_in[:, :1], mixed], dim=1)
        return self.run_decoder(tgt_in, memory, padding)[0]

        self._init_embeddings()

    @torch.no_grad()
    def cross_attention_maps(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced cross-attention of the last decoder layer, averaged over heads
        (B, T, S)."""
        return self.decode(src, tgt_in, need_weights=True)[1]

    # --- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def greedy(self, src: torch.Tensor, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Argmax decoding with a KV cache: (ids (B, max_len), attention (B, max_len, S)).

        Output ids exclude ``<bos>``; after ``<eos>`` come padding ids and zero attention rows.
        """
        memory, padding = self.encode(src)
        b, s = src.shape
        dev = src.device
        caches = [(KVCache(), KVCache()) for _ in self.decoder]
        ids = torch.full((b, max_len), self.pad_id, dtype=torch.long, device=dev)
        attn = torch.zeros(b, max_len, s, device=dev)
        tokens = torch.full((b, 1), BOS_ID, dtype=torch.long, device=dev)
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        for t in range(max_len):
            feats, w = self.run_decoder(tokens, memory, padding, caches, need_weights=True)
            next_ids = self.head(feats[:, -1]).argmax(-1).masked_fill(done, self.pad_id)
            ids[:, t] = next_ids
            attn[:, t] = w[:, -1].float().masked_fill(done[:, None], 0.0)
            done |= next_ids == EOS_ID
            if done.all():
                break
            tokens = next_ids[:, None]
        return ids, attn

    @torch.no_grad()
    def beam_search(
        self, src: torch.Tensor, beam_size: int = 4, max_len: int = 32, length_penalty: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Beam search: (ids (B, max_len), attention (B, max_len, S)) of the best hypothesis.

        Hypotheses grow by summed log-probability; a finished one (it emitted ``<eos>``) only
        extends with padding at no cost. The best finished hypothesis maximizes
        ``logp / ((5 + length) / 6) ** length_penalty`` (0: no length normalization). Each step
        re-runs the decoder on the whole prefix of every hypothesis (no cache to reorder).
        """
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {beam_size}")
        k = beam_size
        memory, padding = self.encode(src)
        b, s = src.shape
        dev = src.device
        memory, padding = memory.repeat_interleave(k, 0), padding.repeat_interleave(k, 0)
        beam = Beam(b, k, max_len, s, self.pad_id, dev)
        bos = torch.full((b * k, 1), BOS_ID, dtype=torch.long, device=dev)
        for t in range(max_len):
            prefix = torch.cat([bos, beam.ids.view(b * k, max_len)[:, :t]], dim=1)
            feats, w = self.run_decoder(prefix, memory, padding, need_weights=True)
            logp = F.log_softmax(self.head(feats[:, -1]).float(), -1).view(b, k, -1)
            beam.advance(t, logp, w[:, -1])
            if beam.done.all():
                break
        return beam.best(length_penalty)

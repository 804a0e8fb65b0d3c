"""Sequence-to-sequence: a recurrent encoder, and a decoder that attends over its outputs.

The encoder (GRU or LSTM, optionally bidirectional) reads the source ids ``x_1..x_S`` into
annotations ``h_1..h_S``; its final states, through a ``tanh`` bridge, start the decoder. The
decoder emits one target token per step from its state ``s_t`` and a context vector ``c_t``, a
weighted mean of the annotations with weights ``a_t = softmax(score(s, h_j))`` over the *real*
source positions (padding gets weight exactly 0):

* ``bahdanau`` (additive, Bahdanau et al. 2015): ``score = vᵀ tanh(W_s s_{t-1} + W_h h_j)``,
  scored with the previous state; the context joins the token embedding as the RNN input,
  ``s_t = RNN([e(y_{t-1}); c_t], s_{t-1})``, and the output layer sees
  ``h̃_t = tanh(W_o [s_t; c_t; e(y_{t-1})])`` (a deep output).
* ``luong`` (multiplicative "general", Luong et al. 2015): ``s_t = RNN(e(y_{t-1}), s_{t-1})``,
  then ``score = s_tᵀ W h_j`` and the attentional hidden state ``h̃_t = tanh(W_c [c_t; s_t])``.
  Without input feeding the decoder RNN never sees the context, so with teacher forcing all
  steps run as one RNN call and one batched attention.
* ``none``: ``h̃_t = s_t``, the encoder's final state alone carries the source.

The output layer (``head``) maps ``h̃_t`` to logits over the target vocabulary. Training uses
teacher forcing (the true previous token is the next input); ``teacher_forcing < 1`` feeds the
model's own argmax instead with probability ``1 - teacher_forcing`` per sample and step
(scheduled sampling, Bengio et al. 2015). At inference :meth:`Seq2Seq.greedy` takes the argmax
each step; :meth:`Seq2Seq.beam_search` keeps the ``k`` best partial outputs by summed
log-probability and ranks finished ones by ``score / lp(length)`` with the GNMT length penalty
``lp = ((5 + length) / 6) ** alpha``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepworks.data.text.vocab import BOS_ID, EOS_ID, PAD_ID
from deepworks.models.base import EncoderDecoder
from deepworks.models.beam import Beam
from deepworks.registry import NonNegativeInt, PositiveInt, Probability, register_model

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class AdditiveAttention(nn.Module):
    """Bahdanau: ``score(s, h_j) = vᵀ tanh(W_s s + W_h h_j)``."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        self.w_s = nn.Linear(query_dim, attn_dim, bias=False)
        self.w_h = nn.Linear(key_dim, attn_dim)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.w_h(memory)  # (B, S, A), computed once per source

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """query (B, T, Q), keys (B, S, A) → (B, T, S)."""
        return self.v(torch.tanh(self.w_s(query)[:, :, None] + keys[:, None])).squeeze(-1)


class GeneralAttention(nn.Module):
    """Luong "general": ``score(s, h_j) = sᵀ W h_j``."""

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        self.w = nn.Linear(key_dim, query_dim, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.w(memory)  # (B, S, Q)

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return query @ keys.transpose(1, 2)  # (B, T, S)


def attend(
    scores: torch.Tensor, mask: torch.Tensor, memory: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over the real source positions: (context (B, T, D), weights (B, T, S)).

    ``mask`` (B, S) is True at real tokens; padded positions get ``-inf`` and so weight 0.
    """
    weights = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
    return weights @ memory, weights


@register_model("seq2seq")
class Seq2Seq(EncoderDecoder):
    """Encoder-decoder RNN with Bahdanau, Luong or no attention.

    Args:
        vocab_size: Source vocabulary size (ids 0..vocab_size-1, 0 = padding).
        num_classes: Target vocabulary size (the decoder's inputs and outputs).
        pad_id: Padding id of source and target.
        embed_dim: Token embedding width (source and target).
        hidden: Hidden size of the encoder (per direction) and of the decoder.
        layers: Stacked RNN layers of encoder and decoder.
        cell: "gru" or "lstm".
        bidirectional: Read the source both ways (annotations are twice as wide).
        attention: "bahdanau" (additive), "luong" (multiplicative, general) or "none".
        dropout: Dropout on embeddings and on the attentional hidden state.
    """

    example_kwargs = {"vocab_size": 12, "embed_dim": 8, "hidden": 16}
    default_grad_clip_norm = 1.0  # recurrent: keep exploding gradients in check

    def __init__(
        self,
        vocab_size: PositiveInt = 64,
        num_classes: PositiveInt = 16,
        pad_id: NonNegativeInt = PAD_ID,
        embed_dim: PositiveInt = 64,
        hidden: PositiveInt = 128,
        layers: PositiveInt = 1,
        cell: Literal["gru", "lstm"] = "gru",
        bidirectional: bool = True,
        attention: Literal["bahdanau", "luong", "none"] = "bahdanau",
        dropout: Probability = 0.0,
    ):
        super().__init__()
        self.pad_id, self.layers, self.hidden = pad_id, layers, hidden
        self.cell, self.attention = cell, attention
        self.dirs = 2 if bidirectional else 1
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        between = dropout if layers > 1 else 0.0
        self.src_embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.encoder = rnn(
            embed_dim,
            hidden,
            layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=between,
        )
        enc_dim = hidden * self.dirs
        # The bridge turns the encoder's final states (both directions) into the decoder's first.
        self.bridge = nn.Linear(enc_dim, hidden)
        self.bridge_cell = nn.Linear(enc_dim, hidden) if cell == "lstm" else None
        self.tgt_embed = nn.Embedding(num_classes, embed_dim, padding_idx=pad_id)
        dec_in = embed_dim + (enc_dim if attention == "bahdanau" else 0)
        self.decoder = rnn(dec_in, hidden, layers, batch_first=True, dropout=between)
        if attention == "bahdanau":
            self.attn = AdditiveAttention(hidden, enc_dim, hidden)
            self.combine = nn.Linear(hidden + enc_dim + embed_dim, hidden)
        elif attention == "luong":
            self.attn = GeneralAttention(hidden, enc_dim)
            self.combine = nn.Linear(enc_dim + hidden, hidden)
        else:
            self.attn, self.combine = None, None
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)

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
    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Source ids (B, S) → (annotations (B, S, D), mask (B, S), first decoder state)."""
        mask = src != self.pad_id
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.drop(self.src_embed(src)), lengths, batch_first=True, enforce_sorted=False
        )
        out, final = self.encoder(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(
            out, batch_first=True, total_length=src.shape[1]
        )
        h = final[0] if self.cell == "lstm" else final

        def bridged(states: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
            # (layers * dirs, B, H) → (layers, B, dirs * H) → (layers, B, H)
            per_layer = states.view(self.layers, self.dirs, *states.shape[1:])
            return torch.tanh(layer(torch.cat(per_layer.unbind(1), dim=-1)))

        state: State = bridged(h, self.bridge)
        if self.cell == "lstm":
            state = (state, bridged(final[1], self.bridge_cell))
        return memory, mask, state

    # --- decoder ----------------------------------------------------------------------------
    def step(
        self,
        tokens: torch.Tensor,
        state: State,
        memory: torch.Tensor,
        keys: torch.Tensor | None,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """One decoder step for previous tokens (B,): (h̃ (B, H), new state, weights (B, S))."""
        emb = self.drop(self.tgt_embed(tokens))[:, None]  # (B, 1, E)
        weights = None
        if self.attention == "bahdanau":
            query = _top(state)[:, None]  # s_{t-1}: (B, 1, H)
            context, weights = attend(self.attn.scores(query, keys), mask, memory)
            out, state = self.decoder(torch.cat([emb, context], -1), state)
            feats = torch.tanh(self.combine(torch.cat([out, context, emb], -1)))
        elif self.attention == "luong":
            out, state = self.decoder(emb, state)
            context, weights = attend(self.attn.scores(out, keys), mask, memory)
            feats = torch.tanh(self.combine(torch.cat([context, out], -1)))
        else:
            out, state = self.decoder(emb, state)
            feats = out
        return self.drop(feats[:, 0]), state, None if weights is None else weights[:, 0]

    def decode(
        self, src: torch.Tensor, tgt_in: torch.Tensor, teacher_forcing: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decoder features h̃ (B, T, H) for target inputs (B, T), and attention (B, T, S)."""
        memory, mask, state = self.encode(src)
        keys = self.attn.keys(memory) if self.attn is not None else None
        if teacher_forcing >= 1.0 and self.attention != "bahdanau":
            # Every input is known up front: one RNN call over all steps, batched attention.
            out, _ = self.decoder(self.drop(self.tgt_embed(tgt_in)), state)
            if self.attention == "none":
                return self.drop(out), None
            context, weights = attend(self.attn.scores(out, keys), mask, memory)
            return self.drop(torch.tanh(self.combine(torch.cat([context, out], -1)))), weights
        feats, attns = [], []
        tokens = tgt_in[:, 0]
        for t in range(tgt_in.shape[1]):
            if t > 0:
                tokens = tgt_in[:, t]
                if teacher_forcing < 1.0:  # scheduled sampling: own prediction, per sample
                    own = self.head(feats[-1]).argmax(-1)
                    coin = torch.rand(len(tokens), device=tokens.device) < teacher_forcing
                    tokens = torch.where(coin, tokens, own)
            f, state, w = self.step(tokens, state, memory, keys, mask)
            feats.append(f)
            attns.append(w)
        weights = torch.stack(attns, 1) if attns[0] is not None else None
        return torch.stack(feats, 1), weights

    def forward_features(
        self, src: torch.Tensor, tgt_in: torch.Tensor, teacher_forcing: float = 1.0
    ) -> torch.Tensor:
        return self.decode(src, tgt_in, teacher_forcing)[0]

    # --- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def greedy(self, src: torch.Tensor, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Argmax decoding: (ids (B, max_len), attention (B, max_len, S)).

        Output ids exclude ``<bos>``; after ``<eos>`` come padding ids and zero attention rows.
        """
        memory, mask, state = self.encode(src)
        keys = self.attn.keys(memory) if self.attn is not None else None
        b, s = src.shape
        ids = torch.full((b, max_len), self.pad_id, dtype=torch.long, device=src.device)
        attn = torch.zeros(b, max_len, s, device=src.device)
        tokens = torch.full((b,), BOS_ID, dtype=torch.long, device=src.device)
        done = torch.zeros(b, dtype=torch.bool, device=src.device)
        for t in range(max_len):
            feats, state, w = self.step(tokens, state, memory, keys, mask)
            tokens = self.head(feats).argmax(-1)
            tokens = tokens.masked_fill(done, self.pad_id)
            ids[:, t] = tokens
            if w is not None:
                attn[:, t] = w.masked_fill(done[:, None], 0.0)
            done |= tokens == EOS_ID
            if done.all():
                break
        return ids, attn

    @torch.no_grad()
    def beam_search(
        self, src: torch.Tensor, beam_size: int = 4, max_len: int = 32, length_penalty: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Beam search: (ids (B, max_len), attention (B, max_len, S)) of the best hypothesis.

        Hypotheses grow by summed log-probability; a finished one (it emitted ``<eos>``) only
        extends with padding at no cost. The best finished hypothesis maximizes
        ``logp / ((5 + length) / 6) ** length_penalty`` (0: no length normalization).
        """
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {beam_size}")
        k = beam_size
        memory, mask, state = self.encode(src)
        b, s = src.shape
        dev = src.device

        def tile(t: torch.Tensor, dim: int = 0) -> torch.Tensor:  # (B, ...) → (B*k, ...)
            return t.repeat_interleave(k, dim=dim)

        memory, mask = tile(memory), tile(mask)
        state = tuple(tile(x, 1) for x in state) if isinstance(state, tuple) else tile(state, 1)
        keys = self.attn.keys(memory) if self.attn is not None else None
        beam = Beam(b, k, max_len, s, self.pad_id, dev)
        tokens = torch.full((b * k,), BOS_ID, dtype=torch.long, device=dev)
        for t in range(max_len):
            feats, state, w = self.step(tokens, state, memory, keys, mask)
            logp = F.log_softmax(self.head(feats).float(), -1).view(b, k, -1)
            rows = beam.rows(beam.advance(t, logp, w))
            state = tuple(x[:, rows] for x in state) if isinstance(state, tuple) else state[:, rows]
            tokens = beam.ids[:, :, t].reshape(-1)
            if beam.done.all():
                break
        return beam.best(length_penalty)


def _top(state: State) -> torch.Tensor:
    """The top layer's hidden state (B, H) of a GRU or LSTM state."""
    return (state[0] if isinstance(state, tuple) else state)[-1]

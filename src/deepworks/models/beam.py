"""Beam-search bookkeeping shared by the encoder-decoder models.

``Beam`` keeps k hypotheses per sample: their summed log-probabilities, tokens, attention rows,
lengths and whether they have emitted ``<eos>``. A model computes the next-token log-probs of
every hypothesis; :meth:`Beam.advance` picks the k best continuations and reorders everything
(the model reorders its own recurrent state or re-reads the prefixes). A finished hypothesis
only extends with padding, at no cost. :meth:`Beam.best` ranks the finished ones by
``logp / ((5 + length) / 6) ** length_penalty`` (0: no length normalization).
"""

from __future__ import annotations

import torch

from deepworks.data.text.vocab import EOS_ID


class Beam:
    def __init__(self, b: int, k: int, max_len: int, s: int, pad_id: int, device):
        self.b, self.k, self.pad_id = b, k, pad_id
        self.scores = torch.full((b, k), float("-inf"), device=device)
        self.scores[:, 0] = 0.0  # one live hypothesis at the start
        self.ids = torch.full((b, k, max_len), pad_id, dtype=torch.long, device=device)
        self.attn = torch.zeros(b, k, max_len, s, device=device)
        self.lengths = torch.zeros(b, k, dtype=torch.long, device=device)
        self.done = torch.zeros(b, k, dtype=torch.bool, device=device)

    def advance(self, t: int, logp: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        """Extend by one token from ``logp`` (B, k, V) and attention ``w`` (B*k, S) or None;
        returns each new hypothesis' origin (B, k) among the old ones."""
        b, k = self.b, self.k
        v = logp.shape[-1]
        pad_only = torch.full_like(logp[0, 0], float("-inf"))
        pad_only[self.pad_id] = 0.0
        logp = torch.where(self.done[..., None], pad_only, logp)
        total = (self.scores[..., None] + logp).view(b, k * v)
        self.scores, flat = total.topk(k, dim=-1)  # (B, k)
        origin, tokens = flat // v, flat % v
        self.ids = self.ids.gather(1, origin[..., None].expand_as(self.ids))
        self.attn = self.attn.gather(1, origin[..., None, None].expand_as(self.attn))
        self.done, self.lengths = self.done.gather(1, origin), self.lengths.gather(1, origin)
        self.ids[:, :, t] = tokens
        if w is not None:
            s = self.attn.shape[-1]
            w = w.float().view(b, k, s).gather(1, origin[..., None].expand(b, k, s))
            self.attn[:, :, t] = w.masked_fill(self.done[..., None], 0.0)
        self.lengths = self.lengths + (~self.done).long()
        self.done = self.done | (tokens == EOS_ID)
        return origin

    def rows(self, origin: torch.Tensor) -> torch.Tensor:
        """Flat (B*k,) indices of the origins, to reorder per-hypothesis tensors."""
        offsets = torch.arange(self.b, device=origin.device)[:, None] * self.k
        return (origin + offsets).view(-1)

    def best(self, length_penalty: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (B, max_len), attention (B, max_len, S)) of each sample's best hypothesis."""
        ranked = self.scores / ((5.0 + self.lengths.float()) / 6.0) ** length_penalty
        ranked = ranked.masked_fill(~self.done, float("-inf"))
        # when no hypothesis finished, fall back on the best unfinished one
        ranked = torch.where(self.done.any(1, keepdim=True), ranked, self.scores)
        best = ranked.argmax(1)
        pick = torch.arange(self.b, device=best.device)
        return self.ids[pick, best], self.attn[pick, best]

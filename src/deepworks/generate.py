"""Sampling text from a language model: temperature, top-k and nucleus (top-p) sampling.

A language model gives logits ``z`` over the vocabulary for the next token. Sampling draws the
next token from ``softmax(z / T)``, appends it and repeats:

- **temperature** ``T``: ``T < 1`` sharpens the distribution (safer, more repetitive text),
  ``T > 1`` flattens it; ``T = 0`` is greedy decoding (always the argmax).
- **top-k**: keep only the ``k`` most likely tokens (the rest get probability 0).
- **top-p** (nucleus, Holtzman et al., 2020): keep the smallest set of most likely tokens
  whose probabilities sum to at least ``p``; the tail of unlikely tokens, where incoherent
  samples come from, is cut whatever its size.

Filters apply in that order (temperature, then top-k, then top-p) and renormalize.

Any model whose ``forward`` maps token ids (B, L) to logits (B, L, V) can be sampled. A
recurrent model with ``forward_with_state(x, state) -> (logits, state)`` reads the prompt once
and then each new token in O(1); a model with ``forward_with_cache(x, cache) -> (logits,
cache)`` (a transformer's key/value cache) is used the same way. Any other model is re-run on
the whole sequence, or on its last ``context_length`` tokens, for every new token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepworks.data.text.vocab import BOS_ID, PAD_ID, UNK_ID
from deepworks.errors import ConfigError

INCREMENTAL_METHODS = ("forward_with_state", "forward_with_cache")


def filter_logits(
    logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Set the logits of tokens outside the top-k / the top-p nucleus to -inf.

    Args:
        logits: (B, V) next-token logits (already divided by the temperature).
        top_k: Keep the k largest logits per row (None or 0: keep all).
        top_p: Keep the smallest set of most likely tokens with total probability >= p.

    Returns:
        (B, V) logits with the filtered-out entries at -inf.
    """
    if top_k is not None and top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the more likely tokens
        drop = before >= top_p  # the set already reached p without this token
        drop[..., 0] = False  # always keep the most likely token
        mask = torch.zeros_like(drop).scatter(-1, order, drop)
        logits = logits.masked_fill(mask, float("-inf"))
    return logits


def next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row from (B, V) logits; greedy when ``temperature == 0``."""
    if temperature < 0:
        raise ConfigError(f"temperature: {temperature} must be >= 0 (0: greedy)")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ConfigError(f"top_p: {top_p} must be in (0, 1]")
    if temperature == 0:
        return logits.argmax(-1)  # (B,)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = logits.softmax(-1)
    if generator is not None and generator.device != probs.device:
        probs = probs.cpu()  # the draw happens where the generator lives
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)


def _incremental(model: nn.Module):
    for name in INCREMENTAL_METHODS:
        method = getattr(model, name, None)
        if callable(method):
            return method
    return None


@torch.inference_mode()
def generate(
    model: nn.Module,
    prompt_ids: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    incremental: bool = True,
    suppress_ids: Sequence[int] = (),
) -> torch.Tensor:
    """Continue ``prompt_ids`` by ``max_new_tokens`` sampled tokens.

    Args:
        model: Maps (B, L) token ids to (B, L, V) logits.
        prompt_ids: (P,) or (B, P) token ids (P >= 1).
        temperature, top_k, top_p: See the module docstring.
        generator: Seeded ``torch.Generator`` for reproducible samples.
        incremental: Use ``forward_with_state`` / ``forward_with_cache`` when the model has
            one; False re-runs the whole sequence every step (the reference the incremental
            path must agree with).
        suppress_ids: Tokens never to emit (e.g. ``<pad>``, which a model reads as padding).

    Returns:
        The prompt followed by the new tokens: (P + max_new_tokens,) or (B, P +
        max_new_tokens), int64.
    """
    device = next(model.parameters()).device
    ids = torch.as_tensor(prompt_ids, dtype=torch.int64, device=device)
    squeeze = ids.ndim == 1
    ids = ids.reshape(1, -1) if squeeze else ids  # (B, P)
    if ids.shape[1] == 0:
        raise ConfigError("prompt: empty; give at least one token to start from")
    was_training = model.training
    model.eval()
    try:
        step = _incremental(model) if incremental else None
        window = getattr(model, "context_length", None)
        out = [ids]
        state = None
        banned = torch.as_tensor(list(suppress_ids), dtype=torch.int64, device=device)
        if step is not None:
            logits, state = step(ids, None)  # read the prompt once
        for i in range(max_new_tokens):
            if step is None:
                seq = torch.cat(out, dim=1)
                logits = model(seq if window is None else seq[:, -window:])  # (B, L, V)
            last = logits[:, -1]  # (B, V)
            if suppress_ids:
                last = last.index_fill(-1, banned, float("-inf"))
            token = next_token(last, temperature, top_k, top_p, generator)  # (B,)
            out.append(token[:, None])
            if step is not None and i + 1 < max_new_tokens:
                logits, state = step(token[:, None], state)  # O(1) per new token
    finally:
        model.train(was_training)
    result = torch.cat(out, dim=1)
    return result[0] if squeeze else result


def sample_text(
    model: nn.Module,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 300,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = 0,
) -> str:
    """The prompt and its sampled continuation as text (``tokenizer`` has encode/decode).

    ``<pad>``, ``<unk>`` and ``<bos>`` are never sampled: they stand for no character.
    """
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ConfigError("prompt: empty; give at least one character to start from")
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    out = generate(
        model,
        ids,
        max_new_tokens,
        temperature,
        top_k,
        top_p,
        generator,
        suppress_ids=[PAD_ID, UNK_ID, BOS_ID],
    )
    return tokenizer.decode(out.tolist())

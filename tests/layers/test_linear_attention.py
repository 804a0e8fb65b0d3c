"""Linear attention against a naive O(L^2) evaluation of the same kernelized formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepworks.errors import ConfigError
from deepworks.layers.linear_attention import (
    LinearAttention,
    LinearAttentionState,
    linear_attention,
    linear_attention_weights,
)

B, H, D = 2, 3, 8


def naive(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    causal: bool,
    eps: float = 1e-6,
) -> torch.Tensor:
    """out_i = sum_j a_ij v_j / (sum_j a_ij + eps), a_ij = phi(q_i).phi(k_j) over visible j,
    written as explicit loops in float64 (no shared code with the module)."""
    q, k, v = q.double(), k.double(), v.double()
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    b, h, length, _ = q.shape
    keys = k.shape[2]
    out = torch.zeros(b, h, length, v.shape[-1], dtype=torch.float64)
    for bi in range(b):
        for i in range(length):
            num = torch.zeros(h, v.shape[-1], dtype=torch.float64)
            den = torch.zeros(h, dtype=torch.float64)
            for j in range(keys):
                if (mask is not None and mask[bi, j]) or (causal and j > i):
                    continue
                a = (phi_q[bi, :, i] * phi_k[bi, :, j]).sum(-1)  # (H,)
                num += a[:, None] * v[bi, :, j]
                den += a
            out[bi, :, i] = num / (den[:, None] + eps)
    return out.float()


def _qkv(length: int, keys: int | None = None, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    keys = keys or length
    q = torch.randn(B, H, length, D, generator=g)
    k = torch.randn(B, H, keys, D, generator=g)
    v = torch.randn(B, H, keys, D + 2, generator=g)  # d_v != d on purpose
    return q, k, v


def _padding(keys: int) -> torch.Tensor:
    mask = torch.zeros(B, keys, dtype=torch.bool)
    mask[0, -3:] = True  # right padding
    mask[1, :2] = True  # left padding: the first queries see no key under causal attention
    return mask


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("length", [1, 7, 19])
def test_matches_naive_formula(causal: bool, padded: bool, length: int) -> None:
    q, k, v = _qkv(length)
    mask = _padding(length) if padded and length > 5 else None
    # chunk_size 4: several chunks, the last one partial (exercises the exclusive prefix sums)
    out = linear_attention(q, k, v, key_padding_mask=mask, causal=causal, chunk_size=4)
    ref = naive(q, k, v, mask, causal)
    assert out.shape == (B, H, length, D + 2)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_chunk_size_does_not_change_the_result() -> None:
    q, k, v = _qkv(50, seed=1)
    mask = _padding(50)
    outs = [
        linear_attention(q, k, v, key_padding_mask=mask, causal=True, chunk_size=c)
        for c in (1, 7, 64, 200)
    ]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=1e-5, rtol=1e-5)


def test_cross_attention_matches_naive() -> None:
    q, k, v = _qkv(6, keys=11, seed=2)
    mask = _padding(11)
    out = linear_attention(q, k, v, key_padding_mask=mask)
    torch.testing.assert_close(out, naive(q, k, v, mask, False), atol=1e-5, rtol=1e-5)


def test_query_that_sees_no_key_gives_zero() -> None:
    q, k, v = _qkv(8, seed=3)
    mask = _padding(8)
    out = linear_attention(q, k, v, key_padding_mask=mask, causal=True)
    assert torch.all(out[1, :, :2] == 0)  # keys 0 and 1 of sample 1 are padding
    assert torch.all(out[1, :, 2:].abs().sum(-1) > 0)


def test_weights_reproduce_the_output() -> None:
    q, k, v = _qkv(13, seed=4)
    mask = _padding(13)
    for causal in (False, True):
        w = linear_attention_weights(q, k, key_padding_mask=mask, causal=causal)
        assert w.shape == (B, H, 13, 13)
        out = linear_attention(q, k, v, key_padding_mask=mask, causal=causal, chunk_size=5)
        torch.testing.assert_close(w @ v, out, atol=1e-5, rtol=1e-5)
        visible_rows = w.sum(-1)[0]  # sample 0 has visible keys for every query
        torch.testing.assert_close(visible_rows, torch.ones_like(visible_rows), atol=1e-5, rtol=0)
        assert torch.all(w[0, :, :, -3:] == 0)  # padded keys get no weight
        if causal:
            assert torch.all(w[0].triu(1) == 0)


def test_state_continues_a_sequence() -> None:
    """Feeding a sequence in pieces with a carried state equals one causal call."""
    q, k, v = _qkv(23, seed=5)
    full = linear_attention(q, k, v, causal=True, chunk_size=4)
    state = LinearAttentionState()
    parts = []
    for lo, hi in ((0, 9), (9, 10), (10, 11), (11, 23)):
        parts.append(
            linear_attention(
                q[:, :, lo:hi], k[:, :, lo:hi], v[:, :, lo:hi], causal=True, state=state
            )
        )
    assert state.length == 23
    torch.testing.assert_close(torch.cat(parts, dim=2), full, atol=1e-5, rtol=1e-5)


def test_module_shapes_weights_and_gradients() -> None:
    torch.manual_seed(0)
    attn = LinearAttention(16, num_heads=4)
    x = torch.randn(3, 10, 16, requires_grad=True)
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[2, 6:] = True
    for causal in (False, True):
        out, w = attn(x, key_padding_mask=mask, causal=causal, need_weights=True)
        assert out.shape == (3, 10, 16)
        assert w is not None and w.shape == (3, 4, 10, 10)
        out.pow(2).mean().backward()
        grads = [x.grad] + [p.grad for p in attn.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert all(g.abs().sum() > 0 for g in grads)
        x.grad = None
        attn.zero_grad()
    out, w = attn(x)
    assert w is None


def test_module_matches_projections_plus_formula() -> None:
    torch.manual_seed(1)
    attn = LinearAttention(12, num_heads=3, kdim=5)
    x, ctx = torch.randn(2, 4, 12), torch.randn(2, 9, 5)
    out, _ = attn(x, ctx)

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(t.shape[0], t.shape[1], 3, 4).transpose(1, 2)

    q, k, v = heads(attn.q_proj(x)), heads(attn.k_proj(ctx)), heads(attn.v_proj(ctx))
    ref = naive(q.detach(), k.detach(), v.detach(), None, False)
    ref = attn.out_proj(ref.transpose(1, 2).reshape(2, 4, 12))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_module_incremental_decoding_equals_full_pass() -> None:
    torch.manual_seed(2)
    attn = LinearAttention(8, num_heads=2).eval()
    x = torch.randn(2, 7, 8)
    full, _ = attn(x, causal=True)
    cache = LinearAttentionState()
    steps = [attn(x[:, t : t + 1], causal=True, cache=cache)[0] for t in range(7)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    cache.reset()
    assert cache.length == 0 and cache.s is None


def test_module_refuses_what_it_cannot_do() -> None:
    attn = LinearAttention(8, num_heads=2)
    x = torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match="attn_mask"):
        attn(x, attn_mask=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="causal=True"):
        attn(x, cache=LinearAttentionState())
    with pytest.raises(ConfigError, match="model.dim: 10 is not divisible by num_heads 3"):
        LinearAttention(10, num_heads=3)

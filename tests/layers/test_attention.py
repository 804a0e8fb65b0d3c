"""Attention layers against torch's reference implementations and their defining properties."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepworks.errors import ConfigError
from deepworks.layers.attention import (
    KVCache,
    LearnedPositions,
    MultiHeadAttention,
    RotaryEmbedding,
    SinusoidalPositions,
    TransformerBlock,
)

D, H = 16, 4


def copy_from_torch(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    """Load torch's packed in_proj weights (or separate ones when kdim != dim) into ours."""
    with torch.no_grad():
        if ref._qkv_same_embed_dim:
            wq, wk, wv = ref.in_proj_weight.chunk(3)
        else:
            wq, wk, wv = ref.q_proj_weight, ref.k_proj_weight, ref.v_proj_weight
        bq, bk, bv = ref.in_proj_bias.chunk(3)
        for proj, w, b in ((ours.q_proj, wq, bq), (ours.k_proj, wk, bk), (ours.v_proj, wv, bv)):
            proj.weight.copy_(w)
            proj.bias.copy_(b)
        ours.out_proj.weight.copy_(ref.out_proj.weight)
        ours.out_proj.bias.copy_(ref.out_proj.bias)


def padding(lengths: list[int], total: int) -> torch.Tensor:
    return torch.arange(total)[None, :] >= torch.tensor(lengths)[:, None]  # True = pad


@pytest.mark.parametrize("need_weights", [False, True])
def test_self_attention_matches_torch_with_padding_and_causal_mask(need_weights):
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(D, H, batch_first=True).eval()
    ours = MultiHeadAttention(D, H).eval()
    copy_from_torch(ours, ref)
    x = torch.randn(3, 7, D)
    pad = padding([7, 5, 3], 7)
    causal = torch.ones(7, 7, dtype=torch.bool).triu(1)  # True = not allowed
    want, want_w = ref(x, x, x, key_padding_mask=pad, attn_mask=causal, average_attn_weights=False)
    got, got_w = ours(x, key_padding_mask=pad, causal=True, need_weights=need_weights)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    if need_weights:
        torch.testing.assert_close(got_w, want_w, atol=1e-5, rtol=1e-5)
    # the same bool mask given as attn_mask instead of causal=True
    again, _ = ours(x, key_padding_mask=pad, attn_mask=causal, need_weights=need_weights)
    torch.testing.assert_close(again, want, atol=1e-5, rtol=1e-5)


def test_cross_attention_matches_torch_with_other_context_width():
    torch.manual_seed(1)
    ref = nn.MultiheadAttention(D, H, batch_first=True, kdim=10, vdim=10).eval()
    ours = MultiHeadAttention(D, H, kdim=10).eval()
    copy_from_torch(ours, ref)
    x, context = torch.randn(2, 4, D), torch.randn(2, 6, 10)
    pad = padding([6, 2], 6)
    want, want_w = ref(x, context, context, key_padding_mask=pad, average_attn_weights=False)
    got, got_w = ours(x, context, key_padding_mask=pad, need_weights=True)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_w, want_w, atol=1e-5, rtol=1e-5)
    # cross-attention caches the projected context on the first call and reuses it
    cache = KVCache()
    first, _ = ours(x[:, :2], context, key_padding_mask=pad, cache=cache)
    second, _ = ours(x[:, 2:], context, key_padding_mask=pad, cache=cache)
    assert cache.length == 6
    torch.testing.assert_close(torch.cat([first, second], 1), want, atol=1e-5, rtol=1e-5)


def test_weights_path_equals_fused_path_and_padded_keys_get_zero_weight():
    torch.manual_seed(2)
    attn = MultiHeadAttention(D, H).eval()
    x = torch.randn(2, 6, D)
    pad = padding([6, 4], 6)
    extra = torch.randn(1, H, 6, 6)  # an additive float mask (e.g. a relative-position bias)
    for kwargs in ({}, {"causal": True}, {"key_padding_mask": pad}, {"attn_mask": extra}):
        fast, none = attn(x, **kwargs)
        slow, weights = attn(x, **kwargs, need_weights=True)
        assert none is None
        torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, H, 6))
    _, weights = attn(x, key_padding_mask=pad, need_weights=True)
    assert weights[1, :, :, 4:].abs().max() == 0  # the two pads of sequence 1
    assert (weights[1, :, :, :4] > 0).all()


def test_causal_output_does_not_depend_on_later_tokens():
    torch.manual_seed(3)
    block = TransformerBlock(D, H).eval()
    x = torch.randn(1, 8, D)
    changed = x.clone()
    changed[:, 5:] = torch.randn(1, 3, D)
    a, _ = block(x, causal=True)
    b, _ = block(changed, causal=True)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])
    # without the mask, the early positions do see the change
    c, _ = block(x)
    d, _ = block(changed)
    assert not torch.allclose(c[:, :5], d[:, :5])


def test_rope_scores_depend_only_on_position_differences():
    torch.manual_seed(4)
    rope = RotaryEmbedding(8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(p: int, s: int) -> torch.Tensor:
        return (rope(q, offset=p) * rope(k, offset=s)).sum()

    torch.testing.assert_close(score(3, 7), score(0, 4))
    torch.testing.assert_close(score(10, 2), score(18, 10))
    assert not torch.allclose(score(3, 7), score(3, 8))
    # a rotation keeps the norm
    torch.testing.assert_close(rope(q, offset=5).norm(), q.norm())
    # explicit positions give the same as an offset
    torch.testing.assert_close(rope(q, positions=torch.tensor([5])), rope(q, offset=5))


def test_sinusoidal_positions_follow_the_formula():
    pe = SinusoidalPositions(6)(torch.arange(4))
    p, i = 3, 1
    w = 10000 ** (-2 * i / 6)
    assert pe.shape == (4, 6)
    torch.testing.assert_close(pe[p, 2 * i], torch.tensor(p * w).sin())
    torch.testing.assert_close(pe[p, 2 * i + 1], torch.tensor(p * w).cos())
    assert SinusoidalPositions(6)(torch.arange(6).view(2, 3)).shape == (2, 3, 6)


def test_learned_positions_longer_than_the_table_is_a_one_line_error():
    table = LearnedPositions(8, max_len=5)
    assert table(torch.arange(5)).shape == (5, 8)
    with pytest.raises(ConfigError, match="position table: 7 > max_len 5") as err:
        table(torch.arange(7))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("rotary", [False, True])
def test_incremental_decoding_with_kv_cache_equals_the_full_causal_pass(rotary):
    torch.manual_seed(5)
    rope = RotaryEmbedding(D // H) if rotary else None
    blocks = [TransformerBlock(D, H, rotary=rope).eval() for _ in range(2)]
    x = torch.randn(2, 9, D)
    full = x
    for block in blocks:
        full, _ = block(full, causal=True)
    caches = [KVCache() for _ in blocks]
    steps = []
    for start, stop in ((0, 4), (4, 5), (5, 6), (6, 9)):  # a prompt, then tokens and a chunk
        h = x[:, start:stop]
        for block, cache in zip(blocks, caches, strict=True):
            h, _ = block(h, causal=True, cache=cache)
        steps.append(h)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert caches[0].length == 9
    caches[0].reset()
    assert caches[0].length == 0 and caches[0].k is None


@pytest.mark.parametrize("norm_first", [True, False])
def test_block_matches_torch_transformer_layers(norm_first):
    torch.manual_seed(6)
    ours = TransformerBlock(D, H, mlp_ratio=2.0, norm_first=norm_first, cross_attention=True)
    ref = nn.TransformerDecoderLayer(
        D,
        H,
        dim_feedforward=2 * D,
        dropout=0.0,
        activation="gelu",
        batch_first=True,
        norm_first=norm_first,
    )
    ours.eval(), ref.eval()
    copy_from_torch(ours.attn, ref.self_attn)
    copy_from_torch(ours.cross_attn, ref.multihead_attn)
    with torch.no_grad():
        for mine, theirs in (
            (ours.mlp.fc1, ref.linear1),
            (ours.mlp.fc2, ref.linear2),
            (ours.norm1, ref.norm1),
            (ours.norm_cross, ref.norm2),
            (ours.norm2, ref.norm3),
        ):
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
    x, memory = torch.randn(2, 5, D), torch.randn(2, 7, D)
    memory_pad = padding([7, 4], 7)
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    want = ref(x, memory, tgt_mask=causal, memory_key_padding_mask=memory_pad)
    got, _ = ours(x, memory, causal=True, context_padding_mask=memory_pad)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_errors_are_one_line():
    with pytest.raises(ConfigError, match="not divisible by num_heads"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ConfigError, match="needs a context"):
        TransformerBlock(D, H, cross_attention=True)(torch.randn(1, 2, D))

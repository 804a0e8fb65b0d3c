"""GPT: causality, the key/value cache against full passes, windows, tying, attention maps."""

from __future__ import annotations

import time

import pytest
import torch
from safetensors.torch import load, save

from deepworks.errors import ConfigError
from deepworks.generate import generate
from deepworks.models import create_model

V = 17


def gpt(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    options = {"dim": 32, "depth": 2, "num_heads": 4, "max_len": 32} | kwargs
    return create_model("gpt", num_classes=V, **options).eval()


def ids(b: int, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, V, (b, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
@torch.no_grad()
def test_logits_at_i_do_not_depend_on_later_tokens(positions):
    model = gpt(positions=positions)
    x = ids(2, 12)
    changed = x.clone()
    changed[:, 8:] = ids(2, 4, seed=1)
    a, b = model(x), model(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
@torch.no_grad()
def test_forward_with_cache_in_chunks_equals_the_full_pass(positions):
    model = gpt(positions=positions)
    x = ids(3, 20)
    full = model(x)
    logits, cache = model.forward_with_cache(x[:, :7], None)
    parts = [logits]
    for start, stop in ((7, 8), (8, 9), (9, 15), (15, 20)):
        logits, cache = model.forward_with_cache(x[:, start:stop], cache)
        parts.append(logits)
    assert cache.length == 20 and cache.ids.shape == (3, 20)
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_a_full_window_is_read_again_from_its_last_max_len_tokens():
    model = gpt(max_len=8)
    x = ids(2, 12)
    _, cache = model.forward_with_cache(x[:, :8], None)
    logits, cache = model.forward_with_cache(x[:, 8:9], cache)  # 9 tokens > max_len
    assert cache.length == 8
    torch.testing.assert_close(logits[:, -1], model(x[:, 1:9])[:, -1], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_inputs_longer_than_max_len_are_read_in_overlapping_windows():
    model = gpt(max_len=8)
    x = ids(2, 19)
    out = model(x)
    assert out.shape == (2, 19, V)
    torch.testing.assert_close(out[:, :8], model(x[:, :8]))
    # positions 8..11 come from the window 4..11, positions 16..18 from the window 11..18
    torch.testing.assert_close(out[:, 8:12], model(x[:, 4:12])[:, 4:])
    torch.testing.assert_close(out[:, 16:], model(x[:, 11:19])[:, 5:])


@pytest.mark.parametrize("positions", ["learned", "rotary"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cached_generation_gives_the_same_tokens_as_uncached(positions, temperature):
    model = gpt(positions=positions, max_len=24)  # 4 + 40 tokens: the window overflows
    prompt = ids(2, 4)

    def run(incremental: bool) -> torch.Tensor:
        g = torch.Generator().manual_seed(3)
        return generate(model, prompt, 40, temperature, generator=g, incremental=incremental)

    cached, uncached = run(True), run(False)
    assert cached.shape == (2, 44)
    assert torch.equal(cached, uncached)


def test_kv_cache_speeds_up_generation():
    """Same tokens, and the cache saves the re-reading of the prefix (ratio printed with -s)."""
    model = gpt(dim=64, depth=4, num_heads=4, max_len=256)
    prompt = ids(1, 8)

    def timed(incremental: bool) -> tuple[torch.Tensor, float]:
        g = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        out = generate(model, prompt, 200, 0.8, generator=g, incremental=incremental)
        return out, time.perf_counter() - start

    timed(True)  # warm-up
    cached, t_cached = timed(True)
    uncached, t_uncached = timed(False)
    assert torch.equal(cached, uncached)
    print(
        f"200 new tokens: uncached {t_uncached:.3f} s, cached {t_cached:.3f} s, "
        f"ratio {t_uncached / t_cached:.2f}x"
    )


@torch.no_grad()
def test_attention_maps_are_causal_distributions_and_skip_padding():
    model = gpt()
    x = ids(2, 9)
    x[1, :3] = 0  # left padding (pad_id 0)
    maps = model.attention_maps(x)
    assert len(maps) == 2 and maps[0].shape == (2, 4, 9, 9)
    assert model.last_attention is maps
    for w in maps:
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 9))
        # nothing attends to the future (the pad queries of sequence 1 see no allowed key at
        # all and get uniform weights instead of NaN; no real token reads them)
        assert w[0].triu(1).abs().max() == 0
        assert w[1, :, 3:].triu(4).abs().max() == 0
        assert w[1, :, 3:, :3].abs().max() == 0  # real tokens ignore the pads


@torch.no_grad()
def test_pad_id_none_skips_the_padding_mask_and_reads_nothing_on_the_host(monkeypatch):
    x = ids(2, 9)  # no padding: the same logits either way
    torch.testing.assert_close(gpt(pad_id=None)(x), gpt()(x), rtol=0, atol=0)
    x[1, :3] = 0  # token 0 is an ordinary token now: it is attended to
    assert not torch.allclose(gpt(pad_id=None)(x)[1, 3:], gpt()(x)[1, 3:])

    def no_read(self, *args):
        raise AssertionError("a device value was read on the host")

    model = gpt(pad_id=None)
    for name in ("__bool__", "__int__", "__float__", "item"):
        monkeypatch.setattr(torch.Tensor, name, no_read)
    model(x)  # learned positions: the length is checked against max_len on the host
    with pytest.raises(ConfigError, match="input longer than the position table: 40 > max_len 32"):
        model.pos_emb.span(32, 8, torch.device("cpu"))


def test_tied_weights_share_the_embedding_and_survive_safetensors():
    model = gpt(tie_weights=True)
    assert model.head.weight is model.tok_emb.weight
    state = model.state_dict()
    assert "head.weight" not in state  # stored once
    rebuilt = create_model("gpt", **model.get_config())
    rebuilt.load_state_dict(load(save({k: v.contiguous() for k, v in state.items()})))
    assert rebuilt.head.weight is rebuilt.tok_emb.weight
    x = ids(2, 5)
    torch.testing.assert_close(rebuilt.eval()(x), model(x))
    model.reset_classifier(5)  # a new head has its own weights
    assert model.head.weight is not model.tok_emb.weight
    assert "head.weight" in model.state_dict() and not model.get_config()["tie_weights"]


def test_tied_weights_get_gradients_from_both_uses():
    model = gpt(tie_weights=True).train()
    x = ids(2, 6)
    model(x).sum().backward()
    assert model.tok_emb.weight.grad is not None
    assert model.tok_emb.weight.grad[0].abs().sum() > 0  # id 0 is never read, only predicted


def test_bad_options_are_one_line_errors():
    with pytest.raises(ConfigError, match="positions"):
        gpt(positions="alibi")
    with pytest.raises(ConfigError, match="not divisible by num_heads"):
        gpt(dim=30)
    with pytest.raises(ConfigError, match="tie_weights"):
        gpt(tie_weights=True, vocab_size=V + 1)

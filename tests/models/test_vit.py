"""The Vision Transformer: patch embedding, tokens, pooling, attention maps, learning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import deepworks as dw
from deepworks.errors import ConfigError
from deepworks.models.vit import ViT


def vit(**kw) -> ViT:
    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "image_size": 8, "num_classes": 4, "patch_size": 2}
    return ViT(**(kwargs | {"dim": 16, "depth": 2, "num_heads": 2} | kw)).eval()


@pytest.mark.parametrize("patch_size, size, count", [(1, 8, 64), (2, 8, 16), (4, [8, 12], 6)])
def test_every_pixel_lands_in_exactly_one_patch(patch_size, size, count):
    m = vit(patch_size=patch_size, image_size=size)
    h, w = (size, size) if isinstance(size, int) else size
    assert m.num_patches == count
    with torch.no_grad():
        m.patch_embed.bias.zero_()
        m.patch_embed.weight.fill_(1.0)
        hit = torch.zeros(count)
        for i in range(h):
            for j in range(w):
                x = torch.zeros(1, 1, h, w)
                x[0, 0, i, j] = 1.0
                z = m.patch_embed(x).flatten(2)[0, 0]  # (N,) per patch, row-major
                assert (z != 0).sum() == 1  # one patch sees the pixel...
                patch = (i // patch_size) * (w // patch_size) + j // patch_size
                assert z[patch] == 1.0  # ...the one it lies in, numbered row by row
                hit[patch] += 1
    assert (hit == patch_size**2).all()  # and every patch covers p*p pixels


def test_patch_embedding_is_a_linear_map_of_flattened_patches():
    m = vit(in_channels=3, patch_size=2)
    x = torch.randn(2, 3, 8, 8)
    patches = F.unfold(x, kernel_size=2, stride=2).transpose(1, 2)  # (B, 16, 3*2*2)
    want = patches @ m.patch_embed.weight.flatten(1).T + m.patch_embed.bias
    with torch.no_grad():
        got = m.patch_embed(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling, tokens", [("cls", 17), ("mean", 16)])
def test_tokens_pooling_and_attention_maps(pooling, tokens):
    m = vit(pooling=pooling)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        z = m.tokens(x)
        encoded, _ = m.encode(x)
        features = m.forward_features(x)
    assert z.shape == (3, tokens, 16)
    want = encoded[:, 0] if pooling == "cls" else encoded.mean(1)
    torch.testing.assert_close(features, want)
    maps = m.attention_maps(x)
    assert len(maps) == 2
    for weights in maps:
        assert weights.shape == (3, 2, tokens, tokens)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, tokens))
    assert m(x).shape == (3, 4)


def test_positions_make_the_model_order_aware():
    # without position embeddings a ViT with mean pooling would be blind to where a patch lies;
    # with them, swapping two patches changes the output
    m = vit(pooling="mean")
    x = torch.randn(1, 1, 8, 8)
    swapped = x.clone()
    swapped[..., :2, :2], swapped[..., 6:, 6:] = x[..., 6:, 6:], x[..., :2, :2]
    with torch.no_grad():
        torch.nn.init.normal_(m.pos_embed, std=1.0)
        assert not torch.allclose(m(x), m(swapped))
        m.pos_embed.zero_()
        torch.testing.assert_close(m(x), m(swapped), atol=1e-5, rtol=1e-5)


def test_learns_the_direction_of_a_line():
    # the class is the direction of a faint line across a noisy image (horizontal, vertical,
    # diagonal, anti-diagonal; anywhere): a tiny ViT learns it within 80 Adam steps
    torch.manual_seed(0)
    m = ViT(in_channels=1, image_size=8, num_classes=4, patch_size=2, dim=16, depth=1, num_heads=2)
    g = torch.Generator().manual_seed(0)
    diag = torch.arange(8)

    def batch(n):
        y = torch.randint(0, 4, (n,), generator=g)
        x = 0.3 * torch.randn(n, 1, 8, 8, generator=g)
        where = torch.randint(0, 8, (n,), generator=g)
        for i in range(n):
            k, a = int(y[i]), int(where[i])
            if k == 0:
                x[i, 0, a, :] += 1.5
            elif k == 1:
                x[i, 0, :, a] += 1.5
            elif k == 2:
                x[i, 0, diag, diag] += 1.5
            else:
                x[i, 0, diag, 7 - diag] += 1.5
        return x, y

    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    x, y = batch(400)
    with torch.no_grad():
        before = (m.eval()(x).argmax(1) == y).float().mean()
    m.train()
    for _ in range(80):
        xb, yb = batch(64)
        loss = F.cross_entropy(m(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = (m.eval()(x).argmax(1) == y).float().mean()
    assert before < 0.5 and accuracy > 0.9, (float(before), float(accuracy))


def test_bad_settings_are_one_line_errors():
    base = {"in_channels": 1, "image_size": 8, "num_classes": 3}
    for kwargs, word in (
        ({"patch_size": 3}, "patch_size"),
        ({"dim": 10, "num_heads": 4}, "num_heads"),
        ({"pooling": "max"}, "pooling"),
    ):
        with pytest.raises(ConfigError, match=word) as err:
            dw.create_model("vit", **(base | kwargs))
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="image_size"):
        vit()(torch.randn(1, 1, 16, 16))

"""Attention maps: saved from a model's ``attention_maps``, drawn as a per-layer, per-head grid."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deepworks.data.bundle import DataBundle, Split
from deepworks.data.text.vocab import CharTokenizer
from deepworks.layers.attention import MultiHeadAttention
from deepworks.report import write_report
from deepworks.report.attention import MAX_HEADS, MAX_LAYERS, MAX_LEN, save_attention_maps, sections
from deepworks.report.run_files import load_run

from .fake_runs import make_classification_run

PNG = b"\x89PNG\r\n\x1a\n"
TEXTS = ["a<b & c>d", "hello world", "attention!"]


class TinyAttender(nn.Module):
    """Token embedding + a stack of self-attention layers that keep their weights."""

    def __init__(self, vocab: int, layers: int, heads: int, dim: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim * heads)
        self.layers = nn.ModuleList(MultiHeadAttention(dim * heads, heads) for _ in range(layers))
        self.dropout = nn.Dropout(0.5)  # makes eval mode matter: the maps must be deterministic

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for layer in self.layers:
            h = h + layer(self.dropout(h))[0]
        return h

    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, maps = self.embed(x), []
        for layer in self.layers:
            out, weights = layer(self.dropout(h), need_weights=True)
            h = h + out
            maps.append(weights)
        return maps


def char_data(length: int = 12) -> tuple[DataBundle, CharTokenizer]:
    tok = CharTokenizer.fit(TEXTS)
    ids = [(tok.encode(t) * 20)[:length] for t in TEXTS]
    x = torch.tensor(ids)
    y = torch.zeros(len(TEXTS), dtype=torch.long)
    data = DataBundle(
        name="chars",
        train=Split(x, y),
        val=None,
        test=Split(x.flip(0), y),  # test inputs differ from train: the right split is used
        task_type="classification",
        input_shape=(length,),
        num_classes=2,
        extras={"tokenizer": tok.to_dict()},
    )
    return data, tok


def test_saves_capped_maps_and_decoded_tokens(tmp_path: Path) -> None:
    torch.manual_seed(0)
    length = MAX_LEN + 5
    data, tok = char_data(length)
    model = TinyAttender(len(tok.vocab), layers=MAX_LAYERS + 1, heads=MAX_HEADS + 1).train()
    path = save_attention_maps(model, data, tmp_path, n=2)
    assert path == tmp_path / "attention.npz"
    assert model.training  # the mode is put back
    model.eval()
    with torch.no_grad():
        full = model.attention_maps(data.test.x[:2])
    with np.load(path) as f:
        layers = sorted(k for k in f.files if k.startswith("layer_"))
        assert len(layers) == MAX_LAYERS
        assert int(f["num_layers"]) == MAX_LAYERS + 1 and int(f["num_heads"]) == MAX_HEADS + 1
        assert str(f["split"]) == "test"
        for i in range(MAX_LAYERS):
            m = f[f"layer_{i}"]
            assert m.dtype == np.float16 and m.shape == (2, MAX_HEADS, MAX_LEN, MAX_LEN)
            ref = full[i][:, :MAX_HEADS, :MAX_LEN, :MAX_LEN].numpy()
            np.testing.assert_allclose(m.astype(np.float32), ref, atol=2e-3)
        tokens = f["tokens"]
        assert tokens.shape == (2, MAX_LEN)
        expected = [tok.vocab.itos[i] for i in data.test.x[0, :MAX_LEN].tolist()]
        assert [t.replace("␣", " ") for t in tokens[0]] == expected


def test_nothing_saved_without_attention_maps(tmp_path: Path) -> None:
    data, _ = char_data()
    assert save_attention_maps(nn.Linear(3, 3), data, tmp_path) is None
    assert not (tmp_path / "attention.npz").exists()


def test_positions_without_a_tokenizer(tmp_path: Path) -> None:
    data, tok = char_data(10)
    data.extras = {}
    save_attention_maps(TinyAttender(len(tok.vocab), 1, 2), data, tmp_path, n=3)
    with np.load(tmp_path / "attention.npz") as f:
        assert f["layer_0"].shape == (3, 2, 10, 10)
        assert f["tokens"].tolist() == [[str(i) for i in range(10)]] * 3


def _png(uri: str) -> bytes:
    assert uri.startswith("data:image/png;base64,")
    return base64.b64decode(uri.split(",", 1)[1])


def test_section_draws_the_grid_with_tokens(tmp_path: Path) -> None:
    torch.manual_seed(1)
    data, tok = char_data(9)
    save_attention_maps(TinyAttender(len(tok.vocab), layers=2, heads=3), data, tmp_path)
    (out,) = sections(load_run(tmp_path), "test")
    anchor, title, body = out
    assert anchor == "attention" and "Attention" in title
    uris = re.findall(r'src="(data:image/png;base64,[^"]+)"', body)
    assert len(uris) == 1 and _png(uris[0]).startswith(PNG)
    assert "Showing" not in body  # nothing was cut
    # the first test input is "attention!"[:9], escaped where it is printed
    assert "Input tokens: <code>a t t e n t i o n</code>" in body


def test_section_names_what_was_cut_and_escapes_tokens(tmp_path: Path) -> None:
    data, tok = char_data(MAX_LEN + 1)
    data.test = data.train  # the first input is "a<b & c>d..."
    save_attention_maps(
        TinyAttender(len(tok.vocab), layers=MAX_LAYERS + 2, heads=2), data, tmp_path
    )
    ((_, _, body),) = sections(load_run(tmp_path), "test")
    assert f"the first {MAX_LAYERS} of {MAX_LAYERS + 2} layers" in body
    assert f"the first {MAX_LEN} positions" in body
    assert "heads" not in body.split("Showing", 1)[1].split(".")[0]  # all heads shown
    assert "a &lt; b ␣ &amp; ␣ c &gt; d" in body and "<b" not in body


def test_no_section_without_the_file(tmp_path: Path) -> None:
    assert sections(load_run(tmp_path), "test") == []


def test_report_includes_the_attention_section(tmp_path: Path) -> None:
    run = make_classification_run(tmp_path / "run", images=False)
    data, tok = char_data(8)
    save_attention_maps(TinyAttender(len(tok.vocab), layers=1, heads=2), data, run)
    page = write_report(run).read_text(encoding="utf-8")
    assert '<section id="attention">' in page
    assert 'href="#attention"' in page


@pytest.mark.parametrize("pooling", ["mean"])
def test_real_transformer_encoder(tmp_path: Path, pooling: str) -> None:
    from deepworks.models.transformer_encoder import TransformerEncoder

    data, tok = char_data(16)
    model = TransformerEncoder(
        num_classes=2,
        vocab_size=len(tok.vocab),
        dim=16,
        depth=2,
        num_heads=2,
        mlp_dim=32,
        max_len=32,
        pad_id=0,
        pooling=pooling,
    )
    save_attention_maps(model, data, tmp_path)
    with np.load(tmp_path / "attention.npz") as f:
        m = f["layer_1"].astype(np.float32)
        assert m.shape == (2, 2, 16, 16)
        np.testing.assert_allclose(m.sum(-1), 1.0, atol=1e-2)  # softmax rows
    assert sections(load_run(tmp_path), "test")

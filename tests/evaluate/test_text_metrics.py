"""Sequence metrics: BLEU against sacrebleu, exact match, token accuracy, id stripping."""

from __future__ import annotations

import random

import numpy as np
import pytest
import sacrebleu

from deepworks.evaluate.text import (
    bleu_stats,
    corpus_bleu,
    exact_match,
    sequence_metrics,
    strip_ids,
    token_accuracy,
)


def corpus(seed: int, n: int = 40, vocab: int = 8) -> tuple[list[list[str]], list[list[str]]]:
    """Random references and noisy copies of them (dropped, swapped, added tokens)."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    refs, hyps = [], []
    for _ in range(n):
        ref = [rng.choice(words) for _ in range(rng.randint(3, 15))]
        hyp = []
        for tok in ref:
            r = rng.random()
            if r < 0.1:
                continue
            hyp.append(rng.choice(words) if r < 0.3 else tok)
            if rng.random() < 0.05:
                hyp.append(rng.choice(words))
        refs.append(ref)
        hyps.append(hyp)
    return hyps, refs


def sacre(hyps, refs_streams, smooth: str) -> float:
    joined = [" ".join(h) for h in hyps]
    streams = [[" ".join(r) for r in stream] for stream in refs_streams]
    return sacrebleu.corpus_bleu(joined, streams, tokenize="none", smooth_method=smooth).score


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("smooth", ["none", "exp"])
def test_corpus_bleu_matches_sacrebleu(seed, smooth):
    hyps, refs = corpus(seed)
    want = sacre(hyps, [refs], smooth)
    assert 0 < want < 100
    assert corpus_bleu(hyps, refs, smooth=smooth) * 100 == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("smooth", ["none", "exp"])
def test_corpus_bleu_short_and_zero_counts_match_sacrebleu(smooth):
    # no 4-gram matches at all: zero with "none", the smoothed value with "exp"
    hyps = [["a", "b", "c", "d"], ["x", "y"]]
    refs = [["a", "b", "x", "c", "d", "e"], ["x", "z", "y"]]
    assert corpus_bleu(hyps, refs, smooth=smooth) * 100 == pytest.approx(
        sacre(hyps, [refs], smooth), abs=1e-9
    )


def test_corpus_bleu_with_two_references_matches_sacrebleu():
    hyps, refs = corpus(7)
    _, other = corpus(8, n=len(refs))
    both = [[a, b] for a, b in zip(refs, other, strict=True)]
    want = sacre(hyps, [refs, other], "exp")
    assert corpus_bleu(hyps, both, smooth="exp") * 100 == pytest.approx(want, abs=1e-9)


def test_brevity_penalty_and_perfect_score():
    refs = [list("1997-03-03"), list("2001-12-31")]
    assert corpus_bleu(refs, refs) == pytest.approx(1.0)
    short = [r[:8] for r in refs]  # every n-gram matches, but 16 of 20 tokens: BP = e^(1 - 20/16)
    assert corpus_bleu(short, refs) == pytest.approx(np.exp(1 - 20 / 16))
    stats = bleu_stats(short, refs)
    assert stats["hyp_len"] == 16 and stats["ref_len"] == 20
    assert stats["correct"] == stats["total"] == [16, 14, 12, 10]
    assert corpus_bleu([[], []], refs) == 0.0


def test_exact_match_and_token_accuracy():
    refs = [list("abcd"), list("xyz"), list("pq")]
    hyps = [list("abcd"), list("xbz"), list("p")]
    assert exact_match(hyps, refs) == pytest.approx(1 / 3)
    # positions: 4 of 4, 2 of 3, 1 of 2 (a missing token is wrong)
    assert token_accuracy(hyps, refs) == pytest.approx(7 / 9)
    assert token_accuracy([list("abcdef")], [list("abc")]) == 1.0  # extra tokens: see exact match
    with pytest.raises(ValueError, match="2 hypotheses but 3 references"):
        exact_match(hyps[:2], refs)


def test_strip_ids_and_sequence_metrics():
    assert strip_ids([2, 5, 6, 0, 7, 3, 8, 0]) == [5, 6, 7]
    pred = np.array([[5, 6, 3, 0, 0], [5, 7, 3, 0, 0], [5, 6, 6, 3, 0]])
    true = np.array([[2, 5, 6, 3], [2, 5, 6, 3], [2, 5, 6, 3]])
    m = sequence_metrics(pred, true)
    assert m["exact_match"] == pytest.approx(1 / 3)
    assert m["token_accuracy"] == pytest.approx(5 / 6)
    hyps = [[5, 6], [5, 7], [5, 6, 6]]
    refs = [[5, 6]] * 3
    assert m["bleu"] == pytest.approx(corpus_bleu(hyps, refs, smooth="exp"))

"""Metrics of generated token sequences: exact match, token accuracy and corpus BLEU.

All functions take sequences of tokens (ids, characters or words: anything hashable), so the
same code scores a translation, a transliteration or a language model's continuation.
:func:`strip_ids` turns a padded row of decoder ids into such a sequence.

Corpus BLEU (Papineni et al., 2002) pools n-gram counts over the whole corpus:

    p_n  = Σ_i Σ_g min(count_hyp_i(g), max_ref count_ref_i(g)) / Σ_i Σ_g count_hyp_i(g)
    BP   = 1 if c > r else exp(1 - r / c)     (c: hypothesis length, r: closest reference
                                              length, both summed over the corpus)
    BLEU = BP · exp(Σ_{n=1..N} log(p_n) / N)  (N = 4)

``smooth="exp"`` replaces a zero numerator of p_n by ``1 / 2^k`` (k = 1, 2, ... for each such
n in turn), as sacrebleu's default ``exp`` smoothing does; with ``smooth="none"`` any zero
precision makes BLEU 0. Scores are fractions in [0, 1] (sacrebleu reports 100 times that).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Literal

import numpy as np

from deepworks.evaluate.specs import MetricSpec

#: What :func:`sequence_metrics` emits.
SEQUENCE_METRICS = (
    MetricSpec("exact_match", "max", headline=True, fmt=".2%"),
    MetricSpec("bleu", "max", headline=True, label="BLEU-4"),
    MetricSpec("token_accuracy", "max", headline=True, fmt=".2%"),
)

Tokens = Sequence[Hashable]


def strip_ids(
    ids: Iterable[int], eos_id: int = 3, pad_id: int = 0, bos_id: int | None = 2
) -> list[int]:
    """A row of decoder ids → the tokens up to (not including) the first ``<eos>``, without
    padding or ``<bos>``."""
    out = []
    for i in ids:
        i = int(i)
        if i == eos_id:
            break
        if i in (pad_id, bos_id):
            continue
        out.append(i)
    return out


def exact_match(hypotheses: Sequence[Tokens], references: Sequence[Tokens]) -> float:
    """Fraction of hypotheses identical to their reference (whole sequence)."""
    _check(hypotheses, references)
    hits = sum(list(h) == list(r) for h, r in zip(hypotheses, references, strict=True))
    return hits / max(1, len(references))


def token_accuracy(hypotheses: Sequence[Tokens], references: Sequence[Tokens]) -> float:
    """Fraction of reference positions whose token the hypothesis has at the same position
    (a hypothesis shorter than its reference misses the rest)."""
    _check(hypotheses, references)
    hits = total = 0
    for h, r in zip(hypotheses, references, strict=True):
        hits += sum(a == b for a, b in zip(h, r, strict=False))
        total += len(r)
    return hits / max(1, total)


def ngrams(tokens: Tokens, n: int) -> Counter:
    t = tuple(tokens)
    return Counter(t[i : i + n] for i in range(len(t) - n + 1))


def bleu_stats(
    hypotheses: Sequence[Tokens], references: Sequence[Tokens | Sequence[Tokens]], max_n: int = 4
) -> dict[str, list[int] | int]:
    """Corpus sums: clipped n-gram matches and hypothesis n-grams per order, and the hypothesis
    and (closest) reference lengths. A reference may be one sequence or a list of them."""
    _check(hypotheses, references)
    correct, total = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        refs = [list(r) for r in ref] if _is_multi(ref) else [list(ref)]
        hyp = list(hyp)
        hyp_len += len(hyp)
        # closest reference length, the shorter one on ties (as sacrebleu and NLTK)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
        for n in range(1, max_n + 1):
            counts = ngrams(hyp, n)
            best: Counter = Counter()
            for r in refs:
                best |= ngrams(r, n)  # max count of each n-gram over the references
            correct[n - 1] += sum(min(c, best[g]) for g, c in counts.items())
            total[n - 1] += max(0, len(hyp) - n + 1)
    return {"correct": correct, "total": total, "hyp_len": hyp_len, "ref_len": ref_len}


def corpus_bleu(
    hypotheses: Sequence[Tokens],
    references: Sequence[Tokens | Sequence[Tokens]],
    max_n: int = 4,
    smooth: Literal["none", "exp"] = "none",
) -> float:
    """Corpus BLEU-``max_n`` with brevity penalty, in [0, 1]. See the module docstring."""
    s = bleu_stats(hypotheses, references, max_n)
    c, r = s["hyp_len"], s["ref_len"]
    if c == 0:
        return 0.0
    log_p, k = 0.0, 1.0
    for correct, total in zip(s["correct"], s["total"], strict=True):
        if total == 0:  # hypotheses too short to have n-grams of this order
            return 0.0
        if correct == 0:
            if smooth == "none":
                return 0.0
            k *= 2
            log_p += math.log(1.0 / (k * total))
        else:
            log_p += math.log(correct / total)
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * math.exp(log_p / max_n)


def sequence_metrics(
    pred_ids: np.ndarray, true_ids: np.ndarray, eos_id: int = 3, pad_id: int = 0, bos_id: int = 2
) -> dict[str, float]:
    """Exact match, token accuracy and BLEU-4 of padded id rows (N, L) against (N, L')."""
    hyps = [strip_ids(row, eos_id, pad_id, bos_id) for row in pred_ids]
    refs = [strip_ids(row, eos_id, pad_id, bos_id) for row in true_ids]
    return {
        "exact_match": exact_match(hyps, refs),
        "token_accuracy": token_accuracy(hyps, refs),
        "bleu": corpus_bleu(hyps, refs, smooth="exp"),
    }


def _is_multi(ref: Tokens | Sequence[Tokens]) -> bool:
    """Whether ``ref`` is a list of reference sequences rather than one sequence."""
    return len(ref) > 0 and not isinstance(ref, str) and not isinstance(ref[0], Hashable)


def _check(hypotheses: Sequence, references: Sequence) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")

"""Sampling: greedy, top-k, nucleus (top-p) against hand-computed distributions; incremental
(carried-state) generation equals re-running the whole sequence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepworks.data.text.vocab import CharTokenizer
from deepworks.errors import ConfigError
from deepworks.generate import filter_logits, generate, next_token, sample_text
from deepworks.models import create_model

V = 12


class Bigram(nn.Module):
    """Logits of the next token from the current one only: (B, L) -> (B, L, V), no state."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.table = nn.Embedding(V, V)
        nn.init.normal_(self.table.weight, std=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table(x)


class Windowed(Bigram):
    """Sees only its last ``context_length`` tokens: the logits depend on the window's sum."""

    context_length = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] <= self.context_length  # generate() must cut the window
        return self.table(x.cumsum(1) % V)


@pytest.fixture(scope="module")
def lstm():
    torch.manual_seed(0)
    return create_model(
        "rnn", num_classes=V, vocab_size=V, cell="lstm", output="sequence", hidden_size=16
    )


def test_top_k_1_equals_greedy():
    model = Bigram()
    prompt = torch.tensor([[1, 2], [5, 7]])
    greedy = generate(model, prompt, 10, temperature=0.0)
    top1 = generate(model, prompt, 10, temperature=1.3, top_k=1, generator=torch.Generator())
    assert torch.equal(greedy, top1)
    # greedy on a bigram table: each token is the argmax of the previous token's row
    table = model.table.weight
    for row in greedy:
        for a, b in zip(row[1:-1], row[2:], strict=True):
            assert b == table[a].argmax()


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])  # sorted: 0.5 (1), 0.3 (3), 0.15 (2), 0.05 (0)
    logits = probs.log()[None]
    kept = lambda p: torch.isfinite(filter_logits(logits, top_p=p))[0].nonzero().flatten()  # noqa: E731
    assert kept(0.4).tolist() == [1]  # the top token alone has 0.5 >= 0.4
    assert kept(0.75).tolist() == [1, 3]  # 0.5 < 0.75 <= 0.8
    assert kept(0.85).tolist() == [1, 2, 3]  # 0.8 < 0.85 <= 0.95
    assert kept(0.99).tolist() == [0, 1, 2, 3]
    assert kept(1.0).tolist() == [0, 1, 2, 3]
    # the renormalized distribution of the nucleus {1, 3}: 0.5/0.8 and 0.3/0.8
    renorm = filter_logits(logits, top_p=0.75).softmax(-1)[0]
    assert torch.allclose(renorm, torch.tensor([0, 0.625, 0, 0.375]), atol=1e-6)


def test_top_p_sampling_frequencies():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])
    logits = probs.log()[None].expand(4000, -1)
    g = torch.Generator().manual_seed(0)
    draws = next_token(logits, 1.0, top_p=0.75, generator=g)
    counts = torch.bincount(draws, minlength=4).float() / len(draws)
    assert counts[0] == counts[2] == 0
    assert abs(counts[1] - 0.625) < 0.03 and abs(counts[3] - 0.375) < 0.03


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0, 0.5]])
    out = filter_logits(logits, top_k=2)
    assert torch.isfinite(out).tolist() == [[False, True, False, True, False]]
    assert torch.equal(out[torch.isfinite(out)], torch.tensor([3.0, 2.0]))
    assert torch.equal(filter_logits(logits, top_k=None), logits)


def test_temperature_to_zero_approaches_argmax():
    logits = torch.tensor([[1.0, 1.2, 0.9, 1.1]]).expand(2000, -1)
    g = torch.Generator().manual_seed(0)
    hot = next_token(logits, 1.0, generator=g)
    cold = next_token(logits, 1e-3, generator=g)
    assert (hot != 1).float().mean() > 0.5  # at T=1 the four tokens are nearly equally likely
    assert bool((cold == 1).all())
    # the sampled distribution follows softmax(z / T)
    t = 0.5
    expected = (logits[0] / t).softmax(-1)
    freq = torch.bincount(next_token(logits, t, generator=g), minlength=4).float() / 2000
    assert torch.allclose(freq, expected, atol=0.04)


def test_stateful_generation_equals_full_recompute(lstm):
    prompt = torch.tensor([3, 4, 5, 6])
    # <pad> is suppressed: the rnn reads a trailing pad token as padding, not as input
    a = generate(
        lstm, prompt, 40, 1.0, generator=torch.Generator().manual_seed(7), suppress_ids=[0]
    )
    b = generate(
        lstm,
        prompt,
        40,
        1.0,
        generator=torch.Generator().manual_seed(7),
        incremental=False,
        suppress_ids=[0],
    )
    assert 0 not in a.tolist()
    assert a.shape == (44,) and torch.equal(a[:4], prompt)
    assert torch.equal(a, b)
    greedy = generate(lstm, prompt[None].expand(3, -1), 20, 0.0)
    assert greedy.shape == (3, 24) and bool((greedy == greedy[0]).all())


def test_windowed_model_and_training_mode_restored():
    model = Windowed().train()
    out = generate(model, [1, 2, 3, 4, 5], 6, temperature=0.0)
    assert len(out) == 11
    assert model.training  # generate switches to eval mode and back
    # each greedy token follows from the last 3 tokens alone
    table = model.table.weight
    seq = out.tolist()
    for i in range(5, 11):
        window = seq[i - 3 : i]
        assert seq[i] == int(table[sum(window) % V].argmax())


def test_sample_text_and_errors(lstm):
    tok = CharTokenizer.fit(["abcdefgh"])  # 4 specials + 8 letters = V
    text = sample_text(lstm, tok, "abc", max_new_tokens=10, temperature=0.8, seed=1)
    assert text.startswith("abc")
    assert text == sample_text(lstm, tok, "abc", max_new_tokens=10, temperature=0.8, seed=1)
    with pytest.raises(ConfigError, match="temperature"):
        next_token(torch.zeros(1, 3), temperature=-1)
    with pytest.raises(ConfigError, match="top_p"):
        next_token(torch.zeros(1, 3), top_p=0.0)
    with pytest.raises(ConfigError, match="prompt: empty"):
        generate(lstm, torch.zeros(0, dtype=torch.int64), 3)

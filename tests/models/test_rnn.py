"""The recurrent model: shapes, padding, bidirectional pooling, carried state, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import deepworks as dw
from deepworks.errors import ConfigError
from deepworks.models.rnn import RNN

V = 13  # vocabulary size; id 0 is padding


def token_model(**kwargs) -> RNN:
    torch.manual_seed(0)
    settings = {"num_classes": 3, "vocab_size": V, "embedding_dim": 8, "hidden_size": 12}
    return RNN(**(settings | kwargs)).eval()


def tokens(b: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, V - 1, (b, length), generator=g)  # V - 1 never occurs


def pad(x: torch.Tensor, extra: int) -> torch.Tensor:
    return F.pad(x, (0, extra), value=0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_output_shapes(cell, bidirectional):
    dirs = 2 if bidirectional else 1
    x = tokens(4, 9)
    for output in ("last", "sequence"):
        for pooling in ("last", "mean", "max"):
            m = token_model(
                cell=cell, bidirectional=bidirectional, output=output, pooling=pooling, num_layers=2
            )
            feats = m.forward_features(x)
            want = (4, 12 * dirs) if output == "last" else (4, 9, 12 * dirs)
            assert feats.shape == want
            out = m(x)
            assert out.shape == (*want[:-1], 3)
            torch.testing.assert_close(out, m.forward_head(feats))


def test_float_inputs():
    torch.manual_seed(0)
    m = RNN(num_classes=2, input_size=3, hidden_size=8)
    assert m(torch.randn(5, 6, 3)).shape == (5, 2)
    one = RNN(num_classes=4, input_size=1, hidden_size=8, output="sequence")
    x = torch.randn(5, 6)  # (B, L): one feature per step
    torch.testing.assert_close(one(x), one(x.unsqueeze(-1)))
    assert one(x).shape == (5, 6, 4)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_padding_does_not_change_the_output(cell, bidirectional, pooling):
    m = token_model(cell=cell, bidirectional=bidirectional, pooling=pooling, num_layers=2)
    short, long = tokens(1, 4, seed=1), tokens(1, 9, seed=2)
    with torch.no_grad():
        alone = m(short)
        # padded on its own, and batched with a longer sequence (so the batch is packed)
        padded = m(pad(short, 5))
        batched = m(torch.cat([pad(short, 5), long]))
        torch.testing.assert_close(padded, alone, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(batched[:1], alone, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(batched[1:], m(long), atol=1e-6, rtol=1e-5)
        # the pads really would change the result if they were run through the recurrence
        unmasked = token_model(
            cell=cell, bidirectional=bidirectional, pooling=pooling, num_layers=2, pad_id=V - 1
        )
        assert not torch.allclose(unmasked(pad(short, 5)), unmasked(short), atol=1e-4)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_sequence_output_ignores_padding(bidirectional):
    m = token_model(cell="gru", bidirectional=bidirectional, output="sequence")
    short = tokens(1, 5, seed=3)
    with torch.no_grad():
        batched = m.forward_features(torch.cat([pad(short, 3), tokens(1, 8, seed=4)]))
        torch.testing.assert_close(batched[:1, :5], m.forward_features(short), atol=1e-6, rtol=0)
        assert (batched[0, 5:] == 0).all()  # pad positions carry no recurrent output


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bidirectional_last_uses_both_directions(cell):
    m = token_model(cell=cell, bidirectional=True, pooling="last", num_layers=2)
    short = tokens(1, 6, seed=5)
    with torch.no_grad():
        feats = m.forward_features(torch.cat([pad(short, 4), tokens(1, 10, seed=6)]))[0]
        full, _ = m.rnn(m.embedding(short))  # torch's outputs over the unpadded sequence
    h = 12
    # forward direction: its output at the last real token; backward: its output at position 0,
    # where it has read the whole sequence from the end
    torch.testing.assert_close(feats[:h], full[0, -1, :h], atol=1e-6, rtol=0)
    torch.testing.assert_close(feats[h:], full[0, 0, h:], atol=1e-6, rtol=0)
    # the backward output at the last position (having read one token) is something else
    assert not torch.allclose(feats[h:], full[0, -1, h:], atol=1e-3)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_forward_with_state_over_halves_equals_one_pass(cell):
    m = token_model(cell=cell, output="sequence", num_layers=2)
    x = tokens(3, 10, seed=7)
    with torch.no_grad():
        whole = m(x)
        _, final = m.rnn(m.embedding(x))
        first, state = m.forward_with_state(x[:, :6], None)
        second, state = m.forward_with_state(x[:, 6:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, atol=1e-6, rtol=1e-5)
    finals = final if isinstance(final, tuple) else (final,)
    states = state if isinstance(state, tuple) else (state,)
    assert len(states) == (2 if cell == "lstm" else 1)
    for got, want in zip(states, finals, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_forward_with_state_needs_a_unidirectional_sequence_model():
    with pytest.raises(ConfigError, match="bidirectional"):
        token_model(output="sequence", bidirectional=True).forward_with_state(tokens(1, 3))
    with pytest.raises(ConfigError, match="output: sequence"):
        token_model(output="last").forward_with_state(tokens(1, 3))


@pytest.mark.parametrize("freeze", [False, True])
def test_frozen_embedding_gets_no_gradient(freeze):
    m = token_model(freeze_embedding=freeze).train()
    before = m.embedding.weight.detach().clone()
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=0.1)
    F.cross_entropy(m(tokens(4, 5)), torch.tensor([0, 1, 2, 0])).backward()
    assert m.rnn.weight_hh_l0.grad is not None
    if freeze:
        assert m.embedding.weight.grad is None
        assert m.num_parameters(trainable_only=True) < m.num_parameters()
    else:
        assert m.embedding.weight.grad.abs().sum() > 0
        assert (m.embedding.weight.grad[0] == 0).all()  # the pad vector never learns
    opt.step()
    assert torch.equal(m.embedding.weight, before) == freeze


def test_config_errors():
    with pytest.raises(ConfigError, match="input_size"):
        RNN(num_classes=2)
    with pytest.raises(ConfigError, match="both set"):
        RNN(num_classes=2, vocab_size=5, input_size=3)
    with pytest.raises(ConfigError, match="dropout"):
        RNN(num_classes=2, input_size=3, dropout=1.5)
    with pytest.raises(ConfigError, match="cell"):
        dw.create_model("rnn", num_classes=2, input_size=3, cell="transformer")


def test_recurrent_models_clip_gradients_by_default():
    assert RNN.default_grad_clip_norm == 1.0


def accuracy(model: RNN, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model.eval()(x).argmax(-1) == y).float().mean().item()


def fit(model: RNN, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float = 0.02) -> None:
    torch.manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,))
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), RNN.default_grad_clip_norm)
        opt.step()


def test_learns_the_sign_of_a_sum():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1200, 10, 1, generator=g)
    y = (x.sum(dim=(1, 2)) > 0).long()
    torch.manual_seed(0)
    model = RNN(num_classes=2, input_size=1, cell="lstm", hidden_size=16)
    before = accuracy(model, x[1000:], y[1000:])
    fit(model, x[:1000], y[:1000], steps=150)
    after = accuracy(model, x[1000:], y[1000:])
    assert after > 0.9 and after > before + 0.2, (before, after)


def test_learns_a_majority_vote_over_padded_token_sequences():
    # ids 1 and 2 vote, padded sequences of 3..12 tokens; the answer is which id is more frequent
    g = torch.Generator().manual_seed(0)
    n, length = 1200, 12
    x = torch.randint(1, 3, (n, length), generator=g)
    lengths = 2 * torch.randint(1, 6, (n,), generator=g) + 1  # odd: no ties
    x = x.masked_fill(torch.arange(length) >= lengths[:, None], 0)
    y = ((x == 1).sum(1) > (x == 2).sum(1)).long()
    torch.manual_seed(0)
    model = RNN(num_classes=2, vocab_size=3, embedding_dim=4, hidden_size=16, cell="gru")
    fit(model, x[:1000], y[:1000], steps=150)
    assert accuracy(model, x[1000:], y[1000:]) > 0.9

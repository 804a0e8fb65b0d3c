"""The explicit LSTM / GRU / RNN cells against torch's fused layers, with the same weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepworks.models.lstm_cell import GRU, LSTM, GRUCell, LSTMCell, RNNCell, RNNLayer, unroll

TOL = 1e-5  # max abs difference allowed, float32 and float64
PAIRS = {"lstm": (LSTM, nn.LSTM), "gru": (GRU, nn.GRU), "rnn": (RNNLayer, nn.RNN)}


def max_diff(a, b) -> float:
    if isinstance(a, tuple):
        return max(max_diff(x, y) for x, y in zip(a, b, strict=True))
    return (a - b).abs().max().item()


def pair(kind: str, dtype: torch.dtype, **kwargs):
    ours_type, torch_type = PAIRS[kind]
    torch.manual_seed(0)
    reference = torch_type(5, 7, batch_first=True, **kwargs).to(dtype)
    torch.manual_seed(1)  # different initial weights: only load_from_torch makes them agree
    ours = ours_type(5, 7, **kwargs).to(dtype)
    ours.load_from_torch(reference)
    return ours, reference


def initial_state(kind: str, layers: int, b: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(3)
    h = torch.randn(layers, b, 7, generator=g, dtype=dtype)
    return (h, torch.randn(layers, b, 7, generator=g, dtype=dtype)) if kind == "lstm" else h


def as_tuple(state) -> tuple:
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"num_layers": 2}, {"num_layers": 2, "bidirectional": True}, {"bias": False}],
    ids=["1layer", "2layers", "bidirectional", "nobias"],
)
def test_matches_torch_outputs_states_and_gradients(kind, dtype, kwargs):
    ours, reference = pair(kind, dtype, **kwargs)
    layers = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 9, 5, generator=g, dtype=dtype)
    for state in (None, initial_state(kind, layers, 4, dtype)):
        x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        out1, final1 = ours(x1, state)
        out2, final2 = reference(x2, state)
        assert out1.shape == out2.shape and out1.dtype == dtype
        assert max_diff(out1, out2) < TOL
        assert max_diff(as_tuple(final1), as_tuple(final2)) < TOL

        # gradients of one scalar that depends on every output and final state
        w = torch.randn(out1.shape, generator=g, dtype=dtype)
        loss1 = (out1 * w).sum() + sum(s.square().sum() for s in as_tuple(final1))
        loss2 = (out2 * w).sum() + sum(s.square().sum() for s in as_tuple(final2))
        ours.zero_grad()
        reference.zero_grad()
        loss1.backward()
        loss2.backward()
        assert max_diff(x1.grad, x2.grad) < TOL
        for name, p in reference.named_parameters():
            layer, reverse = name.split("_l")[1].split("_")[0], name.endswith("_reverse")
            cell = ours.cells[int(layer) * ours.num_directions + int(reverse)]
            mine = getattr(cell, name.split("_l")[0])
            assert max_diff(mine.grad, p.grad) < TOL, name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "ours_type, torch_type",
    [(LSTMCell, nn.LSTMCell), (GRUCell, nn.GRUCell), (RNNCell, nn.RNNCell)],
)
def test_single_cell_matches_torch_cell(ours_type, torch_type, dtype):
    torch.manual_seed(0)
    reference = torch_type(5, 7).to(dtype)
    ours = ours_type(5, 7).to(dtype)
    ours.load_from_torch(reference)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 5, generator=g, dtype=dtype)
    state = None
    ref_state = None
    for _ in range(6):  # several steps, feeding each cell its own state back
        state = ours(x, state)
        ref_state = reference(x, ref_state)
        assert max_diff(as_tuple(state), as_tuple(ref_state)) < TOL


def test_unroll_in_reverse_reads_from_the_end():
    torch.manual_seed(0)
    cell = GRUCell(3, 4)
    x = torch.randn(2, 5, 3)
    out, final = unroll(cell, x, reverse=True)
    forward_out, forward_final = unroll(cell, x.flip(1))
    torch.testing.assert_close(out, forward_out.flip(1))
    torch.testing.assert_close(final, forward_final)
    torch.testing.assert_close(out[:, 0], final)  # position 0 is read last


def test_gru_reset_gate_scales_the_hidden_bias():
    # r multiplies W_hn h + b_hn, so b_hn is not interchangeable with b_in (unlike the other
    # gates' two biases, which only act through their sum)
    torch.manual_seed(0)
    reference = nn.GRUCell(2, 3)
    moved = nn.GRUCell(2, 3)
    moved.load_state_dict(reference.state_dict())
    with torch.no_grad():
        moved.bias_ih[6:] += moved.bias_hh[6:]
        moved.bias_hh[6:] = 0.0
    x, h = torch.randn(4, 2), torch.randn(4, 3)
    assert not torch.allclose(moved(x, h), reference(x, h), atol=1e-4)
    for torch_cell in (reference, moved):
        cell = GRUCell(2, 3)
        cell.load_from_torch(torch_cell)
        assert max_diff(cell(x, h), torch_cell(x, h)) < TOL


def test_weights_differ_until_loaded():
    torch.manual_seed(0)
    reference = nn.LSTM(5, 7, batch_first=True)
    ours = LSTM(5, 7)
    x = torch.randn(2, 4, 5)
    assert max_diff(ours(x)[0], reference(x)[0]) > 1e-3
    ours.load_from_torch(reference)
    assert max_diff(ours(x)[0], reference(x)[0]) < TOL


def test_load_from_torch_rejects_a_different_layer():
    with pytest.raises(TypeError):
        LSTM(5, 7).load_from_torch(nn.GRU(5, 7))
    with pytest.raises(ValueError, match="layers"):
        LSTM(5, 7).load_from_torch(nn.LSTM(5, 7, num_layers=2))
    with pytest.raises(ValueError, match="shape"):
        LSTM(5, 7).load_from_torch(nn.LSTM(5, 8))
    with pytest.raises(ValueError, match="nonlinearity"):
        RNNLayer(5, 7).load_from_torch(nn.RNN(5, 7, nonlinearity="relu"))


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    model = GRU(3, 4, num_layers=2, dropout=0.5)
    x = torch.randn(2, 6, 3)
    model.eval()
    torch.testing.assert_close(model(x)[0], model(x)[0])
    model.train()
    assert not torch.allclose(model(x)[0], model(x)[0])

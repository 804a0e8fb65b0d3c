"""LSTM and GRU cells written out gate by gate, and layers that loop over time with them.

These are the readable versions of what ``torch.nn.LSTM`` / ``torch.nn.GRU`` compute with fused
kernels (the ``rnn`` model uses torch's layers; this file shows the equations and checks them
against torch). Weights use torch's layout, so :meth:`load_from_torch` copies a trained torch
layer and the outputs agree to rounding.

**LSTM** (Hochreiter & Schmidhuber, 1997). With input ``x_t``, previous hidden state
``h_{t-1}`` and cell state ``c_{t-1}``, ``sigma`` the logistic sigmoid and ``*`` elementwise::

    i_t = sigma(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)     input gate: how much to write
    f_t = sigma(W_if x_t + b_if + W_hf h_{t-1} + b_hf)     forget gate: how much to keep
    g_t = tanh (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)     cell candidate: what to write
    o_t = sigma(W_io x_t + b_io + W_ho h_{t-1} + b_ho)     output gate: how much to show
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)

The cell state is updated additively: with ``f_t`` near 1 the gradient flows back through
``c_t = f_t * c_{t-1} + ...`` nearly unchanged over many steps, which is what lets an LSTM learn
long-range dependencies where a plain ``tanh`` RNN's gradients vanish.

**GRU** (Cho et al., 2014) merges the cell and hidden state and uses two gates::

    r_t = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)           reset gate
    z_t = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)           update gate
    n_t = tanh (W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))   candidate state
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

Note that the reset gate multiplies ``W_hn h_{t-1} + b_hn`` *including its bias* (PyTorch's and
cuDNN's form); the original paper applies it before the matrix product,
``W_hn (r_t * h_{t-1})``, which is a different function.

**Torch's layout.** The gates' weights are stacked along dim 0: ``weight_ih`` is
``(4H, input_size)`` in the order (i, f, g, o) for the LSTM and ``(3H, input_size)`` in the
order (r, z, n) for the GRU; ``weight_hh`` is ``(4H, H)`` / ``(3H, H)``; there are two bias
vectors ``bias_ih`` and ``bias_hh`` (only their sum matters, except for the GRU's ``b_hn``). In a
multi-layer ``nn.LSTM`` layer ``k`` has ``weight_ih_l{k}``, ... and the backward direction of a
bidirectional one ``weight_ih_l{k}_reverse``, ...
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: A cell's state: h for a GRU / tanh RNN, (h, c) for an LSTM; each (B, H).
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

PARAMETER_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class _Cell(nn.Module):
    """Shared parameters of a gated cell: ``gates`` blocks of H rows in torch's layout."""

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        rows = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        if bias:
            self.bias_ih: nn.Parameter | None = nn.Parameter(torch.empty(rows))
            self.bias_hh: nn.Parameter | None = nn.Parameter(torch.empty(rows))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch's initialization: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _affine(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_ih x + b_ih, W_hh h + b_hh), each (B, gates * H)."""
        gi = x @ self.weight_ih.T
        gh = h @ self.weight_hh.T
        if self.bias_ih is not None:
            gi = gi + self.bias_ih
            gh = gh + self.bias_hh
        return gi, gh

    def zero_state(self, x: torch.Tensor) -> State:
        return x.new_zeros(x.shape[0], self.hidden_size)

    @torch.no_grad()
    def load_from_torch(self, cell: nn.Module, suffix: str = "") -> None:
        """Copy ``weight_ih{suffix}``, ``weight_hh{suffix}``, ... from a torch cell or layer
        (``suffix`` picks one layer / direction of a torch ``nn.LSTM``, e.g. "_l1_reverse")."""
        for name in PARAMETER_NAMES:
            mine = getattr(self, name)
            theirs = getattr(cell, name + suffix, None)
            if (mine is None) != (theirs is None):
                raise ValueError(f"{name}{suffix}: one cell has biases and the other has not")
            if mine is None:
                continue
            if mine.shape != theirs.shape:
                raise ValueError(
                    f"{name}{suffix}: shape {tuple(theirs.shape)}, want {tuple(mine.shape)}"
                )
            mine.copy_(theirs)


class RNNCell(_Cell):
    """Elman cell: ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``."""

    gates = 1

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        h = self.zero_state(x) if state is None else state
        gi, gh = self._affine(x, h)
        return torch.tanh(gi + gh)


class LSTMCell(_Cell):
    """One LSTM step: ``(x_t, (h_{t-1}, c_{t-1})) -> (h_t, c_t)`` (equations in the module doc).

    Matches ``torch.nn.LSTMCell`` (gate order i, f, g, o in ``weight_ih`` / ``weight_hh``).
    """

    gates = 4

    def zero_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = x.new_zeros(x.shape[0], self.hidden_size)
        return zeros, zeros

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = self.zero_state(x) if state is None else state
        gi, gh = self._affine(x, h)
        i, f, g, o = (gi + gh).chunk(4, dim=-1)  # torch's gate order
        i = torch.sigmoid(i)  # input gate
        f = torch.sigmoid(f)  # forget gate
        g = torch.tanh(g)  # cell candidate
        o = torch.sigmoid(o)  # output gate
        c = f * c + i * g
        h = o * torch.tanh(c)
        return h, c


class GRUCell(_Cell):
    """One GRU step: ``(x_t, h_{t-1}) -> h_t`` (equations in the module doc).

    Matches ``torch.nn.GRUCell`` (gate order r, z, n; the reset gate scales ``W_hn h + b_hn``).
    """

    gates = 3

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        h = self.zero_state(x) if state is None else state
        gi, gh = self._affine(x, h)
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)  # the input and hidden parts stay apart for n
        r = torch.sigmoid(i_r + h_r)  # reset gate
        z = torch.sigmoid(i_z + h_z)  # update gate
        n = torch.tanh(i_n + r * h_n)  # candidate: r scales W_hn h + b_hn, bias included
        return (1 - z) * n + z * h


def unroll(
    cell: _Cell, x: torch.Tensor, state: State | None = None, reverse: bool = False
) -> tuple[torch.Tensor, State]:
    """Apply ``cell`` at every step of ``x`` (B, L, input_size), carrying the state.

    This loop is the recurrence that backpropagation through time differentiates: the graph it
    builds has one copy of the cell per step, all sharing the same weights.

    Returns: outputs (B, L, H) (each step's hidden state) and the final state.
    ``reverse=True`` reads the sequence from its end (the backward direction of a bidirectional
    layer); outputs stay in input order.
    """
    steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    outputs: list[torch.Tensor] = [x.new_empty(0)] * x.shape[1]
    for t in steps:
        state = cell(x[:, t], state)
        outputs[t] = state[0] if isinstance(state, tuple) else state
    if state is None:  # an empty sequence: the state stays zero
        state = cell.zero_state(x)
    return torch.stack(outputs, dim=1), state


class _Recurrent(nn.Module):
    """Stacked (optionally bidirectional) recurrent layer over explicit cells, batch first.

    Same call convention as ``torch.nn.LSTM(batch_first=True)``: ``forward(x, state)`` with x
    (B, L, input_size) returns ``(outputs (B, L, D*H), final state)``, the final state being h
    (or (h, c)) of shape (num_layers * D, B, H), layer-major then direction.
    """

    cell_type: type[_Cell] = RNNCell
    torch_type: type[nn.RNNBase] = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        self.dropout = dropout
        self.cells = nn.ModuleList()
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size * self.num_directions
            for _ in range(self.num_directions):
                self.cells.append(self.cell_type(width, hidden_size, bias))

    def _split_state(self, state: State | None, k: int) -> State | None:
        if state is None:
            return None
        if isinstance(state, tuple):
            return state[0][k], state[1][k]
        return state[k]

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        finals: list[State] = []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0:
                x = nn.functional.dropout(x, self.dropout, self.training)  # between layers only
            outs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                out, final = unroll(
                    self.cells[k], x, self._split_state(state, k), reverse=direction == 1
                )
                outs.append(out)
                finals.append(final)
            x = torch.cat(outs, dim=-1)
        if isinstance(finals[0], tuple):
            return x, (torch.stack([f[0] for f in finals]), torch.stack([f[1] for f in finals]))
        return x, torch.stack(finals)

    def load_from_torch(self, module: nn.RNNBase) -> None:
        """Copy the weights of a torch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` of the same sizes."""
        if not isinstance(module, self.torch_type):
            raise TypeError(f"expected a torch {self.torch_type.__name__}, got {type(module)}")
        if (module.num_layers, module.bidirectional) != (
            self.num_layers,
            self.num_directions == 2,
        ):
            raise ValueError("the torch layer has a different number of layers or directions")
        if getattr(module, "proj_size", 0):
            raise ValueError("LSTMs with projections (proj_size) are not supported")
        if getattr(module, "nonlinearity", "tanh") != "tanh":
            raise ValueError("only the tanh nonlinearity is supported")
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                self.cells[layer * self.num_directions + direction].load_from_torch(module, suffix)


class RNNLayer(_Recurrent):
    """Elman RNN (tanh) over explicit :class:`RNNCell` steps; matches ``torch.nn.RNN``."""

    cell_type = RNNCell
    torch_type = nn.RNN


class LSTM(_Recurrent):
    """LSTM over explicit :class:`LSTMCell` steps; matches ``torch.nn.LSTM(batch_first=True)``."""

    cell_type = LSTMCell
    torch_type = nn.LSTM


class GRU(_Recurrent):
    """GRU over explicit :class:`GRUCell` steps; matches ``torch.nn.GRU(batch_first=True)``."""

    cell_type = GRUCell
    torch_type = nn.GRU

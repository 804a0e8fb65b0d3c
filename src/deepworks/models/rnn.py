"""Recurrent networks: a vanilla RNN, LSTM or GRU over a sequence, with a classifier head.

**Recurrence.** A recurrent layer reads a sequence one step at a time and keeps a hidden state
that summarizes what it has seen so far; the same weights are used at every step::

    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)                       (cell="rnn")

The LSTM adds a cell state ``c_t`` updated additively through input / forget / output gates, and
the GRU gates the hidden state directly with update / reset gates (the equations are written out
in ``deepworks.models.lstm_cell``). The additive, gated path lets gradients flow over many
steps where the plain ``tanh`` recurrence makes them vanish or explode. Stacked layers feed each
layer's outputs ``h_1..h_L`` to the next as its inputs, with dropout between layers (torch's
``dropout=``, so it has no effect with one layer). A bidirectional layer runs a second recurrence
from the end of the sequence to the start and concatenates both directions' outputs, so every
position sees its whole context.

**Backpropagation through time (BPTT).** Unrolling the recurrence over L steps gives a deep
feedforward graph with shared weights; backpropagation through it sums each weight's gradient
over the steps. Products of L Jacobians make gradients explode on long sequences, which is why
recurrent models clip the gradient norm by default (``default_grad_clip_norm = 1.0``). On very
long streams (language modelling) the graph is cut into chunks: *truncated BPTT* carries the
final state of one chunk into the next as its initial state (``forward_with_state``), detached
so gradients stop at the chunk border while the state still remembers the past.

**Packing.** A batch of token sequences of different lengths is right-padded with ``pad_id``.
Running the recurrence over the pads would change the final state (and, for the backward
direction, the state at every position), so the padded batch is *packed*
(``nn.utils.rnn.pack_padded_sequence``): the recurrence runs over each sequence's real steps only,
and the returned final state is the state at each sequence's own last real token. Outputs at pad
positions are zeros and are excluded from mean / max pooling.

Shapes (``D`` = 2 if bidirectional else 1, ``H`` = ``hidden_size``)::

    token ids (B, L) -> embedding (B, L, E) \\
                                               -> recurrent layers -> outputs (B, L, D*H)
    floats (B, L, F) ------------------------ /
    output="last":     pool over real positions -> (B, D*H) -> head -> (B, num_classes)
    output="sequence": every position           -> (B, L, D*H) -> head -> (B, L, num_classes)
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from deepworks.errors import ConfigError
from deepworks.models.base import Model
from deepworks.registry import NonNegativeInt, PositiveInt, Probability, register_model

#: What nn.RNN / nn.GRU return as state (h), and nn.LSTM ((h, c)); each (layers * D, B, H).
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@register_model("rnn")
class RNN(Model):
    """Recurrent network (RNN / LSTM / GRU) for sequence classification, tagging and forecasting.

    Args:
        num_classes: Outputs per sequence (``output="last"``) or per position ("sequence"):
            classes, the vocabulary size of a language model, or a forecast horizon.
        cell: "rnn" (tanh), "lstm" or "gru".
        hidden_size: Hidden state width per direction.
        num_layers: Stacked recurrent layers.
        bidirectional: Also read each sequence backwards and concatenate both directions.
        dropout: Dropout between stacked layers (no effect with ``num_layers=1``).
        output: "last" (many-to-one: one output per sequence) or "sequence" (many-to-many: one
            output per position).
        pooling: For ``output="last"``: "last" takes the state at each sequence's last real
            position (with both directions' final states when bidirectional); "mean" / "max"
            pool the outputs over the real positions.
        vocab_size: Set for token-id inputs (B, L): an embedding layer maps ids to vectors.
        embedding_dim: Width of the embedding vectors.
        pad_id: The padding token id; padded positions are skipped (packed sequences).
        freeze_embedding: Keep the embedding fixed (no gradient), e.g. pretrained vectors.
        input_size: Set for float inputs (B, L, input_size); a (B, L) input is one feature a step.
    """

    #: Recurrent nets are prone to exploding gradients: the Trainer clips to this norm unless
    #: the config says otherwise.
    default_grad_clip_norm = 1.0

    # hints for the registry tests: right-padded token ids of different lengths
    example_kwargs = {"vocab_size": 11, "embedding_dim": 8, "hidden_size": 16, "pad_id": 0}
    example_input_shape = (7,)

    @staticmethod
    def example_input(n: int, generator: torch.Generator) -> torch.Tensor:
        x = torch.randint(1, 11, (n, 7), generator=generator)
        lengths = torch.randint(2, 8, (n,), generator=generator)
        lengths[0] = 7  # one full-length sequence
        return x.masked_fill(torch.arange(7) >= lengths[:, None], 0)

    def __init__(
        self,
        num_classes: PositiveInt,
        cell: Literal["rnn", "lstm", "gru"] = "lstm",
        hidden_size: PositiveInt = 128,
        num_layers: PositiveInt = 1,
        bidirectional: bool = False,
        dropout: Probability = 0.0,
        output: Literal["last", "sequence"] = "last",
        pooling: Literal["last", "mean", "max"] = "last",
        vocab_size: PositiveInt | None = None,
        embedding_dim: PositiveInt = 64,
        pad_id: NonNegativeInt = 0,
        freeze_embedding: bool = False,
        input_size: PositiveInt | None = None,
    ):
        super().__init__()
        if cell not in CELLS:
            raise ConfigError(f"model.cell: {cell!r} is not one of {', '.join(CELLS)}")
        if vocab_size is None and input_size is None:
            raise ConfigError(
                "model: set vocab_size (token-id inputs) or input_size (float inputs, "
                "features per step)"
            )
        if vocab_size is not None and input_size is not None:
            raise ConfigError(
                "model: vocab_size (token-id inputs) and input_size (float inputs) are both set; "
                "keep only the one that matches the data"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout: {dropout} must be in [0, 1)")
        self.cell = cell
        self.output = output
        self.pooling = pooling
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.pad_id = pad_id
        self.tokens = vocab_size is not None
        if vocab_size is not None:
            self.embedding: nn.Embedding | None = nn.Embedding(
                vocab_size, embedding_dim, padding_idx=pad_id
            )
            self.embedding.weight.requires_grad_(not freeze_embedding)
            step_size = embedding_dim
        else:
            self.embedding = None
            step_size = int(input_size)
        self.rnn = CELLS[cell](
            step_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,  # torch warns about it for one layer
        )
        self.head = nn.Linear(hidden_size * self.num_directions, num_classes)

    # --- inputs ---------------------------------------------------------------------------

    def _inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(step vectors (B, L, E or F), lengths (B,) or None when no sequence is padded)."""
        if self.embedding is not None:
            if x.is_floating_point():
                raise ValueError("this RNN takes token ids (int64); it was built with vocab_size")
            real = x != self.pad_id
            # length = up to and including the last non-pad token (batches are right-padded);
            # an all-pad sequence gets length 1 so that packing accepts it
            positions = torch.arange(1, x.shape[1] + 1, device=x.device)
            lengths = (real * positions).amax(dim=1).clamp(min=1)
            steps = self.embedding(x)
            return steps, (None if bool((lengths == x.shape[1]).all()) else lengths)
        x = x.float() if not x.is_floating_point() else x
        if x.ndim == 2:  # (B, L): one feature per step
            x = x.unsqueeze(-1)
        return x, None

    def _run(
        self, x: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """Run the recurrence: (outputs (B, L, D*H), final state, lengths or None)."""
        steps, lengths = self._inputs(x)
        if lengths is None:
            outputs, final = self.rnn(steps, state)
            return outputs, final, None
        # packing needs the lengths on the CPU; enforce_sorted=False sorts and unsorts for us
        packed = pack_padded_sequence(steps, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, final = self.rnn(packed, state)
        outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.shape[1])
        return outputs, final, lengths

    # --- model interface ------------------------------------------------------------------

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        outputs, final, lengths = self._run(x)
        if self.output == "sequence":
            return outputs  # (B, L, D*H); zeros at pad positions
        if self.pooling == "last":
            h = final[0] if isinstance(final, tuple) else final  # (layers * D, B, H)
            # the last layer's final state per direction: forward at the last real step,
            # backward after reading the whole sequence back to position 0
            return torch.cat(list(h[-self.num_directions :]), dim=-1)  # (B, D*H)
        if lengths is None:
            return outputs.mean(dim=1) if self.pooling == "mean" else outputs.amax(dim=1)
        real = torch.arange(outputs.shape[1], device=outputs.device) < lengths[:, None]
        real = real.unsqueeze(-1)  # (B, L, 1)
        if self.pooling == "mean":
            return (outputs * real).sum(dim=1) / lengths[:, None].to(outputs.dtype)
        return outputs.masked_fill(~real, float("-inf")).amax(dim=1)

    def forward_with_state(
        self, x: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """Per-position logits and the final state, starting from ``state`` (None: zeros).

        For truncated BPTT over consecutive chunks of a stream: pass each chunk's returned state
        (detached) into the next call. Running two halves this way equals one pass over the
        whole sequence.
        """
        if self.output != "sequence" or self.bidirectional:
            raise ConfigError(
                "model: carrying state between batches needs output: sequence and "
                "bidirectional: false (a backward direction would have to read the future)"
            )
        outputs, final, _ = self._run(x, state)
        return self.head(outputs), final

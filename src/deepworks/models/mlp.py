"""Multilayer perceptron: the feedforward network trained by backpropagation.

Each hidden layer computes ``h = act(norm(W h_prev + b))`` followed by dropout; the head is a
linear map to one logit per class (or one value for regression). Softmax / cross-entropy live in
the loss, not here, which is numerically safer (log-sum-exp) than a softmax layer plus log.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepworks.layers import activation as make_activation
from deepworks.layers import init_weights, norm_layer
from deepworks.models.base import Model
from deepworks.registry import PositiveInt, Probability, register_model


@register_model("mlp")
class MLP(Model):
    """Multilayer perceptron with configurable depth, activation, dropout, norm and init.

    Args:
        in_features: Input values per sample (inputs are flattened).
        num_classes: Outputs: number of classes, or 1 for regression / binary BCE.
        hidden: Width of each hidden layer, e.g. ``[128, 64]``.
        activation: relu, leaky_relu, elu, gelu, silu, sigmoid or tanh.
        dropout: Dropout probability after each hidden layer.
        norm: "batch", "layer" or None, before each activation.
        init: Weight init: "he", "xavier", "orthogonal" or "default" (PyTorch's).
        output_activation: None for logits (the default), or "softmax" to output probabilities.
    """

    def __init__(
        self,
        in_features: PositiveInt,
        num_classes: PositiveInt,
        hidden: Sequence[PositiveInt] = (128, 64),
        activation: str = "relu",
        dropout: Probability = 0.0,
        norm: str | None = None,
        init: str = "he",
        output_activation: str | None = None,
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), norm_layer(norm, h), make_activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)
        init_weights(self, init, nonlinearity=activation)
        if output_activation not in (None, "none", "softmax"):
            raise ValueError(
                f"output_activation must be None or 'softmax', not {output_activation!r}"
            )
        self.output_softmax = output_activation == "softmax"
        self.output_kind = "probs" if self.output_softmax else "logits"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, in_features) -> (B, hidden[-1])

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        out = self.head(features)  # (B, num_classes)
        return out.softmax(dim=-1) if self.output_softmax else out

"""The linear baseline: one affine map ``y = W x + b``.

With cross-entropy it is multinomial logistic regression, with BCE binary logistic regression,
with MSE linear regression, and with the hinge loss a (multi-class) perceptron / linear SVM.
Every deeper model should beat it; if it does not, the features carry the signal.
"""

from __future__ import annotations

import torch
from torch import nn

from deepworks.models.base import Model
from deepworks.registry import PositiveInt, register_model


@register_model("linear")
class Linear(Model):
    """Linear model: logistic regression, linear regression or perceptron, by the loss chosen.

    Args:
        in_features: Input values per sample (inputs are flattened).
        num_classes: Outputs: number of classes, or 1 for regression.
        bias: Learn an intercept.
    """

    def __init__(self, in_features: PositiveInt, num_classes: PositiveInt, bias: bool = True):
        super().__init__()
        self.flatten = nn.Flatten()
        self.head = nn.Linear(in_features, num_classes, bias=bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(x)  # (B, in_features)

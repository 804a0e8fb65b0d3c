"""LeNet-5 (LeCun et al., 1998): the convolutional network that read cheques.

Two 5 x 5 convolutions, each followed by 2 x 2 subsampling, then three dense layers::

    (B, C, 32, 32) -conv5-> (B, 6, 28, 28) -pool-> (B, 6, 14, 14)
                   -conv5-> (B, 16, 10, 10) -pool-> (B, 16, 5, 5) -flatten-> (B, 400)
                   -fc-> (B, 120) -fc-> (B, 84) -head-> (B, num_classes)

The original used tanh-like activations and average pooling ("subsampling"); ReLU and max pooling
(the defaults here) train faster. Images smaller than 32 x 32 (MNIST's 28 x 28, digits' 8 x 8) get
2 pixels of zero padding per conv, so the 5 x 5 kernels do not eat the image away.
"""

from __future__ import annotations

import torch
from torch import nn

from deepworks.layers import init_weights
from deepworks.layers.conv import act_layer, conv_out, pair, pool_layer
from deepworks.layers.conv import first_conv as find_first_conv
from deepworks.models.base import Model
from deepworks.registry import NonNegativeInt, PositiveInt, register_model


@register_model("lenet")
class LeNet(Model):
    """LeNet-5: conv5(6)-pool-conv5(16)-pool-fc120-fc84, padded for small images.

    Args:
        in_channels: Channels of the input images.
        num_classes: Number of outputs.
        image_size: Input side, or [height, width].
        activation: relu (default) or tanh / sigmoid for the original.
        pool: max (default) or avg for the original subsampling.
        padding: Zero padding of each conv; None: 0 for images of 32 pixels or more, else 2.
        init: Weight init: he, xavier, orthogonal or default.
    """

    input_kind = "image"
    example_input_shape = (3, 16, 16)
    example_kwargs = {"in_channels": 3, "image_size": 16}

    def __init__(
        self,
        in_channels: PositiveInt,
        num_classes: PositiveInt,
        image_size: list[PositiveInt] | PositiveInt = 32,
        activation: str = "relu",
        pool: str = "max",
        padding: NonNegativeInt | None = None,
        init: str = "he",
    ):
        super().__init__()
        h, w = pair(image_size)
        pad = padding if padding is not None else (0 if min(h, w) >= 32 else 2)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad),  # (B, 6, H1, W1)
            act_layer(activation),
            pool_layer(pool),  # (B, 6, H1/2, W1/2)
            nn.Conv2d(6, 16, 5, padding=pad),  # (B, 16, H2, W2)
            act_layer(activation),
            pool_layer(pool),  # (B, 16, H2/2, W2/2)
            nn.Flatten(),
        )
        for _ in range(2):
            h, w = (conv_out(n, 5, 1, pad) // (2 if pool != "none" else 1) for n in (h, w))
        if h < 1 or w < 1:
            raise ValueError(f"{pair(image_size)} images are too small for LeNet; set padding: 2")
        self.fc = nn.Sequential(
            nn.Linear(16 * h * w, 120),
            act_layer(activation),
            nn.Linear(120, 84),
            act_layer(activation),
        )
        self.head = nn.Linear(84, num_classes)
        init_weights(self, init, nonlinearity=activation)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))  # (B, C, H, W) -> (B, 16*h*w) -> (B, 84)

    def first_conv(self) -> nn.Conv2d:
        return find_first_conv(self.features)

"""VGG (Simonyan & Zisserman, 2014): depth from stacks of small 3 x 3 convolutions.

Two stacked 3 x 3 convs see a 5 x 5 window and three see 7 x 7, with fewer parameters and more
non-linearities than one big kernel. The network is a list: numbers are 3 x 3 conv-BN-ReLU layers
of that many channels, "M" halves the image by 2 x 2 max pooling ("A": average pooling)::

    config [32, 32, "M", 64, 64, "M"] on (B, 3, 32, 32):
    -> (B, 32, 32, 32) -> (B, 32, 32, 32) -> (B, 32, 16, 16)
    -> (B, 64, 16, 16) -> (B, 64, 16, 16) -> (B, 64, 8, 8) -> global avg pool -> (B, 64)

The original VGG-16 is ``[64, 64, M, 128, 128, M, 256 x3, M, 512 x3, M, 512 x3, M]`` with two
4096-wide dense layers; this one defaults to a small CPU-friendly stack and a global average pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepworks.layers import init_weights
from deepworks.layers.conv import ConvBNAct, dense_stack, pair, pool_layer
from deepworks.layers.conv import first_conv as find_first_conv
from deepworks.layers.conv import global_pool as global_pool_layer
from deepworks.models.base import Model
from deepworks.registry import PositiveInt, Probability, register_model

POOLS = {"M": "max", "A": "avg"}


@register_model("vgg")
class VGG(Model):
    """Small VGG: a list of 3 x 3 conv widths and "M" (max-pool) markers, then dense layers.

    Args:
        in_channels: Channels of the input images.
        num_classes: Number of outputs.
        image_size: Input side, or [height, width]; needed for ``global_pool: flatten``.
        config: Layers, e.g. ``[32, 32, "M", 64, 64, "M"]``; a pool is skipped once the maps
            are 1 pixel, so one config fits 8 x 8 and 32 x 32 images.
        batch_norm: Batch norm after each conv (VGG-BN).
        dense: Widths of hidden dense layers before the head (VGG-16: [4096, 4096]).
        dropout: Dropout before each dense layer and the head.
        global_pool: avg, max or flatten.
        activation: Activation after each conv and dense layer.
        init: Weight init: he, xavier, orthogonal or default.
    """

    input_kind = "image"
    example_input_shape = (3, 16, 16)
    example_kwargs = {"in_channels": 3, "image_size": 16, "config": [8, "M", 16, "M"]}

    def __init__(
        self,
        in_channels: PositiveInt,
        num_classes: PositiveInt,
        image_size: list[PositiveInt] | PositiveInt = 32,
        config: Sequence[PositiveInt | str] = (32, 32, "M", 64, 64, "M", 128, 128, "M"),
        batch_norm: bool = True,
        dense: Sequence[PositiveInt] = (),
        dropout: Probability = 0.0,
        global_pool: str = "avg",
        activation: str = "relu",
        init: str = "he",
    ):
        super().__init__()
        h, w = pair(image_size)
        layers: list[nn.Module] = []
        width = in_channels
        for item in config:
            if isinstance(item, str):
                if item not in POOLS:
                    raise ValueError(f"config entries are channel counts or 'M'/'A', not {item!r}")
                if min(h, w) >= 2:  # (B, c, h, w) -> (B, c, h/2, w/2)
                    layers.append(pool_layer(POOLS[item]))
                    h, w = h // 2, w // 2
            elif isinstance(item, int) and item > 0:
                layers.append(
                    ConvBNAct(width, item, 3, batch_norm=batch_norm, activation=activation)
                )
                width = item
            else:
                raise ValueError(f"config entries are channel counts or 'M'/'A', not {item!r}")
        if not any(isinstance(m, ConvBNAct) for m in layers):
            raise ValueError("config must contain at least one conv layer (a channel count)")
        self.features = nn.Sequential(*layers)
        self.pool = global_pool_layer(global_pool)
        features = width * h * w if global_pool == "flatten" else width
        self.classifier, features = dense_stack(features, dense, dropout, activation)
        self.head = nn.Linear(features, num_classes)
        self.num_features = features
        init_weights(self, init, nonlinearity=activation)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, C, H, W) -> (B, c_last, h, w)
        return self.classifier(self.pool(x))  # (B, D)

    def first_conv(self) -> nn.Conv2d:
        return find_first_conv(self.features)

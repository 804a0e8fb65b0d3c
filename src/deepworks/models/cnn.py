"""The classic convolutional network: conv blocks that see more and more, then dense layers.

Each block is ``convs_per_block`` x (conv -> batch norm -> activation), then optional spatial
dropout and a 2 x 2 pooling that halves height and width. Early blocks detect edges and strokes in
small neighbourhoods; every pooling doubles how much of the image a unit sees (its receptive
field), so later blocks respond to parts and whole shapes. A global pooling turns the last
feature maps into one vector per image, and dense layers map it to class logits::

    (B, C, H, W) -> block 1 -> (B, c1, H/2, W/2) -> ... -> (B, cN, h, w)
                 -> global pool -> (B, cN) -> dense -> (B, D) -> head -> (B, num_classes)

Dilation spaces a kernel's taps apart (a 3 x 3 kernel with dilation 2 covers 5 x 5), growing the
receptive field without pooling. Spatial dropout (Dropout2d) drops whole feature maps, which
regularizes conv layers better than dropping single, strongly correlated pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepworks.layers import init_weights
from deepworks.layers.conv import (
    ConvBNAct,
    conv_out,
    dense_stack,
    pair,
    pool_layer,
    same_padding,
)
from deepworks.layers.conv import first_conv as find_first_conv
from deepworks.layers.conv import global_pool as global_pool_layer
from deepworks.models.base import Model
from deepworks.registry import NonNegativeInt, PositiveInt, Probability, register_model


@register_model("cnn")
class CNN(Model):
    """Configurable CNN: conv blocks (conv-BN-activation, pooling) then dense layers.

    Args:
        in_channels: Channels of the input images (1 grey, 3 RGB).
        num_classes: Number of outputs.
        image_size: Input side, or [height, width]; needed for ``global_pool: flatten``.
        channels: Output channels of each block, e.g. ``[32, 64, 128]`` (one block each).
        kernel_size: Conv kernel side.
        stride: Stride of the first conv of each block (2 downsamples without pooling).
        padding: "same" (keep the side length at stride 1) or an int.
        dilation: Spacing of the kernel taps.
        convs_per_block: Convolutions per block (VGG uses 2-3).
        pool: Pooling after each block: max, avg or none (skipped once the maps are 1 pixel).
        global_pool: avg, max (one value per channel) or flatten (every position).
        batch_norm: Batch norm after each conv.
        dropout: Dropout before each dense layer and the head.
        spatial_dropout: Dropout2d (whole feature maps) after each block.
        dense: Widths of the hidden dense layers between the pooling and the head.
        activation: relu, gelu, silu, elu, leaky_relu, tanh, ...
        init: Weight init: he, xavier, orthogonal or default.
    """

    input_kind = "image"
    example_input_shape = (3, 16, 16)
    example_kwargs = {"in_channels": 3, "image_size": 16, "channels": [8, 16]}

    def __init__(
        self,
        in_channels: PositiveInt,
        num_classes: PositiveInt,
        image_size: list[PositiveInt] | PositiveInt = 32,
        channels: Sequence[PositiveInt] = (32, 64, 128),
        kernel_size: PositiveInt = 3,
        stride: PositiveInt = 1,
        padding: str | NonNegativeInt = "same",
        dilation: PositiveInt = 1,
        convs_per_block: PositiveInt = 1,
        pool: str = "max",
        global_pool: str = "avg",
        batch_norm: bool = True,
        dropout: Probability = 0.0,
        spatial_dropout: Probability = 0.0,
        dense: Sequence[PositiveInt] = (),
        activation: str = "relu",
        init: str = "he",
    ):
        super().__init__()
        if not channels:
            raise ValueError("channels must list at least one block, e.g. [32, 64]")
        if padding == "same":
            pad = same_padding(kernel_size, dilation)
        elif isinstance(padding, int) and padding >= 0:
            pad = padding
        else:
            raise ValueError(f"padding must be 'same' or an int >= 0, not {padding!r}")
        if pool not in ("max", "avg", "none"):
            raise ValueError(f"pool must be max, avg or none, not {pool!r}")
        h, w = pair(image_size)
        blocks: list[nn.Module] = []
        width = in_channels
        for i, out in enumerate(channels):
            block: list[nn.Module] = []
            for j in range(convs_per_block):
                s = stride if j == 0 else 1
                block.append(
                    ConvBNAct(width, out, kernel_size, s, pad, dilation, 1, batch_norm, activation)
                )
                h, w = (conv_out(n, kernel_size, s, pad, dilation) for n in (h, w))
                width = out
            if h < 1 or w < 1:
                raise ValueError(
                    f"block {i + 1} shrinks the {pair(image_size)} images to nothing; "
                    "use padding: same, a smaller kernel or fewer blocks"
                )
            if spatial_dropout > 0:
                block.append(nn.Dropout2d(spatial_dropout))
            if pool != "none" and min(h, w) >= 2:  # (B, c, h, w) -> (B, c, h/2, w/2)
                block.append(pool_layer(pool))
                h, w = h // 2, w // 2
            blocks.append(nn.Sequential(*block))
        self.blocks = nn.Sequential(*blocks)
        self.pool = global_pool_layer(global_pool)
        features = width * h * w if global_pool == "flatten" else width
        self.dense, features = dense_stack(features, dense, dropout, activation)
        self.head = nn.Linear(features, num_classes)
        self.num_features = features
        init_weights(self, init, nonlinearity=activation)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)  # (B, C, H, W) -> (B, c_last, h, w)
        x = self.pool(x)  # (B, c_last) or (B, c_last * h * w)
        return self.dense(x)  # (B, D)

    def first_conv(self) -> nn.Conv2d:
        return find_first_conv(self.blocks)

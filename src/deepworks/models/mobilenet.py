"""MobileNetV2 (Sandler et al., 2018): inverted residuals with linear bottlenecks.

A depthwise-separable conv splits a 3 x 3 conv into a depthwise 3 x 3 (one filter per channel)
and a pointwise 1 x 1 (mixing channels), about 9x cheaper. MobileNetV2 wraps it in an *inverted
residual*: thin -> wide -> thin, the opposite of ResNet's bottleneck::

    x (B, c, H, W) -expand 1x1, ReLU6-> (B, t*c, H, W)
                   -depthwise 3x3 stride s, ReLU6-> (B, t*c, H/s, W/s)
                   -project 1x1, *linear*-> (B, c', H/s, W/s)   (+ x when s == 1 and c == c')

The projection has no activation: a ReLU in a narrow space destroys information, so the thin
"bottleneck" tensors stay linear. The shortcut joins the thin tensors, and is only possible when
the block keeps the shape (stride 1, same channels). ``width_mult`` scales every layer's channels
(rounded to multiples of 8) to trade accuracy for speed.
"""

from __future__ import annotations

import torch
from torch import nn

from deepworks.layers.conv import ConvBNAct, pair
from deepworks.layers.conv import first_conv as find_first_conv
from deepworks.models.base import Model
from deepworks.registry import PositiveFloat, PositiveInt, Probability, register_model

# (expansion t, output channels c, blocks n, stride s of the first block) per stage
SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` (hardware friendly), never down by > 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    """Expand (1 x 1) -> depthwise (3 x 3, stride) -> project (1 x 1, linear), plus x if it fits."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = round(in_channels * expand_ratio)
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:  # (B, c, H, W) -> (B, t*c, H, W)
            layers.append(ConvBNAct(in_channels, hidden, 1, activation="relu6"))
        layers += [
            # (B, t*c, H, W) -> (B, t*c, H/s, W/s): one 3 x 3 filter per channel
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden, activation="relu6"),
            # (B, t*c, H/s, W/s) -> (B, c', H/s, W/s): linear bottleneck, no activation
            ConvBNAct(hidden, out_channels, 1, activation=None),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


@register_model("mobilenet")
class MobileNetV2(Model):
    """MobileNetV2: a stem conv, 17 inverted residual blocks, a 1 x 1 conv to 1280 channels.

    Args:
        in_channels: Channels of the input images.
        num_classes: Number of outputs.
        image_size: Input side, or [height, width]; picks the stem with ``stem: auto``.
        width_mult: Channel multiplier (1.0 = the paper's; 0.25-0.5 for small CPU runs).
        dropout: Dropout before the head (0.2 in the paper).
        last_channels: Channels of the final 1 x 1 conv (1280, scaled up if width_mult > 1).
        stem: "small" (stride-1 stem and second stage: 8-32 pixel images are downsampled 8x
            instead of 32x), "imagenet" (stride 2 as in the paper) or "auto" (small below 64).
    """

    input_kind = "image"
    example_input_shape = (3, 16, 16)
    example_kwargs = {"in_channels": 3, "image_size": 16, "width_mult": 0.25, "last_channels": 64}

    def __init__(
        self,
        in_channels: PositiveInt,
        num_classes: PositiveInt,
        image_size: list[PositiveInt] | PositiveInt = 32,
        width_mult: PositiveFloat = 1.0,
        dropout: Probability = 0.2,
        last_channels: PositiveInt = 1280,
        stem: str = "auto",
    ):
        super().__init__()
        if stem == "auto":
            stem = "small" if min(pair(image_size)) < 64 else "imagenet"
        if stem not in ("small", "imagenet"):
            raise ValueError(f"stem must be auto, small or imagenet, not {stem!r}")
        small = stem == "small"
        channels = make_divisible(32 * width_mult)
        # (B, C, H, W) -> (B, 32, H, W) small stem, (B, 32, H/2, W/2) ImageNet stem
        layers: list[nn.Module] = [
            ConvBNAct(in_channels, channels, 3, 1 if small else 2, activation="relu6")
        ]
        for i, (t, c, n, s) in enumerate(SETTINGS):
            out = make_divisible(c * width_mult)
            if small and i == 1:
                s = 1  # keep small images large enough for the later stages
            for j in range(n):
                layers.append(InvertedResidual(channels, out, s if j == 0 else 1, t))
                channels = out
        last = make_divisible(last_channels * max(1.0, width_mult))
        layers.append(ConvBNAct(channels, last, 1, activation="relu6"))  # (B, 1280, h, w)
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, 1280)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(last, num_classes)
        self.num_features = last
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, C, H, W) -> (B, 1280, h, w)
        return self.dropout(self.pool(x))  # (B, 1280)

    def first_conv(self) -> nn.Conv2d:
        return find_first_conv(self.features)

"""CenterNet-style detector ("Objects as Points", Zhou et al., 2019): an object is its centre.

A small conv backbone turns an image (B, C, H, W) into a feature map at 1/stride resolution; three
tiny heads then predict, at every cell of that map,

- a class heatmap (K channels): the logit that an object of class k is centred in that cell,
- the box size (w, h, 2 channels), in cells of the output map,
- the sub-cell offset of the centre (dx, dy, 2 channels), which the integer cell loses.

``forward`` returns the three stacked as ONE dense map (B, K + 4, H/stride, W/stride), heatmap
logits first. Decoding (peaks of the heatmap → boxes) lives in ``deepworks.tasks.detection``.
There are no anchors and, in principle, no need for NMS: one peak per object.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deepworks.errors import ConfigError
from deepworks.models.base import Model
from deepworks.registry import PositiveInt, register_model

#: Heatmap bias so that sigmoid(bias) = 0.1 at the start: most cells are background, and a
#: prior of 0.5 would make the first focal-loss steps huge (Lin et al., 2017).
PRIOR_BIAS = -math.log((1 - 0.1) / 0.1)  # -2.197


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv → BatchNorm → ReLU; ``stride=2`` halves height and width."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def head(c_in: int, hidden: int, c_out: int, bias: float = 0.0) -> nn.Sequential:
    """3x3 conv → ReLU → 1x1 conv: one prediction of ``c_out`` values per cell."""
    layers = nn.Sequential(
        nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, c_out, 1)
    )
    nn.init.constant_(layers[-1].bias, bias)
    return layers


@register_model("centernet")
class CenterNet(Model):
    """Anchor-free single-stage detector: heatmap of centres + box size + centre offset.

    Args:
        in_channels: Image channels (1 grey, 3 RGB).
        num_classes: Object classes K (heatmap channels).
        image_size: (H, W) of the input; H and W must be multiples of ``stride``.
        width: Channels of the first stage; each downsampling doubles them (at most 8x).
        stride: Output resolution is the input's divided by this (1, 2, 4 or 8).
        head_width: Hidden channels of each head (default: ``width``).
    """

    input_kind = "image"
    # hints for the registry tests: one sample's shape and the sizes it needs
    example_input_shape = (1, 32, 32)
    example_kwargs = {"in_channels": 1, "image_size": [32, 32]}

    def __init__(
        self,
        in_channels: PositiveInt = 1,
        num_classes: PositiveInt = 3,
        image_size: PositiveInt | list[PositiveInt] | tuple[PositiveInt, PositiveInt] = (32, 32),
        width: PositiveInt = 32,
        stride: PositiveInt = 4,
        head_width: PositiveInt | None = None,
    ):
        super().__init__()
        if stride not in (1, 2, 4, 8):
            raise ConfigError(f"model.stride: {stride} must be 1, 2, 4 or 8")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if any(s % stride for s in size):
            raise ConfigError(
                f"model.image_size: {list(size)} must be a multiple of model.stride ({stride}); "
                "resize the images or change model.stride"
            )
        self.num_classes, self.stride = num_classes, stride
        self.stem = conv_bn(in_channels, width)  # (B, w, H, W)
        # Downsampling stages: each halves the resolution and doubles the channels (capped).
        stages, c = [], width
        for _ in range(int(math.log2(stride))):
            c_out = min(2 * c, 8 * width)
            stages.append(nn.Sequential(conv_bn(c, c_out, stride=2), conv_bn(c_out, c_out)))
            c = c_out
        self.down = nn.Sequential(*stages)  # (B, c, H/s, W/s)
        # A tiny FPN: one deeper stage at 1/(2s) for context (a wider receptive field), upsampled
        # and added back to the 1/s map, so each cell sees the whole shape around it.
        self.context = nn.Sequential(conv_bn(c, c, stride=2), conv_bn(c, c))  # (B, c, H/2s, W/2s)
        self.lateral = nn.Conv2d(c, c, 1)
        self.feature_channels = c
        hw = head_width or width
        self.head = head(c, hw, num_classes, bias=PRIOR_BIAS)  # heatmap logits (B, K, h, w)
        self.size_head = head(c, hw, 2)  # box (w, h) in output cells (B, 2, h, w)
        self.offset_head = head(c, hw, 2)  # centre offset (dx, dy) in [0, 1) cells (B, 2, h, w)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The shared feature map (B, c, H/stride, W/stride) all heads read."""
        f = self.down(self.stem(x))  # (B, c, h, w)
        ctx = F.interpolate(self.context(f), size=f.shape[-2:], mode="nearest")  # (B, c, h, w)
        return F.relu(self.lateral(f) + ctx)  # (B, c, h, w)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Heatmap logits, sizes and offsets stacked: (B, K + 4, h, w)."""
        heat = self.head(features)  # (B, K, h, w)
        size = self.size_head(features)  # (B, 2, h, w)
        offset = self.offset_head(features)  # (B, 2, h, w)
        return torch.cat([heat, size, offset], dim=1)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh heatmap head for ``num_classes`` classes (size and offset heads are kept)."""
        old = self.head
        hidden = old[0].out_channels
        self.head = head(self.feature_channels, hidden, num_classes, bias=PRIOR_BIAS)
        self.head.to(device=old[0].weight.device, dtype=old[0].weight.dtype)
        self.num_classes = num_classes
        self._init_config["num_classes"] = num_classes

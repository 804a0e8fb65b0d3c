"""U-Net (Ronneberger et al., 2015): an encoder-decoder with skip connections for segmentation.

The encoder halves the resolution and doubles the channels ``depth`` times, so the deepest
features see a large part of the image (what is there). The decoder doubles the resolution back,
and at each scale concatenates the encoder's features of that scale (where exactly it is): the
skip connections carry the fine detail that pooling threw away. A 1×1 convolution (the head) turns
the last feature map into one logit per class and pixel:

    x (B, C_in, H, W)
    ├─ enc0: conv-conv          (B, c, H, W) ──────────────────────────────┐ skip
    │  pool                     (B, c, H/2, W/2)                           │
    ├─ enc1: conv-conv          (B, 2c, H/2, W/2) ──────────────────┐ skip │
    │  pool ... depth times                                         │      │
    ├─ bottleneck: conv-conv    (B, c·2^depth, H/2^depth, W/2^depth)│      │
    ├─ up, concat skip, conv-conv (B, 2c, H/2, W/2) ◄───────────────┘      │
    ├─ up, concat skip, conv-conv (B, c, H, W) ◄───────────────────────────┘
    └─ head: 1×1 conv           (B, num_classes, H, W) logits

Inputs whose height or width is not a multiple of 2^depth are zero-padded at the bottom/right
before the encoder and the output is cropped back, so any size works.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepworks.models.base import Model
from deepworks.registry import PositiveInt, Probability, register_model

UPSAMPLE = ("transpose", "bilinear")


def conv_block(c_in: int, c_out: int, batch_norm: bool) -> nn.Sequential:
    """Two 3×3 convolutions (padding 1, size kept), each followed by batch norm and ReLU."""
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers.append(nn.Conv2d(c, c_out, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def upsample_block(c_in: int, c_out: int, mode: str) -> nn.Module:
    """Double the resolution and go from ``c_in`` to ``c_out`` channels: a learned 2×2
    transposed convolution, or fixed bilinear interpolation then a 1×1 convolution."""
    if mode == "transpose":
        return nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2)
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(c_in, c_out, kernel_size=1),
    )


@register_model("unet")
class UNet(Model):
    """U-Net for semantic segmentation: (B, C, H, W) images → (B, num_classes, H, W) logits.

    Args:
        in_channels: Channels of the input images.
        num_classes: Classes per pixel (background included).
        image_size: Height and width the model is built for (int or [H, W]); recorded for
            export and summaries; ``forward`` takes any size.
        base_channels: Channels of the first level; each level below doubles them.
        depth: Number of 2× downsamplings (levels below the first).
        batch_norm: Batch norm after every 3×3 convolution.
        dropout: Channel dropout (Dropout2d) on the bottleneck features.
        upsample: "transpose" (learned 2×2 transposed conv) or "bilinear" (+ 1×1 conv).
    """

    input_kind = "image"

    def __init__(
        self,
        in_channels: PositiveInt,
        num_classes: PositiveInt,
        image_size: PositiveInt | Sequence[PositiveInt] = 32,
        base_channels: PositiveInt = 16,
        depth: PositiveInt = 3,
        batch_norm: bool = True,
        dropout: Probability = 0.0,
        upsample: str = "transpose",
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        if upsample not in UPSAMPLE:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE)}, not {upsample!r}")
        self.image_size = (image_size,) * 2 if isinstance(image_size, int) else tuple(image_size)
        self.depth = depth
        widths = [base_channels * 2**i for i in range(depth + 1)]  # c, 2c, ..., c·2^depth

        # Encoder: one conv block per level; the last level is the bottleneck.
        self.encoder = nn.ModuleList()
        c = in_channels
        for w in widths[:-1]:
            self.encoder.append(conv_block(c, w, batch_norm))
            c = w
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = conv_block(widths[-2], widths[-1], batch_norm)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

        # Decoder, deepest level first: upsample to the skip's width, concat (2× width), convs.
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for w_low, w in zip(reversed(widths[1:]), reversed(widths[:-1]), strict=True):
            self.ups.append(upsample_block(w_low, w, upsample))
            self.decoder.append(conv_block(2 * w, w, batch_norm))

        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        pad_h, pad_w = -h % m, -w % m
        if pad_h or pad_w:  # (B, C, H', W'), both multiples of 2^depth
            x = F.pad(x, (0, pad_w, 0, pad_h))
        skips = []
        for block in self.encoder:
            x = block(x)  # (B, c·2^i, H/2^i, W/2^i)
            skips.append(x)
            x = self.pool(x)  # (B, c·2^i, H/2^(i+1), W/2^(i+1))
        x = self.dropout(self.bottleneck(x))  # (B, c·2^depth, H/2^depth, W/2^depth)
        for up, block, skip in zip(self.ups, self.decoder, reversed(skips), strict=True):
            x = up(x)  # (B, c·2^i, H/2^i, W/2^i): twice the resolution, half the channels
            x = block(torch.cat([x, skip], dim=1))  # (B, 2c·2^i → c·2^i, H/2^i, W/2^i)
        return x[..., :h, :w]  # (B, c, H, W): the padding cropped off

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)  # (B, num_classes, H, W) logits

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the 1×1 output convolution with a fresh one of ``num_classes`` channels."""
        old = self.head
        self.head = nn.Conv2d(old.in_channels, num_classes, kernel_size=1)
        self.head.to(device=old.weight.device, dtype=old.weight.dtype)
        self._init_config["num_classes"] = num_classes

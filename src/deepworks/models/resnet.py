"""ResNet (He et al., 2015): very deep networks made trainable by identity shortcuts.

Each residual block learns a correction ``F(x)`` to its input rather than a whole new mapping:
``y = relu(F(x) + x)``. When the best thing a block can do is nothing, it only has to push ``F``
to zero, and gradients flow back through the ``+ x`` unchanged, so 18, 34 or 152 layers train
as easily as 8. A BasicBlock is ``F(x) = BN(conv3x3(relu(BN(conv3x3(x)))))``; where a block
halves the image and doubles the channels, the shortcut is a strided 1 x 1 conv + BN.

    stem      (B, C, H, W)  -> (B, w, H, W)        small images: 3 x 3 conv, stride 1
                            -> (B, w, H/4, W/4)    ImageNet: 7 x 7 conv stride 2 + 3 x 3 max pool
    layer1    -> (B, w, h, w_)       layer2 -> (B, 2w, h/2, w_/2)
    layer3    -> (B, 4w, h/4, w_/4)  layer4 -> (B, 8w, h/8, w_/8)
    pool      -> (B, 8w) -> head -> (B, num_classes)

``depth: 18`` is (2, 2, 2, 2) blocks per stage and ``34`` is (3, 4, 6, 3); with ``width: 64``,
the ImageNet stem, 3 input channels and 1000 classes it is torchvision's resnet18 / resnet34
parameter for parameter (11,689,512 / 21,797,672).
"""

from __future__ import annotations

import torch
from torch import nn

from deepworks.layers.conv import ConvBNAct, pair
from deepworks.layers.conv import first_conv as find_first_conv
from deepworks.models.base import Model
from deepworks.registry import PositiveInt, register_model

LAYERS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class BasicBlock(nn.Module):
    """Two 3 x 3 conv-BN layers plus a shortcut: ``relu(F(x) + shortcut(x))``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBNAct(in_channels, out_channels, 3, stride)  # (B, out, H/s, W/s)
        self.conv2 = ConvBNAct(out_channels, out_channels, 3, activation=None)  # no relu yet
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:  # match the shape of F(x)
            self.shortcut = ConvBNAct(in_channels, out_channels, 1, stride, 0, activation=None)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


@register_model("resnet")
class ResNet(Model):
    """ResNet with BasicBlocks: depth 10, 18 or 34, any base width, a stem fitted to the images.

    Args:
        in_channels: Channels of the input images.
        num_classes: Number of outputs.
        image_size: Input side, or [height, width]; picks the stem with ``stem: auto``.
        depth: 18 (blocks (2, 2, 2, 2)), 34 ((3, 4, 6, 3)) or 10 ((1, 1, 1, 1)).
        width: Channels of the first stage (64 in the paper; 16 or 32 train fast on a CPU);
            the stages have width, 2x, 4x and 8x.
        stem: "small" (3 x 3 conv, stride 1, no pooling: keeps 8-32 pixel images whole),
            "imagenet" (7 x 7 conv stride 2 + max pool) or "auto" (small below 64 pixels).
        zero_init_residual: Start each block's last BN at zero, so every block begins as the
            identity (Goyal et al., 2017); helps large-batch training.
    """

    input_kind = "image"
    example_input_shape = (3, 16, 16)
    example_kwargs = {"in_channels": 3, "image_size": 16, "depth": 10, "width": 8}

    def __init__(
        self,
        in_channels: PositiveInt,
        num_classes: PositiveInt,
        image_size: list[PositiveInt] | PositiveInt = 32,
        depth: PositiveInt = 18,
        width: PositiveInt = 64,
        stem: str = "auto",
        zero_init_residual: bool = False,
    ):
        super().__init__()
        if depth not in LAYERS:
            raise ValueError(f"depth must be one of {sorted(LAYERS)}, not {depth}")
        if stem == "auto":
            stem = "small" if min(pair(image_size)) < 64 else "imagenet"
        if stem == "small":  # (B, C, H, W) -> (B, width, H, W)
            self.stem = ConvBNAct(in_channels, width, 3, 1)
        elif stem == "imagenet":  # (B, C, H, W) -> (B, width, H/2, W/2) -> (B, width, H/4, W/4)
            self.stem = nn.Sequential(
                *ConvBNAct(in_channels, width, 7, 2, 3), nn.MaxPool2d(3, 2, padding=1)
            )
        else:
            raise ValueError(f"stem must be auto, small or imagenet, not {stem!r}")
        channels = width
        for i, blocks in enumerate(LAYERS[depth]):
            out = width * 2**i
            stride = 1 if i == 0 else 2  # stages 2-4 halve the image, double the channels
            stage = [BasicBlock(channels, out, stride)]
            stage += [BasicBlock(out, out) for _ in range(blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            channels = out
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, 8w)
        self.head = nn.Linear(channels, num_classes)
        self.num_features = channels
        for m in self.modules():  # He init for ReLU nets, as in the paper and torchvision
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.conv2[1].weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, w, H, W) small stem, (B, w, H/4, W/4) ImageNet stem
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 8w, h, w_)
        return self.pool(x)  # (B, 8w)

    def first_conv(self) -> nn.Conv2d:
        return find_first_conv(self.stem)

"""Convolution building blocks shared by the conv-net families (cnn, vgg, resnet, mobilenet).

A 2-D convolution slides a (C_in, k, k) filter over the image: each output pixel is the dot
product of the filter with the k x k patch under it, so a layer detects the same local pattern
everywhere (weight sharing) with few parameters. Output side length, for input side ``n``:

    n_out = floor((n + 2 * padding - dilation * (k - 1) - 1) / stride) + 1
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepworks.layers.common import activation as make_activation

#: Modules that may follow a convolution inside a conv block (normalization and activations);
#: the feature-map picture of the report applies them to the first conv's output.
POINTWISE = (
    nn.BatchNorm2d,
    nn.GroupNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Identity,
)


def pair(size: int | Sequence[int]) -> tuple[int, int]:
    """``32`` or ``[32, 32]`` -> ``(32, 32)`` (height, width)."""
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise ValueError(f"image_size must be an int or [height, width], not {list(size)}")
    return size  # type: ignore[return-value]


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps the side length at stride 1 (odd kernels): ``dilation * (k - 1) / 2``."""
    return dilation * (kernel_size - 1) // 2


def conv_out(size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1):
    """Side length after a convolution or pooling layer (the formula in the module docstring)."""
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def act_layer(name: str | None) -> nn.Module:
    """An activation by name; ``relu6`` (MobileNet) and None (identity) besides the common ones."""
    if name in (None, "none", "identity"):
        return nn.Identity()
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    return make_activation(name)


class ConvBNAct(nn.Sequential):
    """conv -> batch norm -> activation, the unit every conv net is built from.

    The conv has no bias when batch norm follows (BN's shift makes it redundant).

    Args:
        padding: An int, or None for "same" padding at stride 1.
        groups: ``groups == in_channels == out_channels`` is a depthwise convolution.
        activation: A name (``relu``, ``relu6``, ``gelu``, ...) or None for a linear block.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        batch_norm: bool = True,
        activation: str | None = "relu",
    ):
        if padding is None:
            padding = same_padding(kernel_size, dilation)
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                bias=not batch_norm,
            ),
            nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity(),
            act_layer(activation),
        )
        self.out_channels = out_channels


class DepthwiseSeparable(nn.Sequential):
    """Depthwise k x k conv (one filter per channel) then pointwise 1 x 1 conv (mixes channels).

    Costs ``k^2 C + C C'`` multiply-adds per pixel instead of ``k^2 C C'`` for a full conv: about
    8-9x fewer for 3 x 3 kernels (MobileNet's idea).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        kernel_size: int = 3,
        activation: str | None = "relu",
        pointwise_activation: str | None = "relu",
    ):
        super().__init__(
            # (B, C, H, W) -> (B, C, H/s, W/s): each channel filtered on its own
            ConvBNAct(
                in_channels,
                in_channels,
                kernel_size,
                stride,
                groups=in_channels,
                activation=activation,
            ),
            # (B, C, H', W') -> (B, C', H', W'): a linear mix of channels per pixel
            ConvBNAct(in_channels, out_channels, 1, activation=pointwise_activation),
        )


def dense_stack(
    features: int, dense: Sequence[int], dropout: float, activation: str
) -> tuple[nn.Sequential, int]:
    """Hidden dense layers between pooled conv features and the head: (dropout, linear, act)
    per entry, then dropout; returns the stack and its output width."""
    layers: list[nn.Module] = []
    for hidden in dense:
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.Linear(features, hidden), act_layer(activation)]
        features = hidden
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers), features


def global_pool(kind: str) -> nn.Module:
    """(B, C, H, W) -> (B, C) by average or max over space, or (B, C*H*W) by flattening."""
    if kind == "avg":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if kind == "max":
        return nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())
    if kind == "flatten":
        return nn.Flatten()
    raise ValueError(f"global_pool must be avg, max or flatten, not {kind!r}")


def pool_layer(kind: str, size: int = 2) -> nn.Module:
    """A ``size`` x ``size`` max or average pooling layer (stride = size), or identity."""
    if kind == "max":
        return nn.MaxPool2d(size)
    if kind == "avg":
        return nn.AvgPool2d(size)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"pool must be max, avg or none, not {kind!r}")


def first_conv(module: nn.Module) -> nn.Conv2d:
    """The first ``nn.Conv2d`` of ``module`` in registration (= forward) order."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise ValueError(f"{type(module).__name__} has no Conv2d layer")


def last_conv(module: nn.Module) -> nn.Conv2d:
    """The last ``nn.Conv2d`` of ``module`` (the layer Grad-CAM usually explains)."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(module).__name__} has no Conv2d layer")
    return convs[-1]


def conv_block_output(
    module: nn.Module, x: torch.Tensor, conv: nn.Conv2d | None = None
) -> tuple[str, torch.Tensor]:
    """Name and output of ``conv`` (default: the first conv of ``module``) for the input ``x`` of
    ``module``, passed through the norm and activation layers right after it in its block."""
    conv = conv if conv is not None else first_conv(module)
    name = next(n for n, m in module.named_modules() if m is conv)
    captured: list[torch.Tensor] = []
    handle = conv.register_forward_hook(lambda _m, _i, out: captured.append(out.detach().clone()))
    try:
        with torch.no_grad():
            module(x)
    finally:
        handle.remove()
    out = captured[0]
    parent_name, _, child = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    if isinstance(parent, nn.Sequential):
        children = list(parent.named_children())
        index = next(i for i, (n, _) in enumerate(children) if n == child)
        with torch.no_grad():
            for _, m in children[index + 1 :]:
                if not isinstance(m, POINTWISE):
                    break
                out = m(out)
    return name, out

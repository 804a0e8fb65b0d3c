"""Autoencoder: learn a compact code by reconstructing the input through a bottleneck.

An encoder ``f`` maps an input ``x`` (D values) to a code ``z = f(x)`` of ``latent_dim`` values,
and a decoder ``g`` maps the code back: ``x_hat = g(z)``. Training minimises a reconstruction
loss such as ``||x - x_hat||^2``. Because ``latent_dim < D`` (an *undercomplete* autoencoder),
the network cannot copy its input and must keep the directions that explain the data best; a
linear autoencoder with MSE learns the same subspace as PCA, and nonlinear layers let it follow
curved manifolds. The code serves as a learned low-dimensional embedding (``deepworks embed``),
and the reconstruction error as an anomaly score (``task: anomaly_detection``).

Two variants, chosen by ``kind``:

- ``dense``: an MLP encoder ``D -> hidden[0] -> ... -> latent_dim`` and the mirrored decoder
  ``latent_dim -> ... -> hidden[0] -> D``. Images are flattened and reshaped back.
- ``conv``: for images. Each encoder block is a 3x3 convolution with stride 2, halving the
  height and width (8x8 -> 4x4 -> 2x2 for ``channels: [16, 32]``); a linear layer maps the last
  feature map to the code. The decoder mirrors it with 3x3 transposed convolutions of stride 2,
  each doubling the size back to exactly the encoder's sizes (odd sizes included).

The output layer is ``sigmoid`` for data in [0, 1] (pixel intensities; pairs with a binary
cross-entropy or MSE loss) or ``linear`` for standardized tabular data. Denoising and sparse
autoencoders use this same model; their noise and penalties live in the task
(``deepworks.tasks.autoencoder``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from deepworks.errors import ConfigError
from deepworks.layers import activation as make_activation
from deepworks.layers import init_weights
from deepworks.models.base import Model
from deepworks.registry import PositiveInt, register_model


@register_model("autoencoder")
class Autoencoder(Model):
    """Dense or convolutional autoencoder with an undercomplete code (``encode`` / ``decode``).

    Args:
        in_features: Input values per sample (taken from the data).
        in_channels: Image channels (taken from image data; needed by ``kind: conv``).
        image_size: Image [height, width] (taken from image data; needed by ``kind: conv``).
        kind: "dense" (MLP) or "conv" (strided convolutions, for images).
        hidden: Widths of the dense encoder's hidden layers; the decoder mirrors them.
        channels: Channels of the conv encoder's stride-2 blocks; the decoder mirrors them.
        latent_dim: Size of the code; must be smaller than the input.
        activation: Hidden-layer activation (relu, elu, tanh, ...).
        code_activation: Applied to the code: "linear" (none), "sigmoid" or "tanh".
        output: "sigmoid" for data in [0, 1], "linear" for standardized data.
        init: Weight init (he, xavier, orthogonal or default).
    """

    family = "generative"
    example_input_shape = (1, 8, 8)

    def __init__(
        self,
        in_features: PositiveInt,
        in_channels: PositiveInt | None = None,
        image_size: Sequence[PositiveInt] | None = None,
        kind: Literal["dense", "conv"] = "dense",
        hidden: Sequence[PositiveInt] = (64,),
        channels: Sequence[PositiveInt] = (16, 32),
        latent_dim: PositiveInt = 8,
        activation: str = "relu",
        code_activation: Literal["linear", "sigmoid", "tanh"] = "linear",
        output: Literal["sigmoid", "linear"] = "linear",
        init: str = "he",
    ):
        super().__init__()
        self.kind, self.output, self.code_activation = kind, output, code_activation
        self.latent_dim = latent_dim
        if kind == "conv" and (in_channels is None or image_size is None):
            raise ConfigError(
                "model.kind: conv needs images (in_channels and image_size); use image data "
                "(e.g. data.as_image: true) or kind: dense"
            )
        if image_size is not None and in_channels is not None:
            self.input_shape: tuple[int, ...] = (in_channels, *image_size)
        else:
            self.input_shape = (in_features,)
        size = math.prod(self.input_shape)
        if latent_dim >= size:
            raise ConfigError(
                f"model.latent_dim: {latent_dim} is not smaller than the input's {size} values; "
                "an autoencoder needs a bottleneck or it can learn to copy its input — set "
                f"model.latent_dim below {size}"
            )
        if latent_dim < 1:
            raise ConfigError(f"model.latent_dim: {latent_dim}; give at least 1")
        act = activation
        if kind == "dense":
            widths = [size, *hidden]
            enc: list[nn.Module] = [nn.Flatten()]
            for a, b in zip(widths, widths[1:], strict=False):
                enc += [nn.Linear(a, b), make_activation(act)]
            enc.append(nn.Linear(widths[-1], latent_dim))
            self.encoder = nn.Sequential(*enc)
            dec: list[nn.Module] = []
            back = [latent_dim, *reversed(hidden)]
            for a, b in zip(back, back[1:], strict=False):
                dec += [nn.Linear(a, b), make_activation(act)]
            dec.append(nn.Linear(back[-1], size))
            self.decoder = nn.Sequential(*dec)
        elif kind == "conv":
            if not channels:
                raise ConfigError("model.channels: give at least one conv block, e.g. [16, 32]")
            # spatial sizes after each stride-2 block: ceil(s / 2) for a 3x3 kernel, padding 1
            self.sizes = [tuple(image_size)]
            for _ in channels:
                h, w = self.sizes[-1]
                self.sizes.append(((h + 1) // 2, (w + 1) // 2))
            chans = [in_channels, *channels]
            enc = []
            for a, b in zip(chans, chans[1:], strict=False):
                enc += [nn.Conv2d(a, b, 3, stride=2, padding=1), make_activation(act)]
            h, w = self.sizes[-1]
            enc += [nn.Flatten(), nn.Linear(channels[-1] * h * w, latent_dim)]
            self.encoder = nn.Sequential(*enc)
            self.project = nn.Sequential(
                nn.Linear(latent_dim, channels[-1] * h * w), make_activation(act)
            )
            back = [*reversed(channels), in_channels]
            self.up = nn.ModuleList(
                nn.ConvTranspose2d(a, b, 3, stride=2, padding=1)
                for a, b in zip(back, back[1:], strict=False)
            )
            self.up_act = nn.ModuleList(make_activation(act) for _ in back[2:])
        else:
            raise ConfigError(f"model.kind: {kind!r}; choose dense or conv")
        init_weights(self, init, nonlinearity=act)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code z (B, latent_dim) of inputs shaped like the data."""
        if self.kind == "conv":
            x = x.reshape(len(x), *self.input_shape)  # (B, C, H, W)
        z = self.encoder(x)  # (B, latent_dim)
        if self.code_activation == "sigmoid":
            return torch.sigmoid(z)
        if self.code_activation == "tanh":
            return torch.tanh(z)
        return z

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's output before the output activation, shaped like one input."""
        if self.kind == "dense":
            out = self.decoder(z)  # (B, D)
            return out.reshape(len(z), *self.input_shape)
        h = self.project(z).reshape(len(z), -1, *self.sizes[-1])  # (B, C_last, h, w)
        for i, layer in enumerate(self.up):
            # output_size picks the output padding that restores the encoder's exact size
            h = layer(h, output_size=self.sizes[-2 - i])
            if i < len(self.up_act):
                h = self.up_act[i](h)
        return h  # (B, C, H, W)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """The output activation: sigmoid into [0, 1], or the identity."""
        return torch.sigmoid(logits) if self.output == "sigmoid" else logits

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstructions (B, *input_shape) from codes (B, latent_dim)."""
        return self.activate(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x``, in ``x``'s shape."""
        return self.decode(self.encode(x)).reshape(x.shape)

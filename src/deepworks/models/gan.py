"""Generative adversarial networks: a generator G and a discriminator (critic) D in one module.

G maps noise ``z ~ N(0, I)`` to a sample ``G(z)`` in the data's space; D scores how real a
sample looks. Trained against each other (see ``deepworks.tasks.gan``), G learns the data
distribution: in the original minimax game ``min_G max_D E[log D(x)] + E[log(1 − D(G(z)))]``
the optimal D is ``p_data / (p_data + p_G)`` and G's best response makes ``p_G = p_data``.

Two architectures (``kind``):

* ``dcgan`` (Radford et al., 2016) for images: G projects z to a small ``channels[0] × h × w``
  map and doubles it with stride-2 transposed convolutions, batch norm and ReLU
  (1×8×8 digits: z → 128×2×2 → 64×4×4 → 1×8×8); D mirrors it with stride-2 convolutions and
  LeakyReLU(0.2), no pooling, weights drawn from N(0, 0.02).
* ``mlp``: fully connected G and D, for flat data or small images.

``conditional: true`` makes both players see a class label ``y`` (a conditional GAN, Mirza &
Osindero, 2014): G takes ``[z, embed(y)]``; D is a *projection discriminator* (Miyato & Koyama,
2018): ``D(x, y) = ψ(φ(x)) + embed_D(y) · φ(x)``, whose class term rewards features that match
the label, so samples for class 3 must look like a 3 to pass.

D's normalization (``d_norm``): batch norm as in DCGAN, or ``layer`` / ``none`` for WGAN-GP —
its gradient penalty is taken per sample, which batch norm (mixing the samples of a batch)
breaks. G's output activation matches the data's range: ``sigmoid`` for [0, 1] pixels (digits
with ``scale: none``), ``tanh`` for [−1, 1], ``linear`` for standardized data.

Example:
    >>> gan = GAN(in_channels=1, image_size=[8, 8], latent_dim=32)
    >>> gan.sample(16).shape
    torch.Size([16, 1, 8, 8])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from deepworks.errors import ConfigError
from deepworks.models.base import Model
from deepworks.registry import NonNegativeInt, PositiveInt, register_model

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
_OUTPUTS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "linear": nn.Identity}


def _d_norm(kind: str, width: int, conv: bool) -> nn.Module:
    """Normalization of a discriminator layer. ``layer`` on a conv map is GroupNorm with one
    group: it normalizes each sample over (C, H, W), so samples stay independent."""
    if kind == "batch":
        return nn.BatchNorm2d(width) if conv else nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.GroupNorm(1, width) if conv else nn.LayerNorm(width)
    return nn.Identity()


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialization: conv and linear weights ~ N(0, 0.02), norm scales ~ N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z (B, latent [+ embed]) → sample (B, *out_shape)."""

    def __init__(self, body: nn.Module, num_classes: int, embed_dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        self.body = body

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], dim=1)  # (B, latent + embed)
        return self.body(z)


class Discriminator(nn.Module):
    """x (B, *shape) → one score per sample (B,): a logit (bce, hinge) or a critic value (WGAN)."""

    def __init__(self, features: nn.Module, width: int, num_classes: int):
        super().__init__()
        self.features = features  # x -> φ(x) (B, width)
        self.out = nn.Linear(width, 1)  # ψ
        # projection term embed_D(y) · φ(x): zero-initialized, so training starts unconditional
        self.embed = nn.Embedding(num_classes, width) if num_classes else None
        if self.embed is not None:
            nn.init.zeros_(self.embed.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.features(x)  # (B, width)
        score = self.out(phi).squeeze(1)  # (B,)
        if self.embed is not None:
            score = score + (self.embed(y) * phi).sum(1)
        return score


@register_model("gan")
class GAN(Model):
    """Generative adversarial network (DCGAN or MLP, optionally class-conditional): a generator
    and a discriminator; ``forward(x, y)`` is the discriminator's score.

    Args:
        in_features: Values per sample (flat data; set from the data).
        in_channels: Image channels (set from image data).
        image_size: [H, W] of image data; G's output shape is (in_channels, H, W) when given,
            else (in_features,).
        num_classes: Classes of the data (set from the data); used when ``conditional``.
        kind: "dcgan" (convolutional, images whose sides divide by 2^len(channels)) or "mlp".
        latent_dim: Size of the noise vector z.
        channels: DCGAN widths from G's first map to its last (D mirrors them).
        hidden: MLP hidden widths of G (D uses them reversed).
        d_norm: Discriminator normalization: "batch" (DCGAN), "layer" or "none" (WGAN-GP).
        conditional: Condition both players on the class label.
        embed_dim: Size of G's label embedding (conditional only).
        output: G's output activation: "sigmoid" ([0, 1] data), "tanh" ([-1, 1]), "linear".
    """

    family = "generative"

    def __init__(
        self,
        in_features: PositiveInt | None = None,
        in_channels: PositiveInt | None = None,
        image_size: Sequence[PositiveInt] | None = None,
        num_classes: NonNegativeInt = 0,
        kind: Literal["dcgan", "mlp"] = "dcgan",
        latent_dim: PositiveInt = 32,
        channels: Sequence[PositiveInt] = (128, 64),
        hidden: Sequence[PositiveInt] = (256, 256),
        d_norm: Literal["batch", "layer", "none"] = "batch",
        conditional: bool = False,
        embed_dim: PositiveInt = 16,
        output: Literal["sigmoid", "tanh", "linear"] = "sigmoid",
    ):
        super().__init__()
        if image_size is not None and in_channels is not None:
            self.out_shape = (int(in_channels), *(int(s) for s in image_size))
        elif in_features is not None:
            self.out_shape = (int(in_features),)
        else:
            raise ConfigError("model: the gan needs in_features, or in_channels and image_size")
        if conditional and not num_classes:
            raise ConfigError(
                "model.conditional: a conditional GAN needs class labels, but the data has none; "
                "use labelled data (e.g. digits) or set model.conditional: false"
            )
        self.kind, self.latent_dim, self.output = kind, latent_dim, output
        self.conditional = conditional
        n_cls = num_classes if conditional else 0
        g_in = latent_dim + (embed_dim if conditional else 0)
        if kind == "dcgan":
            g_body, d_features, width = self._dcgan(g_in, list(channels), d_norm)
        else:
            g_body, d_features, width = self._mlp(g_in, list(hidden), d_norm)
        self.generator = Generator(g_body, n_cls, embed_dim)
        self.discriminator = Discriminator(d_features, width, n_cls)
        dcgan_init(self)
        if self.discriminator.embed is not None:
            nn.init.zeros_(self.discriminator.embed.weight)

    def _dcgan(self, g_in: int, channels: list[int], d_norm: str):
        if len(self.out_shape) != 3:
            raise ConfigError(
                "model.kind: dcgan needs image data (set data.as_image: true) or use kind: mlp"
            )
        c, h, w = self.out_shape
        n = len(channels)
        if not channels or h % 2**n or w % 2**n:
            raise ConfigError(
                f"model.channels: {n} stride-2 layers need image sides divisible by {2**n}, "
                f"got {h}x{w}; use fewer channels entries"
            )
        h0, w0 = h // 2**n, w // 2**n
        g: list[nn.Module] = [
            nn.Linear(g_in, channels[0] * h0 * w0, bias=False),  # project z to a small map
            nn.Unflatten(1, (channels[0], h0, w0)),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(),
        ]
        for a, b in zip(channels[:-1], channels[1:], strict=True):  # each doubles H and W
            g += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        g += [nn.ConvTranspose2d(channels[-1], c, 4, 2, 1), _OUTPUTS[self.output]()]
        rev = channels[::-1]
        d: list[nn.Module] = [nn.Conv2d(c, rev[0], 4, 2, 1), nn.LeakyReLU(0.2)]  # no norm here
        for a, b in zip(rev[:-1], rev[1:], strict=True):  # each halves H and W
            d += [nn.Conv2d(a, b, 4, 2, 1), _d_norm(d_norm, b, conv=True), nn.LeakyReLU(0.2)]
        d.append(nn.Flatten())
        return nn.Sequential(*g), nn.Sequential(*d), channels[0] * h0 * w0

    def _mlp(self, g_in: int, hidden: list[int], d_norm: str):
        out = math.prod(self.out_shape)
        g: list[nn.Module] = []
        width = g_in
        for h in hidden:
            g += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
            width = h
        g += [nn.Linear(width, out), _OUTPUTS[self.output](), nn.Unflatten(1, self.out_shape)]
        d: list[nn.Module] = [nn.Flatten()]
        width = out
        for i, h in enumerate(hidden[::-1]):
            norm = nn.Identity() if i == 0 else _d_norm(d_norm, h, conv=False)
            d += [nn.Linear(width, h), norm, nn.LeakyReLU(0.2)]
            width = h
        return nn.Sequential(*g), nn.Sequential(*d), width

    # --- the two players --------------------------------------------------------------------
    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Samples G(z) (B, *out_shape) for noise z (B, latent_dim) and, if conditional, labels."""
        return self.generator(z, self._labels(y, len(z)))

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """D's score (B,) of samples x: a logit, or a critic value for WGAN-GP."""
        return self.discriminator(x, self._labels(y, len(x)))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.discriminate(x, y)

    @torch.no_grad()
    def sample(
        self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` samples from fresh noise (drawn with ``generator`` if given, on the CPU so the
        same seed gives the same z on any device). Conditional models draw their labels
        uniformly unless ``y`` gives them."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        if self.conditional and y is None:
            k = self.generator.embed.num_embeddings
            y = torch.randint(k, (n,), generator=generator)
        return self.generate(z, None if y is None else y.to(device))

    def _labels(self, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if not self.conditional:
            return None
        if y is None:
            raise ValueError("a conditional GAN needs class labels y")
        if len(y) != n:
            raise ValueError(f"{len(y)} labels for {n} samples")
        return y.long()

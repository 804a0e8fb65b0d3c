"""Variational autoencoder (Kingma & Welling, 2014) and its conditional form (Sohn et al., 2015).

A VAE is a latent-variable model ``p(x) = ∫ p(x|z) p(z) dz`` with prior ``p(z) = N(0, I)`` and
a decoder network for ``p(x|z)``. The encoder network approximates the posterior with a diagonal
Gaussian ``q(z|x) = N(μ(x), diag σ²(x))`` (it outputs ``μ`` and ``log σ²``), and both are trained
together by maximizing the evidence lower bound

    log p(x) ≥ ELBO = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)).

The expectation is estimated with one sample drawn by the *reparameterization trick*:
``z = μ + σ·ε`` with ``ε ~ N(0, I)``, so the noise sits outside the network and gradients flow
through ``μ`` and ``σ`` (see :meth:`VAE.reparameterize`). The KL term and the loss live in
``deepworks.tasks.vae``.

The decoder's output is the parameter of ``p(x|z)``: Bernoulli logits for data in [0, 1]
(``likelihood: bernoulli``; the mean image is ``sigmoid(logits)``) or Gaussian means with one
learned scale ``σ_x`` shared by every value (``likelihood: gaussian``; a learned σ balances the
two ELBO terms by itself, Rybkin et al., 2021).

A *conditional* VAE models ``p(x|c)``: the class ``c`` (one-hot) is fed to the encoder, next to
the image features, and to the decoder, next to ``z``. Sampling ``z ~ N(0, I)`` for a chosen class
then draws an image of that class, and ``z`` is left to carry the style (slant, thickness).

Two shapes: ``kind: dense`` (MLPs over the flattened input) and ``kind: conv`` (stride-2
convolutions down, transposed convolutions back up, for images such as 1x8x8 digits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepworks.errors import ConfigError
from deepworks.models.base import Model
from deepworks.registry import PositiveInt, register_model


def _mlp(widths: Sequence[int]) -> nn.Sequential:
    """Linear + ReLU for each consecutive pair of ``widths``."""
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


@register_model("vae")
class VAE(Model):
    """Variational autoencoder, dense or convolutional, optionally conditioned on the class.

    Args:
        in_features: Input values per sample (taken from the data).
        in_channels: Image channels (taken from image data; needed by ``kind: conv``).
        image_size: Image [height, width] (taken from image data; needed by ``kind: conv``).
        num_classes: Number of classes (taken from the data; used by ``conditional: true``).
        kind: "dense" (MLP encoder and decoder) or "conv" (convolutional).
        latent_dim: Size of z; smaller than the input (a bottleneck).
        hidden: Hidden widths of the dense encoder (the decoder mirrors them).
        channels: Channels of the conv encoder's stride-2 layers (the decoder mirrors them).
        conditional: Feed the one-hot class to encoder and decoder (a conditional VAE).
        likelihood: "bernoulli" (data in [0, 1]: the decoder gives logits) or "gaussian" (the
            decoder gives means; one learned scale).
    """

    family = "generative"
    example_input_shape = (1, 8, 8)
    example_kwargs = {"in_features": 64, "in_channels": 1, "image_size": [8, 8]}

    def __init__(
        self,
        in_features: PositiveInt | None = None,
        in_channels: PositiveInt | None = None,
        image_size: Sequence[PositiveInt] | None = None,
        num_classes: PositiveInt | None = None,
        kind: str = "dense",
        latent_dim: int = 8,  # the model checks 1 <= latent_dim < its input size
        hidden: Sequence[PositiveInt] = (256, 128),
        channels: Sequence[PositiveInt] = (32, 64),
        conditional: bool = False,
        likelihood: str = "bernoulli",
    ):
        super().__init__()
        if kind not in ("dense", "conv"):
            raise ConfigError(f"model.kind: {kind!r} is not a VAE kind (choices: dense, conv)")
        if likelihood not in ("bernoulli", "gaussian"):
            raise ConfigError(
                f"model.likelihood: {likelihood!r} is not a likelihood (choices: bernoulli, "
                "gaussian)"
            )
        if kind == "conv" and (in_channels is None or image_size is None):
            raise ConfigError(
                "model.kind: conv needs image data (in_channels and image_size); use "
                "data.as_image: true or model.kind: dense"
            )
        if image_size is not None and in_channels is not None:
            self.data_shape = (in_channels, *image_size)  # (C, H, W)
        elif in_features is not None:
            self.data_shape = (in_features,)
        else:
            raise ConfigError("model: a VAE needs in_features (or in_channels and image_size)")
        size = math.prod(self.data_shape)
        if latent_dim < 1 or latent_dim >= size:
            raise ConfigError(
                f"model.latent_dim: {latent_dim} must be between 1 and {size - 1}: the latent "
                f"code is a bottleneck, smaller than the {size} input values"
            )
        if conditional and not num_classes:
            raise ConfigError(
                "model.conditional: a conditional VAE needs class labels, but the data has none; "
                "use classification data or set conditional: false"
            )
        self.kind, self.latent_dim, self.likelihood = kind, latent_dim, likelihood
        self.conditional = conditional
        self.num_classes = num_classes
        n_cond = num_classes if conditional else 0

        if kind == "dense":
            self.encoder = nn.Sequential(nn.Flatten(), _mlp([size, *hidden]))
            enc_width = size if not hidden else hidden[-1]
            self.decoder_in = _mlp([latent_dim + n_cond, *reversed(hidden)])
            self.decoder = nn.Linear(hidden[0] if hidden else latent_dim + n_cond, size)
            # the bottleneck of the encoder sees the class too (a small extra layer)
            self.enc_cond = nn.Linear(enc_width + n_cond, enc_width) if n_cond else None
        else:
            c, h, w = self.data_shape
            sizes = [(h, w)]  # spatial size before each stride-2 conv: ⌈s / 2⌉ each time
            layers: list[nn.Module] = []
            for ch_in, ch_out in zip([c, *channels[:-1]], channels, strict=True):
                layers += [nn.Conv2d(ch_in, ch_out, 3, stride=2, padding=1), nn.ReLU()]
                sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
            self.encoder = nn.Sequential(*layers, nn.Flatten())
            self.bottom = (channels[-1], *sizes[-1])  # (C', H', W')
            enc_width = math.prod(self.bottom)
            self.enc_cond = nn.Linear(enc_width + n_cond, enc_width) if n_cond else None
            self.decoder_in = nn.Sequential(nn.Linear(latent_dim + n_cond, enc_width), nn.ReLU())
            up: list[nn.Module] = []
            outs = [*reversed(channels[:-1]), c]
            for i, (ch_in, ch_out) in enumerate(zip(reversed(channels), outs, strict=True)):
                (hi, wi), (ho, wo) = sizes[-1 - i], sizes[-2 - i]
                # (s_in − 1)·2 − 2 + 3 = 2 s_in − 1; output_padding adds the row an odd size lost
                pad = (ho - (2 * hi - 1), wo - (2 * wi - 1))
                up.append(nn.ConvTranspose2d(ch_in, ch_out, 3, 2, padding=1, output_padding=pad))
                if i < len(channels) - 1:
                    up.append(nn.ReLU())
            self.decoder = nn.Sequential(*up)
        self.mu = nn.Linear(enc_width, latent_dim)
        self.logvar = nn.Linear(enc_width, latent_dim)
        # log σ_x of the Gaussian likelihood, learned with the rest (σ_x = 1 at the start)
        self.log_sigma = nn.Parameter(torch.zeros(())) if likelihood == "gaussian" else None

    @staticmethod
    def example_input(n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(n, 1, 8, 8, generator=generator)

    def _onehot(self, y: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        if not self.conditional:
            return None
        if y is None:
            raise ValueError("a conditional VAE needs the class y of every sample")
        return F.one_hot(y.long(), self.num_classes).to(like.dtype)  # (B, K)

    def encode(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters of q(z|x[, y]): mean and log-variance, each (B, latent_dim)."""
        h = self.encoder(x)  # (B, F)
        c = self._onehot(y, h)
        if c is not None:
            h = F.relu(self.enc_cond(torch.cat([h, c], dim=1)))
        return self.mu(h), self.logvar(h)

    def reparameterize(
        self, mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """z = μ + exp(log σ² / 2) · ε, ε ~ N(0, I): a sample of q(z|x) that is differentiable
        in μ and log σ² (the noise is an input, not a node on the gradient path)."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Parameters of p(x|z[, y]) in the data's shape: Bernoulli logits or Gaussian means."""
        c = self._onehot(y, z)
        h = self.decoder_in(z if c is None else torch.cat([z, c], dim=1))
        if self.kind == "conv":
            h = h.view(len(z), *self.bottom)  # (B, C', H', W')
        return self.decoder(h).view(len(z), *self.data_shape)

    def mean(self, decoded: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z): sigmoid of the logits (bernoulli) or the means (gaussian)."""
        return torch.sigmoid(decoded) if self.likelihood == "bernoulli" else decoded

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pass x → q(z|x) → z → p(x|z): (decoded (B, *data_shape), μ, log σ²)."""
        mu, logvar = self.encode(x, y)
        z = self.reparameterize(mu, logvar)
        return self.decode(z, y), mu, logvar

    @torch.no_grad()
    def sample(
        self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` samples from the model: z ~ N(0, I), then the mean of p(x|z) (probabilities for
        bernoulli), in the data's shape.

        Args:
            y: The class of each sample (conditional models; default: classes 0, 1, ... in turn).
            generator: Source of z, so that sampling leaves the global RNG alone.
        """
        p = next(self.parameters())
        z = torch.randn(n, self.latent_dim, generator=generator, device=p.device, dtype=p.dtype)
        if self.conditional and y is None:
            y = torch.arange(n, device=p.device) % self.num_classes
        return self.mean(self.decode(z, None if y is None else y.to(p.device)))

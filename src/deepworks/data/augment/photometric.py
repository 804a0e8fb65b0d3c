"""Photometric augmentations: change pixel values, never positions, so every target is kept.

All three are batched (one draw per sample, no loop over samples) and keep the dtype. Nothing
assumes images lie in [0, 1] (they are often standardized); ``clamp=True`` clips the result to
the range the input batch had, ``[min x, max x]``.
"""

from __future__ import annotations

import math

import torch

from deepworks.data.augment.base import Augmentation
from deepworks.data.augment.geometric import (
    as_range,
    check_p,
    drawn,
    require_images,
    restore_dtype,
    uniform,
    work_dtype,
)
from deepworks.registry import register_augmentation

# ITU-R BT.601 luma weights, as torchvision's rgb_to_grayscale
LUMA = (0.299, 0.587, 0.114)


def gray(x: torch.Tensor) -> torch.Tensor:
    """Luma (B, 1, H, W) of RGB images; single-channel images are their own gray."""
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def hue_rotation(angle: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotations of RGB space by ``angle`` (B,) about the gray axis n = (1, 1, 1)/√3.

    Rodrigues: ``R = cos a I + sin a [n]x + (1 - cos a) n n^T``. Gray pixels stay gray and the
    hue turns by ``a`` (the YIQ-style hue shift, one matrix product instead of an HSV round trip).
    """
    c, s = angle.cos()[:, None, None], angle.sin()[:, None, None]  # (B, 1, 1)
    k = 1 / math.sqrt(3)
    eye = torch.eye(3, dtype=angle.dtype, device=angle.device)
    cross = torch.tensor([[0, -k, k], [k, 0, -k], [-k, k, 0]], dtype=angle.dtype).to(angle.device)
    nnt = torch.full((3, 3), 1 / 3, dtype=angle.dtype, device=angle.device)
    return c * eye + s * cross + (1 - c) * nnt


def finish(out, x, apply, clamp: bool) -> torch.Tensor:
    """Clamp to the input's range if asked, restore the dtype, keep undrawn samples as they were."""
    if clamp:
        out = out.clamp(x.min().to(out.dtype), x.max().to(out.dtype))
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    return torch.where(apply.view(shape), restore_dtype(out, x.dtype), x)


@register_augmentation("color_jitter")
class ColorJitter(Augmentation):
    """Random brightness, contrast, saturation (RGB) and hue (RGB), in that order, per sample.

    With factors ``b, c, s ~ U(1 - v, 1 + v)`` (lower end clipped at 0)::

        brightness  x <- b x                          (blend with black)
        contrast    x <- c x + (1 - c) mean(gray(x))  (blend with the mean gray level)
        saturation  x <- s x + (1 - s) gray(x)        (blend with the gray image; 3 channels)
        hue         x <- R(2 pi h) x,  h ~ U(-hue, hue) turns   (3 channels, see hue_rotation)

    Saturation and hue leave images that are not RGB unchanged.

    Args:
        brightness: Strength of the brightness change (0: off).
        contrast: Strength of the contrast change (0: off).
        saturation: Strength of the saturation change (0: off).
        hue: Largest hue shift in turns, at most 0.5 (0: off).
        p: Probability that a sample is jittered.
        clamp: Clip the result to the input batch's value range.
    """

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.0,
        p: float = 1.0,
        clamp: bool = False,
    ):
        strengths = {"brightness": brightness, "contrast": contrast, "saturation": saturation}
        ranges = [as_range(v, k, 1.0) for k, v in strengths.items()]
        self.ranges = [(max(0.0, lo), hi) for lo, hi in ranges]  # factors are never negative
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}")
        self.hue, self.p, self.clamp = float(hue), check_p(p), clamp

    def __call__(self, x, y):
        require_images("color_jitter", x)
        b = x.shape[0]
        u = torch.rand(b, 4, device=x.device)  # brightness, contrast, saturation, hue
        apply = drawn(self.p, b, x.device)
        out = work_dtype(x)
        f = [uniform(*r, u[:, i]).to(out.dtype).view(b, 1, 1, 1) for i, r in enumerate(self.ranges)]
        out = out * f[0]
        out = f[1] * out + (1 - f[1]) * gray(out).mean((1, 2, 3), keepdim=True)
        if x.shape[1] == 3:
            out = f[2] * out + (1 - f[2]) * gray(out)
            if self.hue > 0:
                angle = 2 * math.pi * uniform(-self.hue, self.hue, u[:, 3]).to(out.dtype)
                out = torch.einsum("bij,bjhw->bihw", hue_rotation(angle), out)
        return finish(out, x, apply, self.clamp), y


@register_augmentation("gaussian_noise")
class GaussianNoise(Augmentation):
    """Add Gaussian noise to every value, x <- x + std * eps; images or features.

    Args:
        std: Standard deviation, or a range (lo, hi) drawn per sample.
        p: Probability that a sample gets noise.
        clamp: Clip the result to the input batch's value range.
    """

    def __init__(self, std: float | tuple[float, float] = 0.1, p: float = 1.0, clamp=False):
        self.std = as_range(std, "std") if isinstance(std, (tuple, list)) else (std, std)
        if self.std[0] < 0:
            raise ValueError(f"std must be >= 0, got {std}")
        self.p, self.clamp = check_p(p), clamp

    def __call__(self, x, y):
        b = x.shape[0]
        shape = (b,) + (1,) * (x.ndim - 1)
        out = work_dtype(x)
        std = uniform(*self.std, torch.rand(b, device=x.device)).to(out.dtype).view(shape)
        out = out + std * torch.randn_like(out)
        return finish(out, x, drawn(self.p, b, x.device), self.clamp), y


@register_augmentation("cutout")
class Cutout(Augmentation):
    """Cutout / random erasing (DeVries & Taylor, 2017): set n_holes rectangles to fill.

    Each hole is ``size H`` by ``size W`` pixels with a centre uniform over the image (holes may
    be cut by the border). A pixel (i, j) is erased if ``|i + 1/2 - c_y| < size H / 2`` and
    ``|j + 1/2 - c_x| < size W / 2`` for some hole.

    Args:
        n_holes: Holes per image.
        size: Side of a hole as a fraction of the image's height and width.
        p: Probability that a sample gets holes.
        fill: Value of the erased pixels.
    """

    def __init__(self, n_holes: int = 1, size: float = 0.25, p: float = 0.5, fill: float = 0.0):
        if n_holes < 1 or not 0 < size <= 1:
            raise ValueError(f"n_holes must be >= 1 and size in (0, 1], got {n_holes}, {size}")
        self.n_holes, self.size, self.p, self.fill = int(n_holes), float(size), check_p(p), fill

    def __call__(self, x, y):
        require_images("cutout", x)
        b, _, h, w = x.shape
        centre = torch.rand(b, self.n_holes, 2, device=x.device)  # (B, n, 2) as fractions
        apply = drawn(self.p, b, x.device)
        rows = (torch.arange(h, device=x.device) + 0.5) / h  # (H,) pixel centres in [0, 1]
        cols = (torch.arange(w, device=x.device) + 0.5) / w  # (W,)
        in_y = (rows - centre[..., 1:]).abs() < self.size / 2  # (B, n, H)
        in_x = (cols - centre[..., :1]).abs() < self.size / 2  # (B, n, W)
        hole = (in_y[..., :, None] & in_x[..., None, :]).any(1)  # (B, H, W)
        hole = hole & apply.view(b, 1, 1)
        return x.masked_fill(hole[:, None], self.fill), y

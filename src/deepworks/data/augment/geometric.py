"""Geometric augmentations: flips and affine warps (rotate, translate, scale, resized crop).

Every warp is one ``affine_grid`` + ``grid_sample`` for the whole batch. ``theta`` (B, 2, 3) maps
each *output* pixel to the *input* point it samples, in normalized coordinates (-1..1 across the
image, ``align_corners=False``). A forward map in pixels ``p_out = s R(a) p_in + t`` (zoom ``s``,
counter-clockwise rotation ``a``, shift ``t``) is inverted and normalized with
``S = diag(W/2, H/2)``::

    p_in = M (p_out - t_n),    M = S^-1 (1/s) R(-a) S = (1/s) [[cos a, -sin a H/W],
                                                              [sin a W/H,  cos a]]

with ``t_n = 2 t / (W, H)``. Segmentation masks (B, H, W) are resampled through the same grid
with ``mode="nearest"``, so every pixel keeps a class. Samples not drawn (probability ``1 - p``)
are returned untouched, bit for bit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from deepworks.data.augment.base import Augmentation
from deepworks.errors import ConfigError
from deepworks.registry import register_augmentation

# --- helpers shared by the augmentation modules ------------------------------------------------


def require_images(name: str, x: torch.Tensor) -> None:
    """One-line ConfigError unless ``x`` is a batch of images (B, C, H, W)."""
    if x.ndim != 4:
        raise ConfigError(
            f"train.augment: {name} needs images (B, C, H, W), got a batch of shape "
            f"{tuple(x.shape)}"
        )


def is_boxes(y: torch.Tensor) -> bool:
    """Detection targets: (B, M, 5) rows [cls, x1, y1, x2, y2], padding rows all -1."""
    return y.ndim == 3 and y.shape[-1] == 5


def check_p(p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    return float(p)


def as_range(value: float | tuple | list, what: str, center: float = 0.0) -> tuple[float, float]:
    """``v`` -> (center - v, center + v); a pair (lo, hi) is kept as it is."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] > value[1]:
            raise ValueError(f"{what} must be a number or a pair (low, high), got {value}")
        return float(value[0]), float(value[1])
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return center - float(value), center + float(value)


def uniform(lo: float, hi: float, u: torch.Tensor) -> torch.Tensor:
    """Map uniform draws u in [0, 1) to [lo, hi)."""
    return lo + (hi - lo) * u


def drawn(p: float, b: int, device: torch.device) -> torch.Tensor:
    """(B,) bool: which samples this augmentation changes."""
    return torch.rand(b, device=device) < p


def restore_dtype(out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Back to the input's dtype; integer images are rounded and kept in their range."""
    if dtype.is_floating_point:
        return out.to(dtype)
    info = torch.iinfo(dtype)
    return out.round().clamp(info.min, info.max).to(dtype)


def work_dtype(x: torch.Tensor) -> torch.Tensor:
    """float32 / float64 as they are; half, bfloat16 and integers computed in float32."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


# --- flip -------------------------------------------------------------------------------------


def _flip_boxes(y: torch.Tensor, flip: torch.Tensor, size: int, lo: int, hi: int) -> torch.Tensor:
    """[.., lo] <- size - [.., hi] and [.., hi] <- size - [.., lo] where flipped and not padding."""
    valid = ~(y == -1).all(-1)  # (B, M)
    new = y.clone()
    new[..., lo], new[..., hi] = size - y[..., hi], size - y[..., lo]
    return torch.where((flip[:, None] & valid)[..., None], new, y)


@register_augmentation("flip")
class Flip(Augmentation):
    """Mirror images left-right (and, with vertical, upside down), each sample with prob. p.

    Horizontal: ``x'[..., i, j] = x[..., i, W - 1 - j]``. Masks flip with the image; detection
    boxes [cls, x1, y1, x2, y2] in pixels become [cls, W - x2, y1, W - x1, y2] (padding rows of
    -1 stay). Each axis is drawn independently.

    Args:
        p: Probability that a sample is flipped (per axis).
        horizontal: Flip left-right.
        vertical: Flip upside down.
    """

    def __init__(self, p: float = 0.5, horizontal: bool = True, vertical: bool = False):
        self.p, self.horizontal, self.vertical = check_p(p), horizontal, vertical

    def __call__(self, x, y):
        require_images("flip", x)
        b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        axes = [(-1, w, 1, 3)] * self.horizontal + [(-2, h, 2, 4)] * self.vertical
        for dim, size, lo, hi in axes:  # image axis, its size, box columns it moves
            flip = drawn(self.p, b, x.device)  # (B,)
            x = torch.where(flip.view(b, 1, 1, 1), x.flip(dim), x)
            if is_boxes(y):
                y = _flip_boxes(y, flip, size, lo, hi)
            elif y.ndim == 3:  # (B, H, W) mask
                y = torch.where(flip.view(b, 1, 1), y.flip(dim), y)
        return x, y


# --- affine warps -----------------------------------------------------------------------------


def warp(x, y, theta, apply, padding: str, mode: str):
    """Resample images (and masks) of the samples in ``apply`` through ``theta`` (B, 2, 3)."""
    b = x.shape[0]
    work = work_dtype(x)
    grid = F.affine_grid(theta.to(work.dtype), list(work.shape), align_corners=False)  # (B,H,W,2)
    out = F.grid_sample(work, grid, mode=mode, padding_mode=padding, align_corners=False)
    x = torch.where(apply.view(b, 1, 1, 1), restore_dtype(out, x.dtype), x)
    if y.ndim == 3:  # (B, H, W) mask: nearest keeps class ids
        m = y[:, None].to(grid.dtype)  # (B, 1, H, W)
        m = F.grid_sample(m, grid, mode="nearest", padding_mode=padding, align_corners=False)
        y = torch.where(apply.view(b, 1, 1), m[:, 0].round().to(y.dtype), y)
    return x, y


@register_augmentation("affine")
class Affine(Augmentation):
    """Random rotation, shift and zoom of each sample, in one resampling.

    The matrix ``theta`` is derived in the module docstring.

    Args:
        degrees: Rotation angle range in degrees (counter-clockwise): ``d`` is (-d, d).
        translate: Largest shift as a fraction of width / height: ``t`` is (-t, t) each axis.
        scale: Zoom range (lo, hi); > 1 zooms in.
        p: Probability that a sample is transformed.
        fill: Outside the image: "zeros", "reflection" or "border".
        interpolation: "bilinear" or "nearest" (masks are always nearest).
    """

    name = "affine"

    def __init__(
        self,
        degrees: float | tuple[float, float] = 0.0,
        translate: float | tuple[float, float] = 0.0,
        scale: tuple[float, float] = (1.0, 1.0),
        p: float = 1.0,
        fill: str = "zeros",
        interpolation: str = "bilinear",
    ):
        if fill not in ("zeros", "reflection", "border"):
            raise ValueError(f"fill must be 'zeros', 'reflection' or 'border', got {fill!r}")
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation must be bilinear or nearest, got {interpolation!r}")
        self.p, self.fill, self.interpolation = check_p(p), fill, interpolation
        self.degrees = as_range(degrees, "degrees")
        self.translate = as_range(translate, "translate")
        self.scale = as_range(scale, "scale", 1.0)
        if self.translate[1] > 1 or self.scale[0] <= 0:
            raise ValueError(f"translate must be <= 1 and scale > 0, got {translate}, {scale}")

    def theta(self, b, h, w, device):
        u = torch.rand(b, 4, device=device)  # angle, zoom, shift x, shift y
        a = torch.deg2rad(uniform(*self.degrees, u[:, 0]))  # (B,)
        s = uniform(*self.scale, u[:, 1])  # (B,)
        t = 2 * uniform(*self.translate, u[:, 2:])  # (B, 2) normalized shift
        cos, sin = a.cos() / s, a.sin() / s
        m = torch.stack([cos, -sin * h / w, sin * w / h, cos], -1).view(b, 2, 2)  # (B, 2, 2)
        offset = -(m @ t[:, :, None])  # (B, 2, 1)
        return torch.cat([m, offset], -1)  # (B, 2, 3)

    def __call__(self, x, y):
        require_images(self.name, x)
        if is_boxes(y):
            raise ConfigError(
                f"train.augment: {self.name} does not support detection targets (boxes would "
                "not stay boxes); use flip, or photometric augmentations"
            )
        if y.ndim == 3 and y.shape[-2:] != x.shape[-2:]:
            raise ConfigError(
                f"train.augment: {self.name}: masks {tuple(y.shape)} do not match the images "
                f"{tuple(x.shape)}"
            )
        b, _, h, w = x.shape
        theta = self.theta(b, h, w, x.device)  # (B, 2, 3)
        return warp(x, y, theta, drawn(self.p, b, x.device), self.fill, self.interpolation)


@register_augmentation("rotate")
class Rotate(Affine):
    """Rotate each sample by an angle drawn from degrees (counter-clockwise, about the centre).

    Args:
        degrees: ``d`` draws from (-d, d); a pair (lo, hi) draws from it ((90, 90): exactly 90).
        p, fill, interpolation: As for ``affine``.
    """

    name = "rotate"

    def __init__(self, degrees=15.0, p: float = 1.0, fill="zeros", interpolation="bilinear"):
        super().__init__(degrees=degrees, p=p, fill=fill, interpolation=interpolation)


@register_augmentation("translate")
class Translate(Affine):
    """Shift each sample by up to a fraction of its width and height (sub-pixel).

    Args:
        translate: Largest shift as a fraction of the size, per axis.
        p, fill, interpolation: As for ``affine``.
    """

    name = "translate"

    def __init__(self, translate=0.1, p: float = 1.0, fill="zeros", interpolation="bilinear"):
        super().__init__(translate=translate, p=p, fill=fill, interpolation=interpolation)


@register_augmentation("scale")
class Scale(Affine):
    """Zoom each sample about its centre by a factor drawn from scale (> 1 zooms in).

    Args:
        scale: Zoom range (lo, hi).
        p, fill, interpolation: As for ``affine``.
    """

    name = "scale"

    def __init__(self, scale=(0.8, 1.2), p: float = 1.0, fill="zeros", interpolation="bilinear"):
        super().__init__(scale=scale, p=p, fill=fill, interpolation=interpolation)


@register_augmentation("random_resized_crop")
class RandomResizedCrop(Affine):
    """Crop a random region and resize it back to (H, W), as torchvision's RandomResizedCrop.

    The region has area ``s H W`` with ``s ~ U(scale)`` and aspect ratio ``w / h = r`` with
    ``log r ~ U(log ratio)``, so ``w = sqrt(s H W r)``, ``h = sqrt(s H W / r)``. Ten draws per
    sample are made at once and the first that fits is kept; if none fits, the whole image
    clipped to the ratio range is used (torchvision's fallback). Its position is uniform. Sizes
    are not rounded to whole pixels: the crop-and-resize is one bilinear resampling,
    ``x_in = (w / W) x_out + (2 c_x / W - 1)`` in normalized coordinates.

    Args:
        scale: Range of the crop area as a fraction of the image.
        ratio: Range of the crop's aspect ratio w / h.
        p: Probability that a sample is cropped.
        interpolation: "bilinear" or "nearest".
    """

    name = "random_resized_crop"
    attempts = 10

    def __init__(
        self,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        p: float = 1.0,
        interpolation: str = "bilinear",
    ):
        super().__init__(p=p, interpolation=interpolation)
        self.scale = as_range(scale, "scale", 1.0)  # here: of the area
        self.ratio = as_range(ratio, "ratio", 1.0)
        if not (self.scale[0] > 0 and self.scale[1] <= 1 and self.ratio[0] > 0):
            raise ValueError(f"scale must lie in (0, 1] and ratio be > 0, got {scale}, {ratio}")

    def theta(self, b, h, w, device):
        u = torch.rand(b, self.attempts, 2, device=device)
        area = h * w * uniform(*self.scale, u[..., 0])  # (B, A)
        log_r = uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), u[..., 1])
        cw, ch = (area * log_r.exp()).sqrt(), (area / log_r.exp()).sqrt()  # (B, A)
        fits = (cw <= w) & (ch <= h)
        first = fits.to(torch.uint8).argmax(1, keepdim=True)  # (B, 1): first draw that fits
        cw, ch = cw.gather(1, first)[:, 0], ch.gather(1, first)[:, 0]  # (B,)
        fw, fh = float(w), float(h)  # fallback: whole image clipped to the ratio range
        if w / h < self.ratio[0]:
            fh = w / self.ratio[0]
        elif w / h > self.ratio[1]:
            fw = h * self.ratio[1]
        ok = fits.any(1)
        cw, ch = torch.where(ok, cw, fw), torch.where(ok, ch, fh)
        pos = torch.rand(b, 2, device=device)
        pos = torch.where(ok[:, None], pos, 0.5)  # the fallback crop is centred
        cx, cy = cw / 2 + (w - cw) * pos[:, 0], ch / 2 + (h - ch) * pos[:, 1]  # (B,) pixels
        zero = torch.zeros_like(cw)
        row0 = torch.stack([cw / w, zero, 2 * cx / w - 1], -1)
        row1 = torch.stack([zero, ch / h, 2 * cy / h - 1], -1)
        return torch.stack([row0, row1], 1)  # (B, 2, 3)

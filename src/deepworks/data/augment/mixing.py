"""Mixing augmentations: blend each sample with another one of the batch, and its label too.

Both pair sample i with sample ``pi(i)`` of a random permutation of the batch and return soft
labels (B, K) ``y_i = lam_i onehot(y_i) + (1 - lam_i) onehot(y_pi(i))`` (or the same mix of
labels that are already soft), which the classification task's cross-entropy takes as class
probabilities. ``lam ~ Beta(alpha, alpha)`` is drawn once per batch; samples not drawn
(probability ``1 - p``) keep ``lam_i = 1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepworks.data.augment.base import Augmentation
from deepworks.data.augment.geometric import check_p, drawn, require_images, restore_dtype
from deepworks.errors import ConfigError
from deepworks.registry import register_augmentation


def soft_targets(name: str, y: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """Class probabilities (B, K) from class indices (B,) or soft labels (B, K)."""
    if y.ndim >= 3:
        raise ConfigError(
            f"train.augment: {name} mixes class labels and does not support segmentation or "
            f"detection targets (shape {tuple(y.shape)})"
        )
    if y.ndim == 1 and not y.is_floating_point():
        if num_classes is None:
            raise ConfigError(f"train.augment: {name} needs num_classes for class-index labels")
        return F.one_hot(y.long(), num_classes).to(torch.get_default_dtype())
    if y.ndim == 2 and y.is_floating_point() and num_classes in (None, y.shape[1]):
        return y
    raise ConfigError(
        f"train.augment: {name} needs class labels (B,) or soft labels (B, {num_classes or 'K'}), "
        f"got targets of shape {tuple(y.shape)} and dtype {y.dtype}"
    )


def beta(alpha: float, device: torch.device) -> torch.Tensor:
    """One draw of Beta(alpha, alpha) from the device's generator, as a 0-d tensor."""
    a = torch.tensor(alpha, device=device)
    return torch.distributions.Beta(a, a).sample()


def mix_labels(soft: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``lam_i y_i + (1 - lam_i) y_perm(i)``; soft (B, K), lam (B,)."""
    lam = lam.to(soft.dtype)[:, None]  # (B, 1)
    return lam * soft + (1 - lam) * soft[perm]


class _Mixing(Augmentation):
    soft_labels = True
    name = "mixup"

    def __init__(self, alpha: float, num_classes: int | None, p: float):
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha, self.num_classes, self.p = float(alpha), num_classes, check_p(p)


@register_augmentation("mixup")
class Mixup(_Mixing):
    """mixup (Zhang et al., 2018): x_i <- lam x_i + (1 - lam) x_pi(i), and labels alike.

    Works on images (B, C, H, W) and features (B, F).

    Args:
        alpha: Beta(alpha, alpha) concentration; small alpha keeps lam near 0 or 1.
        num_classes: Number of classes (filled in from the data by the Trainer).
        p: Probability that a sample is mixed.
    """

    name = "mixup"

    def __init__(self, alpha: float = 0.2, num_classes: int | None = None, p: float = 1.0):
        super().__init__(alpha, num_classes, p)

    def __call__(self, x, y):
        soft = soft_targets(self.name, y, self.num_classes)  # (B, K)
        b = x.shape[0]
        lam = beta(self.alpha, x.device)  # ()
        perm = torch.randperm(b, device=x.device)  # (B,)
        lam = torch.where(drawn(self.p, b, x.device), lam, 1.0)  # (B,)
        w = lam.view((b,) + (1,) * (x.ndim - 1))
        out = x if x.is_floating_point() else x.float()
        out = w.to(out.dtype) * out + (1 - w.to(out.dtype)) * out[perm]
        return restore_dtype(out, x.dtype), mix_labels(soft, perm, lam)


@register_augmentation("cutmix")
class CutMix(_Mixing):
    """CutMix (Yun et al., 2019): paste a box of another sample, label by the pasted area.

    The box has sides ``H sqrt(1 - lam)`` by ``W sqrt(1 - lam)`` (whole pixels) and a centre
    uniform over the image, per sample; it is clipped by the border, so the label weight is the
    exact kept fraction ``lam_i = 1 - area_i / (H W)``.

    Args:
        alpha: Beta(alpha, alpha) concentration of lam.
        num_classes: Number of classes (filled in from the data by the Trainer).
        p: Probability that a sample gets a box pasted.
    """

    name = "cutmix"

    def __init__(self, alpha: float = 1.0, num_classes: int | None = None, p: float = 1.0):
        super().__init__(alpha, num_classes, p)

    def __call__(self, x, y):
        require_images(self.name, x)
        soft = soft_targets(self.name, y, self.num_classes)  # (B, K)
        b, _, h, w = x.shape
        lam = beta(self.alpha, x.device)  # ()
        perm = torch.randperm(b, device=x.device)  # (B,)
        centre = torch.rand(b, 2, device=x.device)  # (B, 2): (y, x) as fractions
        apply = drawn(self.p, b, x.device)  # (B,)
        cut = (1 - lam).sqrt()
        size = torch.stack([(h * cut).floor(), (w * cut).floor()])  # (2,) box height, width
        c = centre * torch.tensor([h, w], device=x.device)  # (B, 2) pixels
        lo = (c - size / 2).round().clamp_min(0)  # (B, 2)
        hi = torch.minimum((c + size / 2).round(), torch.tensor([h, w], device=x.device))
        rows = torch.arange(h, device=x.device)  # (H,)
        cols = torch.arange(w, device=x.device)  # (W,)
        in_y = (rows >= lo[:, :1]) & (rows < hi[:, :1])  # (B, H)
        in_x = (cols >= lo[:, 1:]) & (cols < hi[:, 1:])  # (B, W)
        box = in_y[:, :, None] & in_x[:, None, :] & apply.view(b, 1, 1)  # (B, H, W)
        out = torch.where(box[:, None], x[perm], x)
        lam = 1 - box.sum((1, 2)) / (h * w)  # (B,) exact kept fraction
        return out, mix_labels(soft, perm, lam)

"""The augmentation interface and the list that applies several in turn."""

from __future__ import annotations

from typing import Any

import torch

from deepworks.registry import AUGMENTATIONS, accepted_kwargs


class Augmentation:
    """Transform a batch: ``(x, y) -> (x, y)``, batched, on the batch's device.

    ``x`` is (B, C, H, W) for images or (B, F) for features. ``y`` is (B,) class indices, (B, K)
    soft labels (after mixup / cutmix), (B, H, W) masks (segmentation: geometric transforms move
    the mask with the image) or (B, M, 5) boxes (detection). An augmentation that cannot keep a
    kind of target consistent raises a ConfigError naming itself and the task.
    """

    #: Whether the output labels are soft (B, K) class probabilities (mixup, cutmix).
    soft_labels = False

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class Compose(Augmentation):
    """Apply augmentations in order."""

    def __init__(self, augmentations: list[Augmentation]):
        self.augmentations = list(augmentations)
        self.soft_labels = any(a.soft_labels for a in self.augmentations)

    def __call__(self, x, y):
        for aug in self.augmentations:
            x, y = aug(x, y)
        return x, y

    def __len__(self) -> int:
        return len(self.augmentations)


def build_augment(configs: list[Any], num_classes: int | None = None) -> Compose | None:
    """The configured list (``train.augment``) as one :class:`Compose`, or None if empty."""
    augs = []
    for i, cfg in enumerate(configs):
        factory = AUGMENTATIONS.get(cfg.name, where=f"train.augment.{i}.name")
        fixed = {"num_classes": num_classes} if "num_classes" in accepted_kwargs(factory)[0] else {}
        augs.append(AUGMENTATIONS.build(cfg.name, cfg.kwargs, where=f"train.augment.{i}", **fixed))
    return Compose(augs) if augs else None

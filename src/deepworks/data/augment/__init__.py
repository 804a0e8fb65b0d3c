"""Batched data augmentation that runs on whatever device the batch is on.

Each augmentation is registered by name (``deepworks list augmentations``) and configured as a
list in YAML::

    train:
      augment:
        - {name: flip, p: 0.5}
        - {name: rotate, degrees: 15}
        - {name: mixup, alpha: 0.2}

The Trainer applies the list to every training batch, after it is on the device. Augmentations
draw their randomness from torch's global generator of that device, which checkpoints save, so
a resumed run augments exactly as the uninterrupted one would have.
"""

from deepworks.data.augment import geometric, mixing, photometric  # noqa: F401  (register)
from deepworks.data.augment.base import Augmentation, Compose, build_augment

__all__ = ["Augmentation", "Compose", "build_augment"]

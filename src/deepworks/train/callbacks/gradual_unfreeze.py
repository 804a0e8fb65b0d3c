"""Gradual unfreezing (ULMFiT): fine-tune a pretrained backbone from the top layers down."""

from __future__ import annotations

from deepworks.registry import register_callback
from deepworks.train.callbacks.base import Callback
from deepworks.transfer import backbone_modules, freeze_backbone


@register_callback("gradual_unfreeze")
class GradualUnfreeze(Callback):
    """Train the head alone first, then unfreeze one backbone layer group every ``every`` epochs,
    starting with the group nearest the head, so early layers (general features) change last.

    Args:
        every: Epochs between two unfreezing steps.
        start_epoch: Epoch at which the first backbone group is unfrozen.
    """

    def __init__(self, every: int = 1, start_epoch: int = 1):
        self.every, self.start_epoch = every, start_epoch

    def on_train_start(self, trainer) -> None:
        freeze_backbone(trainer.model)

    def on_epoch_start(self, trainer) -> None:
        groups = backbone_modules(trainer.model)[::-1]  # head side first
        if trainer.epoch < self.start_epoch:
            return
        n = min(len(groups), (trainer.epoch - self.start_epoch) // self.every + 1)
        for group in groups[:n]:
            group.requires_grad_(True)

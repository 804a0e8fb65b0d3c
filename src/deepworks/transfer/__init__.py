"""Transfer learning: a backbone trained in one run initializes a model for another task.

Every model keeps its output layer in ``model.head`` (the shared interface), so "the backbone"
is everything else, for every architecture:

- ``model.pretrained: runs/digits04`` loads the backbone weights of that run's best checkpoint
  (the head is left fresh: the new label set may differ; :func:`deepworks.run.load_backbone`);
- ``train.freeze_backbone: true`` trains the head only (feature extraction);
- ``train.backbone_lr: 1e-4`` fine-tunes the backbone with its own, smaller learning rate
  (discriminative learning rates; the optimizer's groups: :mod:`deepworks.optim`);
- the ``gradual_unfreeze`` callback unfreezes the backbone's layer groups one by one, from the
  top down, as training goes on (ULMFiT).
"""

from __future__ import annotations

from torch import nn

from deepworks.optim import backbone_param_groups, split_parameters

__all__ = [
    "backbone_modules",
    "backbone_param_groups",
    "freeze_backbone",
    "keep_frozen_norms_in_eval",
    "split_parameters",
]


def backbone_modules(model: nn.Module) -> list[nn.Module]:
    """The model's direct children except the head: the backbone, input side first."""
    return [m for name, m in model.named_children() if name != "head"]


def freeze_backbone(model: nn.Module, frozen: bool = True) -> None:
    """Stop (or restart) gradient updates of every backbone parameter."""
    backbone, _ = split_parameters(model)
    for p in backbone:
        p.requires_grad_(not frozen)


def keep_frozen_norms_in_eval(model: nn.Module) -> None:
    """Batch-norm layers whose parameters are frozen keep their running statistics too."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()

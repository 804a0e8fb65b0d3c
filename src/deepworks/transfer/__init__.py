"""Transfer learning: a backbone trained in one run initializes a model for another task.

Every model keeps its output layer in ``model.head`` (the shared interface), so "the backbone"
is everything else, for every architecture:

- ``model.pretrained: runs/digits04`` loads the backbone weights of that run's best checkpoint
  (the head is left fresh: the new label set may differ);
- ``train.freeze_backbone: true`` trains the head only (feature extraction);
- ``train.backbone_lr: 1e-4`` fine-tunes the backbone with its own, smaller learning rate
  (discriminative learning rates; the optimizer's groups: :mod:`deepworks.optim`);
- the ``gradual_unfreeze`` callback unfreezes the backbone's layer groups one by one, from the
  top down, as training goes on (ULMFiT).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from deepworks.errors import CheckpointError
from deepworks.optim import backbone_param_groups, split_parameters
from deepworks.rundir import CHECKPOINTS

__all__ = [
    "backbone_modules",
    "backbone_param_groups",
    "freeze_backbone",
    "keep_frozen_norms_in_eval",
    "load_backbone",
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


def load_backbone(model: nn.Module, source: str | Path) -> list[str]:
    """Load every backbone tensor of ``source`` (a run directory or checkpoint folder) whose
    name and shape match ``model``; returns the names loaded. The head stays as it is."""
    from deepworks.train.checkpoint import load_checkpoint

    source = Path(source)
    ckpt = source
    for candidate in (source / CHECKPOINTS / "best", source / CHECKPOINTS / "last"):
        if candidate.exists():
            ckpt = candidate
            break
    tensors, _ = load_checkpoint(ckpt)
    if "model" not in tensors:
        raise CheckpointError(f"{ckpt}: no model.safetensors to take a backbone from")
    own = model.state_dict()
    loaded = {
        k: v
        for k, v in tensors["model"].items()
        if not k.startswith("head.") and k in own and own[k].shape == v.shape
    }
    backbone_keys = [k for k in own if not k.startswith("head.")]
    if not loaded or len(loaded) < len(backbone_keys):
        missing = [k for k in backbone_keys if k not in loaded]
        raise CheckpointError(
            f"{source}: its weights do not fit this model's backbone (first mismatch: "
            f"{missing[0] if missing else 'none'}); use the same architecture and input size"
        )
    with torch.no_grad():
        for k, v in loaded.items():
            own[k].copy_(v)
    return sorted(loaded)

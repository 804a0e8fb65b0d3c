"""What a task builds its optimizers from: parameter groups, and several optimizers as one.

:meth:`Task.configure_optimizers <deepworks.tasks.base.Task.configure_optimizers>` splits a model's
parameters into groups and hands them to an optimizer named in the config (the optimizers and
schedulers by name are registered in :mod:`deepworks.train.optimizers` and
:mod:`deepworks.train.schedulers`). Weight decay is applied to weights only, not to biases and
normalization parameters (the usual practice: decaying a bias or a norm scale does not
regularize). For transfer learning the backbone, everything but ``model.head``, may train with
its own, smaller learning rate (discriminative learning rates, see :mod:`deepworks.transfer`).
"""

from __future__ import annotations

import torch
from torch import nn

from deepworks.errors import ConfigError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed group (ndim >= 2) and a non-decayed one (one
    group when there is no decay: fewer groups, a cheaper step)."""
    if not weight_decay:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": 0.0}]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(backbone parameters, head parameters) of a model with a ``head`` module."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise ConfigError(
            f"{type(model).__name__} has no `head` module, so its backbone is not defined; "
            "transfer learning needs a model with the shared interface"
        )
    head_ids = {id(p) for p in head.parameters()}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    return backbone, list(head.parameters())


def backbone_param_groups(
    model: nn.Module, lr: float, weight_decay: float, backbone_lr: float | None
) -> list[dict]:
    """Optimizer groups with the backbone at ``backbone_lr`` and the head at ``lr``; weight decay
    on weights (ndim >= 2) only. Frozen parameters are included, so that unfreezing them later
    (``gradual_unfreeze``) needs no new optimizer."""
    backbone, head = split_parameters(model)
    groups = []
    for params, group_lr in ((backbone, backbone_lr or lr), (head, lr)):
        decay = [p for p in params if p.ndim >= 2]
        rest = [p for p in params if p.ndim < 2]
        if decay:
            groups.append({"params": decay, "lr": group_lr, "weight_decay": weight_decay})
        if rest:
            groups.append({"params": rest, "lr": group_lr, "weight_decay": 0.0})
    return groups


class OptimizerSet:
    """Several named optimizers behind one optimizer's interface, for tasks with more than one
    set of parameters to step (a GAN's generator and discriminator): the Trainer checkpoints and
    restores them together and the LR monitor sees all their groups.

    Example:
        >>> opts = OptimizerSet(generator=g_opt, discriminator=d_opt)
        >>> opts["generator"].step()
    """

    def __init__(self, **optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    def __getitem__(self, name: str) -> torch.optim.Optimizer:
        return self.optimizers[name]

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers.values() for g in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers.values():
            opt.step()

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != set(self.optimizers):
            raise KeyError(f"optimizers {sorted(state)} saved, {sorted(self.optimizers)} expected")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])

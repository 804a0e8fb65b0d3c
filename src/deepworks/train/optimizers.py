"""Optimizers by name, built on ``torch.optim``.

Weight decay is applied to weights only, not to biases and normalization parameters (the usual
practice: decaying a bias or a norm scale does not regularize).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from deepworks.registry import register_optimizer


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


def _fast(params: Iterable) -> dict:
    """Fused kernels (one pass over all parameters) on CUDA and CPU; the default elsewhere."""
    first = next((p for g in params for p in g["params"]), None)
    fusable = first is not None and first.device.type in ("cuda", "cpu")
    return {"fused": True} if fusable and first.is_floating_point() else {}


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


@register_optimizer("sgd")
def sgd(
    params,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    nesterov: bool = False,
    dampening: float = 0.0,
) -> torch.optim.Optimizer:
    """Stochastic gradient descent, with optional (Nesterov) momentum."""
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        nesterov=nesterov,
        dampening=dampening,
        weight_decay=weight_decay,
        **_fast(params),
    )


@register_optimizer("adam")
def adam(
    params,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    amsgrad: bool = False,
) -> torch.optim.Optimizer:
    """Adam: adaptive moment estimation (L2 penalty added to the gradient)."""
    return torch.optim.Adam(
        params,
        lr=lr,
        betas=tuple(betas),
        eps=eps,
        amsgrad=amsgrad,
        weight_decay=weight_decay,
        **_fast(params),
    )


@register_optimizer("adamw")
def adamw(
    params,
    lr: float,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    amsgrad: bool = False,
) -> torch.optim.Optimizer:
    """AdamW: Adam with decoupled weight decay."""
    return torch.optim.AdamW(
        params,
        lr=lr,
        betas=tuple(betas),
        eps=eps,
        amsgrad=amsgrad,
        weight_decay=weight_decay,
        **_fast(params),
    )


@register_optimizer("rmsprop")
def rmsprop(
    params,
    lr: float,
    weight_decay: float = 0.0,
    alpha: float = 0.99,
    eps: float = 1e-8,
    momentum: float = 0.0,
    centered: bool = False,
) -> torch.optim.Optimizer:
    """RMSprop: divides the gradient by a running RMS of recent gradients."""
    return torch.optim.RMSprop(
        params,
        lr=lr,
        alpha=alpha,
        eps=eps,
        momentum=momentum,
        centered=centered,
        weight_decay=weight_decay,
    )


@register_optimizer("adagrad")
def adagrad(
    params, lr: float, weight_decay: float = 0.0, lr_decay: float = 0.0, eps: float = 1e-10
) -> torch.optim.Optimizer:
    """Adagrad: per-parameter learning rates shrinking with the sum of squared gradients."""
    return torch.optim.Adagrad(params, lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay)

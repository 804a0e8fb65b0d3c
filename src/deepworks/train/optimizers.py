"""Optimizers by name, built on ``torch.optim``.

Each takes the parameter groups a task made (:mod:`deepworks.optim`: weight decay on weights
only, the backbone at its own learning rate), so ``weight_decay`` here is the default of groups
that do not set their own.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from deepworks.optim import OptimizerSet, param_groups  # noqa: F401  (their former home)
from deepworks.registry import register_optimizer


def _fast(params: Iterable) -> dict:
    """Fused kernels (one pass over all parameters) on CUDA and CPU; the default elsewhere."""
    first = next((p for g in params for p in g["params"]), None)
    fusable = first is not None and first.device.type in ("cuda", "cpu")
    return {"fused": True} if fusable and first.is_floating_point() else {}


@register_optimizer("sgd")
def sgd(
    params,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    nesterov: bool = False,
    dampening: float = 0.0,
) -> torch.optim.Optimizer:
    """Stochastic gradient descent, with optional (Nesterov) momentum.

    Args:
        lr: Learning rate (``train.optimizer.lr``).
        weight_decay: L2 penalty added to the gradient (of weights, not biases or norms).
        momentum: Momentum factor (0: plain SGD).
        nesterov: Nesterov momentum (needs momentum > 0 and no dampening).
        dampening: Dampening of the momentum.
    """
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
    """Adam: adaptive moment estimation (L2 penalty added to the gradient).

    Args:
        lr: Learning rate (``train.optimizer.lr``).
        weight_decay: L2 penalty added to the gradient (of weights, not biases or norms).
        betas: Decay rates of the running means of the gradient and of its square.
        eps: Added to the denominator for numerical stability.
        amsgrad: Use the maximum of past squared gradients (AMSGrad).
    """
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
    """AdamW: Adam with decoupled weight decay.

    Args:
        lr: Learning rate (``train.optimizer.lr``).
        weight_decay: Decoupled decay of the weights (not of biases or norms).
        betas: Decay rates of the running means of the gradient and of its square.
        eps: Added to the denominator for numerical stability.
        amsgrad: Use the maximum of past squared gradients (AMSGrad).
    """
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
    """RMSprop: divides the gradient by a running RMS of recent gradients.

    Args:
        lr: Learning rate (``train.optimizer.lr``).
        weight_decay: L2 penalty added to the gradient (of weights, not biases or norms).
        alpha: Smoothing constant of the running mean of squared gradients.
        eps: Added to the denominator for numerical stability.
        momentum: Momentum factor.
        centered: Normalize by the variance of the gradient instead of its mean square.
    """
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
    """Adagrad: per-parameter learning rates shrinking with the sum of squared gradients.

    Args:
        lr: Learning rate (``train.optimizer.lr``).
        weight_decay: L2 penalty added to the gradient (of weights, not biases or norms).
        lr_decay: Decay of the learning rate per step.
        eps: Added to the denominator for numerical stability.
    """
    return torch.optim.Adagrad(params, lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay)

"""Projected Gradient Descent (Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning
Models Resistant to Adversarial Attacks", ICLR 2018).

Finding the worst input in the threat model is a constrained maximization,

    max_{||delta||_p <= eps, clip_min <= x + delta <= clip_max}  CE(f(x + delta), y),

which PGD solves by steepest ascent steps of size alpha, each followed by a projection back onto
the allowed set (the eps-ball intersected with the input range):

    L-inf:  x_{t+1} = Proj(x_t + alpha * sign(g_t))               g_t = grad_x CE(f(x_t), y)
    L2:     x_{t+1} = Proj(x_t + alpha * g_t / ||g_t||_2)

    Proj_inf(z) = clip(x + clip(z - x, -eps, eps), clip_min, clip_max)
    Proj_2(z)   = clip(x + (z - x) * min(1, eps / ||z - x||_2), clip_min, clip_max)

A random start (uniform in the L-inf ball; uniform radius in a random direction for L2) avoids
the gradient-masking point x itself and makes restarts differ. Madry et al. call PGD the
"universal" first-order adversary: a model robust to it is robust to first-order attacks in
general. The default step size alpha = 2.5 * eps / steps lets the iterates reach the boundary of
the ball from any starting point (Madry et al.'s rule).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepworks.attacks.common import Attack, flat_norm
from deepworks.errors import ConfigError
from deepworks.registry import register_attack


@register_attack("pgd")
class PGD(Attack):
    """Projected gradient descent on the cross-entropy, L-inf or L2, from a random start.

    Args:
        eps: Budget in raw input units (L-inf: per value; L2: per sample).
        clip_min: Smallest valid input value.
        clip_max: Largest valid input value.
        steps: Gradient steps.
        alpha: Step size (default 2.5 * eps / steps).
        norm: linf or l2.
        random_start: Start from a random point of the eps-ball instead of x.
    """

    name = "pgd"

    def __init__(
        self,
        eps: float,
        clip_min: float = 0.0,
        clip_max: float = 1.0,
        steps: int = 20,
        alpha: float | None = None,
        norm: str = "linf",
        random_start: bool = True,
    ):
        super().__init__(eps, clip_min, clip_max)
        if norm not in ("linf", "l2"):
            raise ConfigError(f"attack.norm: {norm!r} is not a norm PGD takes (choices: linf, l2)")
        if steps < 1:
            raise ConfigError(f"attack.steps: {steps} must be at least 1")
        self.norm, self.steps, self.random_start = norm, int(steps), random_start
        self.alpha = float(alpha) if alpha is not None else 2.5 * self.eps / self.steps

    def start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random point of the eps-ball around x (inside the input range)."""
        if self.norm == "linf":
            delta = torch.empty_like(x).uniform_(-self.eps, self.eps, generator=generator)
        else:
            direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            shape = (-1,) + (1,) * (x.ndim - 1)
            radius = torch.rand(len(x), generator=generator, device=x.device, dtype=x.dtype)
            delta = direction / flat_norm(direction).view(shape) * (radius * self.eps).view(shape)
        return (x + delta).clamp(self.clip_min, self.clip_max)

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        x_adv = self.start(x, generator) if self.random_start else x.clone()
        shape = (-1,) + (1,) * (x.ndim - 1)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y)
            (grad,) = torch.autograd.grad(loss, x_adv)
            if self.norm == "linf":
                step = grad.sign()
            else:  # unit L2 direction per sample
                step = grad / (flat_norm(grad).view(shape) + 1e-10)
            x_adv = self.project(x_adv.detach() + self.alpha * step, x)
        return x_adv

"""Fast Gradient Sign Method (Goodfellow, Shlens & Szegedy, "Explaining and Harnessing
Adversarial Examples", ICLR 2015).

A network that is locally close to linear can be fooled by moving every input value a little in
the direction that increases the loss. Under an L-inf budget eps, the first-order best move is
the sign of the gradient, taken once:

    x' = clip(x + eps * sign(grad_x CE(f(x), y)), clip_min, clip_max)

One forward and one backward pass per batch: cheap enough to use inside training (the "fast"
adversarial training of Wong et al. 2020 is FGSM from a random start), but a weak attack: PGD,
which iterates the same step, finds adversarial examples FGSM misses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepworks.attacks.common import Attack
from deepworks.registry import register_attack


@register_attack("fgsm")
class FGSM(Attack):
    """Fast Gradient Sign Method: one signed-gradient step of size eps (L-inf).

    Args:
        eps: L-inf budget in raw input units.
        clip_min: Smallest valid input value.
        clip_max: Largest valid input value.
    """

    name = "fgsm"
    norm = "linf"

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        x.requires_grad_(True)
        loss = F.cross_entropy(model(x), y)  # mean over the batch: only the sign matters
        (grad,) = torch.autograd.grad(loss, x)
        return (x.detach() + self.eps * grad.sign()).clamp(self.clip_min, self.clip_max)

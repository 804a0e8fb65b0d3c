"""Carlini-Wagner L2 attack (Carlini & Wagner, "Towards Evaluating the Robustness of Neural
Networks", IEEE S&P 2017).

Instead of a fixed budget, C&W look for the *smallest* L2 perturbation that flips the label,

    min_delta  ||delta||_2^2 + c * g(x + delta),
    g(x') = max(Z(x')_y - max_{i != y} Z(x')_i, -kappa),

where Z are the logits: g < 0 exactly when x' is misclassified, and the confidence kappa asks for
a margin beyond the decision boundary. The box constraint clip_min <= x' <= clip_max is removed
by optimizing an unconstrained w with

    x' = clip_min + (clip_max - clip_min) * (tanh(w) + 1) / 2,

with Adam (learning rate 0.05 by default: the paper's 0.01 needs thousands of steps to move
pixels that sit at the ends of the range, where tanh is flat). The constant c trades distance
against success; a per-sample binary search over c (``search_steps`` rounds of ``steps`` Adam
steps) finds the smallest c that still succeeds, and the attack keeps the closest adversarial
example seen. Where none was found, x is returned.

``eps`` turns the minimal perturbation into a threat model: an adversarial example with
||delta||_2 > eps is not allowed, and x is returned instead (eps = largest allowed distance; the
robust accuracy at eps then counts samples whose minimal perturbation is longer than eps).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deepworks.attacks.common import Attack, flat_norm, margin
from deepworks.errors import ConfigError
from deepworks.registry import register_attack


@register_attack("cw")
class CarliniWagnerL2(Attack):
    """Carlini-Wagner L2: Adam on tanh-space w, binary search over c, confidence kappa.

    Args:
        eps: Largest L2 distance an adversarial example may have (larger ones are discarded).
        clip_min: Smallest valid input value.
        clip_max: Largest valid input value.
        steps: Adam steps per binary-search round.
        search_steps: Rounds of the binary search over c.
        c: Initial trade-off constant.
        kappa: Confidence: the margin by which the true class must lose.
        lr: Adam learning rate.
    """

    name = "cw"
    norm = "l2"

    def __init__(
        self,
        eps: float,
        clip_min: float = 0.0,
        clip_max: float = 1.0,
        steps: int = 100,
        search_steps: int = 5,
        c: float = 1.0,
        kappa: float = 0.0,
        lr: float = 0.05,
    ):
        super().__init__(eps, clip_min, clip_max)
        if steps < 1 or search_steps < 1 or c <= 0 or kappa < 0 or lr <= 0:
            raise ConfigError(
                "attack: cw needs steps >= 1, search_steps >= 1, c > 0, kappa >= 0 and lr > 0"
            )
        self.steps, self.search_steps = int(steps), int(search_steps)
        self.c, self.kappa, self.lr = float(c), float(kappa), float(lr)

    def to_input(self, w: torch.Tensor) -> torch.Tensor:
        """tanh-space w -> input space, always inside [clip_min, clip_max]."""
        return self.clip_min + (self.clip_max - self.clip_min) * (torch.tanh(w) + 1) / 2

    def to_tanh_space(self, x: torch.Tensor) -> torch.Tensor:
        unit = (x - self.clip_min) / (self.clip_max - self.clip_min) * 2 - 1  # [-1, 1]
        return torch.atanh(unit.clamp(-1 + 1e-6, 1 - 1e-6))

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        n = len(x)
        lower = torch.zeros(n, device=x.device)
        upper = torch.full((n,), math.inf, device=x.device)
        c = torch.full((n,), self.c, device=x.device)
        best_l2 = torch.full((n,), math.inf, device=x.device)
        best_adv = x.clone()
        w0 = self.to_tanh_space(x)
        for _ in range(self.search_steps):
            w = w0.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=self.lr)
            succeeded = torch.zeros(n, dtype=torch.bool, device=x.device)
            for _ in range(self.steps):
                x_adv = self.to_input(w)
                logits = model(x_adv)  # (B, K)
                l2_sq = (x_adv - x).flatten(1).pow(2).sum(1)  # (B,)
                g = margin(logits, y).clamp_min(-self.kappa)  # (B,)
                loss = (l2_sq + c * g).sum()  # samples are independent: sum, not mean
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():  # keep the closest success (checked before the step)
                    success = (
                        margin(logits, y) < -self.kappa if self.kappa else logits.argmax(1) != y
                    )
                    closer = success & (l2_sq.sqrt() < best_l2)
                    best_l2 = torch.where(closer, l2_sq.sqrt(), best_l2)
                    best_adv[closer] = x_adv.detach()[closer]
                    succeeded |= success
            # binary search: success -> try a smaller c; failure -> a larger one
            upper = torch.where(succeeded, torch.minimum(upper, c), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, c))
            c = torch.where(torch.isfinite(upper), (lower + upper) / 2, c * 10)
        # the threat model: perturbations longer than eps do not count
        allowed = flat_norm(best_adv - x) <= self.eps
        return torch.where(allowed.view(-1, *[1] * (x.ndim - 1)), best_adv, x)

"""Square Attack, L-inf (Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a
query-efficient black-box adversarial attack via random search", ECCV 2020).

A black-box, score-based attack: it only queries the model's output scores, never its gradients,
so it also breaks models whose gradients are useless (masked, obfuscated, non-differentiable).
It is a random search on the margin loss

    L(x') = Z(x')_y - max_{i != y} Z(x')_i          (negative = misclassified)

over the vertices of the L-inf ball. Start from vertical stripes,
``x_0 = clip(x + eps * s)`` with one random sign per column and channel, then repeat:

1. pick a random square window of side ``s_t`` (the same place in every channel);
2. inside it, set the perturbation of each channel to one random value in {-eps, +eps};
3. query the model; keep the new point if its margin is lower, else keep the old one.

The side shrinks on a fixed schedule: the window covers a fraction p_t of the image,
s_t = round(sqrt(p_t * H * W)), with p_t = p_init halved at 10, 50, 200, 500, 1000, 2000, 4000,
6000 and 8000 of 10,000 iterations (rescaled to the query budget). Samples already misclassified
stop being queried. Every perturbation stays a vertex of the ball, where adversarial examples of
L-inf attacks usually are. Flat inputs (B, D) are treated as one row of D pixels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deepworks.attacks.common import Attack, margin
from deepworks.errors import ConfigError
from deepworks.registry import register_attack

SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # of 10,000 iterations


def p_selection(p_init: float, it: int, n_iters: int) -> float:
    """Fraction of the image the window covers at iteration ``it`` (the paper's schedule)."""
    it = int(it / n_iters * 10000)
    halvings = sum(it > step for step in SCHEDULE)
    return p_init / 2**halvings


@register_attack("square")
class SquareAttack(Attack):
    """Square Attack (L-inf): black-box random search over square patches; no gradients.

    Args:
        eps: L-inf budget in raw input units.
        clip_min: Smallest valid input value.
        clip_max: Largest valid input value.
        steps: Query budget per sample (model evaluations, the first one included).
        p_init: Initial fraction of the image covered by a square.
    """

    name = "square"
    norm = "linf"

    def __init__(
        self,
        eps: float,
        clip_min: float = 0.0,
        clip_max: float = 1.0,
        steps: int = 1000,
        p_init: float = 0.05,
    ):
        super().__init__(eps, clip_min, clip_max)
        if steps < 1 or not 0 < p_init <= 1:
            raise ConfigError("attack: square needs steps >= 1 and 0 < p_init <= 1")
        self.steps, self.p_init = int(steps), float(p_init)

    def _signs(self, shape: tuple[int, ...], generator: torch.Generator, device) -> torch.Tensor:
        """Random values in {-eps, +eps} of ``shape``."""
        bits = torch.randint(0, 2, shape, generator=generator, device=device)
        return (2 * bits - 1).float() * self.eps

    @torch.no_grad()
    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        shape = x.shape
        img = x.reshape(len(x), 1, 1, -1) if x.ndim == 2 else x  # (B, C, H, W)
        b, c, h, w = img.shape
        dev = x.device

        def query(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return margin(model(z.reshape(-1, *shape[1:])), labels)

        # vertical stripes: one sign per (sample, channel, column)
        best = (img + self._signs((b, c, 1, w), generator, dev)).clamp(self.clip_min, self.clip_max)
        best_margin = query(best, y)
        for it in range(self.steps - 1):
            active = (best_margin > 0).nonzero().squeeze(1)  # not fooled yet
            if len(active) == 0:
                break
            x_a, best_a = img[active], best[active]
            p = p_selection(self.p_init, it, self.steps)
            if h == 1:  # a row of pixels: a window of about p * W values
                sh, sw = 1, min(max(round(p * w), 1), max(w - 1, 1))
            else:
                s = min(max(round(math.sqrt(p * h * w)), 1), h - 1)
                sh, sw = s, s
            top = int(torch.randint(0, h - sh + 1, (1,), generator=generator, device=dev))
            left = int(torch.randint(0, w - sw + 1, (1,), generator=generator, device=dev))
            window = (slice(None), slice(None), slice(top, top + sh), slice(left, left + sw))
            # one new sign per channel over the window; redraw where it would change nothing
            new = best_a - x_a
            redraw = torch.ones(len(active), dtype=torch.bool, device=dev)
            for _ in range(10):
                patch = new[window]
                signs = self._signs((len(active), c, 1, 1), generator, dev).expand_as(patch)
                new[window] = torch.where(redraw.view(-1, 1, 1, 1), signs, patch)
                moved = (x_a + new).clamp(self.clip_min, self.clip_max)[window]
                redraw = ((moved - best_a[window]).abs() < 1e-7).flatten(1).all(1)
                if not redraw.any():
                    break
            candidate = (x_a + new).clamp(self.clip_min, self.clip_max)
            m = query(candidate, y[active])
            better = m < best_margin[active]
            best_margin[active] = torch.where(better, m, best_margin[active])
            best[active] = torch.where(better.view(-1, 1, 1, 1), candidate, best_a)
        return best.reshape(shape)

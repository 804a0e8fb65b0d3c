"""Feature visualization by activation maximization: the input a unit or class responds to most.

Start from faint noise ``x₀`` and climb the gradient of the chosen activation ``a(x)`` — a class
logit ``f_c(x)`` or the mean of one channel of a layer — with penalties that keep the image
natural (Erhan et al., 2009; Simonyan et al., 2013; Olah et al., 2017)::

    x* = argmax_x  a(jitter(x)) − λ₂ ‖x‖² − λ_TV TV(x),
    TV(x) = Σ (x_{i+1,j} − x_{i,j})² + (x_{i,j+1} − x_{i,j})²

- the L2 term stops a few values growing without bound (a logit is roughly linear in x);
- total variation favours smooth regions over the high-frequency patterns a network also
  responds to;
- jitter — a random shift of up to ``jitter`` pixels at every step — makes the image work
  wherever it is placed, which removes the checkerboard artefacts of strided layers.

The optimization runs in the model's input space (scaled inputs); ``bounds`` (e.g. the range of
the training inputs) clamp it after every step. Tabular inputs work too (no jitter or TV).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepworks.errors import ConfigError


@dataclass
class Visualization:
    """Inputs found by activation maximization.

    Attributes:
        images: (K, *input_shape) one optimized input per target, in the model's input space.
        targets: The K classes (or channels) maximized.
        start: (K,) the activation of the starting noise.
        end: (K,) the activation of the final input.
        layer: The layer whose channels were maximized, or None for class logits.
    """

    images: torch.Tensor
    targets: list[int]
    start: torch.Tensor
    end: torch.Tensor
    layer: str | None = None


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """(K,) squared differences of neighbouring pixels of (K, C, H, W) images."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).pow(2).flatten(1).sum(1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).pow(2).flatten(1).sum(1)
    return dh + dw


def _activation(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, layer: str | None):
    """(K,) the activation maximized: logit ``targets[k]`` of input k, or the mean of channel
    ``targets[k]`` of ``layer``'s output."""
    rows = torch.arange(len(x), device=x.device)
    if layer is None:
        return model(x)[rows, targets]
    captured: list[torch.Tensor] = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        model(x)
    finally:
        handle.remove()
    out = captured[0]  # (K, C, ...) or (K, C)
    return out[rows, targets].reshape(len(x), -1).mean(1)


def activation_maximization(
    model: nn.Module,
    input_shape: tuple[int, ...],
    targets: list[int],
    layer: str | None = None,
    steps: int = 256,
    lr: float = 0.1,
    l2: float = 1e-3,
    tv: float = 1e-2,
    jitter: int = 1,
    bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
) -> Visualization:
    """Optimize one input per target so that the target's activation is as large as possible.

    Args:
        model: The trained model (in eval mode while optimizing; its weights are not changed).
        input_shape: Shape of one input, e.g. (1, 8, 8).
        targets: Classes (logits), or channels of ``layer``.
        layer: A module name (``blocks.1``) to maximize channels of, or None for logits.
        steps: Adam steps.
        lr: Adam learning rate.
        l2: Weight λ₂ of the L2 penalty.
        tv: Weight λ_TV of the total-variation penalty (images only).
        jitter: Largest random shift in pixels per step (images only; 0 for none).
        bounds: (low, high) tensors broadcastable to an input, clamping the search.
        seed: Seeds the starting noise and the jitter.
    """
    if not targets:
        raise ConfigError("activation maximization needs at least one class or channel")
    if layer is not None:
        try:
            model.get_submodule(layer)
        except AttributeError as exc:
            raise ConfigError(f"--layer {layer!r}: the model has no such module") from exc
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    x = (0.01 * torch.randn(len(targets), *input_shape, generator=generator)).to(device)
    x.requires_grad_(True)
    t = torch.tensor(targets, device=device)
    image = len(input_shape) == 3
    was_training = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:  # gradients only for the input
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            start = _activation(model, x, t, layer)
        opt = torch.optim.Adam([x], lr=lr)
        for _ in range(steps):
            shifted = x
            if image and jitter > 0:
                dy, dx = (
                    int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator)
                )
                shifted = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
            objective = _activation(model, shifted, t, layer)
            penalty = l2 * x.pow(2).flatten(1).sum(1)
            if image and tv > 0:
                penalty = penalty + tv * total_variation(x)
            loss = -(objective - penalty).sum()  # each input has its own target
            opt.zero_grad()
            loss.backward()
            opt.step()
            if bounds is not None:
                with torch.no_grad():
                    x.copy_(torch.maximum(torch.minimum(x, bounds[1]), bounds[0]))
        with torch.no_grad():
            end = _activation(model, x, t, layer)
    finally:
        for p in params:
            p.requires_grad_(True)
        model.train(was_training)
    return Visualization(x.detach(), list(targets), start.detach(), end.detach(), layer)

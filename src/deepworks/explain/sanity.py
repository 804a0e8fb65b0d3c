"""Sanity check for attributions: do they depend on what the model learned?

Adebayo et al. (2018, "Sanity Checks for Saliency Maps") noticed that some attribution maps look
the same for a trained network and for one with random weights — they show the input's edges,
not the model's reasoning. The *model-parameter randomization test* makes that measurable:
compute the attributions of the trained model, re-initialize its weights, compute them again and
compare the two maps with Spearman's rank correlation ρ:

- ``cascading``: randomize the weight layers one after another *from the top* (the output layer
  first, then down towards the input) and report ρ after each step — a method that depends on the
  learned weights falls towards 0 as soon as the top layers are random;
- ``all``: randomize every weight layer at once (one ρ).

The trained model against itself gives ρ = 1 (for a deterministic method), the upper reference.
Only layers with weight matrices or kernels (conv, linear, embedding, attention projections) are
re-initialized, with their own default initialization; normalization layers keep their learned
statistics. The targets stay the classes explained for the trained model. Correlations are taken
over the absolute attribution values per input (``absolute=True``; the sign of a random model's
map is arbitrary) and averaged over the inputs.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from deepworks.errors import ConfigError
from deepworks.explain.attributions import Context, attribute, forward_calls, predicted


@dataclass
class SanityResult:
    """Rank correlations between the trained model's attributions and randomized models'.

    Attributes:
        method: The attribution method checked.
        mode: ``cascading`` or ``all``.
        same: Mean ρ of the trained model against itself (attributions computed twice).
        stages: ``(label, mean ρ, per-input ρ)``; for ``cascading`` the label names the layer
            randomized last (all layers above it are random too), for ``all`` it is "all".
        maps: The attribution maps, trained first then one per stage, each (N, *input_shape).
    """

    method: str
    mode: str
    same: float
    stages: list[tuple[str, float, list[float]]] = field(default_factory=list)
    maps: list[torch.Tensor] = field(default_factory=list)


def weight_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the modules with their own weight matrix or kernel (>= 2 dims), in the order the
    forward pass runs them (found with hooks on one input, so it works for any model)."""
    names = {
        m: n
        for n, m in model.named_modules()
        if n and any(p.ndim >= 2 for p in m.parameters(recurse=False))
    }
    return list(dict.fromkeys(names[m] for m, _ in forward_calls(model, x, names)))


def randomize(module: nn.Module) -> None:
    """Re-initialize ``module``'s own parameters with its default initialization."""
    reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
    if callable(reset):
        reset()
        return
    for p in module.parameters(recurse=False):  # e.g. a bare nn.Parameter projection
        if p.ndim >= 2:
            nn.init.kaiming_uniform_(p, a=math.sqrt(5))
        else:
            nn.init.zeros_(p)


def rank_correlation(a: torch.Tensor, b: torch.Tensor, absolute: bool = True) -> list[float]:
    """Spearman's ρ between ``a[i]`` and ``b[i]`` (flattened) for every input i; 0 when a map is
    constant (a rank correlation is undefined there)."""
    from scipy.stats import spearmanr

    rhos = []
    for u, v in zip(a.flatten(1), b.flatten(1), strict=True):
        u, v = (u.abs(), v.abs()) if absolute else (u, v)
        with warnings.catch_warnings():  # a constant map (e.g. an all-zero Grad-CAM): rho = 0
            warnings.simplefilter("ignore")
            rho = spearmanr(u.cpu().numpy(), v.cpu().numpy()).statistic
        rhos.append(0.0 if not np.isfinite(rho) else float(rho))
    return rhos


def randomization_test(
    model: nn.Module,
    x: torch.Tensor,
    method: str = "saliency",
    target: torch.Tensor | None = None,
    mode: Literal["cascading", "all"] = "cascading",
    context: Context | None = None,
    absolute: bool = True,
    seed: int = 0,
    **options: Any,
) -> SanityResult:
    """Run the model-parameter randomization test of ``method`` on the inputs ``x``.

    Args:
        model: The trained model (left unchanged; copies are randomized).
        x: (N, *input_shape) inputs in the model's input space.
        method: A registered per-input attribution method.
        target: (N,) classes to explain; default: the trained model's predictions.
        mode: ``cascading`` (top layer first, one ρ per layer) or ``all`` (one ρ).
        context: Background data and seed for the method.
        absolute: Correlate absolute attributions.
        seed: Seeds the re-initialization.
        **options: The method's options.
    """
    if mode not in ("cascading", "all"):
        raise ConfigError(f"sanity mode {mode!r}: choose cascading or all")
    if method in ("permutation", "attention"):
        raise ConfigError(f"the randomization test needs a per-input gradient method, not {method}")
    context = context or Context()
    model.eval()
    if target is None:
        target = predicted(model, x, context.regression)
    trained = attribute(method, model, x, target, context, **options).values
    again = attribute(method, copy.deepcopy(model), x, target, context, **options).values
    same = float(np.mean(rank_correlation(trained, again, absolute)))
    layers = weight_layers(model, x)
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no weight layers to randomize")
    result = SanityResult(method, mode, same, maps=[trained])
    randomized = copy.deepcopy(model)
    steps = [(name, [name]) for name in reversed(layers)] if mode == "cascading" else []
    if mode == "all":
        steps = [("all", layers)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for label, names in steps:
            for name in names:  # cascading: adds to the layers randomized before
                randomize(randomized.get_submodule(name))
            values = attribute(method, randomized, x, target, context, **options).values
            rhos = rank_correlation(trained, values, absolute)
            result.stages.append((label, float(np.mean(rhos)), rhos))
            result.maps.append(values)
    return result

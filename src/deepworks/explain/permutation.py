"""Permutation feature importance: how much worse the model gets when a feature is scrambled.

For a fitted model, a data set ``(X, y)`` and a score ``s`` (accuracy for classifiers, R² for
regressors), the importance of feature ``j`` is the score lost when column ``j`` is shuffled
across the samples, which breaks its relation to the target while keeping its distribution::

    I_j = s(X, y) − (1/R) Σ_r s(X with column j permuted (repeat r), y)

(Breiman, 2001; Fisher et al., 2019). It is model-agnostic and global — one number per feature
for the whole data set, not per input — and needs no gradients. A feature the model ignores gets
``I_j ≈ 0``; correlated features share (and can hide) their importance.

The permutations follow ``sklearn.inspection.permutation_importance`` exactly (one seed drawn from
``random_state``, each column shuffled cumulatively ``n_repeats`` times from a fresh generator
with that seed), so for the same seed both give the same numbers. Image pixels are features too:
an 8x8 digit has 64.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deepworks.errors import ConfigError
from deepworks.explain.attributions import Attribution, Context
from deepworks.registry import register_explainer


@torch.no_grad()
def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, regression: bool) -> float:
    """Accuracy of the predicted classes, or R² of the predicted values (sklearn's defaults)."""
    out = torch.cat([model(chunk) for chunk in x.split(1024)])
    if not regression:
        return float((out.argmax(-1) == y).float().mean())
    pred, y = out.reshape(len(y), -1).double(), y.reshape(len(y), -1).double()
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return float((1 - ss_res / ss_tot).mean())


def permutation_importance(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    repeats: int = 5,
    seed: int = 0,
    regression: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(importance mean (F,), importance std (F,), baseline score) over the flattened features.

    Args:
        model: Maps (N, *shape) inputs to class scores or values.
        x: (N, *shape) inputs; feature ``j`` is position ``j`` of ``x.flatten(1)``.
        y: (N,) labels (or (N,) / (N, k) targets for regression).
        repeats: Shuffles per feature (``n_repeats``).
        seed: ``random_state`` as in scikit-learn.
        regression: Score with R² instead of accuracy.
    """
    flat = x.flatten(1).cpu().numpy()
    n, num_features = flat.shape
    baseline = score(model, x, y, regression)
    random_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    scores = np.empty((num_features, repeats))
    for j in range(num_features):
        rng = np.random.RandomState(random_seed)  # a fresh generator per column, as sklearn
        permuted = flat.copy()
        order = np.arange(n)
        for r in range(repeats):
            rng.shuffle(order)  # cumulative: shuffles the already shuffled order
            permuted[:, j] = permuted[order, j]
            xp = torch.from_numpy(permuted).to(x).view_as(x)
            scores[j, r] = score(model, xp, y, regression)
    importances = baseline - scores  # (F, R) score lost
    return importances.mean(1), importances.std(1), baseline


@register_explainer("permutation")
def permutation(model, x, target, context: Context, repeats: int = 5) -> Attribution:
    """Permutation importance: the score lost when one feature is shuffled (global)."""
    if context.labels is None:
        raise ConfigError("permutation needs the true labels of the inputs (a data split)")
    mean, std, baseline = permutation_importance(
        model, x, context.labels.to(x.device), repeats, context.seed, context.regression
    )
    shape = (1, *x.shape[1:])
    values = torch.from_numpy(mean).float().view(shape)
    info = {"std": torch.from_numpy(std).float().view(shape), "baseline_score": baseline}
    info["score"] = "r2" if context.regression else "accuracy"
    return Attribution("permutation", values, target, per_input=False, info=info)


permutation.accepts_tokens = True  # shuffling a position's token ids needs no gradients

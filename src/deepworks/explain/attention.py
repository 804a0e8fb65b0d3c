"""Attention rollout: which input tokens (or image patches) the model's output attends to.

A transformer's attention map ``A^l`` (heads averaged) says how much each position mixes in from
every other position in layer ``l``; the residual connection keeps the position itself, so the
effective mixing of a layer is ``Â^l = ½ A^l + ½ I`` (rows renormalized). Multiplying through the
layers traces the output back to the inputs (Abnar & Zuidema, 2020)::

    R = Â^L Â^{L−1} ··· Â^1            (L x L, row i: how much token i draws from each input)

The output is read from the class token (row 0) when the model has one, else from the mean of the
rows (mean pooling). For a Vision Transformer the patch entries are laid back on the patch grid and
upsampled to the image; for a text model the attribution of each token is its entry. Rollout says
where information flows, not whether it speaks for or against a class — it is the same for every
target. It uses the model's ``attention_maps(x)`` (a list of (B, heads, L, L) tensors).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deepworks.errors import ConfigError
from deepworks.explain.attributions import Attribution, Context
from deepworks.registry import register_explainer


def rollout(maps: list[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """(B, L, L) attention rollout of per-layer (B, heads, L, L) attention probabilities."""
    result = None
    for a in maps:
        a = a.float().mean(1)  # (B, L, L), heads averaged
        eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        a = (1 - residual) * a + residual * eye
        a = a / a.sum(-1, keepdim=True)
        result = a if result is None else a @ result  # later layers on the left
    if result is None:
        raise ConfigError("the model returned no attention maps")
    return result


def has_class_token(model: nn.Module) -> bool:
    """Whether the output is read from a class token at position 0."""
    if getattr(model, "cls_token", None) is not None:
        return True
    return getattr(model, "pooling", None) == "cls"


def _patch_grid(n: int, height: int, width: int) -> tuple[int, int] | None:
    """(rows, cols) of ``n`` patches covering an image of ``height`` x ``width``, if they fit."""
    rows = round(math.sqrt(n * height / width))
    if rows > 0 and n % rows == 0:
        return rows, n // rows
    return None


@register_explainer("attention")
def attention(model, x, target, context: Context, residual: float = 0.5) -> Attribution:
    """Attention rollout: attention maps multiplied through the layers (transformers)."""
    if not callable(getattr(model, "attention_maps", None)):
        raise ConfigError(
            f"attention needs a model with attention maps; {type(model).__name__} has none: "
            "use ig or saliency"
        )
    with torch.no_grad():
        flow = rollout(list(model.attention_maps(x)), residual)  # (B, L, L)
    cls = has_class_token(model)
    scores = flow[:, 0] if cls else flow.mean(1)  # (B, L) how much the output draws from each
    if x.ndim == 4:  # a Vision Transformer: patch tokens back onto the image
        patches = scores[:, 1:] if cls else scores
        grid = _patch_grid(patches.shape[1], x.shape[-2], x.shape[-1])
        if grid is None:
            raise ConfigError(f"attention: {patches.shape[1]} tokens do not tile the image")
        maps = patches.reshape(len(x), 1, *grid)
        maps = F.interpolate(maps, size=tuple(x.shape[-2:]), mode="nearest")
        values = maps.expand_as(x).clone()
    else:
        values = scores[:, : x.shape[1]].reshape(len(x), *x.shape[1:]).clone()
    return Attribution("attention", values.float(), target, info={"class_token": cls})


attention.accepts_tokens = True  # rollout needs no gradients: token-id inputs are fine

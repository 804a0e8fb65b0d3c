"""Exponential moving average (EMA) of the weights, evaluated in place of the raw weights.

After every optimizer step the shadow copy moves toward the live weights:

    shadow <- decay_t * shadow + (1 - decay_t) * weights,   decay_t = min(decay, (1 + t) / (10 + t))

(the warm-up term lets the average forget its random start quickly; t counts steps). The average
of the last ~1 / (1 - decay) steps sits nearer the centre of the loss basin the optimizer is
bouncing around in, so it usually validates better than the last iterate, most of all with a
high learning rate (Polyak averaging; timm's ModelEmaV2). Buffers such as batch-norm running
statistics are copied, not averaged.

Validation, checkpoints (``best``) and the final model use the EMA weights: the shadow is swapped
into the model before validation and swapped back after the epoch's checkpoint is written, and at
the end of training the model keeps the EMA weights. While swapped, the raw weights live in this
callback's state, so a run resumed from any checkpoint continues exactly.
"""

from __future__ import annotations

from typing import Any

import torch

from deepworks.registry import register_callback
from deepworks.train.callbacks.base import Callback


@register_callback("ema")
class EMA(Callback):
    """Keep an exponential moving average of the weights; evaluate and finish with it.

    Args:
        decay: Weight of the old average per step (0.999 averages over ~1000 steps).
        warmup: Use the warm-up schedule ``min(decay, (1 + t) / (10 + t))``.
    """

    order = 60  # after ModelCheckpoint (50) at epoch ends: the checkpoint holds the EMA weights

    def __init__(self, decay: float = 0.999, warmup: bool = True):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay, self.warmup = decay, warmup
        self.shadow: list[torch.Tensor] | None = None
        self.raw: list[torch.Tensor] | None = None  # the live weights while the EMA is swapped in
        self.updates = 0

    @staticmethod
    def _params(model: torch.nn.Module) -> list[torch.Tensor]:
        return [p.data for p in model.parameters()]

    def on_train_start(self, trainer) -> None:
        params = self._params(trainer.model)
        if self.shadow is None:
            self.shadow = [p.clone() for p in params]
        else:
            self.shadow = [s.to(p.device) for s, p in zip(self.shadow, params, strict=True)]
        if self.raw is not None:  # resumed from a checkpoint written while swapped
            raw = [r.to(p.device) for r, p in zip(self.raw, params, strict=True)]
            torch._foreach_copy_(params, raw)
            self.raw = None

    @torch.no_grad()
    def on_batch_end(self, trainer, loss) -> None:
        self.updates += 1
        decay = self.decay
        if self.warmup:
            decay = min(decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, self._params(trainer.model), 1.0 - decay)

    def on_validation_start(self, trainer) -> None:
        self._swap_in(trainer)

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        if self.raw is not None:
            torch._foreach_copy_(self._params(trainer.model), self.raw)
            self.raw = None

    def on_train_end(self, trainer) -> None:
        self._swap_in(trainer)
        self.raw = None  # the model keeps the average

    def _swap_in(self, trainer) -> None:
        if self.raw is None and self.shadow is not None:
            params = self._params(trainer.model)
            self.raw = [p.clone() for p in params]
            torch._foreach_copy_(params, self.shadow)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"updates": self.updates}
        if self.shadow is not None:
            state["shadow"] = {str(i): t for i, t in enumerate(self.shadow)}
        if self.raw is not None:
            state["raw"] = {str(i): t for i, t in enumerate(self.raw)}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = state["updates"]
        for key in ("shadow", "raw"):
            saved = state.get(key)
            value = [saved[str(i)] for i in range(len(saved))] if saved else None
            setattr(self, key, value)

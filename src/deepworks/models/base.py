"""The interface every classifier-style model shares.

``forward(x) == forward_head(forward_features(x))``; ``reset_classifier(k)`` swaps the head for a
new label set (transfer learning); ``get_config()`` / ``from_config()`` round-trip the constructor
arguments, so a run directory can rebuild its model from ``config.yaml`` and a safetensors file.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from torch import nn


class Model(nn.Module):
    """Base class: records constructor arguments and defines the shared interface.

    Subclasses implement ``forward_features`` and ``forward_head`` and keep their output layer in
    ``self.head`` (an ``nn.Linear``) so that :meth:`reset_classifier` works without special cases.
    """

    #: What ``forward`` returns: "logits" (default) or "probs" (a softmax output layer).
    output_kind = "logits"
    #: "predictor" (input → predictions, with a ``head``) or "generative" (autoencoders, VAEs,
    #: GANs, RBMs: no classification head, so ``reset_classifier`` does not apply).
    family = "predictor"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__init__
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            if "_init_config" not in self.__dict__:  # the outermost constructor records
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                config = {k: v for k, v in bound.arguments.items() if k != "self"}
                object.__setattr__(self, "_init_config", config)
            init(self, *args, **kw)

        cls.__init__ = recording_init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the output layer with a fresh one of ``num_classes`` outputs."""
        old = self.head
        self.head = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        self.head.to(device=old.weight.device, dtype=old.weight.dtype)
        self._init_config["num_classes"] = num_classes

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this model (JSON/YAML-serializable)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._init_config.items()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Model:
        return cls(**config)

    def pretraining_layers(self) -> list[nn.Module]:
        """Layers the supervised recipe initializes by greedy layer-wise pretraining before
        fine-tuning (``deepworks.recipes.pretrain``; a deep belief network's). Default: none."""
        return []

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


class EncoderDecoder(Model):
    """Base of sequence-to-sequence models: ``forward(src, tgt_in)`` gives logits per target
    position; subclasses keep the target embedding in ``self.tgt_embed`` and the padding id in
    ``self.pad_id``, so that a new target vocabulary replaces both the head and the embedding."""

    def forward(
        self, src: torch.Tensor, tgt_in: torch.Tensor, teacher_forcing: float = 1.0
    ) -> torch.Tensor:
        """Logits (B, T, num_classes) for source ids (B, S) and target inputs (B, T)."""
        return self.forward_head(self.forward_features(src, tgt_in, teacher_forcing))

    def reset_classifier(self, num_classes: int) -> None:
        """A new target vocabulary: fresh output layer and target embedding."""
        super().reset_classifier(num_classes)
        old = self.tgt_embed
        self.tgt_embed = nn.Embedding(num_classes, old.embedding_dim, padding_idx=self.pad_id)
        self.tgt_embed.to(device=old.weight.device, dtype=old.weight.dtype)

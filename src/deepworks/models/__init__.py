"""Model families, one file each, all registered by name (``deepworks list models``)."""

from __future__ import annotations

from typing import Any

from deepworks.models import (  # noqa: F401  (registers models)
    autoencoder,
    centernet,
    cnn,
    dbn,
    gan,
    gpt,
    lenet,
    linear,
    mlp,
    mobilenet,
    rbm,
    resnet,
    rnn,
    seq2seq,
    transformer_encoder,
    transformer_seq2seq,
    unet,
    vae,
    vgg,
    vit,
)
from deepworks.models.base import Model
from deepworks.registry import MODELS


def create_model(name: str, **kwargs: Any) -> Model:
    """Build a registered model by name: ``create_model("mlp", in_features=64, num_classes=10)``.

    Unknown keyword arguments are a one-line error naming the key and the accepted ones.
    """
    return MODELS.build(name, kwargs, where=f"model {name!r}")


def list_models() -> list[str]:
    return MODELS.names()


__all__ = ["Model", "create_model", "list_models"]

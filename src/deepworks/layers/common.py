"""Activations, normalization layers and weight initialization, chosen by name."""

from __future__ import annotations

import math

from torch import nn

from deepworks.errors import ConfigError, unknown_choice

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softmax": lambda: nn.Softmax(dim=-1),  # as an output activation
    "identity": nn.Identity,
}

INITS = ("default", "he", "xavier", "orthogonal")


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (``relu``, ``gelu``, ...)."""
    if name not in ACTIVATIONS:
        raise ConfigError(unknown_choice("an activation", name, ACTIVATIONS, "model.activation"))
    return ACTIVATIONS[name]()


def norm_layer(kind: str | None, width: int) -> nn.Module:
    """BatchNorm1d, LayerNorm or nothing, for a hidden layer of ``width`` units."""
    if kind in (None, "none"):
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    raise ConfigError(unknown_choice("a norm", str(kind), ("batch", "layer", "none"), "model.norm"))


def init_weights(module: nn.Module, scheme: str, nonlinearity: str = "relu") -> None:
    """Initialize every Linear/Conv weight of ``module`` (biases to zero).

    He (Kaiming) init keeps activation variance constant through ReLU layers (std = sqrt(2/fan_in));
    Xavier (Glorot) does so for tanh/sigmoid (var = 2/(fan_in+fan_out)); orthogonal keeps the
    singular values at 1 (gain for the nonlinearity applied).
    """
    if scheme == "default":
        return
    if scheme not in INITS:
        raise ConfigError(unknown_choice("an init scheme", scheme, INITS, "model.init"))
    gain_name = (
        nonlinearity if nonlinearity in ("relu", "leaky_relu", "tanh", "sigmoid") else "relu"
    )
    for m in module.modules():
        if not isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
            continue
        if scheme == "he":
            nn.init.kaiming_normal_(m.weight, nonlinearity=gain_name)
        elif scheme == "xavier":
            nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain(gain_name))
        elif scheme == "orthogonal":
            nn.init.orthogonal_(m.weight, gain=nn.init.calculate_gain(gain_name))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def fan_in_uniform_(layer: nn.Linear) -> None:
    """PyTorch's default Linear init, used to re-create a classifier head."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5))
    if layer.bias is not None:
        bound = 1 / math.sqrt(layer.in_features) if layer.in_features else 0
        nn.init.uniform_(layer.bias, -bound, bound)

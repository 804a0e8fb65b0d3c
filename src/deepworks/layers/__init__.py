"""Reusable building blocks shared by several model families."""

from deepworks.layers.common import ACTIVATIONS, activation, init_weights, norm_layer

__all__ = ["ACTIVATIONS", "activation", "init_weights", "norm_layer"]

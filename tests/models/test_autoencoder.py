"""Autoencoder model: shapes of the dense and conv variants, encode/decode, config round trip,
the bottleneck check, gradients, and a linear autoencoder against PCA (its known optimum)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from sklearn.decomposition import PCA

from deepworks.errors import ConfigError
from deepworks.models import create_model
from deepworks.registry import MODELS

IMAGE = {"in_features": 64, "in_channels": 1, "image_size": [8, 8]}


def make(**kw):
    torch.manual_seed(0)
    return create_model("autoencoder", **kw)


@pytest.mark.parametrize(
    "kw, shape",
    [
        ({"in_features": 30, "hidden": [16], "latent_dim": 4}, (30,)),
        (IMAGE | {"kind": "dense", "hidden": [32, 16]}, (1, 8, 8)),
        (IMAGE | {"kind": "conv", "channels": [8, 16]}, (1, 8, 8)),
        # odd sizes: 7x5 -> 4x3 -> 2x2 and back to exactly 7x5
        ({"in_features": 105, "in_channels": 3, "image_size": [7, 5], "kind": "conv"}, (3, 7, 5)),
    ],
)
def test_shapes_of_code_and_reconstruction(kw, shape):
    model = make(**kw)
    assert model.family == "generative"
    x = torch.rand(5, *shape)
    z = model.encode(x)
    assert z.shape == (5, model.latent_dim)
    assert model.decode(z).shape == (5, *shape)
    out = model(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out, model.decode(z))


def test_dense_model_takes_flat_or_image_input_alike():
    model = make(**IMAGE, hidden=[16]).eval()
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(model(x.reshape(4, 64)), model(x).reshape(4, 64))


def test_sigmoid_output_is_in_unit_interval_and_code_activation_applies():
    model = make(**IMAGE, kind="conv", output="sigmoid", code_activation="tanh")
    out = model(torch.randn(6, 1, 8, 8) * 10)
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(
        model.decode(torch.zeros(2, 8)), model.decode_logits(torch.zeros(2, 8)).sigmoid()
    )
    z = model.encode(torch.randn(6, 1, 8, 8) * 10)
    assert z.abs().max() <= 1


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_config_round_trip_rebuilds_the_same_model(kind):
    model = make(**IMAGE, kind=kind, latent_dim=5, output="sigmoid")
    config = model.get_config()
    assert yaml.safe_load(yaml.safe_dump(config)) == config
    rebuilt = MODELS.build("autoencoder", config)
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.get_config() == config
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x))
    assert type(model).from_config(config).get_config() == config


@pytest.mark.parametrize(
    "kw, numbers",
    [
        ({"in_features": 30, "latent_dim": 30}, ("30", "30")),
        ({"in_features": 30, "latent_dim": 64}, ("64", "30")),
        (IMAGE | {"kind": "conv", "latent_dim": 100}, ("100", "64")),
    ],
)
def test_latent_size_not_below_input_size_is_a_config_error(kw, numbers):
    with pytest.raises(ConfigError) as err:
        create_model("autoencoder", **kw)
    message = str(err.value)
    assert message.startswith("model.latent_dim: ") and "\n" not in message
    assert f"{numbers[0]} is not smaller than the input's {numbers[1]} values" in message
    assert f"set model.latent_dim below {numbers[1]}" in message


def test_conv_without_images_and_unknown_kind_are_config_errors():
    with pytest.raises(ConfigError, match="kind: conv needs images"):
        create_model("autoencoder", in_features=30, kind="conv")
    with pytest.raises(ConfigError, match="kind"):
        create_model("autoencoder", in_features=30, kind="recurrent")


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_backward_reaches_every_parameter(kind):
    model = make(**IMAGE, kind=kind, output="sigmoid")
    x = torch.rand(4, 1, 8, 8)
    ((model(x) - x) ** 2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


def test_linear_autoencoder_reaches_the_pca_reconstruction_error():
    """With no hidden layer and no nonlinearity, the MSE optimum is the PCA subspace
    (Baldi & Hornik, 1989): training must get close to PCA's error and not below it."""
    from sklearn.datasets import load_digits

    x = load_digits().data[:600].astype(np.float32) / 16
    x -= x.mean(0)
    k = 4
    pca = PCA(k).fit(x)
    pca_mse = float(((pca.inverse_transform(pca.transform(x)) - x) ** 2).mean())
    model = make(in_features=64, hidden=[], latent_dim=k, init="xavier")
    xt = torch.from_numpy(x)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(300):
        opt.zero_grad()
        loss = ((model(xt) - xt) ** 2).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        mse = float(((model(xt) - xt) ** 2).mean())
    assert pca_mse * 0.999 <= mse < pca_mse * 1.05, (mse, pca_mse)

"""VAE model: shapes of the dense and conv forms, conditioning, the reparameterization trick,
sampling from the prior, config round trip and the one-line errors."""

from __future__ import annotations

import pytest
import torch
import yaml

from deepworks.errors import ConfigError
from deepworks.models import create_model
from deepworks.models.vae import VAE
from deepworks.registry import MODELS

IMAGE = {"in_features": 64, "in_channels": 1, "image_size": [8, 8], "num_classes": 10}


def vae(seed: int = 0, **kwargs) -> VAE:
    torch.manual_seed(seed)
    return create_model("vae", **(IMAGE | kwargs))


@pytest.mark.parametrize("kind", ["dense", "conv"])
@pytest.mark.parametrize("conditional", [False, True])
def test_forward_encode_decode_shapes(kind, conditional):
    model = vae(kind=kind, latent_dim=5, conditional=conditional)
    x = torch.rand(4, 1, 8, 8)
    y = torch.tensor([0, 3, 9, 3]) if conditional else None
    decoded, mu, logvar = model(x, y)
    assert decoded.shape == (4, 1, 8, 8)
    assert mu.shape == logvar.shape == (4, 5)
    assert torch.isfinite(decoded).all()
    assert model.decode(mu, y).shape == (4, 1, 8, 8)


def test_conv_handles_odd_image_sizes():
    # 7 x 9 → 4 x 5 → 2 x 3 and back to exactly 7 x 9 (output_padding restores odd sizes)
    model = vae(kind="conv", in_features=189, in_channels=3, image_size=[7, 9], latent_dim=4)
    decoded, _, _ = model(torch.rand(2, 3, 7, 9))
    assert decoded.shape == (2, 3, 7, 9)


def test_dense_on_flat_features_keeps_the_flat_shape():
    model = create_model("vae", in_features=12, latent_dim=3, hidden=[16])
    decoded, mu, _ = model(torch.rand(5, 12))
    assert decoded.shape == (5, 12) and mu.shape == (5, 3)


def test_the_label_changes_the_decoding_of_a_conditional_vae():
    model = vae(conditional=True, latent_dim=4)
    z = torch.randn(3, 4)
    a = model.decode(z, torch.tensor([1, 1, 1]))
    b = model.decode(z, torch.tensor([2, 2, 2]))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="needs the class"):
        model.decode(z)


def test_reparameterization_is_mu_plus_sigma_eps_and_passes_gradients():
    model = vae(latent_dim=3)
    mu = torch.tensor([[0.5, -1.0, 2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, 1.0, -2.0]], requires_grad=True)
    g = torch.Generator().manual_seed(7)
    z = model.reparameterize(mu, logvar, generator=g)
    eps = torch.randn(1, 3, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(z, mu + torch.exp(0.5 * logvar) * eps)
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(1, 3))  # dz/dμ = 1
    torch.testing.assert_close(logvar.grad, 0.5 * torch.exp(0.5 * logvar.detach()) * eps)
    # and the moments: z ~ N(μ, σ²)
    many = model.reparameterize(mu.detach().expand(20000, 3), logvar.detach().expand(20000, 3))
    torch.testing.assert_close(many.mean(0), mu.detach()[0], atol=0.05, rtol=0)
    torch.testing.assert_close(many.std(0), torch.exp(0.5 * logvar.detach()[0]), atol=0.05, rtol=0)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_backward_reaches_every_parameter(kind):
    model = vae(kind=kind, conditional=True, likelihood="gaussian")
    x = torch.rand(4, 1, 8, 8)
    decoded, mu, logvar = model(x, torch.tensor([0, 1, 2, 3]))
    recon = ((decoded - x) ** 2 * torch.exp(-model.log_sigma) + model.log_sigma).sum()
    (recon + mu.pow(2).sum() + logvar.exp().sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name


def test_sample_from_the_prior_shape_range_and_generator():
    model = vae(conditional=True)
    before = torch.get_rng_state()
    a = model.sample(20, torch.arange(20) % 10, generator=torch.Generator().manual_seed(1))
    b = model.sample(20, torch.arange(20) % 10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is left alone
    assert a.shape == (20, 1, 8, 8)
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1  # Bernoulli means: probabilities
    assert model.sample(10).shape == (10, 1, 8, 8)  # classes 0..9 in turn by default
    gaussian = vae(likelihood="gaussian")
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(2))
    means = gaussian.sample(6, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(means, gaussian.decode(z))  # Gaussian means, not squashed


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_config_round_trip(kind):
    model = vae(kind=kind, conditional=True, latent_dim=6, hidden=[32, 16], channels=[8, 16])
    config = model.get_config()
    assert yaml.safe_load(yaml.safe_dump(config)) == config
    rebuilt = MODELS.build("vae", dict(config))
    assert rebuilt.get_config() == config
    rebuilt.load_state_dict(model.state_dict())  # same parameter names and shapes
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([4, 5])
    torch.testing.assert_close(rebuilt.encode(x, y), model.encode(x, y))


def test_conditional_without_classes_is_a_config_error():
    with pytest.raises(ConfigError, match="conditional VAE needs class labels.*conditional: false"):
        create_model("vae", in_features=10, num_classes=None, conditional=True, latent_dim=2)


@pytest.mark.parametrize("latent", [64, 100, 0])
def test_latent_not_smaller_than_the_input_is_a_config_error(latent):
    with pytest.raises(ConfigError, match="model.latent_dim.*between 1 and 63"):
        vae(latent_dim=latent)


def test_conv_needs_images_and_names_are_checked():
    with pytest.raises(ConfigError, match="conv needs image data.*as_image"):
        create_model("vae", in_features=64, kind="conv")
    with pytest.raises(ConfigError, match="model.kind"):
        vae(kind="deconv")
    with pytest.raises(ConfigError, match="model.likelihood"):
        vae(likelihood="poisson")

"""The ``gan`` model: shapes of both players, conditioning, config round trip, backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepworks.errors import ConfigError
from deepworks.models import create_model
from deepworks.models.gan import _OUTPUTS, GAN


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        ({"kind": "dcgan", "in_channels": 1, "image_size": [8, 8]}, (1, 8, 8)),
        (
            {"kind": "dcgan", "in_channels": 3, "image_size": [16, 8], "channels": [32, 16, 8]},
            (3, 16, 8),
        ),
        ({"kind": "mlp", "in_features": 12}, (12,)),
        ({"kind": "mlp", "in_channels": 1, "image_size": [8, 8], "d_norm": "layer"}, (1, 8, 8)),
    ],
)
def test_generator_and_discriminator_shapes(kwargs, shape):
    torch.manual_seed(0)
    model = create_model("gan", latent_dim=6, num_classes=3, **kwargs)
    z = torch.randn(5, 6)
    x = model.generate(z)
    assert x.shape == (5, *shape)
    assert model.discriminate(x).shape == (5,)
    assert model(x).shape == (5,)  # forward is the discriminator's score
    assert model.sample(4).shape == (4, *shape)
    assert ((x >= 0) & (x <= 1)).all()  # sigmoid output: digits' [0, 1] range


def test_output_activation_matches_the_data_range():
    """The same weights with output sigmoid / tanh / linear: the activation of the linear one."""
    torch.manual_seed(0)
    z = torch.randn(16, 4)
    models = {o: GAN(in_features=10, kind="mlp", latent_dim=4, output=o) for o in _OUTPUTS}
    for m in models.values():
        m.load_state_dict(models["linear"].state_dict())
        m.eval()
    raw = models["linear"].generate(z)
    torch.testing.assert_close(models["sigmoid"].generate(z), torch.sigmoid(raw))
    torch.testing.assert_close(models["tanh"].generate(z), torch.tanh(raw))


def test_conditional_players_depend_on_the_label():
    torch.manual_seed(0)
    model = GAN(in_channels=1, image_size=[8, 8], num_classes=4, conditional=True, latent_dim=5)
    model.eval()
    z = torch.randn(3, 5).repeat(2, 1)
    y = torch.tensor([0, 1, 2, 3, 3, 3])
    x = model.generate(z, y)
    assert not torch.allclose(x[0], x[3])  # same z, classes 0 and 3
    # the projection term starts at zero: give D's label embedding weights, scores then differ
    nn.init.normal_(model.discriminator.embed.weight)
    a = model.discriminate(x, torch.zeros(6, dtype=torch.long))
    b = model.discriminate(x, torch.ones(6, dtype=torch.long))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="needs class labels"):
        model.generate(z)
    assert model.sample(8).shape == (8, 1, 8, 8)  # labels drawn when not given


def test_conditional_without_labels_is_a_config_error():
    with pytest.raises(ConfigError, match="model.conditional: .*needs class labels"):
        create_model("gan", in_features=12, num_classes=0, conditional=True, kind="mlp")


def test_dcgan_needs_images_whose_sides_divide():
    with pytest.raises(ConfigError, match="data.as_image: true"):
        GAN(in_features=64, kind="dcgan")
    with pytest.raises(ConfigError, match="divisible by 8"):
        GAN(in_channels=1, image_size=[12, 12], channels=[32, 16, 8])


def test_dcgan_architecture_for_digits():
    model = GAN(in_channels=1, image_size=[8, 8], channels=[128, 64], d_norm="none")
    g = [m for m in model.generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    d = [m for m in model.discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in g] == [(128, 64), (64, 1)]  # 2→4→8
    assert [(m.in_channels, m.out_channels) for m in d] == [(1, 64), (64, 128)]  # 8→4→2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.discriminator.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.generator.modules())
    layer = GAN(in_channels=1, image_size=[8, 8], d_norm="layer")
    assert any(isinstance(m, nn.GroupNorm) for m in layer.discriminator.modules())


def test_config_round_trip_rebuilds_the_same_model():
    model = GAN(
        in_channels=1,
        image_size=[8, 8],
        num_classes=10,
        conditional=True,
        latent_dim=7,
        d_norm="layer",
    )
    config = model.get_config()
    assert config["image_size"] == [8, 8] and config["conditional"] is True
    rebuilt = GAN.from_config(config)
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    z, y = torch.randn(4, 7), torch.tensor([1, 2, 3, 4])
    torch.testing.assert_close(model.generate(z, y), rebuilt.generate(z, y))


def test_both_players_get_gradients():
    torch.manual_seed(0)
    model = GAN(in_channels=1, image_size=[8, 8], num_classes=3, conditional=True, latent_dim=4)
    y = torch.tensor([0, 1, 2, 0])
    score = model.discriminate(model.generate(torch.randn(4, 4), y), y)
    score.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # the zero-initialized projection still learns: its gradient is φ(x) for each label's row
    assert model.discriminator.embed.weight.grad[:3].abs().sum(1).gt(0).all()


def test_sample_with_a_generator_is_reproducible():
    model = GAN(in_features=6, kind="mlp", latent_dim=3).eval()
    a = model.sample(5, generator=torch.Generator().manual_seed(3))
    b = model.sample(5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)

"""MLP: every option builds; He / Xavier / orthogonal init follow their definitions; dropout only
in training; the shared model interface (features, head, reset, config round-trip)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepworks.errors import ConfigError
from deepworks.layers.common import ACTIVATIONS
from deepworks.models import create_model, list_models
from deepworks.models.mlp import MLP

HIDDEN_ACTIVATIONS = ["relu", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh"]


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def gain(activation: str) -> float:
    name = activation if activation in ("relu", "leaky_relu", "tanh", "sigmoid") else "relu"
    return nn.init.calculate_gain(name)


@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("norm", [None, "batch", "layer"])
@pytest.mark.parametrize("init", ["default", "he", "xavier", "orthogonal"])
def test_every_option_builds_and_runs(activation, norm, init):
    torch.manual_seed(0)
    model = create_model(
        "mlp",
        in_features=12,
        num_classes=3,
        hidden=[16, 8],
        activation=activation,
        norm=norm,
        init=init,
        dropout=0.1,
    )
    out = model(torch.randn(5, 12))
    assert out.shape == (5, 3) and torch.isfinite(out).all()
    kinds = [type(m) for m in model.features]
    assert kinds.count(ACTIVATIONS[activation]) == 2
    expected_norm = {None: nn.Identity, "batch": nn.BatchNorm1d, "layer": nn.LayerNorm}[norm]
    assert kinds.count(expected_norm) == 2
    assert kinds.count(nn.Dropout) == 2
    assert [(m.in_features, m.out_features) for m in linears(model)] == [(12, 16), (16, 8), (8, 3)]
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_layer_order_is_linear_norm_activation_dropout():
    model = MLP(4, 2, hidden=[6], norm="layer", activation="tanh", dropout=0.5)
    assert [type(m) for m in model.features] == [
        nn.Flatten,
        nn.Linear,
        nn.LayerNorm,
        nn.Tanh,
        nn.Dropout,
    ]


def test_he_init_std_is_sqrt_2_over_fan_in():
    torch.manual_seed(0)
    model = MLP(400, 10, hidden=[300, 200], init="he")
    for layer in linears(model):
        expected = math.sqrt(2.0 / layer.in_features)
        assert layer.weight.std().item() == pytest.approx(expected, rel=0.03)
        assert abs(layer.weight.mean().item()) < 0.1 * expected
        assert torch.count_nonzero(layer.bias) == 0


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_xavier_init_follows_glorot(activation):
    """Glorot uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)); gain 1 for sigmoid
    (Glorot's setting) and PyTorch's recommended gain for the nonlinearity otherwise."""
    torch.manual_seed(0)
    model = MLP(400, 10, hidden=[300], activation=activation, init="xavier")
    g = gain(activation)
    for layer in linears(model):
        fan_in, fan_out = layer.in_features, layer.out_features
        bound = g * math.sqrt(6.0 / (fan_in + fan_out))
        assert layer.weight.abs().max().item() <= bound
        assert layer.weight.abs().max().item() > 0.98 * bound
        expected_std = g * math.sqrt(2.0 / (fan_in + fan_out))
        assert layer.weight.std().item() == pytest.approx(expected_std, rel=0.05)
        assert torch.count_nonzero(layer.bias) == 0
    if activation == "sigmoid":
        assert g == 1.0


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_orthogonal_init_rows_are_orthonormal(activation):
    torch.manual_seed(0)
    model = MLP(40, 10, hidden=[30, 60], activation=activation, init="orthogonal")
    g = gain(activation)
    for layer in linears(model):
        w = layer.weight.detach() / g  # (out, in)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        assert torch.allclose(gram, torch.eye(gram.shape[0]), atol=1e-5)


def test_default_init_is_pytorchs():
    torch.manual_seed(0)
    model = MLP(20, 3, hidden=[10], init="default")
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Linear(20, 10), nn.Linear(10, 3))
    for ours, ref in zip(linears(model), reference, strict=True):
        assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)


def test_forward_equals_a_hand_built_network():
    torch.manual_seed(0)
    model = MLP(6, 3, hidden=[5, 4], activation="gelu", init="xavier")
    l1, l2, head = linears(model)
    x = torch.randn(7, 2, 3)  # flattened to (7, 6)
    h = nn.functional.gelu(l2(nn.functional.gelu(l1(x.reshape(7, 6)))))
    assert torch.allclose(model.forward_features(x), h, atol=1e-6)
    assert torch.allclose(model(x), head(h), atol=1e-6)
    assert torch.allclose(model(x), model.forward_head(model.forward_features(x)))


def test_dropout_is_active_in_train_mode_only():
    torch.manual_seed(0)
    model = MLP(32, 4, hidden=[256], dropout=0.5)
    x = torch.randn(16, 32)
    model.train()
    a, b = model(x), model(x)
    assert not torch.allclose(a, b)
    h = model.features[:-1](x)  # before dropout
    dropped = model.features(x)
    alive = h != 0  # ReLU zeros are not dropout's
    rate = ((dropped == 0) & alive).sum() / alive.sum()
    assert 0.4 < rate.item() < 0.6
    kept = dropped != 0
    assert torch.allclose(dropped[kept], 2 * h[kept])  # inverted dropout scales by 1 / (1 - p)
    model.eval()
    c, d = model(x), model(x)
    assert torch.equal(c, d)
    assert torch.allclose(model.features(x), h)


def test_softmax_output_activation():
    torch.manual_seed(0)
    model = MLP(5, 3, hidden=[4], output_activation="softmax")
    x = torch.randn(6, 5)
    assert model.output_kind == "probs"
    assert torch.allclose(model(x), model.head(model.forward_features(x)).softmax(-1))
    assert torch.allclose(model(x).sum(-1), torch.ones(6))
    assert MLP(5, 3).output_kind == "logits"


def test_config_round_trip_rebuilds_the_same_model():
    torch.manual_seed(0)
    model = create_model(
        "mlp",
        in_features=9,
        num_classes=4,
        hidden=(7, 5),
        activation="tanh",
        dropout=0.2,
        norm="layer",
        init="orthogonal",
    )
    config = model.get_config()
    assert config == {
        "in_features": 9,
        "num_classes": 4,
        "hidden": [7, 5],
        "activation": "tanh",
        "dropout": 0.2,
        "norm": "layer",
        "init": "orthogonal",
        "output_activation": None,
    }
    clone = MLP.from_config(config)
    clone.load_state_dict(model.state_dict())
    model.eval(), clone.eval()
    x = torch.randn(3, 9)
    assert torch.equal(model(x), clone(x))
    assert str(clone) == str(model)


def test_reset_classifier_swaps_the_head_and_updates_the_config():
    model = MLP(8, 3, hidden=[6])
    features = [p.clone() for p in model.features.parameters()]
    model.reset_classifier(5)
    assert model(torch.randn(2, 8)).shape == (2, 5)
    assert model.get_config()["num_classes"] == 5
    assert all(
        torch.equal(a, b) for a, b in zip(features, model.features.parameters(), strict=True)
    )
    assert MLP.from_config(model.get_config()).head.out_features == 5


def test_no_hidden_layers_is_a_linear_model():
    model = MLP(8, 3, hidden=[])
    assert len(linears(model)) == 1 and model(torch.randn(2, 8)).shape == (2, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"activation": "relu6"}, "is not an activation"),
        ({"norm": "group"}, "is not a norm"),
        ({"init": "kaiming"}, "is not an init scheme"),
        ({"hiden": [4]}, "did you mean 'hidden'"),
    ],
)
def test_bad_options_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_model("mlp", in_features=4, num_classes=2, **kwargs)


def test_bad_output_activation_is_a_config_error():
    with pytest.raises(ConfigError, match="output_activation"):
        create_model("mlp", in_features=4, num_classes=2, output_activation="sigmoid")


def test_registered():
    assert "mlp" in list_models()
    assert type(create_model("mlp", in_features=3, num_classes=2)) is MLP
    assert MLP(3, 2).num_parameters() == sum(p.numel() for p in MLP(3, 2).parameters())

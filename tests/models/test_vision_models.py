"""Conv nets: cnn, lenet, vgg, resnet and mobilenet share the model interface and train.

ResNet-18/34 and MobileNetV2 are checked against the reference (torchvision) parameter counts.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import deepworks as dw
from deepworks.errors import ConfigError
from deepworks.layers.conv import (
    ConvBNAct,
    DepthwiseSeparable,
    conv_block_output,
    conv_out,
    same_padding,
)
from deepworks.models.mobilenet import InvertedResidual, make_divisible
from deepworks.registry import MODELS

FAMILIES = ["cnn", "lenet", "vgg", "resnet", "mobilenet"]

# Small variants (CPU-fast), each family at least once.
VARIANTS = {
    "cnn": {"channels": [8, 16]},
    "cnn-deep": {"channels": [8, 16, 16], "convs_per_block": 2, "global_pool": "flatten",
                 "dense": [16], "dropout": 0.1, "activation": "gelu"},
    "lenet": {},
    "lenet-classic": {"activation": "tanh", "pool": "avg", "init": "xavier"},
    "vgg": {"config": [8, 8, "M", 16, "M"]},
    "vgg-nobn": {"config": [8, "A", 16, "M", 16], "batch_norm": False, "dense": [16],
                 "dropout": 0.1},
    "resnet18": {"depth": 18, "width": 8},
    "resnet34": {"depth": 34, "width": 4, "zero_init_residual": True},
    "mobilenet": {"width_mult": 0.25, "last_channels": 64},
}  # fmt: skip
SHAPES = [(1, 8, 8), (3, 32, 32)]


def build(variant: str, in_channels: int = 1, image_size=8, num_classes: int = 5, **kw):
    name = variant.split("-")[0].rstrip("0123456789") or variant
    torch.manual_seed(0)
    return dw.create_model(
        name,
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size,
        **(VARIANTS[variant] | kw),
    )


def images(shape, n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", FAMILIES)
def test_registered_as_image_models(name):
    factory = MODELS.get(name)
    assert factory.input_kind == "image"
    assert issubclass(factory, dw.Model)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_shapes_and_interface(variant, shape):
    model = build(variant, shape[0], list(shape[1:])).eval()
    x = images(shape)
    with torch.no_grad():
        out = model(x)
        features = model.forward_features(x)
        split = model.forward_head(features)
    assert out.shape == (4, 5) and torch.isfinite(out).all()
    assert features.ndim == 2 and features.shape == (4, model.head.in_features)
    torch.testing.assert_close(out, split)
    conv = model.first_conv()
    assert isinstance(conv, nn.Conv2d) and conv.in_channels == shape[0]
    assert isinstance(model.head, nn.Linear)


@pytest.mark.parametrize("variant", VARIANTS)
def test_reset_classifier_keeps_backbone(variant):
    model = build(variant).eval()
    x = images((1, 8, 8))
    with torch.no_grad():
        before = model.forward_features(x)
    model.reset_classifier(7)
    with torch.no_grad():
        assert model(x).shape == (4, 7)
        torch.testing.assert_close(model.forward_features(x), before)
    assert model.get_config()["num_classes"] == 7
    head_ids = {id(p) for p in model.head.parameters()}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    assert len(backbone) + len(head_ids) == len(list(model.parameters()))


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_round_trip_gives_identical_outputs(variant):
    model = build(variant, 3, [32, 32]).eval()
    config = model.get_config()
    assert yaml.safe_load(yaml.safe_dump(config)) == config  # config.yaml stores it
    rebuilt = type(model).from_config(config)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    x = images((3, 32, 32))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
    assert rebuilt.get_config() == config


@pytest.mark.parametrize("variant", VARIANTS)
def test_backward_gives_finite_gradients(variant):
    model = build(variant)
    x, y = images((1, 8, 8), n=6), torch.arange(6) % 5
    F.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("variant", ["cnn", "lenet", "vgg", "resnet18", "mobilenet"])
def test_overfits_a_tiny_batch(variant):
    model = build(variant, **({"dropout": 0.0} if variant == "mobilenet" else {}))
    x, y = images((1, 8, 8), n=10, seed=1), torch.arange(10) % 5
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


# --- cnn options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"pool": "max"},
        {"pool": "avg"},
        {"pool": "none", "global_pool": "avg"},
        {"global_pool": "max"},
        {"global_pool": "flatten"},
        {"dilation": 2},
        {"kernel_size": 5, "padding": 2},
        {"padding": 0, "pool": "none", "global_pool": "flatten"},
        {"stride": 2, "pool": "none"},
        {"init": "he"},
        {"init": "xavier", "activation": "tanh"},
        {"init": "orthogonal"},
        {"init": "default", "batch_norm": False},
        {"spatial_dropout": 0.2, "dropout": 0.2, "dense": [12, 12]},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_cnn_options_build_and_run(options):
    for shape in SHAPES:
        model = dw.create_model(
            "cnn", in_channels=shape[0], num_classes=3, image_size=list(shape[1:]),
            channels=[4, 8], **options,
        )  # fmt: skip
        out = model(images(shape, n=2))
        assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_cnn_flatten_width_follows_the_image():
    model = dw.create_model("cnn", in_channels=1, num_classes=3, image_size=[8, 12],
                            channels=[4, 8], global_pool="flatten")  # fmt: skip
    assert model.head.in_features == 8 * 2 * 3  # two 2x2 pools: 8x12 -> 2x3
    assert model(torch.randn(2, 1, 8, 12)).shape == (2, 3)


def test_cnn_dilation_and_padding_follow_the_formula():
    for k, d in ((3, 1), (3, 2), (5, 1), (5, 3)):
        p = same_padding(k, d)
        conv = nn.Conv2d(1, 1, k, padding=p, dilation=d)
        assert conv(torch.randn(1, 1, 11, 11)).shape[-1] == conv_out(11, k, 1, p, d) == 11
    assert conv_out(32, 3, 2, 1) == nn.Conv2d(1, 1, 3, 2, 1)(torch.randn(1, 1, 32, 32)).shape[-1]
    model = dw.create_model("cnn", in_channels=1, num_classes=3, image_size=8, channels=[4],
                            dilation=2, pool="none")  # fmt: skip
    assert model.first_conv().dilation == (2, 2) and model.first_conv().padding == (2, 2)


def test_cnn_more_blocks_than_pools_skip_pooling_at_one_pixel():
    model = dw.create_model("cnn", in_channels=1, num_classes=3, image_size=8,
                            channels=[4, 4, 4, 4, 4], global_pool="flatten")  # fmt: skip
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3  # 8 -> 4 -> 2 -> 1, then no more
    assert model.head.in_features == 4


def test_spatial_dropout_drops_whole_maps_only_in_training():
    torch.manual_seed(0)
    model = dw.create_model("cnn", in_channels=1, num_classes=3, image_size=8,
                            channels=[16], spatial_dropout=0.5, pool="none")  # fmt: skip
    drop = next(m for m in model.modules() if isinstance(m, nn.Dropout2d))
    seen = []
    drop.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    x = images((1, 8, 8), n=8)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    torch.testing.assert_close(a, b)
    assert all((m != 0).any() for m in seen[0].flatten(0, 1))  # eval: nothing dropped
    model.train()
    model(x)
    maps = seen[-1].flatten(0, 1)  # (B*C, H, W)
    dropped = torch.stack([(m == 0).all() for m in maps])
    assert 0.2 < dropped.float().mean() < 0.8  # about half the maps, each entirely
    kept = maps[~dropped]
    assert (kept != 0).any(dim=(1, 2)).all()


def test_bad_options_are_one_line_config_errors():
    base = {"in_channels": 1, "num_classes": 3, "image_size": 8}
    with pytest.raises(ConfigError, match="pool"):
        dw.create_model("cnn", pool="median", **base)
    with pytest.raises(ConfigError, match="global_pool"):
        dw.create_model("cnn", global_pool="sum", **base)
    with pytest.raises(ConfigError, match="padding"):
        dw.create_model("cnn", padding="valid", **base)
    with pytest.raises(ConfigError, match="nothing"):
        dw.create_model("cnn", padding=0, kernel_size=5, channels=[4, 4], pool="none", **base)
    with pytest.raises(ConfigError, match="init"):
        dw.create_model("cnn", init="lecun", **base)
    with pytest.raises(ConfigError, match="config entries"):
        dw.create_model("vgg", config=[8, "X"], **base)
    with pytest.raises(ConfigError, match="depth"):
        dw.create_model("resnet", depth=50, **base)
    with pytest.raises(ConfigError, match="stem"):
        dw.create_model("mobilenet", stem="tiny", **base)


# --- references --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,kwargs,count",
    [
        ("resnet", {"depth": 18}, 11_689_512),  # torchvision.models.resnet18()
        ("resnet", {"depth": 34}, 21_797_672),  # torchvision.models.resnet34()
        ("mobilenet", {}, 3_504_872),  # torchvision.models.mobilenet_v2()
    ],
)
def test_parameter_count_matches_torchvision(name, kwargs, count):
    model = dw.create_model(name, in_channels=3, num_classes=1000, image_size=224, **kwargs)
    assert model.num_parameters() == count
    stem = model.stem if name == "resnet" else model.features[0]
    assert model.first_conv().stride == (2, 2)  # the ImageNet stem at 224 pixels
    assert any(isinstance(m, nn.MaxPool2d) for m in stem.modules()) == (name == "resnet")


def test_resnet_stem_fits_the_image_size():
    small = dw.create_model("resnet", in_channels=3, num_classes=10, image_size=32, width=8)
    conv = small.first_conv()
    assert (conv.kernel_size, conv.stride) == ((3, 3), (1, 1))
    assert not any(isinstance(m, nn.MaxPool2d) for m in small.modules())
    x = images((3, 32, 32), n=2)
    assert small.layer4(small.layer3(small.layer2(small.layer1(small.stem(x))))).shape == (
        2, 64, 4, 4,
    )  # fmt: skip
    large = dw.create_model("resnet", in_channels=3, num_classes=10, image_size=64, width=8)
    assert (large.first_conv().kernel_size, large.first_conv().stride) == ((7, 7), (2, 2))
    assert large.stem(torch.randn(1, 3, 64, 64)).shape == (1, 8, 16, 16)


def test_resnet_blocks_have_projection_shortcuts_only_where_shapes_change():
    model = dw.create_model("resnet", in_channels=1, num_classes=3, image_size=8, width=8)
    from deepworks.models.resnet import BasicBlock

    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    projections = [not isinstance(b.shortcut, nn.Identity) for b in blocks]
    assert projections == [False, False, True, False, True, False, True, False]


def test_inverted_residual_adds_the_input_only_for_stride_1_and_same_channels():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    for (c_in, c_out, stride), residual in {
        (16, 16, 1): True,
        (16, 24, 1): False,
        (16, 16, 2): False,
    }.items():
        block = InvertedResidual(c_in, c_out, stride, expand_ratio=6).eval()
        assert block.use_residual is residual
        project_bn = block.conv[-1][1]
        nn.init.zeros_(project_bn.weight)  # F(x) = 0: the block outputs only its shortcut
        nn.init.zeros_(project_bn.bias)
        with torch.no_grad():
            out = block(x)
        assert out.shape == (2, c_out, 8 // stride, 8 // stride)
        if residual:
            torch.testing.assert_close(out, x)
        else:
            assert (out == 0).all()
    # the projection is linear: no activation after the last 1x1 conv
    assert isinstance(InvertedResidual(8, 8, 1, 6).conv[-1][2], nn.Identity)
    assert len(InvertedResidual(8, 8, 1, 1).conv) == 2  # t = 1: no expansion conv


def test_mobilenet_width_mult_scales_channels():
    assert [make_divisible(c * 0.5) for c in (32, 16, 24, 320)] == [16, 8, 16, 160]
    narrow = dw.create_model("mobilenet", in_channels=3, num_classes=10, width_mult=0.5)
    wide = dw.create_model("mobilenet", in_channels=3, num_classes=10, width_mult=1.0)
    assert narrow.num_parameters() < 0.5 * wide.num_parameters()
    depthwise = [m for m in wide.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 17 and all(m.groups == m.in_channels for m in depthwise)


def test_conv_blocks():
    block = ConvBNAct(3, 8, 3, stride=2)
    assert block(torch.randn(1, 3, 9, 9)).shape == (1, 8, 5, 5)
    assert block[0].bias is None  # BN follows
    assert ConvBNAct(3, 8, batch_norm=False)[0].bias is not None
    sep = DepthwiseSeparable(16, 32)
    full = nn.Conv2d(16, 32, 3, padding=1, bias=False)
    convs = [m for m in sep.modules() if isinstance(m, nn.Conv2d)]
    assert sum(m.weight.numel() for m in convs) == 16 * 9 + 16 * 32 < full.weight.numel()
    assert sep(torch.randn(1, 16, 6, 6)).shape == (1, 32, 6, 6)


def test_conv_block_output_includes_norm_and_activation():
    model = build("cnn").eval()
    x = images((1, 8, 8), n=1)
    name, out = conv_block_output(model, x)
    assert name == "blocks.0.0.0"
    block = model.blocks[0][0]
    with torch.no_grad():
        torch.testing.assert_close(out, block(x))  # conv -> BN -> ReLU
    assert (out >= 0).all()


# --- through the Trainer -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_images():
    return dw.load_dataset("digits", split={"val": 0.1, "test": 0.2}, seed=0, as_image=True)


@pytest.mark.parametrize("variant", ["cnn", "lenet", "vgg", "resnet18", "mobilenet"])
def test_one_epoch_on_digits_images(variant, digits_images):
    data = digits_images
    assert data.input_shape == (1, 8, 8)
    model = build(variant, num_classes=data.num_classes)
    before = model.first_conv().weight.detach().clone()
    trainer = dw.Trainer(epochs=1, batch_size=32, progress=False, checkpoint=None, device="cpu",
                         optimizer={"name": "adamw", "lr": 3e-3})  # fmt: skip
    result = trainer.fit(model, data, "classification")
    assert len(result.history) == 1
    row = result.history[0]
    assert math.isfinite(row["train/loss"]) and row["train/loss"] < 2.6  # ln 10 = 2.30 at chance
    assert 0.0 <= row["val/accuracy"] <= 1.0
    assert not torch.equal(model.first_conv().weight, before)  # the backbone was trained

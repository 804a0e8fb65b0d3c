"""Batched augmentations: shapes, dtypes, ranges, probabilities, determinism, per-sample draws,
targets moving with images, soft labels, config building, and training with them (resume too)."""

from __future__ import annotations

import pytest
import torch

import deepworks as dw
from deepworks.config import AugmentConfig
from deepworks.data.augment import Compose, build_augment
from deepworks.data.augment.geometric import Flip
from deepworks.data.augment.mixing import CutMix, Mixup
from deepworks.errors import ConfigError
from deepworks.registry import AUGMENTATIONS
from deepworks.train.callbacks import Callback

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Every augmentation with settings under which p=1 surely changes a batch.
IMAGE_AUGS = {
    "flip": {},
    "rotate": {"degrees": 30},
    "translate": {"translate": 0.2},
    "scale": {"scale": (0.7, 1.3)},
    "affine": {"degrees": 20, "translate": 0.1, "scale": (0.8, 1.2)},
    "random_resized_crop": {"scale": (0.3, 0.9)},
    "color_jitter": {"hue": 0.1},
    "gaussian_noise": {"std": 0.1},
    "cutout": {"n_holes": 2, "size": 0.3},
}
MIXING = {"mixup": {"alpha": 1.0}, "cutmix": {"alpha": 1.0}}
ALL = IMAGE_AUGS | MIXING
K = 5  # classes in the label tests


def make(name: str, p: float = 1.0, **kw):
    kwargs = ALL[name] | {"p": p} | kw
    fixed = {"num_classes": K} if name in MIXING else {}
    return AUGMENTATIONS.build(name, kwargs, **fixed)


def batch(device="cpu", b=8, c=3, h=12, w=12, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(b, c, h, w, generator=g).to(device, dtype)  # values in [0, 1)
    y = torch.randint(0, K, (b,), generator=g).to(device)
    return x, y


def test_registered_names():
    assert set(ALL) <= set(AUGMENTATIONS.names())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
@pytest.mark.parametrize("name", list(ALL))
def test_shape_dtype_device_and_range(name, dtype, device):
    x, y = batch(device)
    if dtype == torch.uint8:
        x = (x * 255).round()
    x = x.to(dtype)
    out, yo = make(name)(x, y)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    lo, hi = (0, 255) if dtype == torch.uint8 else (0.0, 1.0)
    if name in ("color_jitter", "gaussian_noise"):
        out, _ = make(name, clamp=True)(x, y)
    assert out.min() >= lo and out.max() <= hi  # convex mixes, zero fill, or clamped
    if name in MIXING:
        assert yo.shape == (len(x), K) and yo.is_floating_point()
    else:
        assert torch.equal(yo, y)


@pytest.mark.parametrize("name", list(ALL))
def test_p0_is_identity_and_p1_changes(name):
    x, y = batch()
    out, yo = make(name, p=0.0)(x, y)
    assert torch.equal(out, x)
    if name in MIXING:
        assert torch.equal(yo, torch.nn.functional.one_hot(y, K).float())
    torch.manual_seed(0)
    out, _ = make(name, p=1.0)(x, y)
    assert not torch.equal(out, x)


@pytest.mark.parametrize("name", list(ALL))
def test_deterministic_under_manual_seed(name):
    x, y = batch()
    aug = make(name, p=0.5)
    torch.manual_seed(3)
    a = aug(x, y)
    torch.manual_seed(3)
    b = aug(x, y)
    c = aug(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])  # a new draw


@pytest.mark.parametrize("name", list(IMAGE_AUGS))
def test_each_sample_gets_its_own_draw(name):
    x, y = batch(b=16)
    x = x[:1].expand_as(x).contiguous()  # sixteen copies of one image
    torch.manual_seed(0)
    out, _ = make(name, p=0.5 if name == "flip" else 1.0)(x, y)
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) >= (2 if name == "flip" else 12)  # flip: mirrored or not per sample


def test_mixing_partners_and_boxes_differ_per_sample():
    x = torch.arange(16.0).view(16, 1, 1, 1).expand(16, 3, 16, 16).contiguous()
    y = torch.arange(16) % K
    torch.manual_seed(0)
    out, _ = make("cutmix")(x, y)
    boxes = {tuple((o[0] != x[i, 0]).flatten().tolist()) for i, o in enumerate(out)}
    assert len(boxes) > 8  # boxes at different places
    out, _ = make("mixup")(x, y)
    partners = (out[:, 0, 0, 0] - x[:, 0, 0, 0]).unique()
    assert len(partners) > 8


# --- geometry ----------------------------------------------------------------------------------


def test_flip_matches_torch_flip_and_twice_is_identity():
    x, y = batch()
    mask = torch.randint(0, 3, (8, 12, 12))
    flip = Flip(p=1.0)
    out, m = flip(x, mask)
    assert torch.equal(out, x.flip(-1)) and torch.equal(m, mask.flip(-1))
    assert torch.equal(flip(*flip(x, mask))[0], x)
    out, m = Flip(p=1.0, horizontal=False, vertical=True)(x, mask)
    assert torch.equal(out, x.flip(-2)) and torch.equal(m, mask.flip(-2))
    torch.manual_seed(0)
    out, _ = Flip(p=0.5)(x, y)
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x, strict=True)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)


@pytest.mark.parametrize("name", ["rotate", "affine"])
def test_rotate_90_matches_rot90(name):
    x, _ = batch(h=10, w=10)
    mask = torch.randint(0, 4, (8, 10, 10))
    out, m = AUGMENTATIONS.build(name, {"degrees": (90, 90)})(x, mask)
    torch.testing.assert_close(out, torch.rot90(x, 1, (-2, -1)), atol=1e-5, rtol=0)
    assert torch.equal(m, torch.rot90(mask, 1, (-2, -1)))
    out, _ = AUGMENTATIONS.build(name, {"degrees": (-90, -90)})(x, mask)
    torch.testing.assert_close(out, torch.rot90(x, -1, (-2, -1)), atol=1e-5, rtol=0)


def test_translate_moves_content_by_whole_pixels():
    x, _ = batch(h=10, w=10)
    out, _ = AUGMENTATIONS.build("affine", {"translate": (0.2, 0.2)})(x, torch.zeros(8))
    torch.testing.assert_close(out[..., 2:, 2:], x[..., :-2, :-2], atol=1e-5, rtol=0)
    assert out[..., :2, :].abs().max() == 0 and out[..., :, :2].abs().max() == 0  # zero fill


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("flip", {}),
        ("rotate", {"degrees": 40, "interpolation": "nearest"}),
        ("rotate", {"degrees": 40, "interpolation": "nearest", "fill": "reflection"}),
        ("translate", {"translate": 0.3, "interpolation": "nearest"}),
        ("scale", {"scale": (0.6, 1.5), "interpolation": "nearest"}),
        ("affine", {"degrees": 30, "translate": 0.2, "interpolation": "nearest"}),
        ("random_resized_crop", {"scale": (0.2, 0.8), "interpolation": "nearest"}),
    ],
)
def test_masks_move_with_images(name, kwargs):
    g = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 6, (8, 3, 3), generator=g).repeat_interleave(5, 1)
    mask = mask.repeat_interleave(5, 2)  # (8, 15, 15) blocks of classes
    x = mask[:, None].float().expand(8, 2, 15, 15)  # pixel value = its class
    torch.manual_seed(0)
    out, m = AUGMENTATIONS.build(name, kwargs | {"p": 1.0})(x, mask)
    assert m.dtype == mask.dtype and m.shape == mask.shape
    assert not torch.equal(m, mask)
    assert torch.equal(out[:, 0], m.float()) and torch.equal(out[:, 1], m.float())


def test_bilinear_images_stay_close_to_their_nearest_masks():
    mask = torch.zeros(4, 16, 16, dtype=torch.long)
    mask[:, 4:12, 4:12] = 1
    x = mask[:, None].float()
    torch.manual_seed(0)
    out, m = AUGMENTATIONS.build("affine", {"degrees": 30, "translate": 0.1})(x, mask)
    diff = (out[:, 0] - m.float()).abs()  # bilinear vs nearest: at most 3/4 at a corner
    assert diff.max() <= 0.75 + 1e-5 and diff.mean() < 0.05


def boxes() -> torch.Tensor:
    y = torch.full((2, 3, 5), -1.0)  # (B, M, 5), padding rows all -1
    y[0, 0] = torch.tensor([1, 1.0, 2.0, 4.0, 6.0])
    y[0, 1] = torch.tensor([0, 0.0, 0.0, 10.0, 8.0])
    y[1, 0] = torch.tensor([2, 5.0, 1.0, 7.0, 3.0])
    return y


def test_flip_maps_detection_boxes():
    x = torch.rand(2, 3, 8, 10)  # W = 10, H = 8
    y = boxes()
    _, out = Flip(p=1.0)(x, y)
    expected = y.clone()
    expected[0, 0, 1:] = torch.tensor([6.0, 2.0, 9.0, 6.0])  # x1' = W - x2, x2' = W - x1
    expected[0, 1, 1:] = torch.tensor([0.0, 0.0, 10.0, 8.0])
    expected[1, 0, 1:] = torch.tensor([3.0, 1.0, 5.0, 3.0])
    assert torch.equal(out, expected)  # padding rows untouched
    _, out = Flip(p=1.0, horizontal=False, vertical=True)(x, y)
    assert torch.equal(out[0, 0], torch.tensor([1, 1.0, 2.0, 4.0, 6.0]))  # y1' = H - y2
    assert torch.equal(out[1, 0], torch.tensor([2, 5.0, 5.0, 7.0, 7.0]))
    assert torch.equal(out[:, 2], y[:, 2])
    assert torch.equal(Flip(p=0.0)(x, y)[1], y)


@pytest.mark.parametrize("name", ["rotate", "translate", "scale", "affine", "random_resized_crop"])
def test_warps_refuse_detection_boxes(name):
    with pytest.raises(ConfigError, match=f"{name} does not support detection targets"):
        AUGMENTATIONS.build(name)(torch.rand(2, 3, 8, 10), boxes())


@pytest.mark.parametrize("name", [n for n in ALL if n not in ("gaussian_noise", "mixup")])
def test_image_augmentations_refuse_features(name):
    x = torch.rand(8, 20)
    with pytest.raises(ConfigError, match=rf"{name} needs images \(B, C, H, W\)"):
        make(name)(x, torch.zeros(8, dtype=torch.long))


def test_noise_and_mixup_work_on_features():
    x = torch.rand(8, 20)
    y = torch.arange(8) % K
    assert make("gaussian_noise")(x, y)[0].shape == (8, 20)
    out, soft = make("mixup")(x, y)
    assert out.shape == (8, 20) and soft.shape == (8, K)


# --- mixing ------------------------------------------------------------------------------------


def test_mixup_soft_labels_are_lambda_weighted_one_hots():
    y = torch.arange(32) % K
    x = torch.nn.functional.one_hot(y, K).float()  # features = one-hot labels: mixed alike
    torch.manual_seed(0)
    out, soft = make("mixup", p=1.0)(x, y)
    torch.testing.assert_close(soft.sum(1), torch.ones(32))
    torch.testing.assert_close(soft, out)
    mixed = soft.max(1).values < 1  # samples mixed with a partner of another class
    lam = soft[mixed].max(1).values
    assert mixed.any() and torch.allclose(lam, lam[0])  # one lambda for the batch
    assert (soft > 0).sum(1).max() <= 2


def test_mixing_soft_labels_again_and_refusing_masks():
    y = torch.arange(8) % K
    aug = make("mixup")
    _, soft = aug(torch.rand(8, 4), y)
    _, twice = aug(torch.rand(8, 4), soft)  # already soft: mixed again
    torch.testing.assert_close(twice.sum(1), torch.ones(8))
    for name in MIXING:
        for target in (torch.zeros(8, 6, 6, dtype=torch.long), torch.full((8, 3, 5), -1.0)):
            with pytest.raises(ConfigError, match=f"{name} .*does not support segmentation"):
                make(name)(torch.rand(8, 3, 6, 6), target)


def test_cutmix_lambda_is_the_pasted_area():
    b, h, w = 32, 9, 13
    x = torch.arange(float(b)).view(b, 1, 1, 1).expand(b, 2, h, w).contiguous()
    y = torch.arange(b)  # class = sample index, so a pixel's value names its source
    torch.manual_seed(0)
    out, soft = CutMix(alpha=1.0, num_classes=b)(x, y)
    area = torch.stack([(out[:, 0] == k).float().mean((1, 2)) for k in range(b)], 1)  # (B, K)
    torch.testing.assert_close(soft, area)
    torch.testing.assert_close(soft.sum(1), torch.ones(b))
    assert ((soft > 0) & (soft < 1)).any()


def test_mixing_needs_num_classes_for_indices():
    with pytest.raises(ConfigError, match="mixup needs num_classes"):
        Mixup()(torch.rand(4, 3), torch.zeros(4, dtype=torch.long))


# --- config ------------------------------------------------------------------------------------


def test_build_augment_composes_in_order_and_reports_soft_labels():
    cfgs = [AugmentConfig(name="flip", p=1.0), AugmentConfig(name="mixup", alpha=0.4)]
    aug = build_augment(cfgs, num_classes=K)
    assert isinstance(aug, Compose) and len(aug) == 2 and aug.soft_labels
    assert [type(a).__name__ for a in aug.augmentations] == ["Flip", "Mixup"]
    assert aug.augmentations[1].num_classes == K and aug.augmentations[1].alpha == 0.4
    x, y = batch()
    torch.manual_seed(0)
    out = aug(x, y)
    torch.manual_seed(0)
    ref = aug.augmentations[1](*aug.augmentations[0](x, y))
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    plain = build_augment([AugmentConfig(name="rotate"), AugmentConfig(name="cutout")])
    assert not plain.soft_labels
    assert build_augment([]) is None


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"name": "mixpu"}, r"train.augment.0.name: 'mixpu' is not an augmentation; did you mean"),
        ({"name": "mixup", "alpah": 1}, r"train.augment.0: unknown key 'alpah'; did you mean"),
        ({"name": "flip", "p": 2}, r"train.augment.0: p must be in \[0, 1\]"),
        ({"name": "rotate", "fill": "wrap"}, r"train.augment.0: fill must be"),
    ],
)
def test_config_errors(cfg, message):
    with pytest.raises(ConfigError, match=message):
        build_augment([AugmentConfig(**cfg)], num_classes=K)


# --- training ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_images():
    return dw.load_dataset("digits", as_image=True, seed=0)


def mlp():
    torch.manual_seed(0)
    return dw.create_model("mlp", in_features=64, num_classes=10, hidden=[32])


def test_trainer_trains_with_flip_and_mixup(digits_images):
    augment = [{"name": "flip"}, {"name": "mixup", "alpha": 0.2}]
    trainer = dw.Trainer(epochs=2, augment=augment, progress=False, checkpoint=None)
    result = trainer.fit(mlp(), digits_images)
    losses = [h["train/loss"] for h in result.history]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[1] < losses[0]


def test_trainer_refuses_mixup_with_focal_loss(digits_images):
    trainer = dw.Trainer(
        epochs=1, augment=[{"name": "mixup"}], loss={"name": "focal"}, progress=False,
        checkpoint=None,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="train.augment: mixup / cutmix make soft labels"):
        trainer.fit(mlp(), digits_images)


class CrashAt(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_batch_end(self, trainer, loss):
        if trainer.global_step == self.step:
            raise RuntimeError("crash")


def test_augmented_resume_is_bitwise_identical(tmp_path, digits_images):
    augment = [
        {"name": "random_resized_crop", "scale": (0.5, 1.0)},
        {"name": "color_jitter"},
        {"name": "cutout"},
        {"name": "mixup", "alpha": 0.4},
    ]

    def fit(run_dir, callbacks=(), resume=None):
        trainer = dw.Trainer(
            epochs=2, batch_size=128, augment=augment, progress=False, run_dir=run_dir,
            checkpoint={"every_n_steps": 3}, callbacks=list(callbacks), seed=0,
        )  # fmt: skip
        return trainer.fit(mlp(), digits_images, resume=resume).model.state_dict()

    reference = fit(tmp_path / "ref")
    with pytest.raises(RuntimeError, match="crash"):
        fit(tmp_path / "run", [CrashAt(5)])
    resumed = fit(tmp_path / "run", resume=tmp_path / "run" / "checkpoints" / "last")
    assert reference.keys() == resumed.keys()
    for k in reference:
        assert torch.equal(reference[k], resumed[k]), k

"""Attacks against a small digits CNN trained here, checked against torchattacks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepworks.attacks.common import clean_accuracy, require_classes, robustness_curve
from deepworks.data.bundle import apply_scaler
from deepworks.data.pipeline import load_dataset
from deepworks.errors import ConfigError
from deepworks.registry import ATTACKS, MODELS
from deepworks.robust import InputSpaceModel, build_attack, robust_accuracy, run_attack

torchattacks = pytest.importorskip("torchattacks")

EPS = (0.05, 0.1, 0.2)


@pytest.fixture(scope="module")
def digits():
    """Digits as 1x8x8 images in [0, 1] and a CNN trained on them for a few seconds."""
    torch.manual_seed(0)
    data = load_dataset(
        "digits", split={"val": 0.1, "test": 0.2}, seed=0, scale="none", as_image=True
    )
    model = MODELS.build(
        "cnn", {"in_channels": 1, "num_classes": 10, "image_size": [8, 8], "channels": [16, 32]}
    )
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    x, y = data.train.x, data.train.y
    for _ in range(6):
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    assert clean_accuracy(model, data.test.x, data.test.y) > 0.9
    return model, data.test.x, data.test.y


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_attacks_are_registered():
    assert {"fgsm", "pgd", "cw", "square"} <= set(ATTACKS.names())


@pytest.mark.parametrize("eps", EPS)
def test_fgsm_equals_torchattacks(digits, eps):
    model, x, y = digits
    ours = build_attack("fgsm", eps)(model, x, y)
    theirs = torchattacks.FGSM(model, eps=eps)(x, y)
    assert torch.equal(ours, theirs)
    # robust accuracy: correct before and after the attack
    expected = robust(model, x, y, theirs)
    assert robust_accuracy(model, x, y, "fgsm", eps) == pytest.approx(expected, abs=1e-9)
    assert expected < accuracy(model, x, y)


def robust(model, x, y, x_adv) -> float:
    """Correct before and after the attack."""
    with torch.no_grad():
        return float(((model(x).argmax(1) == y) & (model(x_adv).argmax(1) == y)).float().mean())


@pytest.mark.parametrize("eps", EPS)
def test_pgd_equals_torchattacks_from_the_same_random_start(digits, eps):
    model, x, y = digits
    alpha = eps / 4
    torch.manual_seed(7)  # torchattacks draws its start from the global RNG
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=20, random_start=True)(x, y)
    attack = build_attack("pgd", eps, steps=20, alpha=alpha)
    out = run_attack(model, x, y, attack, batch_size=len(y), seed=7)  # the same stream
    assert torch.allclose(out["x_adv"], theirs, atol=1e-6)
    # so the robust accuracies agree exactly (from unrelated random starts, a single PGD run
    # varies by about two points on these 359 samples, for either implementation)
    expected = robust(model, x, y, theirs)
    assert robust_accuracy(model, x, y, attack, eps, batch_size=len(y), seed=7) == expected


def test_pgd_is_stronger_than_fgsm_and_stays_in_the_ball_and_range(digits):
    model, x, y = digits
    eps = 0.1
    x_adv = build_attack("pgd", eps, steps=10)(model, x, y, torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > 0.9 * eps  # it does move
    pgd = robust_accuracy(model, x, y, "pgd", eps, steps=10)
    assert pgd < robust_accuracy(model, x, y, "fgsm", eps)


def test_pgd_l2_stays_in_the_l2_ball_and_matches_torchattacks(digits):
    model, x, y = digits
    eps = 0.8
    x_adv = build_attack("pgd", eps, steps=10, norm="l2")(model, x, y)
    assert (x_adv - x).flatten(1).norm(dim=1).max() <= eps + 1e-5
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    theirs = torchattacks.PGDL2(model, eps=eps, alpha=0.2, steps=10, random_start=False)(x, y)
    ours = build_attack("pgd", eps, steps=10, alpha=0.2, norm="l2", random_start=False)
    assert torch.allclose(ours(model, x, y), theirs, atol=1e-5)


def test_random_start_is_deterministic_given_the_seed(digits):
    model, x, y = digits
    attack = build_attack("pgd", 0.1, steps=2)
    a = run_attack(model, x[:64], y[:64], attack, seed=3)["x_adv"]
    b = run_attack(model, x[:64], y[:64], attack, seed=3)["x_adv"]
    c = run_attack(model, x[:64], y[:64], attack, seed=4)["x_adv"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_cw_lowers_accuracy_with_small_l2(digits):
    model, x, y = digits
    x, y = x[:32], y[:32]
    out = run_attack(model, x, y, build_attack("cw", 8.0, steps=40, search_steps=3))
    assert float((out["adv_pred"] == y).float().mean()) < 0.1
    l2 = (out["x_adv"] - x).flatten(1).norm(dim=1)
    flipped = out["adv_pred"] != y
    # minimal perturbations: far shorter than the PGD-L2 budget that breaks the model too
    assert l2[flipped].median() < 0.8
    assert out["x_adv"].min() >= 0 and out["x_adv"].max() <= 1
    # with a budget, longer perturbations are discarded: those samples stay clean
    eps = float(l2[flipped].median())
    bounded = run_attack(model, x, y, build_attack("cw", eps, steps=40, search_steps=3))
    assert (bounded["x_adv"] - x).flatten(1).norm(dim=1).max() <= eps + 1e-5
    assert (bounded["adv_pred"] != y).sum() < flipped.sum()


class NoGradients(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise AssertionError("a black-box attack asked for a gradient")


class BlackBox(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(NoGradients.apply(x))


def test_square_is_black_box_and_reduces_accuracy(digits):
    model, x, y = digits
    x, y = x[:120], y[:120]
    box = BlackBox(model)
    with torch.no_grad():
        out = run_attack(box, x, y, build_attack("square", 0.15, steps=200), seed=0)
    clean = float((out["clean_pred"] == y).float().mean())
    robust = float(((out["clean_pred"] == y) & (out["adv_pred"] == y)).float().mean())
    assert robust < clean - 0.2, (clean, robust)
    delta = out["x_adv"] - x
    assert delta.abs().max() <= 0.15 + 1e-6
    assert out["x_adv"].min() >= 0 and out["x_adv"].max() <= 1
    # the gradient trap works: a gradient attack on the same wrapper fails loudly
    with pytest.raises(AssertionError, match="black-box"):
        build_attack("fgsm", 0.1)(box, x, y)


@pytest.mark.parametrize("method", ["fgsm", "pgd", "square"])
@pytest.mark.parametrize("eps", [-0.1, 1.5])
def test_eps_outside_the_input_range_is_a_config_error(digits, method, eps):
    model, x, y = digits
    with pytest.raises(ConfigError, match=r"outside the input range \[0, 1\]"):
        build_attack(method, eps)(model, x[:4], y[:4])


def test_l2_eps_range_scales_with_the_input_size(digits):
    model, x, y = digits
    build_attack("pgd", 1.5, norm="l2", steps=1)(model, x[:4], y[:4])  # <= sqrt(64) = 8
    with pytest.raises(ConfigError, match="eps <= 8"):
        build_attack("pgd", 9.0, norm="l2", steps=1)(model, x[:4], y[:4])


def test_regression_is_refused_with_the_fix():
    with pytest.raises(
        ConfigError, match="need a classification run.*task: {name: classification}"
    ):
        require_classes("regression")


def test_input_space_model_applies_the_scaler(digits):
    model, x, y = digits
    flat = x.flatten(1)[:16]
    scaler = {"kind": "standard", "shift": [0.3] * 64, "scale": [0.5] * 64}
    net = torch.nn.Linear(64, 3)
    wrapped = InputSpaceModel(net, scaler)
    assert torch.allclose(wrapped(flat), net(apply_scaler(flat, scaler)))
    # a single binary logit z becomes the two-class logits [0, z]
    binary = InputSpaceModel(torch.nn.Linear(64, 1))
    out = binary(flat)
    assert out.shape == (16, 2) and torch.all(out[:, 0] == 0)


def test_robustness_curve_starts_at_the_clean_accuracy_and_falls(digits):
    model, x, y = digits
    curve = robustness_curve(model, x, y, "pgd", (0.0, 0.05, 0.2), steps=5)
    acc = [p["accuracy"] for p in curve]
    assert acc[0] == pytest.approx(accuracy(model, x, y))
    assert acc[0] > acc[1] > acc[2]

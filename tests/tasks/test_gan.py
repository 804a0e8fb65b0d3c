"""The ``gan`` task: losses, gradient penalty, n_critic, exact resume of both players, divergence
stops, config errors, and one small run through ``deepworks.recipes.train`` with its report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import deepworks.tasks.gan as gan_task
from deepworks.data.bundle import DataBundle, Split
from deepworks.errors import ConfigError
from deepworks.models.gan import GAN
from deepworks.tasks.base import Diverged
from deepworks.tasks.gan import GANTask, discriminator_loss, generator_loss, gradient_penalty
from deepworks.train.trainer import Trainer

FAST = {"progress": False, "checkpoint": None, "device": "cpu"}


def toy_images(val: bool = True, n: int = 48, seed: int = 0) -> DataBundle:
    """n random 1x8x8 'images' in [0, 1] with 3 classes (a brighter row per class)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.5
    x[torch.arange(n), 0, 2 * y] += 0.5
    return DataBundle(
        name="toy",
        train=Split(x, y),
        val=Split(x[:24], y[:24]) if val else None,
        test=None,
        task_type="classification",
        input_shape=(1, 8, 8),
        num_classes=3,
        class_names=["a", "b", "c"],
    )


def tiny_gan(seed: int = 0, **kwargs) -> GAN:
    torch.manual_seed(seed)
    kw = {"in_channels": 1, "image_size": [8, 8], "num_classes": 3, "latent_dim": 4}
    return GAN(channels=[8, 4], **(kw | kwargs))


# --- losses ---


def test_gradient_penalty_of_a_linear_critic_is_closed_form():
    """D(x) = w·x + b has ∇ₓD = w everywhere: the penalty is (‖w‖ − 1)² whatever ε, and its
    gradient with respect to w is 2 (‖w‖ − 1) w / ‖w‖ (the penalty is differentiable in D)."""
    torch.manual_seed(0)
    critic = torch.nn.Linear(6, 1)
    real, fake = torch.randn(5, 6), torch.randn(5, 6)
    gp = gradient_penalty(lambda t: critic(t).squeeze(1), real, fake)
    w = critic.weight.detach().flatten()
    norm = w.norm()
    torch.testing.assert_close(gp, (norm - 1) ** 2)
    gp.backward()
    torch.testing.assert_close(critic.weight.grad.flatten(), 2 * (norm - 1) * w / norm)


def test_gradient_penalty_interpolates_with_the_given_epsilon():
    """D(x) = ½‖x‖² has ∇ₓD = x: the penalty is mean((‖ε real + (1 − ε) fake‖ − 1)²)."""
    real = torch.randn(4, 1, 2, 3)
    fake = torch.randn(4, 1, 2, 3)
    eps = torch.tensor([0.0, 0.25, 0.5, 1.0])
    gp = gradient_penalty(lambda t: 0.5 * t.pow(2).flatten(1).sum(1), real, fake, eps)
    by_hand = []
    for i in range(4):
        mixed = eps[i] * real[i] + (1 - eps[i]) * fake[i]
        by_hand.append((math.sqrt(float(mixed.pow(2).sum())) - 1) ** 2)
    assert gp.item() == pytest.approx(np.mean(by_hand), rel=1e-5)


def test_label_smoothing_targets_real_samples_at_one_minus_s():
    d_real, d_fake = torch.randn(7), torch.randn(7)
    loss = discriminator_loss("bce", d_real, d_fake, label_smoothing=0.1)
    expected = F.binary_cross_entropy_with_logits(
        d_real, torch.full((7,), 0.9)
    ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros(7))
    torch.testing.assert_close(loss, expected)
    # the optimal real logit is logit(0.9) = log 9: D(x) = 0.9, not 1
    logit = torch.tensor([math.log(9.0)], requires_grad=True)
    discriminator_loss("bce", logit, torch.tensor([-50.0]), 0.1).backward()
    assert abs(float(logit.grad)) < 1e-6


def test_hinge_and_wasserstein_losses():
    d_real, d_fake = torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.0])
    # max(0, 1 − D(x)) + max(0, 1 + D(x̃)): real (0 + 0.5)/2, fake (0 + 1)/2
    assert float(discriminator_loss("hinge", d_real, d_fake)) == pytest.approx(0.75)
    assert float(discriminator_loss("wgan_gp", d_real, d_fake)) == pytest.approx(-1.25 - 1.5)
    assert float(generator_loss("hinge", d_fake)) == pytest.approx(1.5)
    # non-saturating: −log σ(D(x̃))
    expected = -torch.log(torch.sigmoid(d_fake)).mean()
    torch.testing.assert_close(generator_loss("bce", d_fake), expected)


# --- the schedule and resume ---


def test_n_critic_steps_the_generator_once_per_n_discriminator_steps():
    task = GANTask(loss="wgan_gp", n_critic=3)
    trainer = Trainer(epochs=2, batch_size=8, max_steps=10, **FAST)
    fit = trainer.fit(tiny_gan(d_norm="layer"), toy_images(val=False), task)
    d_state = trainer.optimizer["discriminator"].state_dict()["state"]
    g_state = trainer.optimizer["generator"].state_dict()["state"]
    assert int(d_state[0]["step"]) == 10
    assert int(g_state[0]["step"]) == 3  # after D steps 3, 6 and 9
    assert task.steps == 10
    assert {"train/wasserstein", "train/gp", "train/g_loss", "train/d_loss"} <= set(fit.metrics)


@pytest.mark.parametrize(
    "task_kwargs",
    [
        {"loss": "wgan_gp", "n_critic": 3},
        {"loss": "bce", "n_critic": 2, "label_smoothing": 0.1, "instance_noise": 0.3},
        {"loss": "hinge"},
    ],
)
def test_stop_and_resume_continues_both_players_exactly(tmp_path, task_kwargs):
    data = toy_images()
    d_norm = "layer" if task_kwargs["loss"] == "wgan_gp" else "batch"
    model_kw = {"conditional": True, "d_norm": d_norm}
    full_trainer = Trainer(epochs=2, batch_size=8, **FAST)
    full = full_trainer.fit(tiny_gan(**model_kw), data, GANTask(**task_kwargs))
    # step checkpoints only: the epoch-end one of a run stopped by max_steps records the stop
    ckpt = {"every_n_steps": 1, "every_n_epochs": None, "save_best": False, "keep_last": 1}
    cfg = FAST | {"checkpoint": ckpt}
    # stop at step 7: mid-epoch (6 batches per epoch) and mid n_critic cycle
    Trainer(epochs=2, batch_size=8, max_steps=7, run_dir=tmp_path, **cfg).fit(
        tiny_gan(**model_kw), data, GANTask(**task_kwargs)
    )
    second = Trainer(epochs=2, batch_size=8, run_dir=tmp_path, **cfg)
    resumed = second.fit(
        tiny_gan(seed=1, **model_kw),
        data,
        GANTask(**task_kwargs),
        resume=tmp_path / "checkpoints" / "last",
    )
    expected = full.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)
    for player in ("generator", "discriminator"):
        a = full_trainer.optimizer[player].state_dict()["state"]
        b = second.optimizer[player].state_dict()["state"]
        assert a.keys() == b.keys()
        for k in a:
            for key in a[k]:
                torch.testing.assert_close(a[k][key], b[k][key], rtol=0, atol=0)
    assert resumed.history[-1]["train/g_loss"] == full.history[-1]["train/g_loss"]


def test_instance_noise_anneals_linearly_to_zero_over_the_planned_steps():
    task = GANTask(instance_noise=0.2)
    Trainer(epochs=3, batch_size=8, max_steps=2, **FAST).fit(tiny_gan(), toy_images(False), task)
    assert task.planned_steps == 18  # 6 batches x 3 epochs, whatever max_steps stops at
    assert task.noise_std() == pytest.approx(0.2 * (1 - 2 / 18))
    task.steps = 18
    assert task.noise_std() == 0.0


# --- divergence ---


def test_a_nan_generator_loss_stops_and_names_the_player_and_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss = gan_task.generator_loss

    def failing(loss, d_fake):
        calls["n"] += 1
        out = real_loss(loss, d_fake)
        return out * float("nan") if calls["n"] >= 5 else out

    monkeypatch.setattr(gan_task, "generator_loss", failing)
    cfg = FAST | {"checkpoint": {"every_n_steps": 1, "keep_last": 2}}
    trainer = Trainer(epochs=2, batch_size=8, run_dir=tmp_path, **cfg)
    fit = trainer.fit(tiny_gan(), toy_images(val=False), GANTask())
    last = (tmp_path / "checkpoints" / "last").resolve()
    assert fit.stop_reason.startswith("diverged: generator loss is nan at step 5 (epoch 0)")
    assert str(last) in fit.stop_reason and last.name == "step-00000004"


def test_a_saturated_discriminator_stops_after_saturation_steps():
    task = GANTask(saturation_steps=3)
    confident = (torch.full((8,), 9.0), torch.full((8,), -9.0))  # D(x) ≈ 1, D(G(z)) ≈ 1e-4
    task._check_saturation(*confident)
    task._check_saturation(*confident)
    task._check_saturation(torch.full((8,), 9.0), torch.zeros(8))  # a fooled step resets
    task._check_saturation(*confident)
    task._check_saturation(*confident)
    with pytest.raises(Diverged, match="discriminator saturated for 3 steps"):
        task._check_saturation(*confident)
    GANTask(loss="wgan_gp", saturation_steps=1)._check_saturation(*confident)  # critics: no check


# --- config errors ---


def test_config_errors_name_the_fix():
    data = toy_images(val=False)
    with pytest.raises(ConfigError, match="model.d_norm: batch norm .* set model.d_norm: layer"):
        Trainer(epochs=1, **FAST).fit(tiny_gan(d_norm="batch"), data, GANTask(loss="wgan_gp"))
    with pytest.raises(ConfigError, match="train.optimizer: the gan task .* task.g_lr"):
        Trainer(epochs=1, optimizer={"name": "sgd", "lr": 0.1}, **FAST).fit(
            tiny_gan(), data, GANTask()
        )
    with pytest.raises(ConfigError, match="train.loss.name: .* task.loss"):
        Trainer(epochs=1, loss={"name": "mse"}, **FAST).fit(tiny_gan(), data, GANTask())
    with pytest.raises(ConfigError, match="label_smoothing: applies to loss: bce"):
        GANTask(loss="hinge", label_smoothing=0.1)
    with pytest.raises(ConfigError, match="task.name: gan .* use model.name: gan, not a Linear"):
        Trainer(epochs=1, **FAST).fit(torch.nn.Linear(64, 3), data, GANTask())
    shifted = toy_images(val=False)
    shifted.train = Split(shifted.train.x * 4 - 2, shifted.train.y)  # like scale: standard
    with pytest.raises(ConfigError, match="model.output: sigmoid .* data.scale: none"):
        Trainer(epochs=1, **FAST).fit(tiny_gan(), shifted, GANTask())


def test_conditional_gan_on_unlabelled_data_is_a_config_error(tmp_path):
    from deepworks.recipes import train

    config = {
        "data": {"name": "diabetes"},
        "model": {"name": "gan", "kind": "mlp", "conditional": True, "output": "linear"},
        "task": {"name": "gan"},
        "train": {"epochs": 1, "progress": False},
        "out": str(tmp_path),
    }
    with pytest.raises(ConfigError, match="model.conditional: .* set model.conditional: false"):
        train(config)


# --- a whole run ---


def test_a_conditional_run_writes_metrics_samples_and_report(tmp_path):
    from deepworks.recipes import train

    config = {
        "name": "cgan",
        "data": {"name": "digits", "as_image": True, "scale": "none", "classes": [0, 1, 2]},
        "model": {"name": "gan", "channels": [16, 8], "latent_dim": 8, "conditional": True},
        "task": {"name": "gan", "label_smoothing": 0.1},
        "train": {"epochs": 2, "batch_size": 256, "progress": False},
        "out": str(tmp_path),
    }
    state = torch.get_rng_state()
    run = train(config)
    assert not torch.equal(state, torch.get_rng_state())  # (training draws from it)
    m = run.metrics
    for key in ("test/fid", "test/fid_noise", "test/fid_real", "test/class_accuracy"):
        assert key in m and math.isfinite(m[key]), key
    assert {"train/g_loss", "train/d_loss", "val/fid"} <= set(run.history[-1])
    samples = sorted(p.name for p in (run.dir / "samples").iterdir())
    assert samples == ["epoch-000.npy", "epoch-001.npy", "final.npz"]
    final = np.load(run.dir / "samples" / "final.npz")
    assert final["grid"].shape == (30, 1, 8, 8)  # one row of ten per class
    assert final["labels"].tolist() == np.repeat(np.arange(3), 10).tolist()
    assert final["grid"].min() >= 0 and final["grid"].max() <= 1
    html = (run.dir / "report.html").read_text()
    for anchor in ("gan-training", "gan-progress", "gan-samples", "gan-quality"):
        assert f'id="{anchor}"' in html, anchor
    assert "classified as their conditioning class" in html


def test_evaluation_does_not_touch_the_global_rng():
    data = toy_images()
    trainer = Trainer(epochs=1, batch_size=8, **FAST)
    trainer.fit(tiny_gan(conditional=True), data, GANTask())
    state = torch.get_rng_state()
    first = trainer.evaluate(trainer.model, data.val).metrics
    second = trainer.evaluate(trainer.model, data.val).metrics
    assert torch.equal(state, torch.get_rng_state())
    assert first == second  # the same z every time

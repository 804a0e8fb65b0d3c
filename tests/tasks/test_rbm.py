"""The rbm task: CD-k training through the Trainer, the step against the model's own CD update,
persistent chains carried and restored on resume, seeded evaluation metrics, one-line errors,
and a run with its report pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepworks.config import LossConfig
from deepworks.data.bundle import DataBundle, Split
from deepworks.data.pipeline import load_dataset
from deepworks.errors import ConfigError
from deepworks.models import create_model
from deepworks.recipes import train
from deepworks.tasks.rbm import RBMTask
from deepworks.train.callbacks import Callback
from deepworks.train.trainer import Trainer

CPU = torch.device("cpu")
FAST = {"progress": False, "checkpoint": None, "device": "cpu"}
SGD = {"name": "sgd", "lr": 0.05, "momentum": 0.9}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", split={"val": 0.1, "test": 0.2}, seed=0, scale="none")


@pytest.fixture(scope="module")
def small(digits):
    """200 training digits: a few steps per epoch."""
    return DataBundle(
        name="digits-200",
        train=Split(digits.train.x[:200], digits.train.y[:200]),
        val=Split(digits.val.x[:60], digits.val.y[:60]),
        test=None,
        task_type="classification",
        input_shape=(64,),
        num_classes=10,
    )


def rbm(seed: int = 0, hidden: int = 32):
    torch.manual_seed(seed)
    return create_model("rbm", in_features=64, hidden=hidden)


def test_cd_training_lowers_reconstruction_error_and_raises_pseudo_likelihood(digits):
    model = rbm()
    trainer = Trainer(epochs=4, batch_size=32, optimizer=SGD, **FAST)
    task = RBMTask(k=1)
    task.setup(digits, LossConfig(), CPU, model)
    trainer.task = task
    start = trainer.evaluate(model, digits.val).metrics
    result = trainer.fit(model, digits, task)
    end = trainer.evaluate(model, digits.val).metrics
    assert end["recon_error"] < 0.6 * start["recon_error"]
    assert end["pseudo_log_likelihood"] > start["pseudo_log_likelihood"] + 10
    history = result.history
    assert history[-1]["train/recon_error"] < history[0]["train/recon_error"]
    # evaluation is seeded per split: the same model gives the same metrics twice
    assert trainer.evaluate(model, digits.val).metrics == end
    # free energy and its gap against the first training samples, by hand
    with torch.no_grad():
        fe_val = model.free_energy(digits.val.x).double().mean()
        fe_train = model.free_energy(digits.train.x[:1024]).double().mean()
    assert end["free_energy"] == pytest.approx(float(fe_val), rel=1e-5)
    assert end["free_energy_gap"] == pytest.approx(float(fe_val - fe_train), rel=1e-4, abs=1e-4)


def test_training_step_is_the_cd_k_update(small):
    model, twin = rbm(1), rbm(1)
    task = RBMTask(k=2)
    task.setup(small, LossConfig(), CPU, model)
    x = small.train.x[:16]
    torch.manual_seed(5)
    loss, recon = task.training_step(model, x, small.train.y[:16])
    loss.backward()
    torch.manual_seed(5)  # the same draws: v_k of two Gibbs steps from the data
    vk = twin.gibbs(x, 2)
    with torch.no_grad():
        ph0, phk = twin.p_h(x), twin.p_h(vk)
        want = (ph0.T @ x - phk.T @ vk) / len(x)  # the CD-k statistic <v h>_data - <v h>_k
    torch.testing.assert_close(-model.weight.grad, want)
    torch.testing.assert_close(-model.visible_bias.grad, (x - vk).mean(0))
    torch.testing.assert_close(-model.hidden_bias.grad, (ph0 - phk).mean(0))
    assert recon.shape == (16,) and (recon >= 0).all()


def test_persistent_chains_continue_from_step_to_step(small):
    model = rbm(2)
    task = RBMTask(k=1, persistent=True)
    task.setup(small, LossConfig(), CPU, model)
    assert task.carry_state() == {}
    x, y = small.train.x[:20], small.train.y[:20]
    task.training_step(model, x, y)
    chain = task.carry_state()["chain"]
    assert chain.shape == (20, 64)  # one chain per sample of the first batch
    torch.manual_seed(9)
    task.training_step(model, small.train.x[20:28], y[:8])  # a smaller batch: same chains
    torch.manual_seed(9)
    want = model.gibbs(chain, 1)  # the chains moved one Gibbs step from where they were
    assert torch.equal(task.carry_state()["chain"], want)


class Crash(Exception):
    pass


class CrashAt(Callback):
    """Dies right after step ``step`` (after that step's checkpoint is written)."""

    order = 100

    def __init__(self, step: int):
        self.step = step

    def on_batch_end(self, trainer, loss) -> None:
        if trainer.global_step == self.step:
            raise Crash


def test_persistent_resume_is_exact(small, tmp_path):
    """A PCD run killed mid-epoch and resumed ends with the weights and chains of one
    uninterrupted run: the chains travel in the checkpoint."""
    cfg = FAST | {"batch_size": 32, "epochs": 2, "optimizer": SGD}
    whole_task = RBMTask(persistent=True)
    whole = rbm(3)
    Trainer(**cfg).fit(whole, small, whole_task)

    run = tmp_path / "run"
    ckpt = {"every_n_steps": 9, "save_best": False}
    crashing = Trainer(**cfg | {"checkpoint": ckpt}, run_dir=run, callbacks=[CrashAt(9)])
    with pytest.raises(Crash):
        crashing.fit(rbm(3), small, RBMTask(persistent=True))
    task = RBMTask(persistent=True)
    resumed = rbm(4)  # other weights: the checkpoint replaces them
    trainer = Trainer(**cfg)
    trainer.fit(resumed, small, task, resume=run / "checkpoints" / "step-00000009")
    assert trainer.global_step == 14  # 7 batches per epoch
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(task.chain, whole_task.chain)


def test_one_line_errors(digits):
    standard = load_dataset("digits", split={"val": 0.1, "test": 0.2}, seed=0)
    cases = [
        (standard, LossConfig(), rbm(), r"data\.scale: .*\[0, 1\].*minmax"),
        (digits, LossConfig(name="mse"), rbm(), r"train\.loss: .*takes no loss"),
        (digits, LossConfig(), create_model("mlp", in_features=64, num_classes=10), "model.name"),
    ]
    for data, loss, model, message in cases:
        with pytest.raises(ConfigError, match=message) as info:
            RBMTask().setup(data, loss, CPU, model)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="k must be >= 1"):
        from deepworks.registry import TASKS

        TASKS.build("rbm", {"k": 0}, where="task")


def test_run_writes_rbm_metrics_pictures_and_report(tmp_path):
    config = {
        "name": "rbm",
        "data": {"name": "digits", "scale": "minmax"},
        "model": {"name": "rbm", "hidden": 16},
        "task": {"name": "rbm", "persistent": True, "sample_steps": 20},
        "train": {"epochs": 1, "batch_size": 64, "optimizer": SGD},
    }
    run = train(config, out=tmp_path, progress=False)
    for key in ("recon_error", "pseudo_log_likelihood", "free_energy", "free_energy_gap"):
        assert np.isfinite(run.metrics[f"test/{key}"]), key
    assert json.loads((run.dir / "evaluation.json").read_text())["task_type"] == "rbm"
    with np.load(run.dir / "rbm.npz") as pics:
        assert pics["filters"].shape == (16, 8, 8)
        assert pics["chain_steps"].tolist() == [1, 10, 20]
        assert pics["chains"].shape == (3, 10, 8, 8)
        assert pics["inputs"].shape == pics["reconstructions"].shape == (10, 8, 8)
    html = (run.dir / "report.html").read_text()
    for title in ("Learned filters", "Gibbs samples", "Reconstructions", "Fit per split"):
        assert title in html


def test_binarize_draws_binary_visible_units_each_step(small):
    model = rbm(5)
    task = RBMTask(binarize=True)
    task.setup(small, LossConfig(), CPU, model)
    x = small.train.x[:100]
    torch.manual_seed(0)
    v = task.visible(x)
    assert set(v.unique().tolist()) == {0.0, 1.0}
    assert float(v.mean()) == pytest.approx(float(x.mean()), abs=0.02)  # v ~ Bernoulli(x)
    assert not torch.equal(v, task.visible(x))  # a fresh draw each time
    assert torch.equal(RBMTask().visible(x), x)  # without binarize: the grey levels

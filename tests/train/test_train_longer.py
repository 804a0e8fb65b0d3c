"""Resuming a run with more epochs (``--resume RUN --set train.epochs=N``), for every scheduler,
and what a resumed run reports: the whole run's history and metrics, not the last process's."""

from __future__ import annotations

import json

import pytest

from deepworks.errors import ConfigError
from deepworks.recipes import train
from deepworks.registry import SCHEDULERS
from deepworks.rundir import RunDir

SCHEDULES = {
    "step": {"name": "step", "step_size": 1, "gamma": 0.5},
    "exponential": {"name": "exponential", "gamma": 0.8},
    "cosine": {"name": "cosine"},
    "one_cycle": {"name": "one_cycle"},
    "warmup": {"name": "warmup", "warmup_epochs": 1, "after": "cosine"},
    "reduce_on_plateau": {"name": "reduce_on_plateau", "patience": 0, "factor": 0.5},
}
# schedules whose shape depends on the run's length: rebuilt for the new length
SIZED = {"cosine", "one_cycle", "warmup"}


def config(scheduler: dict | None, epochs: int) -> dict:
    return {
        "name": "longer",
        "data": {"name": "digits", "split": {"val": 0.1, "test": 0.2}},
        "model": {"name": "mlp", "hidden": [16], "dropout": 0.1},
        "train": {
            "epochs": epochs,
            "batch_size": 128,
            "optimizer": {"name": "adam", "lr": 0.01},
            "scheduler": scheduler,
            "progress": False,
        },
    }


def lrs(run) -> list[float]:
    return [row["lr"] for row in json.loads(RunDir(run.dir).history_json_path.read_text())]


def test_every_scheduler_is_covered():
    assert set(SCHEDULES) == set(SCHEDULERS.names())


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_resume_to_train_longer_works_for_every_scheduler(name, tmp_path):
    sched = SCHEDULES[name]
    short = train(config(sched, 2), out=tmp_path / "a")
    first = lrs(short)
    longer = train(resume=short.dir, overrides=["train.epochs=4"])
    direct = train(config(sched, 4), out=tmp_path / "b")
    assert longer.metrics["train/epochs"] == 4
    got, want = lrs(longer), lrs(direct)
    if name in SIZED:  # the new schedule from the resumed step on
        assert got[2:] == pytest.approx(want[2:], rel=1e-6)
        assert got[:2] == first
    else:  # the schedule continues: the run is the 4-epoch run
        assert got == pytest.approx(want, rel=1e-9)
        assert longer.metrics["test/accuracy"] == direct.metrics["test/accuracy"]


def test_resume_with_fewer_epochs_than_trained_is_refused_and_changes_nothing(tmp_path):
    run = train(config(SCHEDULES["one_cycle"], 3), out=tmp_path)
    before = RunDir(run.dir).config_path.read_text()
    with pytest.raises(ConfigError, match=r"already trained 3 epoch\(s\).*train.epochs=6"):
        train(resume=run.dir, overrides=["train.epochs=2"])
    assert RunDir(run.dir).config_path.read_text() == before


def test_a_finished_run_resumed_again_reports_the_same_metrics(tmp_path):
    """The kill that lands after the last checkpoint but before metrics.json: resuming must
    report the whole run (epochs, train loss), not an empty last process."""
    run = train(config(SCHEDULES["cosine"], 3), out=tmp_path)
    rundir = RunDir(run.dir)
    metrics = json.loads(rundir.metrics_path.read_text())
    history = rundir.history_json_path.read_text()
    rundir.metrics_path.unlink()
    again = train(resume=run.dir)
    assert again.metrics["train/epochs"] == 3
    assert "train/loss" in again.metrics
    same = {k: v for k, v in again.metrics.items() if k != "train/samples_per_s"}
    assert same == {k: v for k, v in metrics.items() if k != "train/samples_per_s"}
    assert rundir.history_json_path.read_text() == history


def test_train_and_evaluate_grade_the_same_checkpoint(tmp_path):
    from deepworks.run import evaluate

    run = train(config(SCHEDULES["cosine"], 4), out=tmp_path)
    again = evaluate(run.dir)
    assert again["test/accuracy"] == run.metrics["test/accuracy"]
    assert again["graded/step"] == run.metrics["graded/step"]
    evaluation = json.loads(RunDir(run.dir).evaluation_path.read_text())
    assert evaluation["checkpoint"]["step"] == run.metrics["graded/step"]


def test_early_stopping_restores_the_same_best_weights_after_a_resume(tmp_path):
    """restore_best keeps the best epoch's weights in its state, so a run resumed after the best
    epoch still ends with them (before, the resumed process had none and kept the last)."""
    import torch

    from deepworks.data.pipeline import load_dataset
    from deepworks.models import create_model
    from deepworks.train import Trainer
    from deepworks.train.callbacks import Callback
    from deepworks.train.checkpoint import CheckpointDir

    class Crash(Callback):
        order = 100  # after the epoch's checkpoint

        def on_epoch_end(self, trainer, logs):
            if trainer.epoch == 6:
                raise RuntimeError("crash")

    data = load_dataset("digits", split={"val": 0.1, "test": 0.2}, seed=0)

    def fit(run_dir, callbacks=(), resume=None):
        torch.manual_seed(0)
        model = create_model("mlp", in_features=64, num_classes=10, hidden=[16])
        trainer = Trainer(
            epochs=8,
            batch_size=128,
            optimizer={"name": "adam", "lr": 0.05},  # noisy: the best epoch is not the last
            early_stopping={"monitor": "val/loss", "patience": 8, "restore_best": True},
            progress=False,
            run_dir=run_dir,
            callbacks=list(callbacks),
        )
        return trainer.fit(model, data, resume=resume)

    whole = fit(tmp_path / "whole")
    with pytest.raises(RuntimeError, match="crash"):
        fit(tmp_path / "cut", [Crash()])
    last = CheckpointDir(tmp_path / "cut" / "checkpoints").newest_valid()
    resumed = fit(tmp_path / "cut", resume=last)
    assert resumed.best["epoch"] == whole.best["epoch"] < 6  # best before the crash
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

"""Metric specs: lookup with split prefixes and patterns, one-line errors, every task declares
what it emits (checked on the runs of the example configs in tests/test_examples.py)."""

from __future__ import annotations

import pytest

from deepworks.errors import ConfigError
from deepworks.evaluate.specs import MetricSpec, find, resolve, split_name
from deepworks.registry import TASKS
from deepworks.tasks.autoencoder import AnomalyDetection, Autoencoder
from deepworks.tasks.base import Task
from deepworks.tasks.classification import Classification
from deepworks.train.specs import run_metrics

CLASSIFICATION = Classification.metrics


@pytest.mark.parametrize(
    "key, prefix, name",
    [
        ("val/accuracy", "val", "accuracy"),
        ("test/top3_accuracy", "test", "top3_accuracy"),
        ("best/val/f1_macro", "best/val", "f1_macro"),
        ("best/epoch", "best", "epoch"),
        ("graded/step", "graded", "step"),
        ("lr/group1", "", "lr/group1"),
        ("accuracy", "", "accuracy"),
    ],
)
def test_split_name(key, prefix, name):
    assert split_name(key) == (prefix, name)


@pytest.mark.parametrize(
    "name",
    [
        "val/accuracy",
        "accuracy",
        "val/balanced_accuracy",
        "test/top3_accuracy",
        "val/f1_macro",
        "val/precision_weighted",
        "val/recall_micro",
        "val/roc_auc",
        "train/accuracy",
        "best/val/accuracy",
    ],
)
def test_scores_of_a_classifier_are_maximised(name):
    assert find(name, CLASSIFICATION).direction == "max"


@pytest.mark.parametrize("name", ["val/loss", "loss", "train/loss", "val/log_loss"])
def test_losses_of_a_classifier_are_minimised(name):
    assert find(name, CLASSIFICATION).direction == "min"


@pytest.mark.parametrize(
    "task, name, direction",
    [
        ("regression", "val/r2", "max"),
        ("regression", "val/mse", "min"),
        ("forecasting", "val/mae_h3", "min"),
        ("forecasting", "val/mae_vs_seasonal_naive", "min"),
        ("gan", "val/fid", "min"),
        ("vae", "val/elbo", "max"),
        ("rbm", "val/pseudo_log_likelihood", "max"),
        ("trades", "test/robust_accuracy@0.1", "max"),
        ("anomaly_detection", "val/threshold", None),
    ],
)
def test_directions_come_from_the_task(task, name, direction):
    assert find(name, TASKS.get(task).metrics).direction == direction


def test_an_unknown_metric_is_a_one_line_error_with_a_close_match():
    with pytest.raises(ConfigError) as info:
        resolve("val/acuracy", CLASSIFICATION, task="classification", where="train.x.monitor")
    message = str(info.value)
    assert message.startswith("train.x.monitor: 'val/acuracy' is not a metric of the classif")
    assert "did you mean 'val/accuracy'?" in message and "val/f1_macro" in message
    assert "\n" not in message
    # undeclared names are never guessed: not by their look, not by their prefix
    for name in ("val/episode_return", "val/success_rate", "val/mape", "val/dice_loss"):
        with pytest.raises(ConfigError, match="is not a metric"):
            resolve(name, CLASSIFICATION, task="classification")


def test_a_figure_that_is_no_score_cannot_be_monitored():
    with pytest.raises(ConfigError, match="not a score"):
        resolve("val/threshold", AnomalyDetection.metrics, task="anomaly_detection")


def test_patterns_labels_and_formats():
    spec = find("test/top5_accuracy", CLASSIFICATION)
    assert spec.name == "top*_accuracy" and spec.label_for("top5_accuracy") == "Top-5 accuracy"
    assert find("val/f1_macro", CLASSIFICATION).label_for() == "F1 macro"
    assert find("val/accuracy", CLASSIFICATION).format(0.96123) == "96.12%"
    assert find("val/loss", CLASSIFICATION).format(0.123456) == "0.1235"
    # exact names win over patterns
    specs = (MetricSpec("mae_h*", "min", label="MAE, step {}"), MetricSpec("mae_h1", "max"))
    assert find("val/mae_h1", specs).direction == "max"
    assert find("val/mae_h7", specs).label_for("mae_h7") == "MAE, step 7"


def test_a_subclass_extends_its_parents_specs():
    names = [s.name for s in AnomalyDetection.metrics]
    assert names[0] == "roc_auc" and "mse" in names and names[-1] == "loss"
    assert {s.name for s in Autoencoder.metrics} < set(names)
    assert Task.metrics == (MetricSpec("loss", "min", headline=True, label="Loss"),)

    class Mine(Classification):
        metrics = (MetricSpec("accuracy", "min"), MetricSpec("kappa", "max"))

    assert find("val/accuracy", Mine.metrics).direction == "min"  # redeclared: its own wins
    assert [s.name for s in Mine.metrics][:2] == ["accuracy", "kappa"]
    assert len({s.name for s in Mine.metrics}) == len(Mine.metrics)


def test_bad_declarations_fail_at_once():
    with pytest.raises(ValueError, match="direction"):
        MetricSpec("x", "up")
    with pytest.raises(ValueError, match="twice"):

        class Twice(Task):
            metrics = (MetricSpec("x", "max"), MetricSpec("x", "min"))


@pytest.mark.parametrize("name", TASKS.names())
def test_every_task_declares_loss_and_a_headline(name):
    task = TASKS.get(name)
    assert find("val/loss", task.metrics).direction == "min"
    assert any(s.headline and s.name != "loss" for s in task.metrics), name
    for spec in task.metrics:
        assert spec.label_for(), spec  # a label for people
        spec.format(0.5)


def test_run_metrics_add_the_loop_and_the_callbacks():
    specs = run_metrics("classification")
    for key in (
        "epoch",
        "time",
        "lr",
        "lr/group1",
        "train/samples_per_s",
        "best/epoch",
        "graded/step",
    ):
        assert find(key, specs) is not None, key
    assert find("val/accuracy", specs).direction == "max"
    assert [s.name for s in run_metrics("no_such_task")][0] == "loss"


def test_an_undeclared_monitor_fails_before_a_run_directory_is_made(cli, tiny_config, tmp_path):
    out = tmp_path / "out"
    bad = "train.early_stopping={monitor: val/acuracy}"
    result = cli("train", tiny_config, "--out", out, "--set", bad)
    assert result.rc == 2, str(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert (
        "train.early_stopping.monitor: 'val/acuracy' is not a metric of the classification task; "
        "did you mean 'val/accuracy'? (choices: val/accuracy, val/f1_macro" in lines[0]
    )
    assert not out.exists() or not any(out.iterdir())  # no run directory

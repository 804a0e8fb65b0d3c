"""The profiler callback: a trace, the step-time split and the top operators."""

from __future__ import annotations

import json

import pytest
import torch

from deepworks.data.pipeline import load_dataset
from deepworks.models import create_model
from deepworks.train.callbacks import Profiler
from deepworks.train.trainer import Trainer

FAST = {"progress": False, "checkpoint": None, "device": "cpu"}


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", split={"val": 0.1, "test": 0.1}, seed=0)


def test_profiler_writes_a_trace_and_splits_the_step_time(data, tmp_path):
    lines: list[str] = []
    prof = Profiler(wait=1, warmup=1, active=4, out_dir=str(tmp_path), printer=lines.append)
    model = create_model("mlp", in_features=64, num_classes=10)
    Trainer(epochs=1, batch_size=32, callbacks=[prof], **FAST).fit(model, data)
    trace = json.loads((tmp_path / "trace.json").read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert {"deepworks.forward", "deepworks.backward", "deepworks.optimizer"} <= names
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 4
    split = summary["split_ms"]
    assert split["forward"] > 0 and split["backward"] > 0 and split["optimizer"] > 0
    assert sum(split.values()) == pytest.approx(summary["step_ms"], rel=0.05)
    assert 0 < summary["outside_model_fraction"] < 1
    assert any("addmm" in op["name"] or "linear" in op["name"] for op in summary["top_ops"])
    assert any("outside the model" in line for line in lines)


def test_without_a_run_directory_nothing_is_written(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prof = Profiler(wait=0, warmup=1, active=2)
    Trainer(epochs=1, batch_size=64, callbacks=[prof], **FAST).fit(
        create_model("mlp", in_features=64, num_classes=10), data
    )
    assert prof.summary["steps"] == 2
    assert not any(tmp_path.iterdir())


def test_training_is_unchanged_by_profiling(data, tmp_path):
    def fit(callbacks):
        torch.manual_seed(0)
        model = create_model("mlp", in_features=64, num_classes=10)
        Trainer(epochs=1, batch_size=32, seed=1, callbacks=callbacks, **FAST).fit(model, data)
        return model

    plain = fit([])
    profiled = fit([Profiler(wait=1, warmup=1, active=2, out_dir=str(tmp_path))])
    for a, b in zip(plain.parameters(), profiled.parameters(), strict=True):
        assert torch.equal(a, b)


def test_cli_profile_flag(cli, tiny_config, tmp_path):
    rc, _, err = cli(
        "train",
        str(tiny_config),
        "--set",
        "train.batch_size=16",
        "--profile",
        "-q",
        "--out",
        str(tmp_path),
    )
    assert rc == 0, err
    assert "outside the model" in err
    assert list(tmp_path.glob("*/profile/trace.json"))

"""A new kind of run is one file and one registration: the toy hill-climbing recipe runs through
``deepworks train``, writes a run directory with run.json and a report, and resumes exactly."""

from __future__ import annotations

import json

import pytest
import yaml

from deepworks.cli import main
from deepworks.recipes import train
from deepworks.registry import RECIPES

from .toy_recipe import HillClimb

CONFIG = {"name": "climb", "recipe": "hill_climb", "seed": 3, "climb": {"rounds": 40}}


def write_config(tmp_path, **changes):
    path = tmp_path / "climb.yaml"
    path.write_text(yaml.safe_dump(CONFIG | changes))
    return path


def test_the_toy_recipe_is_listed():
    assert "hill_climb" in RECIPES and "supervised" in RECIPES


def test_the_toy_recipe_runs_through_deepworks_train(tmp_path, capsys):
    main(["train", str(write_config(tmp_path)), "--out", str(tmp_path / "runs"), "-q"])
    run = tmp_path / "runs" / "climb"
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["recipe"] == "hill_climb" and manifest["status"] == "finished"
    assert manifest["files"]["metrics.json"] == "train"
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["train/objective"] < 4.0  # started at 4.0 (x = 0), accepted steps only
    page = (run / "report.html").read_text()
    assert "Hill climbing" in page and "Final objective" in page
    assert "train/objective" in capsys.readouterr().out


def test_an_unknown_key_of_the_recipe_section_is_one_line(tmp_path, capsys):
    path = write_config(tmp_path, climb={"roundz": 3})
    with pytest.raises(SystemExit) as exc:
        main(["train", str(path), "--out", str(tmp_path / "runs")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "climb.roundz: unknown key; did you mean 'rounds'?" in err and "\n" not in err
    assert not (tmp_path / "runs" / "climb").exists() or not any((tmp_path / "runs").iterdir())


def test_an_interrupted_toy_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    whole = train(write_config(tmp_path), out=tmp_path / "whole")
    monkeypatch.setattr(HillClimb, "stop_after", 23)
    with pytest.raises(KeyboardInterrupt):
        train(write_config(tmp_path), out=tmp_path / "cut")
    run = tmp_path / "cut" / "climb"
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(HillClimb, "stop_after", None)
    resumed = train(resume=run)
    assert resumed.metrics == whole.metrics  # resumed from round 20's checkpoint
    assert resumed.history == whole.history
    assert json.loads((run / "run.json").read_text())["status"] == "finished"

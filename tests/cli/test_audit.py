"""``deepworks audit``: the card and its figures, checked against the commands and functions
that compute each figure on its own; one-line errors that leave the run as it was."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

import deepworks as dw
from deepworks.audit import PARTS, audit_run
from deepworks.audit.parts import FeatureRangeModel
from deepworks.evaluate.calibration import calibration
from deepworks.robust import InputSpaceModel, robust_accuracy
from deepworks.run import build_data, load_run


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A small CNN on 1x8x8 digits in [0, 1] (no scaler), one epoch."""
    config = {
        "name": "digits_audit",
        "seed": 0,
        "data": {"name": "digits", "as_image": True, "scale": "none"},
        "model": {"name": "cnn", "channels": [8, 16]},
        "task": {"name": "classification"},
        "train": {"epochs": 1, "batch_size": 64, "progress": False, "device": "cpu",
                  "optimizer": {"name": "adam", "lr": 0.01}},
    }  # fmt: skip
    return dw.train(config, out=tmp_path_factory.mktemp("audit")).dir


@pytest.fixture(scope="module")
def audited(cli, digits_run):
    """(stdout, audit.json) of ``deepworks audit`` on the digits run."""
    rc, out, err = cli(
        "audit", digits_run, "--n", "60", "--eps", "0.05,0.1,0.2", "--inputs", "2", "-q"
    )
    assert rc == 0, err
    return out, json.loads((digits_run / "audit" / "audit.json").read_text())


def test_card_is_written_with_every_part(audited, digits_run):
    out, audit = audited
    page = (digits_run / "audit" / "audit.html").read_text()
    for title in ("Summary", "Calibration", "Adversarial robustness", "Explanations",
                  "Per-class errors", "What was run"):  # fmt: skip
        assert f"<h2>{title}</h2>" in page
    assert "<link" not in page and "<script" not in page  # self-contained
    images = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', page)
    assert len(images) == len(audit["pictures"])
    expected = {"reliability", "robustness", "adversarial", "explain_ig", "explain_grad_cam",
                "confusion"}  # fmt: skip
    assert expected <= set(audit["pictures"])
    assert set(audit["timings"]) == {"load", *PARTS}
    assert f"card:   {digits_run / 'audit' / 'audit.html'}" in out
    for grade in audit["grades"]:  # the printed summary table holds every grade
        assert grade["name"] in out and grade["text"] in out
    model = audit["model"]
    assert model["parameters"] == sum(p.numel() for p in load_run(digits_run)[1].parameters())
    assert model["latency_ms"] > 0 and model["throughput_per_s"] > 0
    weights = digits_run / "checkpoints" / "best" / "model.safetensors"
    assert model["size_mb"] == pytest.approx(weights.stat().st_size / 1e6)


def test_metrics_match_deepworks_evaluate(cli, audited, digits_run):
    _, audit = audited
    rc, out, err = cli("evaluate", digits_run, "--json")
    assert rc == 0, err
    evaluated = json.loads(out)
    for key in ("test/accuracy", "test/f1_macro", "test/loss"):
        assert audit["metrics"][key] == pytest.approx(evaluated[key], abs=1e-9)
    accuracy = next(g for g in audit["grades"] if g["name"] == "accuracy")
    assert accuracy["value"] == pytest.approx(evaluated["test/accuracy"])


def test_figures_match_direct_calls(audited, digits_run):
    _, audit = audited
    cfg, model, _ = load_run(digits_run)
    model.eval()
    data = build_data(cfg)
    x, y = data.test.x, data.test.y
    with torch.no_grad():
        prob = model(x).softmax(-1).numpy()
    cal = calibration(prob, y.numpy(), 15)
    assert audit["calibration"]["ece"] == pytest.approx(cal.ece, abs=1e-6)
    assert audit["calibration"]["brier"] == pytest.approx(cal.brier, abs=1e-6)
    assert sum(b["count"] for b in audit["calibration"]["bins"]) == len(y)

    rob = audit["robustness"]
    assert rob["samples"] == 60 and rob["clip"] == [0.0, 1.0] and rob["middle_eps"] == 0.1
    space = InputSpaceModel(model, None)
    for method in ("pgd", "fgsm"):
        curve = {r["eps"]: r["robust_accuracy"] for r in rob["curves"][method]}
        assert list(curve) == [0.0, 0.05, 0.1, 0.2]
        for eps in (0.05, 0.2):
            direct = robust_accuracy(space, x[:60], y[:60], method, eps, seed=0)
            assert curve[eps] == pytest.approx(direct, abs=1e-9)
        assert curve[0.0] >= max(curve[0.05], curve[0.2])  # robust <= clean
    robust = next(g for g in audit["grades"] if g["name"].startswith("robust acc"))
    assert robust["value"] == pytest.approx(
        next(r["robust_accuracy"] for r in rob["curves"]["pgd"] if r["eps"] == 0.1)
    )

    for method in ("ig", "grad_cam"):
        fig = audit["explanations"]["methods"][method]
        assert -1 <= fig["rho"] <= 1 and fig["passed"] == (fig["rho"] < 0.5)
        assert len(fig["rhos"]) == 2 and fig["rho"] == pytest.approx(np.mean(fig["rhos"]))

    errors = audit["errors"]
    cm = np.asarray(errors["confusion_matrix"])
    wrong = (prob.argmax(1) != y.numpy()).sum()
    assert cm.sum() == len(y) and errors["errors"] == wrong
    if errors["confused_pairs"]:
        top = errors["confused_pairs"][0]
        off = cm - np.diag(np.diag(cm))
        assert top["count"] == off.max()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eps", "1.5"], "eps 1.5 is outside the input range [0, 1]"),
        (["--eps", "0.1,x"], "--eps '0.1,x'"),
        (["--n", "0"], "--n 0: attack at least 1 test sample"),
        (["--method", "nope"], "--method"),
        (["--checkpoint", "middle"], "--checkpoint 'middle'"),
        (["--inputs", "0"], "--inputs 0"),
    ],
)
def test_bad_options_exit_2_and_write_nothing(cli, digits_run, tmp_path, snapshot, args, message):
    run = tmp_path / "run"
    shutil.copytree(digits_run, run, symlinks=True, ignore=shutil.ignore_patterns("audit"))
    before = snapshot(run)
    rc, out, err = cli("audit", run, *args, "-q")
    assert rc == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert snapshot(run) == before


def test_not_a_run_or_no_checkpoint_is_one_line(cli, digits_run, tmp_path, snapshot):
    rc, _, err = cli("audit", tmp_path / "missing", "-q")
    assert rc == 2 and "no such run directory" in err and len(err.strip().splitlines()) == 1
    run = tmp_path / "run"
    shutil.copytree(digits_run, run, symlinks=True, ignore=shutil.ignore_patterns("audit"))
    shutil.rmtree(run / "checkpoints")
    before = snapshot(run)
    rc, _, err = cli("audit", run, "-q")
    assert rc == 2 and "has no checkpoints" in err and len(err.strip().splitlines()) == 1
    assert snapshot(run) == before


def test_tabular_and_regression_runs(tmp_path):
    """A tabular classifier: feature bars, no image parts; a regressor: notes, no classes."""
    base = {"seed": 0, "train": {"epochs": 1, "batch_size": 64, "progress": False,
                                 "device": "cpu"}}  # fmt: skip
    tabular = dw.train(
        base | {"name": "bc", "data": {"name": "breast_cancer"},
                "model": {"name": "mlp", "hidden": [8]}, "task": {"name": "classification"}},
        out=tmp_path,
    ).dir  # fmt: skip
    seen = []
    audit = audit_run(tabular, n=40, inputs=2, on_progress=lambda p, d, t: seen.append(p))
    assert [p for p in seen if p in PARTS] == list(PARTS) and seen[-1] == "done"
    assert {"reliability", "robustness", "explain_ig", "confusion"} <= set(audit["pictures"])
    assert not {"adversarial", "misclassified", "explain_grad_cam"} & set(audit["pictures"])
    # tabular features: eps is a fraction of each feature's training range
    rob = audit["robustness"]
    assert rob["clip"] == [0.0, 1.0] and rob["eps"] == [0.05, 0.1, 0.2]
    cfg, model, _ = load_run(tabular)
    data = build_data(cfg)
    info = json.loads((tabular / "data.json").read_text())
    shift, scale = (torch.tensor(info["scaler"][k]) for k in ("shift", "scale"))
    raw_train, raw_test = data.train.x * scale + shift, data.test.x[:40] * scale + shift
    lo, hi = raw_train.min(0).values, raw_train.max(0).values
    space = FeatureRangeModel(model.eval(), info["scaler"], lo, hi)
    unit = (raw_test - lo) / (hi - lo)
    assert space(unit).argmax(1).tolist() == model(data.test.x[:40]).argmax(1).tolist()
    direct = robust_accuracy(space, unit, data.test.y[:40], "pgd", 0.1, seed=0)
    assert rob["curves"]["pgd"][2]["robust_accuracy"] == pytest.approx(direct, abs=1e-9)
    assert "features" not in audit and audit["explanations"]["inputs"] == 2

    regression = dw.train(
        base | {"name": "db", "data": {"name": "diabetes"},
                "model": {"name": "mlp", "hidden": [8]}, "task": {"name": "regression"}},
        out=tmp_path,
    ).dir  # fmt: skip
    audit = audit_run(regression, n=10, eps="0.1", inputs=1)
    assert "calibration" not in audit and "robustness" not in audit and "errors" not in audit
    assert set(audit["notes"]) == {"calibration", "robustness", "errors"}
    assert "test/r2" in audit["metrics"] and audit["grades"][0]["name"] == "R²"
    page = (regression / "audit" / "audit.html").read_text()
    assert "this is a regression run" in page and "explain_ig" in audit["pictures"]

"""write_report on fake run directories: sections, images, self-containment and errors."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from deepworks.errors import DeepworksError
from deepworks.report import write_report

from .fake_runs import CLASS_NAMES

PNG_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def _pngs(html: str) -> list[Image.Image]:
    images = []
    for payload in PNG_URI.findall(html):
        image = Image.open(io.BytesIO(base64.b64decode(payload)))
        image.load()
        images.append(image)
    return images


def _assert_self_contained(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert 'src="http' not in html and "src='http" not in html
    assert "<script src" not in html
    assert "<link" not in html  # no external stylesheets
    assert "url(http" not in html


@pytest.mark.parametrize(
    ("kind", "n_images", "sections"),
    [
        ("images", 6, ["curves", "confusion", "per-class", "mistakes", "data", "model"]),
        ("tabular", 5, ["curves", "confusion", "per-class", "data", "model"]),
        ("regression", 4, ["curves", "predictions", "data"]),
        ("minimal", 0, []),
    ],
)
def test_report_per_kind_of_run(report_of, kind, n_images, sections):
    path, html = report_of(kind)
    assert not path.with_name("report.html.tmp").exists()
    _assert_self_contained(html)
    images = _pngs(html)
    assert len(images) == n_images
    for image in images:
        assert image.format == "PNG"
        assert 150 <= image.width <= 1600 and 150 <= image.height <= 1600, image.size
        assert np.asarray(image.convert("L")).std() > 5  # drawn on, not a blank canvas
    all_sections = {"curves", "confusion", "per-class", "mistakes", "predictions", "data", "model"}
    for anchor in all_sections:
        assert (f'id="{anchor}"' in html) == (anchor in sections), anchor
    assert 'id="config"' in html and 'id="results"' in html


def test_classification_report_shows_metrics_and_class_names(report_of):
    path, html = report_of("images")
    metrics = json.loads(path.with_name("metrics.json").read_text())
    assert "digits_cnn" in html.split("</h1>")[0]  # run name in the title
    assert f"{100 * metrics['test/accuracy']:.2f}%" in html  # headline card
    assert f"{metrics['test/accuracy']:.4g}" in html  # metrics table
    assert "0.3137" in html and "48,214" in html
    for name in CLASS_NAMES:
        assert name in html
    assert "digit_" in html and "→" in html and "misclassified test examples" in html
    assert "1 × 8 × 8" in html  # data summary
    assert "Trainable parameters: 650" in html  # model summary
    assert '<span class="k">optimizer</span>' in html  # config as highlighted YAML


def test_regression_report_shows_its_plots(report_of):
    _, html = report_of("regression")
    assert "0.9312" in html and "R²" in html
    assert "Learning rate per epoch" not in html  # a constant lr is not plotted
    assert "Predicted vs true" in html and "Residuals" in html


def test_minimal_run_shows_results_and_config(report_of):
    _, html = report_of("minimal")
    assert "86.67%" in html and "tiny" in html and "iris" in html


def test_empty_run_directory_still_gets_a_page(tmp_path):
    html = write_report(tmp_path).read_text(encoding="utf-8")
    assert "Nothing to show" in html
    assert tmp_path.name in html


def test_confusion_matrix_from_predictions_when_evaluation_is_missing(tabular_classification_run):
    run = tabular_classification_run
    (run / "evaluation.json").unlink()
    (run / "data.json").unlink()
    html = write_report(run).read_text(encoding="utf-8")
    assert 'id="confusion"' in html and 'id="per-class"' in html
    assert len(_pngs(html)) == 5


def test_run_without_validation_split(tabular_classification_run):
    history_csv = tabular_classification_run / "history.csv"
    history = history_csv.read_text().splitlines()
    keep = [i for i, c in enumerate(history[0].split(",")) if not c.startswith("val/")]
    lines = [",".join(line.split(",")[i] for i in keep) for line in history]
    history_csv.write_text("\n".join(lines) + "\n")
    html = write_report(tabular_classification_run).read_text(encoding="utf-8")
    assert 'id="curves"' in html
    assert len(_pngs(html)) == 4  # loss and lr; no metric panels without validation


def test_rewrite_replaces_the_report(minimal_run):
    first = write_report(minimal_run).read_text()
    (minimal_run / "metrics.json").write_text(json.dumps({"test/accuracy": 0.5}))
    second = write_report(minimal_run).read_text()
    assert first != second and "50.00%" in second


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("metrics.json", '{"test/accuracy": 0.9', "not valid JSON"),
        ("metrics.json", "[1, 2]", "expected a JSON object"),
        ("evaluation.json", '{"confusion_matrix": [[1, 2], [3]]}', "confusion_matrix"),
        ("data.json", "{name: digits}", "not valid JSON"),
        ("config.yaml", "name: [unclosed", "not valid YAML"),
        ("history.csv", "epoch,train/loss\n1,0.5\n2,oops\n", "'oops' is not a number"),
        ("predictions.npz", "not a zip", "not a readable .npz"),
    ],
)
def test_corrupt_file_raises_one_line_error_naming_it(minimal_run, name, content, problem):
    (minimal_run / "report.html").write_text("previous report")
    (minimal_run / name).write_text(content)
    with pytest.raises(DeepworksError) as info:
        write_report(minimal_run)
    message = str(info.value)
    assert name in message and problem in message
    assert "\n" not in message
    assert (minimal_run / "report.html").read_text() == "previous report"  # left untouched


def test_missing_run_directory_raises(tmp_path):
    with pytest.raises(DeepworksError, match="does_not_exist"):
        write_report(tmp_path / "does_not_exist")

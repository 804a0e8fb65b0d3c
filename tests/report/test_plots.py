"""The reusable figure helpers of deepworks.report.plots."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from deepworks.report import plots


def _decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    image.load()
    return image


def _history(n: int = 5, lr: float | None = 0.1) -> list[dict]:
    rows = []
    for e in range(1, n + 1):
        row = {"epoch": e, "lr": lr * 0.5**e if lr else 0.01, "train/loss": 1 / e}
        row["val/loss"] = 1.2 / e if e != 2 else None
        row["val/accuracy"] = 1 - 0.5 / e
        row["train/accuracy"] = 1 - 0.4 / e
        rows.append(row)
    return rows


def test_fig_to_data_uri_round_trips_a_png():
    fig = plots.new_figure(4, 3)
    fig.add_subplot().plot([0, 1], [0, 1])
    image = _decode(plots.fig_to_data_uri(fig))
    assert 300 <= image.width <= 420 and 200 <= image.height <= 320  # ~100 dpi


def test_learning_curves_figures_and_labels():
    figures = plots.learning_curves(_history())
    assert [f.get_label() for f in figures] == ["loss", "metrics", "lr"]
    loss_axes = figures[0].axes[0]
    assert {line.get_label() for line in loss_axes.get_lines()} == {"train/loss", "val/loss"}
    # constant learning rate: no lr figure; rows given as CSV strings work too
    rows = [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in _history(lr=None)]
    assert [f.get_label() for f in plots.learning_curves(rows)] == ["loss", "metrics"]
    assert plots.learning_curves([]) == []
    assert plots.learning_curves([{"epoch": 1}]) == []


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_matrix_figure_annotates_cells(normalize):
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    fig = plots.confusion_matrix_figure(cm, ["cat", "dog", "bird"], normalize=normalize)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 9
    assert ("83%" if normalize else "5") in texts
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "bird"]
    _decode(plots.fig_to_data_uri(fig))


def test_confusion_matrix_figure_many_classes_uses_colorbar():
    cm = np.random.default_rng(0).integers(0, 20, (40, 40))
    fig = plots.confusion_matrix_figure(cm, None)
    assert len(fig.axes) == 2 and not fig.axes[0].texts


@pytest.mark.parametrize("shape", [(6, 1, 12, 12), (6, 3, 16, 16), (6, 12, 12), (6, 16, 16, 3)])
def test_image_grid_layouts(shape):
    images = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    fig = plots.image_grid(images, [f"{i}→{i + 1}" for i in range(6)], ncols=4)
    assert len(fig.axes) == 6
    assert fig.axes[0].get_title() == "0→1"
    image = _decode(plots.fig_to_data_uri(fig))
    assert image.width > image.height  # 4 columns, 2 rows


def test_regression_figures():
    rng = np.random.default_rng(0)
    y = rng.normal(size=100)
    for fig in (plots.regression_scatter(y, y + 0.1), plots.residual_histogram(y, y + 0.1)):
        _decode(plots.fig_to_data_uri(fig))
    assert "R² = " in plots.regression_scatter(y, y).axes[0].texts[0].get_text()

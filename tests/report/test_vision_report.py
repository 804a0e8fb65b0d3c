"""The conv-net sections of the report: first-layer filters and feature maps."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from matplotlib.image import imread
from safetensors.torch import save_file

import deepworks as dw
from deepworks.errors import CheckpointError
from deepworks.report import write_report
from deepworks.report.run_files import load_run
from deepworks.report.vision import first_conv_weight, save_feature_maps, sections

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def section_html(html: str, anchor: str) -> str | None:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    return match.group(1) if match else None


def pngs(fragment: str) -> list[np.ndarray]:
    """Decode every embedded PNG of an HTML fragment (fails on an invalid one)."""
    out = []
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', fragment):
        raw = base64.b64decode(data)
        assert raw.startswith(PNG)
        image = imread(io.BytesIO(raw), format="png")
        assert image.ndim == 3 and min(image.shape[:2]) >= 20
        out.append(image)
    return out


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vision")
    run = dw.train(
        ROOT / "examples" / "digits_cnn.yaml",
        overrides={"train.epochs": 1, "model.channels": [8, 16]},
        out=out,
        progress=False,
    )
    x = np.load(run.dir / "predictions.npz")["x"][:1]  # (1, 1, 8, 8), scaled like training
    path = save_feature_maps(run.model, x, run.dir)
    assert path == run.dir / "feature_maps.npz"
    report = write_report(run.dir)
    return run, report.read_text(encoding="utf-8")


def test_cnn_run_report_has_filters_and_feature_maps(cnn_run):
    run, html = cnn_run
    filters = section_html(html, "filters")
    assert filters is not None and "First-layer filters" in filters
    assert len(pngs(filters)) == 1
    assert "all 8 3×3 filters" in filters and "blocks.0.0.0" in filters
    maps = section_html(html, "feature-maps")
    assert maps is not None
    assert len(pngs(maps)) == 2  # the input image and the grid of maps
    assert 'href="#filters"' in html and 'href="#feature-maps"' in html


def test_feature_map_file_holds_the_first_block_output(cnn_run):
    run, _ = cnn_run
    with np.load(run.dir / "feature_maps.npz") as npz:
        image, maps, layer = npz["image"], npz["maps"], str(npz["layer"])
    assert image.shape == (1, 8, 8) and maps.shape == (8, 8, 8)
    assert layer == "blocks.0.0.0"
    assert (maps >= 0).all()  # after the ReLU of the block
    model = run.model.eval()
    with torch.no_grad():
        want = model.blocks[0][0](torch.as_tensor(image)[None])[0].numpy()
    np.testing.assert_allclose(maps, want, rtol=1e-5, atol=1e-6)


def test_filters_come_from_the_first_conv(cnn_run):
    run, _ = cnn_run
    name, weight = first_conv_weight(run.dir, yaml.safe_load((run.dir / "config.yaml").read_text()))
    assert name == "blocks.0.0.0" and weight.shape == (8, 1, 3, 3)
    # without a usable config the first 4-D tensor that takes the input's channels is chosen
    name, weight = first_conv_weight(run.dir, None)
    assert weight.shape[1] == 1


def test_save_feature_maps_restores_the_mode_and_accepts_chw(tmp_path):
    model = dw.create_model("resnet", in_channels=3, num_classes=4, image_size=16, width=8)
    model.train()
    save_feature_maps(model, torch.randn(3, 16, 16), tmp_path)
    assert model.training
    with np.load(tmp_path / "feature_maps.npz") as npz:
        assert npz["image"].shape == (3, 16, 16) and npz["maps"].shape == (8, 16, 16)
        assert str(npz["layer"]) == "stem.0"
    with pytest.raises(ValueError, match="one image"):
        save_feature_maps(model, torch.randn(2, 3, 16, 16), tmp_path)


def test_mlp_run_has_neither_section(tmp_path):
    run = dw.train(
        ROOT / "examples" / "digits_mlp.yaml",
        overrides={"train.epochs": 1, "model.hidden": [16]},
        out=tmp_path,
        progress=False,
    )
    html = (run.dir / "report.html").read_text(encoding="utf-8")
    assert section_html(html, "filters") is None
    assert section_html(html, "feature-maps") is None
    assert sections(load_run(run.dir), "test") == []


def fake_run(path: Path, weight: torch.Tensor, which: str = "best") -> Path:
    ckpt = path / "checkpoints" / which
    ckpt.mkdir(parents=True)
    save_file({"features.conv.weight": weight, "head.weight": torch.randn(3, 4)},
              ckpt / "model.safetensors")  # fmt: skip
    return path


@pytest.mark.parametrize("in_channels", [3, 5])
def test_rgb_and_many_channel_filters(tmp_path, in_channels):
    run = fake_run(tmp_path / "run", torch.randn(80, in_channels, 5, 5), which="last")
    out = sections(load_run(run), "test")
    assert [anchor for anchor, _, _ in out] == ["filters"]
    html = out[0][2]
    assert len(pngs(html)) == 1
    assert "the first 64 of 80 5×5 filters" in html
    assert ("RGB" in html) == (in_channels == 3)
    assert ("averaged over the 5 input channels" in html) == (in_channels == 5)


def test_broken_files_are_one_line_errors(tmp_path):
    run = fake_run(tmp_path / "run", torch.randn(4, 1, 3, 3))
    (run / "feature_maps.npz").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="feature_maps.npz"):
        sections(load_run(run), "test")
    (run / "checkpoints" / "best" / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        sections(load_run(run), "test")

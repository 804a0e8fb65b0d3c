"""Render a report in headless Chromium and check the page is drawn (skipped without Chromium)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .browser import chromium, needs_chromium


@needs_chromium
def test_report_renders_in_headless_chromium(report_of, tmp_path):
    report, _ = report_of("images")
    screenshot = tmp_path / "report.png"
    args = [f"--screenshot={screenshot}", "--window-size=1200,2000", report.resolve().as_uri()]
    chromium(args, tmp_path)
    assert screenshot.is_file(), "chromium wrote no screenshot"
    pixels = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.float32)
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels.std() > 20  # header, cards and plots, not a blank page
    colors = np.unique(pixels[::8, ::8].reshape(-1, 3), axis=0)
    assert len(colors) > 50
    header = pixels[:60, :, :]  # the blue banner is drawn, so the inline CSS applied
    assert header[..., 2].mean() > header[..., 0].mean() + 40

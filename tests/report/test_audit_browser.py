"""Render an audit card in headless Chromium: the page is drawn and every picture loads
(skipped without Chromium); every embedded PNG also decodes with PIL."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from .browser import chromium, needs_chromium

# Appended to a copy of the card: once the page has loaded, write each image's natural size
# into the DOM, where --dump-dom shows it.
PROBE = (
    "<script>window.addEventListener('load', function () {"
    "var out = document.createElement('pre'); out.id = 'image-probe';"
    "out.textContent = Array.prototype.map.call(document.images, function (im) {"
    "return im.naturalWidth + 'x' + im.naturalHeight; }).join(' ');"
    "document.body.appendChild(out); });</script>"
)


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    """audit.html of a tiny digits CNN (one epoch), audited on a few samples."""
    import deepworks as dw
    from deepworks.audit import audit_run

    config = {
        "name": "digits_card",
        "seed": 0,
        "data": {"name": "digits", "as_image": True, "scale": "none"},
        "model": {"name": "cnn", "channels": [4, 8]},
        "task": {"name": "classification"},
        "train": {"epochs": 1, "batch_size": 64, "progress": False, "device": "cpu",
                  "optimizer": {"name": "adam", "lr": 0.01}},
    }  # fmt: skip
    run = dw.train(config, out=tmp_path_factory.mktemp("card")).dir
    audit = audit_run(run, n=24, eps="0.05,0.1,0.2", inputs=2)
    return run / "audit" / "audit.html", audit


def test_every_embedded_png_decodes(card):
    path, audit = card
    page = path.read_text()
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == len(audit["pictures"]) >= 6
    for data in uris:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
        assert image.format == "PNG" and min(image.size) > 50
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
        assert pixels.std() > 5  # a drawing, not a blank canvas


@needs_chromium
def test_card_renders_and_every_image_loads(card, tmp_path):
    path, audit = card
    screenshot = tmp_path / "card.png"
    chromium([f"--screenshot={screenshot}", "--window-size=1200,2400", path.resolve().as_uri()],
              tmp_path)  # fmt: skip
    assert screenshot.is_file(), "chromium wrote no screenshot"
    pixels = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.float32)
    assert pixels.shape[:2] == (2400, 1200)
    assert pixels.std() > 20 and len(np.unique(pixels[::8, ::8].reshape(-1, 3), axis=0)) > 50
    header = pixels[:60]  # the blue banner: the inline stylesheet applied
    assert header[..., 2].mean() > header[..., 0].mean() + 40

    probe = tmp_path / "probe.html"
    probe.write_text(path.read_text().replace("</body>", PROBE + "</body>"))
    result = chromium(["--dump-dom", "--virtual-time-budget=5000", probe.resolve().as_uri()],
                       tmp_path)  # fmt: skip
    found = re.search(r'<pre id="image-probe">([^<]*)</pre>', result.stdout)
    assert found, f"the probe did not run\n{result.stderr[-2000:]}"
    sizes = [tuple(map(int, s.split("x"))) for s in found.group(1).split()]
    assert len(sizes) == len(audit["pictures"])
    assert all(w > 0 and h > 0 for w, h in sizes), sizes

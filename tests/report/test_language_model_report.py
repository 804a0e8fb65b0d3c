"""The language-model sections of the report: bits per character per split, escaped samples,
the loss-by-position curve; and the sections of a real (tiny) trained run."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

import yaml

from deepworks.recipes import train
from deepworks.report import write_report
from deepworks.report.language_model import sections
from deepworks.report.run_files import load_run

PNG = b"\x89PNG\r\n\x1a\n"
NASTY = 'def f(x):\n    return "<script>alert(1)</script>" & x < 3\n'


def section_html(page: str, anchor: str) -> str | None:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    return match.group(1) if match else None


def fake_run(run: Path) -> Path:
    run.mkdir(parents=True)
    config = {"name": "lm", "data": {"name": "stdlib_code"}, "model": {"name": "rnn"}}
    (run / "config.yaml").write_text(yaml.safe_dump(config | {"task": {"name": "language_model"}}))
    metrics = {
        "train/bits_per_char": 2.5,
        "val/loss": 1.2,
        "val/perplexity": math.exp(1.2),
        "val/bits_per_char": 1.2 / math.log(2),
        "val/token_accuracy": 0.61,
        "test/loss": 1.1,
        "test/perplexity": math.exp(1.1),
        "test/bits_per_char": 1.1 / math.log(2),
        "test/token_accuracy": 0.6345,
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    evaluation = {
        "split": "test",
        "task_type": "language_model",
        "samples": [
            {"prompt": "def ", "text": NASTY},
            {"prompt": "import ", "text": "import os\n"},
        ],
        "sampling": {"temperature": 0.8, "top_k": None, "top_p": 0.9, "seed": 0},
        "loss_by_position": [1.5 - 0.01 * i for i in range(32)],
    }
    (run / "evaluation.json").write_text(json.dumps(evaluation))
    return run


def test_sections_of_a_language_model_run(tmp_path):
    run = fake_run(tmp_path / "lm")
    page = write_report(run).read_text(encoding="utf-8")
    table = section_html(page, "bits-per-char")
    assert table is not None
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
    test_row = next(r for r in rows if ">test<" in r)
    assert f"{1.1 / math.log(2):.4g}" in test_row and "63.45%" in test_row
    assert "train" in table  # the train row shows what it has
    samples = section_html(page, "samples")
    assert "<script>" not in samples  # generated text is escaped
    assert html.escape(NASTY[len("def ") :]) in samples
    assert samples.count('<pre class="sample">') == 2 and "<b>def </b>" in samples
    assert "top_p 0.9" in samples and "top_k" not in samples
    curve = section_html(page, "loss-by-position")
    data = re.findall(r'src="data:image/png;base64,([^"]+)"', curve)
    assert len(data) == 1 and base64.b64decode(data[0]).startswith(PNG)


def test_missing_parts_leave_their_sections_out(tmp_path):
    run = fake_run(tmp_path / "lm")
    (run / "evaluation.json").write_text(json.dumps({"split": "test", "samples": []}))
    (run / "metrics.json").write_text(json.dumps({"test/loss": 1.0}))
    assert sections(load_run(run), "test") == []
    evaluation = {"task_type": "language_model", "loss_by_position": [1.0, "x"]}
    (run / "evaluation.json").write_text(json.dumps(evaluation))
    assert sections(load_run(run), "test") == []


def test_report_of_a_trained_run(tmp_path):
    config = {
        "name": "tiny_lm",
        "data": {"name": "stdlib_code", "max_chars": 20_000, "max_file_chars": 1_000, "bptt": 16},
        "model": {"name": "rnn", "output": "sequence", "hidden_size": 16, "embedding_dim": 8},
        "task": {"name": "language_model", "samples": 2, "sample_length": 40},
        "train": {"epochs": 1, "max_steps": 5, "batch_size": 16, "progress": False},
    }
    run = train(config, out=tmp_path)
    assert run.metrics["test/bits_per_char"] > 0
    evaluation = json.loads((run.dir / "evaluation.json").read_text())
    assert len(evaluation["samples"]) == 2
    page = (run.dir / "report.html").read_text(encoding="utf-8")
    for anchor in ("bits-per-char", "samples", "loss-by-position"):
        assert section_html(page, anchor), anchor
    task = json.loads((run.dir / "task.json").read_text())
    assert task["tokenizer"]["kind"] == "char"  # sampling after the run needs it

    from deepworks.run import sample_run

    text = sample_run(run.dir, "import ", max_new_tokens=20, seed=3)
    assert text.startswith("import ") and len(text) == len("import ") + 20
    assert text == sample_run(run.dir, "import ", max_new_tokens=20, seed=3)

"""The seq2seq sections of the report: attention heatmaps and the decoded-examples table."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
from matplotlib.image import imread

from deepworks.report import write_report
from deepworks.report.run_files import load_run
from deepworks.report.seq2seq import attention_figure, sections


def attention_map(source: str, output: str, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    w = rng.random((len(output) + 1, len(source)))
    w /= w.sum(1, keepdims=True)
    return {"source": list(source), "output": [*output, "<eos>"], "weights": w.tolist()}


def make_run(run: Path, maps: list, examples: list) -> Path:
    run.mkdir(parents=True)
    evaluation = {
        "split": "test",
        "task_type": "seq2seq",
        "decoding": "beam 3",
        "metrics": {"exact_match": 0.5, "bleu": 0.8125, "token_accuracy": 0.9},
        "examples": examples,
        "attention": maps,
    }
    (run / "evaluation.json").write_text(json.dumps(evaluation))
    (run / "data.json").write_text(json.dumps({"name": "dates", "task_type": "seq2seq"}))
    (run / "metrics.json").write_text(json.dumps({"test/exact_match": 0.5, "test/bleu": 0.8125}))
    return run


EXAMPLES = [
    {"source": "Mar 3, 1997", "prediction": "1997-03-03", "target": "1997-03-03", "correct": True},
    {"source": "3/4/<05>", "prediction": "2005-03-05", "target": "2005-03-04", "correct": False},
]


def section_html(html: str, anchor: str) -> str | None:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    return match.group(1) if match else None


def test_report_has_attention_maps_and_marked_examples(tmp_path):
    maps = [attention_map("Mar 3, 1997", "1997-03-03", i) for i in range(5)]
    run = make_run(tmp_path / "run", maps, EXAMPLES)
    html = write_report(run).read_text(encoding="utf-8")
    attention = section_html(html, "attention")
    assert attention is not None
    uri = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", attention).group(1)
    image = imread(io.BytesIO(base64.b64decode(uri)))
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert "4 test samples" in attention  # at most four maps are drawn
    table = section_html(html, "examples")
    assert table.count("✓") == 1 and table.count("✗") == 1
    assert "&lt;05&gt;" in table  # sources are escaped
    assert "1 of 2 shown correct" in table
    assert "exact match" in table and "0.5" in table and "BLEU-4" in table and "0.8125" in table
    assert "beam 3" in table


def test_attention_figure_has_one_heatmap_per_sample():
    maps = [attention_map("2047-05-19", "2047-05-19", 0), attention_map("abc", "xy", 1)]
    fig = attention_figure(maps)
    images = [ax.images[0].get_array() for ax in fig.axes]
    assert [im.shape for im in images] == [(11, 10), (3, 3)]
    np.testing.assert_allclose(images[1], maps[1]["weights"])
    labels = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert labels == ["a", "b", "c"]
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()][-1] == "</s>"


def test_malformed_maps_are_skipped_and_missing_parts_leave_sections_out(tmp_path):
    bad = attention_map("abc", "xy", 0)
    bad["weights"] = bad["weights"][:1]  # rows do not match the output tokens
    run = make_run(tmp_path / "run", [bad], [])
    assert sections(load_run(run), "test") == []
    good = make_run(tmp_path / "run2", [attention_map("abc", "xy", 0)], [])
    assert [anchor for anchor, _, _ in sections(load_run(good), "test")] == ["attention"]

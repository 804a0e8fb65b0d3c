"""Report sections of a sequence-to-sequence run: attention maps and decoded examples.

``evaluation.json`` (written by the ``seq2seq`` task) supplies everything: the attention weights
of a few held-out samples (``attention``: source tokens, output tokens, weights per output
position over source positions), decoded examples (``examples``: source, prediction, target,
correct) and the split's metrics. An attention map that is near-diagonal in blocks shows the
alignment the decoder learned: each output token draws on the source tokens it is made from.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from deepworks.report import plots
from deepworks.report.markup import esc, figure, fmt, table
from deepworks.report.run_files import RunFiles
from deepworks.report.sections import register_sections

MAX_MAPS = 4
PER_ROW = 2


@register_sections("seq2seq", tasks=("seq2seq",))
def sections(run: RunFiles, split: str) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of each seq2seq section that ``run`` has data for."""
    evaluation = run.evaluation or {}
    out = []
    maps = [m for m in evaluation.get("attention") or [] if _valid_map(m)][:MAX_MAPS]
    if maps:
        fig = attention_figure(maps)
        caption = (
            f"Attention of the decoder for {len(maps)} {split} samples: each row is an output "
            "token, each column a source token; darker = more weight"
        )
        out.append(
            ("attention", "Attention", figure(plots.fig_to_data_uri(fig), "attention", caption))
        )
    examples = evaluation.get("examples") or []
    if examples:
        out.append(("examples", "Decoded examples", _examples(examples, evaluation, split)))
    return out


def _valid_map(m: Any) -> bool:
    if not isinstance(m, dict) or not m.get("source") or not m.get("output"):
        return False
    w = np.asarray(m.get("weights", []), dtype=float)
    return w.ndim == 2 and w.shape == (len(m["output"]), len(m["source"]))


def _label(token: str) -> str:
    """A token as an axis label: spaces made visible, specials kept short."""
    return {" ": "␣", "<eos>": "</s>", "<unk>": "?"}.get(token, token)


def attention_figure(maps: list[dict[str, Any]]) -> Figure:
    """One heatmap per sample: source tokens on x, output tokens on y, weights in [0, 1]."""
    n = len(maps)
    per_row = max(1, min(PER_ROW, n))
    nrows = math.ceil(n / per_row)
    widest = max(len(m["source"]) for m in maps)
    tallest = max(len(m["output"]) for m in maps)
    cell = 0.17  # inches per token
    width = per_row * (widest * cell + 0.9) + 0.3
    height = nrows * (tallest * cell + 0.9) + 0.2
    with plots.report_style():
        fig = plots.new_figure(width, height)
        for i, m in enumerate(maps):
            ax = fig.add_subplot(nrows, per_row, i + 1)
            w = np.asarray(m["weights"], dtype=float)
            ax.imshow(w, cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal", interpolation="nearest")
            ax.set_xticks(range(len(m["source"])), [_label(t) for t in m["source"]], fontsize=7)
            ax.set_yticks(range(len(m["output"])), [_label(t) for t in m["output"]], fontsize=7)
            ax.tick_params(length=0)
            ax.grid(False)
            ax.set_xlabel("source", fontsize=8)
            ax.set_ylabel("output", fontsize=8)
    return fig


def _examples(examples: list[dict[str, Any]], evaluation: dict[str, Any], split: str) -> str:
    """Source / prediction / target rows, marked correct or wrong, with the headline scores."""
    rows = []
    for e in examples:
        ok = bool(e.get("correct"))
        mark = (
            '<span style="color:#16a34a">✓</span>' if ok else '<span style="color:#dc2626">✗</span>'
        )
        rows.append(
            [
                f"<code>{esc(e.get('source', ''))}</code>",
                f"<code>{esc(e.get('prediction', ''))}</code>",
                f"<code>{esc(e.get('target', ''))}</code>",
                mark,
            ]
        )
    metrics = evaluation.get("metrics") or {}
    shown = sum(bool(e.get("correct")) for e in examples)
    footer = [[f"{shown} of {len(examples)} shown correct", "", "", ""]]
    for key, label in (
        ("exact_match", "exact match"),
        ("bleu", "BLEU-4"),
        ("token_accuracy", "token accuracy"),
    ):
        if isinstance(metrics.get(key), (int, float)):
            footer.append(
                [f"{label} ({split}, all samples)", esc(fmt(float(metrics[key]))), "", ""]
            )
    decoding = evaluation.get("decoding")
    note = f'<p class="note">Decoding: {esc(decoding)}.</p>' if decoding else ""
    return table(["source", "prediction", "target", ""], rows, [False] * 4, footer) + note

"""Report sections of a language-model run: bits per character per split, loss by position in
the window, and text sampled from the trained model.

``metrics.json`` supplies loss, perplexity, bits per character and token accuracy of each split;
``evaluation.json`` the samples (prompt and continuation), the sampling settings and the mean
loss at each position of the scored window.
"""

from __future__ import annotations

import math
from typing import Any

from matplotlib.figure import Figure

from deepworks.report import plots
from deepworks.report.markup import esc, figure, fmt, table
from deepworks.report.run_files import RunFiles
from deepworks.report.sections import register_sections

COLUMNS = ("bits_per_char", "perplexity", "loss", "token_accuracy")
LABELS = {
    "bits_per_char": "bits / char",
    "perplexity": "perplexity",
    "loss": "loss (nats / token)",
    "token_accuracy": "next-token accuracy",
}


@register_sections("language_model", tasks=("language_model",))
def sections(run: RunFiles, split: str) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of each language-model section that ``run`` has data for."""
    out = []
    bpc = _bpc_table(run.metrics or {})
    if bpc:
        out.append(("bits-per-char", "Bits per character", bpc))
    evaluation = run.evaluation or {}
    samples = _samples(evaluation)
    if samples:
        out.append(("samples", "Generated samples", samples))
    curve = _position_curve(evaluation.get("loss_by_position"), split)
    if curve:
        out.append(("loss-by-position", "Loss by position", curve))
    return out


def _bpc_table(metrics: dict[str, Any]) -> str:
    splits = [s for s in ("train", "val", "test") if f"{s}/bits_per_char" in metrics]
    if not splits:
        return ""
    rows = []
    for s in splits:
        cells = []
        for c in COLUMNS:
            v = metrics.get(f"{s}/{c}")
            cells.append(f"{100 * v:.2f}%" if c == "token_accuracy" and _num(v) else esc(fmt(v)))
        rows.append([esc(s)] + cells)
    html = table(["split"] + [LABELS[c] for c in COLUMNS], rows, [False] + [True] * len(COLUMNS))
    note = (
        '<p class="note">bits per character = total negative log-likelihood / characters / '
        "ln 2 (lower is better); perplexity = exp(loss). Validation and test text come from "
        "files held out of training. The train row averages over the epoch while the weights "
        "were still changing.</p>"
    )
    return html + note


def _samples(evaluation: dict[str, Any]) -> str:
    samples = evaluation.get("samples") or []
    if not samples:
        return ""
    settings = evaluation.get("sampling") or {}
    shown = ", ".join(f"{k} {v}" for k, v in settings.items() if v is not None)
    blocks = []
    for s in samples:
        prompt, text = str(s.get("prompt", "")), str(s.get("text", ""))
        rest = text[len(prompt) :] if text.startswith(prompt) else text
        # the prompt in bold, the model's continuation as it came out (escaped, monospace)
        blocks.append(f'<pre class="sample"><b>{esc(prompt)}</b>{esc(rest)}</pre>')
    note = f'<p class="note">Sampled from the trained model ({esc(shown)}); prompts in bold.</p>'
    return note + "".join(blocks)


def _position_curve(values: Any, split: str) -> str:
    if not isinstance(values, list) or len(values) < 2 or not all(_num(v) for v in values):
        return ""
    fig = Figure(figsize=(6.4, 3.2))
    ax = fig.subplots()
    ax.plot(range(1, len(values) + 1), [v / math.log(2) for v in values], color="#3b82f6")
    ax.set_xlabel("position in the scored window")
    ax.set_ylabel("bits per token")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    caption = (
        f"Mean loss at each position of the {split} windows: how much the model gains from "
        "the context it has read"
    )
    return figure(plots.fig_to_data_uri(fig), "loss by position", caption)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

"""Attention heatmaps: where each head of each layer looks, for a few test inputs.

After training, :func:`save_attention_maps` asks a model that has ``attention_maps(x)`` (a list
over layers of (B, H, L, S) attention probabilities) for the maps of the first ``n`` test
inputs and saves them in the run directory as ``attention.npz``:

- ``layer_0``, ``layer_1``, ...: (n, H, L, S) float16 maps, at most ``MAX_LAYERS`` layers,
  ``MAX_HEADS`` heads and ``MAX_LEN`` query and key positions (the first ones; a long input is
  cut, not resampled, so a cell is still one query-key pair);
- ``tokens``: (n, T) strings, the input tokens when the data carry a tokenizer (``extras``
  "tokenizer"), else the position numbers;
- ``num_layers``, ``num_heads``: the model's totals, so the report can say what was left out;
  ``split``: the split the inputs came from.

:func:`sections` draws, for the first input, one heatmap per layer (rows) and head (columns):
row i of a map is the distribution of query position i over the key positions, so a bright
diagonal is a head that looks at its own position, a bright first column a head that parks its
weight on the first token, a band below the diagonal a head that reads the previous token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from deepworks.report import plots
from deepworks.report.markup import esc, figure
from deepworks.report.run_files import RunFiles
from deepworks.report.sections import register_sections
from deepworks.rundir import ATTENTION

__all__ = ["FILE", "attention_grid", "save_attention_maps", "sections"]

FILE = ATTENTION
MAX_LAYERS, MAX_HEADS, MAX_LEN = 6, 8, 128
MAX_LABELLED = 40  # label every tick with its token up to this many positions


def save_attention_maps(
    model: nn.Module, data: Any, run_dir: str | Path, n: int = 2
) -> Path | None:
    """Save the attention maps of the first ``n`` inputs of the test split to ``attention.npz``.

    Args:
        model: Any module; nothing is saved unless it has ``attention_maps(x)``.
        data: The run's :class:`~deepworks.data.DataBundle` (the test split, else validation,
            else training supplies the inputs; ``extras["tokenizer"]`` the token strings).
        run_dir: Where to write.
        n: Inputs to keep.

    Returns:
        The file written, or None when the model has no maps or the data no inputs.
    """
    get_maps = getattr(model, "attention_maps", None)
    if not callable(get_maps):
        return None
    split_name, x = _first_inputs(data, n)
    if x is None:
        return None
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            maps = get_maps(x.to(device))
    finally:
        model.train(was_training)
    arrays: dict[str, np.ndarray] = {}
    for i, m in enumerate(list(maps)[:MAX_LAYERS]):
        m = m.detach()[:, :MAX_HEADS, :MAX_LEN, :MAX_LEN]
        arrays[f"layer_{i}"] = m.float().cpu().numpy().astype(np.float16)
    if not arrays:
        return None
    first = next(iter(maps))
    arrays["num_layers"] = np.array(len(maps))
    arrays["num_heads"] = np.array(first.shape[1])
    arrays["tokens"] = _tokens(x, getattr(data, "extras", None) or {})
    arrays["split"] = np.array(split_name)
    path = Path(run_dir) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def _first_inputs(data: Any, n: int) -> tuple[str, torch.Tensor | None]:
    """The first ``n`` inputs of the test split (else val, else train) as one tensor."""
    for name in ("test", "val", "train"):
        split = getattr(data, name, None)
        if split is None or len(split) == 0:
            continue
        x = getattr(split, "x", None)
        if isinstance(x, torch.Tensor):
            return name, x[:n]
        dataset = getattr(split, "dataset", None)  # a LazySplit: read the first items
        if dataset is not None:
            return name, torch.stack([dataset[i][0] for i in range(min(n, len(split)))])
    return "", None


def _tokens(x: torch.Tensor, extras: dict[str, Any]) -> np.ndarray:
    """(n, T) display strings: the tokens of integer inputs under the data's tokenizer, else
    the positions 0..T-1 (images, features, or no tokenizer)."""
    n, length = x.shape[0], min(x.shape[1], MAX_LEN) if x.ndim > 1 else 1
    positions = np.array([[str(i) for i in range(length)]] * n)
    saved = extras.get("tokenizer")
    if x.ndim != 2 or x.dtype.is_floating_point or not isinstance(saved, dict):
        return positions
    from deepworks.data.text.tokenizers import tokenizer_from_dict
    from deepworks.errors import DataError

    try:
        tokenizer = tokenizer_from_dict(saved)
    except (DataError, KeyError, ValueError, ImportError):
        return positions
    ids = x[:, :length].cpu().tolist()
    return np.array([[_show(_token(tokenizer, int(i))) for i in row] for row in ids])


def _token(tokenizer: Any, i: int) -> str:
    """The string of one token id (pad and the other specials included)."""
    vocab = getattr(tokenizer, "vocab", None)  # char and word tokenizers
    if vocab is not None:
        return vocab.itos[i] if 0 <= i < len(vocab.itos) else "<unk>"
    inner = getattr(tokenizer, "tokenizer", None)  # BPE: the tokenizers library's own table
    if inner is not None and hasattr(inner, "id_to_token"):
        return inner.id_to_token(i) or "<unk>"
    return tokenizer.decode([i], strip=False)


def _show(token: str) -> str:
    """Whitespace made visible, so a space or newline token still reads on an axis."""
    return token.replace(" ", "␣").replace("\n", "↵").replace("\t", "→") or "∅"


# --- report ------------------------------------------------------------------------------------
@register_sections("attention", order=20)
def sections(run: RunFiles, split: str) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of the attention section, when the run saved ``attention.npz``."""
    path = Path(run.run_dir) / FILE
    if not path.is_file():
        return []
    with np.load(path, allow_pickle=False) as f:
        keys = sorted((k for k in f.files if k.startswith("layer_")), key=lambda k: int(k[6:]))
        maps = [f[k].astype(np.float32) for k in keys]
        tokens = [str(t) for t in f["tokens"][0]] if "tokens" in f.files else []
        num_layers = int(f["num_layers"]) if "num_layers" in f.files else len(maps)
        num_heads = int(f["num_heads"]) if "num_heads" in f.files else 0
        saved_split = str(f["split"]) if "split" in f.files else split
    if not maps or maps[0].shape[0] == 0:
        return []
    first = [m[0] for m in maps]  # (H, L, S) per layer, first input
    shown_heads = max(m.shape[0] for m in first)
    num_heads = max(num_heads, shown_heads)
    length = max(m.shape[1] for m in first)
    keys_len = max(m.shape[2] for m in first)
    labels = tokens if tokens and not all(t.isdigit() for t in tokens) else []
    fig = attention_grid(first, labels)
    cut = []
    if num_layers > len(maps):
        cut.append(f"the first {len(maps)} of {num_layers} layers")
    if num_heads > shown_heads:
        cut.append(f"the first {shown_heads} of {num_heads} heads")
    if length >= MAX_LEN or keys_len >= MAX_LEN:
        cut.append(f"at most the first {MAX_LEN} positions")
    caption = (
        f"Attention weights for the first {saved_split} input: one row per layer, one column per "
        "head; row i of a map shows where query position i looks among the key positions "
        "(brighter = more weight; each map has its own colour scale)"
        + (f". Showing {', '.join(cut)}" if cut else "")
        + "."
    )
    body = (
        f'<div class="figs">{figure(plots.fig_to_data_uri(fig), "attention maps", caption)}</div>'
    )
    if labels:
        text = " ".join(labels)
        body += f'<p class="note">Input tokens: <code>{esc(text)}</code></p>'
    return [("attention", "Attention maps", body)]


def attention_grid(maps: list[np.ndarray], tokens: list[str] | None = None) -> Figure:
    """Heatmaps of one input's attention: ``maps[l]`` is layer l's (H, L, S); rows = layers,
    columns = heads. ``tokens`` label the axes when there are at most ``MAX_LABELLED``."""
    rows = len(maps)
    cols = max(m.shape[0] for m in maps)
    length = max(m.shape[1] for m in maps)
    label = bool(tokens) and len(tokens) <= MAX_LABELLED
    cell = 2.4 if label else 1.5  # inches per map: room for the token labels when drawn
    with plots.report_style():
        fig = plots.new_figure(cols * cell + 0.6, rows * cell + 0.4)
        for li, layer in enumerate(maps):
            for hi in range(cols):
                ax = fig.add_subplot(rows, cols, li * cols + hi + 1)
                ax.grid(False)
                if hi >= layer.shape[0]:
                    ax.set_axis_off()
                    continue
                a = np.nan_to_num(layer[hi])
                vmax = float(a.max()) if a.size and a.max() > 0 else 1.0
                ax.imshow(a, cmap="viridis", vmin=0.0, vmax=vmax, interpolation="nearest")
                if label:
                    n_q, n_k = a.shape
                    size = 6 if length <= 20 else 4.5
                    ax.set_yticks(range(n_q), tokens[:n_q], fontsize=size)
                    ax.set_xticks(range(n_k), tokens[:n_k], fontsize=size, rotation=90)
                    ax.tick_params(length=0, pad=1)
                else:
                    ax.set_xticks([])
                    ax.set_yticks([])
                if li == 0:
                    ax.set_title(f"head {hi}", fontsize=9)
                if hi == 0:
                    ax.set_ylabel(f"layer {li}", fontsize=9)
    return fig

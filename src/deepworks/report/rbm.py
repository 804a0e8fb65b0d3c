"""Report sections of an RBM run: the learned filters, Gibbs samples and reconstructions.

The pictures come from ``rbm.npz``, written by ``RBMTask.save_pictures`` once training is done:

- ``filters``: rows of W drawn as images. Each filter is scaled by its own largest |w| on a
  diverging map (red: the unit is excited by ink there, blue: inhibited), so the shape of weak
  filters is visible too; blob- and stroke-like filters show a model that learned parts of
  digits, noise-like ones a model that has not learned (yet).
- ``chains``: Gibbs chains started from the same binary noise, shown after 1, 10, 100, ... steps
  as p(v | h), on a fixed [0, 1] grey scale: digits emerging from noise are samples of the model.
- ``inputs`` / ``reconstructions``: held-out inputs and one Gibbs step's mean from them.
"""

from __future__ import annotations

import math

import numpy as np

from deepworks.report import plots
from deepworks.report.markup import esc, figure, fmt, table
from deepworks.report.run_files import RunFiles, read_npz
from deepworks.report.sections import register_sections
from deepworks.rundir import RBM_PICTURES

CELL = 0.56  # inches per tile (image and gap)


@register_sections("rbm", tasks=("rbm",))
def sections(run: RunFiles, split: str) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of each RBM section that ``run`` has data for."""
    pics = read_npz(run.run_dir / RBM_PICTURES)
    out = []
    if "filters" in pics:
        out.append(("rbm-filters", "Learned filters", _filters(pics["filters"])))
    if "chains" in pics and "chain_steps" in pics:
        out.append(("rbm-samples", "Gibbs samples", _chains(pics["chains"], pics["chain_steps"])))
    if "inputs" in pics and "reconstructions" in pics:
        body = _reconstructions(pics["inputs"], pics["reconstructions"], split)
        out.append(("rbm-reconstructions", "Reconstructions", body))
    numbers = _metrics_table(run.metrics or {})
    if numbers:
        out.append(("rbm-metrics", "Fit per split", numbers))
    return out


def _filters(filters: np.ndarray) -> str:
    n = len(filters)
    per_row = 16 if filters.shape[1] > 1 else 1
    scale = np.abs(filters).reshape(n, -1).max(1).reshape(n, 1, 1)
    unit = filters / np.where(scale > 0, scale, 1.0)  # each filter in [-1, 1]
    fig = plots.image_mosaic(
        plots.grid_rows(unit, per_row), vrange=(-1.0, 1.0), cmap="RdBu_r", cell=CELL
    )
    caption = (
        f"The weights of the first {n} hidden units (rows of W) as images, each scaled by its "
        "own largest |w|: red pixels turn the unit on, blue ones off."
    )
    return figure(plots.fig_to_data_uri(fig), "RBM filters", caption)


def _chains(chains: np.ndarray, steps: np.ndarray) -> str:
    labels = [f"{int(s)} step" + ("s" if int(s) != 1 else "") for s in steps]
    fig = plots.image_mosaic(chains, labels, cell=CELL)
    caption = (
        f"{chains.shape[1]} Gibbs chains started from the same binary noise, p(v | h) after each "
        "number of steps (one column per chain): what the model generates."
    )
    return figure(plots.fig_to_data_uri(fig), "Gibbs samples", caption)


def _reconstructions(inputs: np.ndarray, recon: np.ndarray, split: str) -> str:
    fig = plots.image_mosaic(np.stack([inputs, recon]), ["input", "1 Gibbs step"], cell=CELL)
    caption = f"{split.capitalize()} inputs and p(v | h ~ p(h | v)), one Gibbs step from them."
    return figure(plots.fig_to_data_uri(fig), "RBM reconstructions", caption)


_COLUMNS = (
    ("recon_error", "reconstruction error"),
    ("pseudo_log_likelihood", "pseudo-log-likelihood"),
    ("free_energy", "mean free energy"),
    ("free_energy_gap", "free-energy gap to train"),
)


def _metrics_table(metrics: dict) -> str:
    rows = []
    for split in ("train", "val", "test"):
        values = [metrics.get(f"{split}/{key}") for key, _ in _COLUMNS]
        if any(isinstance(v, int | float) and math.isfinite(v) for v in values):
            rows.append([split, *(fmt(v) if v is not None else "–" for v in values)])
    if not rows:
        return ""
    note = (
        '<p class="note">Reconstruction error: lower is better. Pseudo-log-likelihood '
        "(scikit-learn's stochastic estimate): higher is better. A free-energy gap far above "
        "zero means held-out data are much less probable under the model than training data: "
        "overfitting.</p>"
    )
    header = ["split", *(esc(name) for _, name in _COLUMNS)]
    return table(header, rows, numeric=[False] + [True] * len(_COLUMNS)) + note

"""Report sections of a GAN run: both players' losses, samples over training, final samples,
and how good the samples are.

- **Adversarial training**: per epoch, D's and G's losses (train solid, validation dashed),
  D's verdicts D(x) and D(G(z)) (for WGAN-GP the Wasserstein estimate and the gradient penalty
  instead), and the validation digits-FID. A healthy run has neither loss running off: a D loss
  near 0 with a climbing G loss means D has won and G learns nothing.
- **Samples over training**: the same fixed noise decoded after several epochs
  (``samples/epoch-XXX.npy``, written by the task's callback).
- **Generated samples**: the final model's samples (``samples/final.npz``; a conditional GAN
  one row per class), next to real test images, and a walk through latent space.
- **Sample quality**: digits-FID of the samples against the test split, framed by uniform noise
  (the baseline) and real training data (the floor), and for a conditional GAN the share of
  samples the reference classifier assigns to the class they were generated for.

Images are drawn on a fixed [lo, hi] range (the real data's), not rescaled one by one, so a
washed-out or too-dark sample shows as such.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from deepworks.report import plots
from deepworks.report.markup import esc, figure, fmt, table
from deepworks.report.run_files import RunFiles, read_npz
from deepworks.report.sections import register_sections
from deepworks.report.style import ACCENT, TRAIN, VAL, WRONG
from deepworks.rundir import SAMPLES

MAX_EPOCH_ROWS = 6  # rows of the samples-over-training figure (first, ..., last epoch)
PROGRESS_COLS = 10


@register_sections("gan", tasks=("gan",))
def sections(run: RunFiles, split: str) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of each GAN section that ``run`` has data for."""
    out = []
    for anchor, title, body in (
        ("gan-training", "Adversarial training", _training(run)),
        ("gan-progress", "Samples over training", _progress(run)),
        ("gan-samples", "Generated samples", _samples(run, split)),
        ("gan-quality", "Sample quality", _quality(run, split)),
    ):
        if body:
            out.append((anchor, title, body))
    return out


# --- curves ------------------------------------------------------------------------------------


def _series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([r.get("epoch") if r.get("epoch") is not None else i for i, r in enumerate(rows)])
    y = np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=float)
    keep = np.isfinite(y)
    return x[keep].astype(float), y[keep]


Line = tuple[str, str, str, str]  # (history key, label, colour, linestyle)


def curve_panels(rows: list[dict], panels: list[tuple[str, list[Line]]]) -> Figure:
    """One figure, one axes per (title, lines) panel, each line a history column per epoch."""
    with plots.report_style():
        fig = plots.new_figure(4.3 * len(panels), 3.3)
        for k, (title, lines) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), k + 1)
            for key, label, color, style in lines:
                x, y = _series(rows, key)
                if len(y):
                    marker = "o" if len(x) <= 30 else None
                    ax.plot(x, y, color=color, linestyle=style, label=label, marker=marker, ms=3)
            ax.set_xlabel("epoch")
            ax.set_title(title)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="best", fontsize=8)
    return fig


def _training(run: RunFiles) -> str:
    rows = run.history or []
    if not rows or not any(r.get("train/g_loss") is not None for r in rows):
        return ""
    wgan = any(r.get("train/wasserstein") is not None for r in rows)
    losses = [
        ("train/d_loss", "D loss (train)", TRAIN, "-"),
        ("train/g_loss", "G loss (train)", VAL, "-"),
        ("val/loss", "D loss (val)", TRAIN, "--"),
        ("val/g_loss", "G loss (val)", VAL, "--"),
    ]
    panels = [("Losses of both players", losses)]
    captions = ["left: D's and G's losses (validation: real validation data vs fresh fakes"]
    captions[0] += "; D's training loss includes the gradient penalty)" if wgan else ")"
    if wgan:
        lines = [
            ("train/wasserstein", "W estimate E[D(x)] − E[D(G(z))]", ACCENT, "-"),
            ("train/gp", "gradient penalty", WRONG, "-"),
        ]
        panels.append(("Critic", lines))
        captions.append("the critic's Wasserstein estimate, falling as G's samples near the data")
    else:
        lines = [
            ("train/d_real", "D(x) real", TRAIN, "-"),
            ("train/d_fake", "D(G(z)) fake", VAL, "-"),
        ]
        panels.append(("Discriminator's verdicts", lines))
        captions.append("D's mean verdict on real and fake training batches (0.5 each: fooled)")
    if any(r.get("val/fid") is not None for r in rows):
        panels.append(("Sample FID (val)", [("val/fid", "digits-FID", ACCENT, "-")]))
        captions.append("digits-FID of fixed-noise samples against the validation split")
    caption = "Per epoch. " + "; ".join(captions[:1] + [f"then {c}" for c in captions[1:]])
    fig = curve_panels(rows, panels)
    return figure(plots.fig_to_data_uri(fig), "adversarial training curves", caption)


# --- sample grids ------------------------------------------------------------------------------


def _value_range(run: RunFiles, *arrays: np.ndarray) -> tuple[float, float]:
    """The real data's range (test images), else the samples'."""
    preds = run.predictions or {}
    source = (
        preds.get("x")
        if preds.get("x") is not None
        else np.concatenate([np.ravel(a) for a in arrays])
    )
    lo, hi = float(np.nanmin(source)), float(np.nanmax(source))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _sample_grid(
    images: np.ndarray,
    ncols: int,
    vrange: tuple[float, float],
    row_labels: list[str] | None = None,
) -> Figure:
    """Images (N, H, W[, 3]) in rows of ``ncols`` on one fixed value range, rows labelled."""
    return plots.image_mosaic(plots.grid_rows(images, ncols), row_labels, vrange=vrange, cell=0.55)


def _epoch_files(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for p in (run_dir / SAMPLES).glob("epoch-*.npy"):
        m = re.fullmatch(r"epoch-(\d+)\.npy", p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def _progress(run: RunFiles) -> str:
    files = _epoch_files(run.run_dir)
    if not files:
        return ""
    picks = sorted(
        {round(i) for i in np.linspace(0, len(files) - 1, min(MAX_EPOCH_ROWS, len(files)))}
    )
    rows, labels = [], []
    for i in picks:
        epoch, path = files[i]
        images = plots.as_images(np.load(path)[:PROGRESS_COLS])
        if images is None:
            return ""
        rows.append(images)
        labels.append(f"epoch {epoch + 1}")
    width = min(len(r) for r in rows)
    stack = np.concatenate([r[:width] for r in rows])
    fig = _sample_grid(stack, width, _value_range(run, stack), labels)
    caption = (
        f"The same {width} noise vectors decoded after {len(picks)} of {len(files)} epochs "
        "(conditional GANs: classes 0, 1, 2, … along a row)"
    )
    return figure(plots.fig_to_data_uri(fig), "samples over training", caption)


def _samples(run: RunFiles, split: str) -> str:
    arrays = read_npz(run.run_dir / SAMPLES / "final.npz")
    if "grid" not in arrays or "labels" not in arrays:
        return ""
    grid, labels, lerp = arrays["grid"], arrays["labels"], arrays.get("interpolation")
    images = plots.as_images(grid)
    if images is None:
        return ""
    vrange = _value_range(run, grid)
    names = (run.evaluation or {}).get("class_names") or (run.data or {}).get("class_names")
    out = []
    if labels.size and labels.min() >= 0:  # conditional: one row per class
        classes = list(dict.fromkeys(labels.tolist()))
        ncols = len(images) // max(len(classes), 1)
        row_labels = [str(names[c]) if names and c < len(names) else str(c) for c in classes]
        fig = _sample_grid(images, ncols, vrange, row_labels)
        caption = "Samples of the final model, one row per class it was asked for"
    else:
        fig = _sample_grid(images, 8, vrange)
        caption = f"{len(images)} samples of the final model"
    out.append(figure(plots.fig_to_data_uri(fig), "generated samples", caption))
    real = (run.predictions or {}).get("x")
    if real is not None and plots.as_images(real[:1]) is not None:
        n = min(len(images), 64, len(real))
        fig = _sample_grid(plots.as_images(real[:n]), 8 if n > 40 else 10, vrange)
        out.append(figure(plots.fig_to_data_uri(fig), "real images", f"Real {split} images"))
    if lerp is not None and plots.as_images(lerp) is not None:
        fig = _sample_grid(plots.as_images(lerp), 10, vrange)
        caption = "Latent walks: each row decodes z moving in a straight line between two draws"
        if labels.size and labels.min() >= 0:
            caption += " (conditional: row r keeps class r)"
        out.append(figure(plots.fig_to_data_uri(fig), "latent interpolation", caption))
    return f'<div class="figs">{"".join(out)}</div>'


# --- quality -------------------------------------------------------------------------------------


def _quality(run: RunFiles, split: str) -> str:
    q = (run.evaluation or {}).get("quality")
    if not q:
        metrics = run.metrics or {}
        q = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{split}/")}
    if "fid" not in q:
        return ""
    rows = [
        ("generated samples", q.get("fid"), "the model"),
        ("uniform noise", q.get("fid_noise"), "baseline: no model"),
        ("real training images", q.get("fid_real"), "floor: what real data scores"),
    ]
    body = [[esc(a), esc(fmt(v)), esc(b)] for a, v, b in rows if v is not None]
    html = table(["vs the " + split + " split", "digits-FID", ""], body, [False, True, False])
    extra = []
    if q.get("class_accuracy") is not None:
        extra.append(
            [
                "samples classified as their conditioning class",
                f"{100 * q['class_accuracy']:.1f}%",
            ]
        )
    if q.get("reference_accuracy") is not None:
        extra.append(
            ["reference classifier on real test data", f"{100 * q['reference_accuracy']:.1f}%"]
        )
    if extra:
        html += table(["accuracy", ""], [[esc(a), esc(b)] for a, b in extra], [False, True])
    note = (
        '<p class="note">digits-FID: Fréchet distance between Gaussians fitted to the penultimate '
        "features of a small reference classifier trained on the training split, for as many "
        "samples as the split has images; lower is better, noise and real data frame the "
        "scale.</p>"
    )
    return html + note

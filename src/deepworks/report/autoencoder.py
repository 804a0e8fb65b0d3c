"""Report sections of an autoencoder run: reconstructions and the latent space.

- **Reconstructions**: held-out inputs next to what the model made of them, from
  ``reconstructions.npz`` (written by the task's ``save_pictures``). Images are drawn on one
  shared grey scale, so a faint reconstruction looks faint; a denoising run shows three rows
  per example: noisy input, denoised output, clean original. Feature vectors are drawn as
  input and reconstruction profiles over the features.
- **Latent space**: the codes of the test split (``predictions.npz`` ``code``), projected to
  2-D by PCA when the code has more than two values and coloured by class. Classes that form
  separate clusters show that the code kept what tells them apart, without ever seeing a label.

:func:`latent_figure` and :func:`project_2d` are shared with the anomaly-detection report and
``deepworks embed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from deepworks.report import plots
from deepworks.report.markup import esc, figure
from deepworks.report.run_files import RunFiles, read_npz
from deepworks.report.sections import register_sections
from deepworks.report.style import TRAIN, VAL
from deepworks.rundir import RECONSTRUCTIONS

MAX_POINTS = 3000  # points in a latent scatter


@register_sections("autoencoder", tasks=("autoencoder",))
def sections(run: RunFiles, split: str) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of each section ``run`` has data for."""
    out = []
    recon = reconstruction_section(run)
    if recon:
        out.append(("reconstructions", "Reconstructions", recon))
    latent = latent_section(run, split)
    if latent:
        out.append(("latent", "Latent space", latent))
    return out


# --- reconstructions ---------------------------------------------------------------------------


def read_reconstructions(run_dir: Path) -> dict[str, np.ndarray] | None:
    """The arrays of ``reconstructions.npz``, or None when it is missing or unreadable."""
    arrays = read_npz(Path(run_dir) / RECONSTRUCTIONS)
    return arrays if "x" in arrays and "reconstruction" in arrays else None


def reconstruction_section(run: RunFiles) -> str:
    arrays = read_reconstructions(run.run_dir)
    if arrays is None or not len(arrays["x"]):
        return ""
    x = arrays["x"]
    if "noisy" in arrays and "denoised" in arrays:
        rows = [("noisy", arrays["noisy"]), ("denoised", arrays["denoised"]), ("clean", x)]
        caption = (
            f"{len(x)} test samples: the corrupted input (top), what the model made of it "
            "(middle) and the clean original it was trained to recover (bottom)"
        )
    else:
        rows = [("input", x), ("reconstruction", arrays["reconstruction"])]
        caption = f"{len(x)} test samples (top) and their reconstructions (bottom)"
    if x.ndim == 4:  # (N, C, H, W) images: one mosaic row per array
        images = plots.as_images(np.stack([a for _, a in rows]), lead=2)
        vrange = (float(x.min()), float(x.max()))
        fig = plots.image_mosaic(images, [label for label, _ in rows], vrange=vrange, cell=0.75)
        caption += ", on one shared grey scale"
    else:
        names = (run.evaluation or {}).get("label_names") or (run.data or {}).get("class_names")
        titles = None
        if "y" in arrays and names:
            titles = [str(names[int(v)]) if 0 <= int(v) < len(names) else "" for v in arrays["y"]]
        fig = profile_figure(rows, titles)
        lines = ", ".join(label for label, _ in rows)
        caption = (
            f"{min(len(x), 4)} test samples, one panel each: {lines} values over the input features"
        )
    return figure(plots.fig_to_data_uri(fig), "reconstructions", caption)


def profile_figure(
    rows: Sequence[tuple[str, np.ndarray]],
    titles: Sequence[str] | None = None,
    max_panels: int = 4,
) -> Figure:
    """Feature vectors: one panel per sample, a line per (label, (N, D) array)."""
    n = min(len(rows[0][1]), max_panels)
    colors = {"input": TRAIN, "clean": TRAIN, "reconstruction": VAL, "denoised": VAL}
    width, height = 2.9 * n + 0.4, 2.4
    with plots.report_style():
        # placed by hand: constrained layout costs seconds for a handful of line plots
        fig = plots.new_figure(width, height, constrained=False)
        fig.subplots_adjust(left=0.45 / width, right=0.98, bottom=0.2, top=0.85, wspace=0.25)
        for i in range(n):
            ax = fig.add_subplot(1, n, i + 1)
            for label, values in rows:
                v = np.asarray(values[i], dtype=np.float32).reshape(-1)
                ax.plot(v, label=label, color=colors.get(label, "#9ca3af"), linewidth=1.2)
            ax.set_title(f"sample {i}" + (f" · {titles[i]}" if titles else ""), fontsize=9)
            ax.set_xlabel("feature", fontsize=8)
            ax.tick_params(labelsize=7)
        fig.axes[0].legend(fontsize=7, loc="best")
    return fig


# --- latent space ------------------------------------------------------------------------------


def project_2d(codes: np.ndarray) -> tuple[np.ndarray, str]:
    """(N, 2) points and axis-label stem: the code itself when it has at most two values, else
    its first two principal components (centred SVD, signs fixed so the picture is stable)."""
    codes = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    if codes.shape[1] == 1:
        return np.column_stack([codes[:, 0], np.zeros(len(codes))]), "z"
    if codes.shape[1] == 2:
        return codes, "z"
    centred = codes - codes.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(vt[:, np.argmax(np.abs(vt), axis=1)].diagonal())
    vt = vt * np.where(signs == 0, 1, signs)[:, None]
    explained = s**2 / max(float((s**2).sum()), 1e-12)
    points = centred @ vt[:2].T
    return points, f"first two principal components ({100 * explained[:2].sum():.0f} % of variance)"


def latent_figure(
    codes: np.ndarray,
    labels: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    title: str = "",
) -> Figure:
    """A 2-D scatter of codes (N, k), coloured by label when labels are given."""
    points, stem = project_2d(codes)
    if len(points) > MAX_POINTS:  # a fixed subsample keeps the PNG small
        keep = np.random.default_rng(0).choice(len(points), MAX_POINTS, replace=False)
        points = points[keep]
        labels = None if labels is None else np.asarray(labels)[keep]
    pc = stem != "z"
    with plots.report_style():
        fig = plots.new_figure(5.6, 4.6)
        ax = fig.add_subplot()
        if labels is None:
            ax.scatter(points[:, 0], points[:, 1], s=9, alpha=0.7, color=TRAIN, linewidths=0)
        else:
            labels = np.asarray(labels)
            values = np.unique(labels)
            cmap = plots_colormap(len(values))
            for j, v in enumerate(values):
                m = labels == v
                name = str(v)
                if names is not None and np.issubdtype(labels.dtype, np.integer):
                    name = str(names[int(v)]) if 0 <= int(v) < len(names) else str(v)
                ax.scatter(
                    points[m, 0],
                    points[m, 1],
                    s=9,
                    alpha=0.75,
                    color=cmap[j],
                    label=name,
                    linewidths=0,
                )
            ax.legend(
                loc="center left",
                bbox_to_anchor=(1.0, 0.5),
                markerscale=2,
                fontsize=8,
                title="class",
            )
        ax.set_xlabel("PC 1" if pc else "z0")
        ax.set_ylabel("PC 2" if pc else ("z1" if np.ptp(points[:, 1]) > 0 else ""))
        ax.set_title(title or (stem if pc else "code"), fontsize=10)
    return fig


def plots_colormap(k: int) -> list:
    """k distinct colours (tab10, then tab20 for more classes)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(k)]


def latent_section(run: RunFiles, split: str, color_by: str = "y_true") -> str:
    preds = run.predictions
    if preds is None or "code" not in preds or not len(preds["code"]):
        return ""
    codes = preds["code"]
    evaluation = run.evaluation or {}
    names = (
        evaluation.get("label_names")
        or evaluation.get("class_names")
        or (run.data or {}).get("class_names")
    )
    labels = preds.get(color_by)
    fig = latent_figure(codes, labels, names)
    how = "its first two principal components" if codes.shape[1] > 2 else "the code itself"
    caption = (
        f"The {codes.shape[1]}-value codes of the {len(codes):,} {esc(split)} samples, drawn as "
        f"{how}, coloured by class (the model never saw the labels)"
    )
    return figure(plots.fig_to_data_uri(fig), "latent space", caption)

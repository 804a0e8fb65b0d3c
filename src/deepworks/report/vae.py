"""Report sections of a VAE run: samples from the prior, latent interpolations, reconstructions,
the ELBO and its two terms per split, and the quality of the samples.

The pictures come from ``vae_pictures.npz``, written by ``VAETask.save_pictures`` once training
is done; the numbers from ``metrics.json``. Images are drawn on one fixed grey scale ([0, 1] for
Bernoulli data), not rescaled one by one, so a faint sample looks faint.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepworks.report import plots
from deepworks.report.markup import esc, figure, fmt, table
from deepworks.report.run_files import RunFiles, read_npz
from deepworks.report.sections import register_sections
from deepworks.rundir import VAE_PICTURES


@register_sections("vae", tasks=("vae",))
def sections(run: RunFiles, split: str) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of each VAE section that ``run`` has data for."""
    pics = read_npz(run.run_dir / VAE_PICTURES)
    out = []
    names = _class_names(run)
    if "samples" in pics:
        out.append(("vae-samples", "Samples from the prior", _samples(pics, names)))
    if "interpolation" in pics:
        out.append(("vae-interpolation", "Latent interpolation", _interpolation(pics, run)))
    if "reconstructions" in pics:
        out.append(("vae-reconstructions", "Reconstructions", _reconstructions(pics, split)))
    elbo = _elbo_table(run.metrics or {})
    if elbo:
        out.append(("vae-elbo", "ELBO per split", elbo))
    quality = _quality_table(run.metrics or {})
    if quality:
        out.append(("vae-quality", "Sample quality", quality))
    return out


def _class_names(run: RunFiles) -> list[str] | None:
    names = (run.data or {}).get("class_names")
    return [str(n) for n in names] if names else None


def _value_range(pics: dict[str, np.ndarray], *arrays: np.ndarray) -> tuple[float, float]:
    """One grey scale for a whole figure: the training data's range when saved (samples of a
    Gaussian decoder overshoot it a little and are clipped), else the values' own range."""
    if "value_range" in pics and pics["value_range"].shape == (2,):
        lo, hi = (float(v) for v in pics["value_range"])
    else:
        lo = min(float(np.nanmin(a)) for a in arrays)
        hi = max(float(np.nanmax(a)) for a in arrays)
    return lo, hi if hi > lo else lo + 1


def _samples(pics: dict[str, np.ndarray], names: list[str] | None) -> str:
    samples = plots.as_images(pics["samples"])
    if samples is None:
        return ""
    n = len(samples)
    if "sample_labels" in pics:  # one row per class, in class order
        labels = pics["sample_labels"].astype(int)
        classes = list(dict.fromkeys(labels.tolist()))
        per_row = n // max(1, len(classes))
        grid = samples[: per_row * len(classes)].reshape(len(classes), per_row, *samples.shape[1:])
        rows = [names[c] if names and c < len(names) else str(c) for c in classes]
        caption = (
            f"{n} samples of the conditional VAE, z ~ N(0, I): row c is drawn for class c, so "
            "the class sets the digit and z its style"
        )
    else:
        cols = 10
        grid = samples[: (n // cols) * cols].reshape(-1, cols, *samples.shape[1:])
        rows = None
        caption = f"{len(grid) * cols} samples: z ~ N(0, I), decoded to the mean image"
    fig = plots.image_mosaic(grid, rows, vrange=_value_range(pics, samples))
    return figure(plots.fig_to_data_uri(fig), "samples from the prior", caption)


def _interpolation(pics: dict[str, np.ndarray], run: RunFiles) -> str:
    frames = plots.as_images(pics["interpolation"], lead=2)  # (P, T, H, W)
    ends = plots.as_images(pics.get("interpolation_ends", np.zeros((0, 2, 1))), lead=2)
    if frames is None:
        return ""
    steps = frames.shape[1]
    cols = [f"{t:.2f}" for t in np.linspace(0, 1, steps)]
    if ends is not None and len(ends) == len(frames):  # the real images at both ends
        frames = np.concatenate([ends[:, :1], frames, ends[:, 1:]], axis=1)
        cols = ["image A", *cols, "image B"]
    fig = plots.image_mosaic(frames, col_labels=cols, vrange=_value_range(pics, frames))
    conditional = "sample_labels" in pics
    how = (
        "two test images of the same class (the class fixed, z morphs the style)"
        if conditional
        else "two test images of different classes"
    )
    caption = (
        f"Decoding z = (1 − t)·μ(A) + t·μ(B) for {len(frames)} pairs of {how}; the outer columns "
        "are the real images"
    )
    return figure(plots.fig_to_data_uri(fig), "latent interpolation", caption)


def _reconstructions(pics: dict[str, np.ndarray], split: str) -> str:
    originals = plots.as_images(pics.get("originals", np.zeros((0, 1))))
    recons = plots.as_images(pics["reconstructions"])
    if originals is None or recons is None or len(originals) != len(recons):
        return ""
    n = len(recons)
    cols = min(n, 8)
    rows_of_pairs = []
    labels = []
    for start in range(0, n - n % cols, cols):
        rows_of_pairs += [originals[start : start + cols], recons[start : start + cols]]
        labels += ["input", "recon"]
    fig = plots.image_mosaic(
        np.stack(rows_of_pairs), labels, vrange=_value_range(pics, originals, recons)
    )
    caption = (
        f"The first {n} {split} images (input) and the decoder's mean at z = μ(x) (recon): what "
        "an image keeps after passing through the latent code"
    )
    return figure(plots.fig_to_data_uri(fig), "reconstructions", caption)


def _elbo_table(metrics: dict[str, Any]) -> str:
    splits = [s for s in ("train", "val", "test") if f"{s}/elbo" in metrics]
    if not splits:
        return ""
    rows = [
        [esc(s)] + [esc(fmt(metrics.get(f"{s}/{k}"))) for k in ("elbo", "recon", "kl")]
        for s in splits
    ]
    html = table(["split", "ELBO", "reconstruction NLL", "KL(q ‖ p)"], rows, [False] + [True] * 3)
    note = (
        '<p class="note">In nats per sample: ELBO = −(reconstruction NLL + KL) ≤ log p(x), '
        "higher is better. The KL term is what the code spends to describe each input; near 0 "
        "the decoder ignores z (posterior collapse). Train figures average the last training "
        "epoch's batches, while the weights are changing (and, when early stopping restored the "
        "best epoch's weights, a later epoch than the val and test figures).</p>"
    )
    return html + note


def _quality_table(metrics: dict[str, Any]) -> str:
    split = next((s for s in ("test", "val") if f"{s}/fid" in metrics), None)
    if split is None:
        return ""
    labels = {
        "fid": "digits-FID of prior samples",
        "fid_noise": "FID of uniform noise (baseline)",
        "fid_real": "FID of other real images (floor)",
        "class_accuracy": "samples classified as their class",
        "reference_accuracy": "reference classifier on real images",
    }
    rows = [
        [esc(label), esc(fmt(metrics[f"{split}/{key}"]))]
        for key, label in labels.items()
        if f"{split}/{key}" in metrics
    ]
    html = table(["figure", split], rows, [False, True])
    note = (
        '<p class="note">Fréchet distance between features of the reference classifier (an MLP '
        f"trained on the training split) for generated and for real {split} images; lower is "
        "better, between the real-data floor and the noise baseline.</p>"
    )
    return html + note

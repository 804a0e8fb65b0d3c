"""Report sections on adversarial robustness: robust accuracy against eps, adversarial examples.

Two sources, each optional:

- ``robustness.json``, written by the adversarial training tasks (``adversarial_training``,
  ``trades``) after testing: the PGD robust accuracy of the test split at several eps;
- ``attacks/<method>/results.json`` (and ``examples.png``), written by ``deepworks attack RUN``
  for any classification run, so a normally trained baseline gets the same curve.

Every curve is drawn on one chart: accuracy under attack (y) against the budget eps (x), where
eps = 0 is the clean accuracy. A robust model's curve stays high up to its training eps and then
falls; a normally trained model's falls at once.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from deepworks.report.markup import esc, figure, fmt, table
from deepworks.report.sections import register_sections
from deepworks.report.style import ACCENT, TRAIN, VAL, WRONG, new_figure, report_style
from deepworks.rundir import ATTACKS, ROBUSTNESS

COLORS = (TRAIN, VAL, ACCENT, WRONG, "#a855f7", "#14b8a6")


@register_sections("robustness", order=30)
def sections(run, split: str) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of the robustness section, if the run has robustness files."""
    curves = _curves(Path(run.run_dir))
    if not curves:
        return []
    parts = [figure(_uri(curve_figure(curves)), "robust accuracy against eps", _caption(curves))]
    parts.append(_table(curves))
    for label, _, _, png in curves:
        if png is not None and png.is_file():
            uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
            parts.append(figure(uri, f"{label} adversarial examples", f"{label}: examples"))
    return [("robustness", "Adversarial robustness", "".join(parts))]


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _curves(run_dir: Path) -> list[tuple[str, list[float], list[float], Path | None]]:
    """(label, eps, accuracy, examples.png or None) of every curve the run directory holds."""
    curves = []
    task = _read(run_dir / ROBUSTNESS)
    if task and task.get("curve"):
        label = f"PGD-{task.get('steps', '')}, measured after training"
        points = [(p["eps"], p["accuracy"]) for p in task["curve"]]
        curves.append((label, [e for e, _ in points], [a for _, a in points], None))
    for results in sorted((run_dir / ATTACKS).glob("*/results.json")):
        res = _read(results)
        if not res or not res.get("results"):
            continue
        rows = res["results"]
        eps = [0.0] + [r["eps"] for r in rows]
        acc = [rows[0]["clean_accuracy"]] + [r["robust_accuracy"] for r in rows]
        steps = res.get("options", {}).get("steps")
        method = str(res.get("method", results.parent.name)).upper()
        label = f"{method}{f'-{steps}' if steps else ''}, deepworks attack"
        curves.append((label, eps, acc, results.parent / "examples.png"))
    return curves


def curve_figure(curves: Sequence[tuple[str, list[float], list[float], Any]]) -> Figure:
    """Robust accuracy against eps, one line per curve."""
    with report_style():
        fig = new_figure(6.0, 3.4)
        ax = fig.add_subplot()
        for i, (label, eps, acc, _) in enumerate(curves):
            order = np.argsort(eps)
            ax.plot(
                np.asarray(eps)[order],
                np.asarray(acc)[order],
                marker="o",
                markersize=4,
                color=COLORS[i % len(COLORS)],
                label=label,
            )
        ax.set_xlabel("eps (raw input units)")
        ax.set_ylabel("accuracy under attack")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(loc="upper right")
    return fig


def examples_figure(
    x: np.ndarray,
    x_adv: np.ndarray,
    y: np.ndarray,
    clean_pred: np.ndarray,
    adv_pred: np.ndarray,
    eps: float,
    clip: tuple[float, float],
    names: Sequence[str] | None = None,
) -> Figure:
    """Three rows: the clean images (true label → prediction), the adversarial images
    (→ prediction, red when wrong) and the perturbations (blue -eps ... red +eps). Images share
    the fixed input range, so the perturbation shows as it is, not rescaled away. Each row is one
    mosaic (one axes), which draws far faster than one axes per image."""
    import matplotlib

    k = len(x)
    name = (lambda i: str(names[int(i)])) if names else (lambda i: str(int(i)))
    lo, hi = clip
    rows = (
        ("clean", x, (lo, hi), "gray"),
        ("adversarial", x_adv, (lo, hi), "gray"),
        ("perturbation", x_adv - x, (-eps, eps), "coolwarm"),
    )
    with report_style():
        fig = new_figure(1.1 * k + 0.8, 4.4, constrained=False)
        fig.subplots_adjust(left=0.1, right=0.99, top=0.93, bottom=0.02, hspace=0.35)
        for r, (label, images, (vmin, vmax), cmap) in enumerate(rows):
            ax = fig.add_subplot(3, 1, r + 1)
            tiles = [_plane(img, vmin, vmax) for img in images]
            h, w = tiles[0].shape[:2]
            gap = max(1, w // 8)
            mosaic = np.full((h, k * (w + gap) - gap, *tiles[0].shape[2:]), np.nan, np.float32)
            for j, tile in enumerate(tiles):
                mosaic[:, j * (w + gap) : j * (w + gap) + w] = tile
            colors = matplotlib.colormaps[cmap].with_extremes(bad="white")
            ax.imshow(mosaic, cmap=colors, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for spine in ax.spines.values():
                spine.set_visible(False)
            ax.set_ylabel(label, fontsize=8)
            for j in range(k):
                if r == 0:
                    text, color = f"{name(y[j])}→{name(clean_pred[j])}", "black"
                elif r == 1:
                    text = f"→{name(adv_pred[j])}"
                    color = WRONG if adv_pred[j] != y[j] else "black"
                else:
                    text, color = f"±{eps:g}", "black"
                x_mid = j * (w + gap) + (w - 1) / 2
                ax.text(x_mid, -0.8, text, ha="center", va="bottom", fontsize=8, color=color)
    return fig


def _plane(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(C, H, W) -> (H, W) (first channel), or RGB (H, W, 3) mapped from [lo, hi] to [0, 1]
    (matplotlib ignores vmin / vmax for RGB)."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] == 3:
        return np.clip((np.moveaxis(a, 0, -1) - lo) / (hi - lo), 0, 1)
    return a[0] if a.ndim == 3 else a


def _uri(fig: Figure) -> str:
    from deepworks.report.style import fig_to_data_uri

    return fig_to_data_uri(fig)


def _caption(curves) -> str:
    return (
        "Accuracy under attack against the perturbation budget eps (eps = 0: clean accuracy); "
        "a sample counts as robust when it is classified correctly before and after the attack."
    )


def _table(curves) -> str:
    eps = sorted({e for _, es, _, _ in curves for e in es})
    rows = []
    for label, es, acc, _ in curves:
        by_eps = dict(zip(es, acc, strict=True))
        rows.append([esc(label)] + [fmt(by_eps[e]) if e in by_eps else "" for e in eps])
    header = ["curve"] + [f"eps {e:g}" for e in eps]
    return table(header, rows, [False] + [True] * len(eps))

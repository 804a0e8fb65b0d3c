"""Report sections of conv nets: what the first layer learned and what it sees.

- **First-layer filters**: the kernels of the first convolution, read from the run's best
  checkpoint, drawn as small images. Trained filters look like edge, stroke and blob detectors;
  filters that still look like noise point to too little training or too high a learning rate.
- **Feature maps**: one input image and the first conv block's output channels for it
  (``feature_maps.npz``, written by :func:`save_feature_maps` after training): where each filter
  responds on a real example.

Runs without 4-D (conv) weights, an MLP's for instance, get neither section.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure

from deepworks.errors import CheckpointError
from deepworks.report import plots
from deepworks.report.markup import figure
from deepworks.report.run_files import RunFiles
from deepworks.report.sections import register_sections
from deepworks.report.style import GRID
from deepworks.rundir import CHECKPOINTS, FEATURE_MAPS, RunDir

MAX_FILTERS = 64
MAX_MAPS = 32


@register_sections("vision", order=10)
def sections(run: RunFiles, split: str) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of the filter and feature-map sections ``run`` has data for."""
    out = []
    filters = _filters_section(run)
    if filters:
        out.append(("filters", "First-layer filters", filters))
    maps = _feature_maps_section(run)
    if maps:
        out.append(("feature-maps", "Feature maps", maps))
    return out


# --- first-layer filters ---------------------------------------------------------------------


def _filters_section(run: RunFiles) -> str:
    found = first_conv_weight(run.run_dir, run.config)
    if found is None:
        return ""
    name, weight = found  # (out, in, kh, kw)
    n_out, n_in, kh, kw = weight.shape
    shown = weight[:MAX_FILTERS]
    if n_in == 3:  # RGB filters are drawn in colour
        tiles = [_unit(np.moveaxis(f, 0, -1)) for f in shown]
    else:  # one channel as it is, more than three averaged over the input channels
        tiles = [_grey(_unit(f.mean(axis=0))) for f in shown]
    fig = _mosaic_figure(tiles, ncols=16 if len(tiles) > 32 else 8, cell=0.42)
    channels = (
        "colour = the RGB input channels"
        if n_in == 3
        else "grey levels"
        if n_in == 1
        else f"averaged over the {n_in} input channels"
    )
    more = f"the first {len(shown)} of {n_out}" if n_out > len(shown) else f"all {n_out}"
    caption = (
        f"{more} {kh}×{kw} filters of the first convolution ({name}), {channels}; "
        "each scaled to its own range, light = most positive weight"
    )
    return figure(plots.fig_to_data_uri(fig), "first-layer filters", caption)


def first_conv_weight(
    run_dir: Path, config: dict[str, Any] | None = None
) -> tuple[str, np.ndarray] | None:
    """(name, weight) of the first conv of the run's best (else last) checkpoint, or None.

    Safetensors files keep their tensors sorted by name, not in layer order, so the model is
    rebuilt from the run's config (no weights needed) to ask which conv comes first; failing
    that, the first 4-D tensor whose input channels match the data is taken.
    """
    path = next(
        (
            p
            for p in (run_dir / CHECKPOINTS / c / "model.safetensors" for c in ("best", "last"))
            if p.is_file()
        ),
        None,
    )
    if path is None:
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    convs = {k: v for k, v in tensors.items() if v.ndim == 4 and k.endswith("weight")}
    if not convs:
        return None
    name = _first_conv_name(config)
    if name not in convs:
        name = next(iter(convs))
        in_channels = _input_channels(run_dir)
        matching = [k for k, v in convs.items() if in_channels and v.shape[1] == in_channels]
        name = matching[0] if matching else name
    return name.removesuffix(".weight"), convs[name].float().numpy()


def _first_conv_name(config: dict[str, Any] | None) -> str | None:
    """The parameter name of ``first_conv().weight`` of the model ``config`` describes."""
    model_cfg = dict((config or {}).get("model") or {})
    name = model_cfg.pop("name", None)
    model_cfg.pop("pretrained", None)
    if not name:
        return None
    try:
        from deepworks.layers.conv import first_conv
        from deepworks.models import create_model  # (imports and registers every model)

        model = create_model(name, **model_cfg)  # random weights: only the layer order matters
        conv = model.first_conv() if hasattr(model, "first_conv") else first_conv(model)
    except Exception:  # an old or foreign config: fall back to the tensor names
        return None
    return next((f"{n}.weight" for n, m in model.named_modules() if m is conv), None)


def _input_channels(run_dir: Path) -> int | None:

    try:
        shape = RunDir(run_dir).data_info().get("input_shape")
    except (OSError, ValueError, AttributeError):
        return None
    return int(shape[0]) if isinstance(shape, list) and len(shape) == 3 else None


# --- feature maps ----------------------------------------------------------------------------


def save_feature_maps(
    model: torch.nn.Module, x: torch.Tensor | np.ndarray, run_dir: str | os.PathLike
) -> Path:
    """Run one image through ``model`` and save its first conv block's output for the report.

    The output is that of ``model.first_conv()`` (else the first ``nn.Conv2d``) followed by the
    batch norm and activation right after it in its block. Written atomically to
    ``run_dir/feature_maps.npz`` with arrays ``image`` (C, H, W), ``maps`` (K, H', W') and
    ``layer`` (the conv's name).

    Args:
        model: A model with a conv layer (in eval mode for the call; its mode is restored).
        x: One input image, (1, C, H, W) or (C, H, W), scaled as the model's inputs are.
        run_dir: The run directory.

    Returns:
        The path of the written file.
    """
    from deepworks.layers.conv import conv_block_output, first_conv
    from deepworks.utils import atomic_write_bytes

    x = torch.as_tensor(x)
    if x.ndim == 3:
        x = x.unsqueeze(0)  # (C, H, W) -> (1, C, H, W)
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"save_feature_maps takes one image (1, C, H, W), not {tuple(x.shape)}")
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)
    conv = model.first_conv() if hasattr(model, "first_conv") else first_conv(model)
    was_training = model.training
    model.eval()
    try:
        name, out = conv_block_output(model, x, conv)
    finally:
        model.train(was_training)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        image=x[0].float().cpu().numpy(),  # (C, H, W)
        maps=out[0].float().cpu().numpy(),  # (K, H', W')
        layer=np.array(name),
    )
    path = Path(run_dir) / FEATURE_MAPS
    atomic_write_bytes(path, buf.getvalue())
    return path


def _feature_maps_section(run: RunFiles) -> str:
    path = run.run_dir / FEATURE_MAPS
    if not path.is_file():
        return ""
    try:
        with np.load(path, allow_pickle=False) as npz:
            image, maps = np.asarray(npz["image"]), np.asarray(npz["maps"])
            layer = str(npz["layer"]) if "layer" in npz.files else "the first convolution"
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a feature-map file ({exc})") from exc
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or maps.ndim != 3:
        raise CheckpointError(
            f"{path}: image must be (C, H, W) and maps (K, H, W), "
            f"not {image.shape} and {maps.shape}"
        )
    if maps.shape[0] == 0:
        return ""
    n = min(len(maps), MAX_MAPS)
    viridis = colormaps["viridis"]
    tiles = [viridis(_unit(m))[..., :3] for m in maps[:n]]
    side = 1.6 * max(1.0, image.shape[1] / max(image.shape[2], 1))
    picture = image[:3] if image.shape[0] >= 3 else image[:1]
    input_tile = (
        _unit(np.moveaxis(picture, 0, -1)) if len(picture) == 3 else _grey(_unit(picture[0]))
    )
    input_fig = _mosaic_figure([input_tile], ncols=1, cell=side)
    maps_fig = _mosaic_figure(tiles, ncols=8, cell=0.9)
    more = f"the first {n} of {len(maps)}" if len(maps) > n else f"all {len(maps)}"
    figs = [
        figure(plots.fig_to_data_uri(input_fig), "input image", "The input image"),
        figure(
            plots.fig_to_data_uri(maps_fig),
            "feature maps",
            f"Output of {layer} and its activation for that image: {more} channels, "
            "each scaled to its own range (yellow = strongest response)",
        ),
    ]
    return f'<div class="figs">{"".join(figs)}</div>'


# --- drawing ---------------------------------------------------------------------------------


def _unit(a: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] (a constant array becomes 0.5)."""
    a = np.nan_to_num(np.asarray(a, dtype=np.float32))
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.full_like(a, 0.5)


def _grey(a: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) grey RGB."""
    return np.repeat(a[..., None], 3, axis=-1)


def _mosaic_figure(tiles: list[np.ndarray], ncols: int, cell: float) -> Figure:
    """Tiles (H, W, 3) in [0, 1] laid out in a grid with thin gaps, drawn as one image.

    One image instead of one axes per tile keeps the figure fast to draw and the PNG small, and
    nearest-neighbour scaling keeps a 3 x 3 kernel's nine weights visible as nine squares.
    """
    h, w = tiles[0].shape[:2]
    ncols = max(1, min(ncols, len(tiles)))
    nrows = math.ceil(len(tiles) / ncols)
    gap = max(1, round(max(h, w) / 8))
    background = np.array([int(GRID[i : i + 2], 16) / 255 for i in (1, 3, 5)], dtype=np.float32)
    mosaic = np.empty((nrows * (h + gap) - gap, ncols * (w + gap) - gap, 3), dtype=np.float32)
    mosaic[:] = background if len(tiles) > 1 else 1.0
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        mosaic[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tile
    scale = cell / max(h, w)
    with plots.report_style():
        fig = plots.new_figure(mosaic.shape[1] * scale, mosaic.shape[0] * scale, constrained=False)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(mosaic, interpolation="nearest")
        ax.set_axis_off()
    return fig


__all__ = ["first_conv_weight", "save_feature_maps", "sections"]

"""A tabular agent's state values and greedy policy drawn on its grid world."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

#: The arrow of each action, per family of grid worlds (their action numbering differs).
ARROWS = {
    "FrozenLake": ("←", "↓", "→", "↑"),
    "CliffWalking": ("↑", "→", "↓", "←"),
}


def arrows_for(env_id: str) -> tuple[str, ...] | None:
    return next((a for prefix, a in ARROWS.items() if env_id.startswith(prefix)), None)


def value_grid_figure(
    values: np.ndarray,
    policy: np.ndarray,
    shape: tuple[int, int],
    arrows: tuple[str, ...] | None,
    tiles: np.ndarray | None = None,
) -> Figure:
    """V(s) as a heatmap over the (rows, columns) grid, each cell labelled with its greedy
    action (an arrow where the environment's actions are moves) and, if given, its tile
    letter (FrozenLake's S, F, H, G)."""
    rows, cols = shape
    v = values.reshape(rows, cols)
    fig = Figure(figsize=(max(3.0, 0.55 * cols + 1.2), max(2.4, 0.55 * rows + 0.6)))
    ax = fig.add_subplot()
    im = ax.imshow(v, cmap="viridis")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="V(s)")
    for s, action in enumerate(policy.reshape(-1)):
        r, c = divmod(s, cols)
        label = arrows[int(action)] if arrows is not None else str(int(action))
        tile = tiles.reshape(rows, cols)[r, c] if tiles is not None else ""
        if tile in ("H", "G"):
            label = tile  # no action is taken there
        bright = v[r, c] > (v.min() + v.max()) / 2
        ax.text(c, r, label, ha="center", va="center", color="black" if bright else "white")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig

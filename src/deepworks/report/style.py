"""The look shared by every report figure: colours, fonts, an off-screen figure, PNG encoding.

Figures are built with the object API (:class:`matplotlib.figure.Figure` on an Agg canvas), never
pyplot, so making a report touches no global state and leaks no open figures.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from contextlib import contextmanager

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from deepworks.evaluate.specs import MetricSpec, default_label, find, split_name

TRAIN = "#2563eb"  # blue: everything measured on the training split
VAL = "#ea580c"  # orange: validation split
ACCENT = "#059669"  # green: learning rate, identity lines, correct
WRONG = "#dc2626"  # red: residuals and mistakes
GRID = "#e5e7eb"
DPI = 100

STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.edgecolor": "#9ca3af",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "figure.facecolor": "white",
}


@contextmanager
def report_style():
    """Apply the report's rcParams while figures are built (fonts, grid, spines)."""
    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width: float, height: float, constrained: bool = True) -> Figure:
    """A white ``width`` x ``height`` inch figure on an Agg canvas.

    Matplotlib's constrained layout places the axes unless ``constrained`` is False, in which
    case the caller does (e.g. with ``subplots_adjust``).
    """
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def fig_to_data_uri(fig: Figure, dpi: int = DPI) -> str:
    """Render ``fig`` as PNG and return it as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white", bbox_inches="tight", pad_inches=0.1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def metric_label(metric: str, specs: Sequence[MetricSpec] = ()) -> str:
    """A metric name for people, without its split: its spec's label, else one made from the
    name (``val/f1_macro`` -> ``F1 macro``, ``test/r2`` -> ``R²``)."""
    spec = find(metric, specs)
    return spec.label_for(split_name(metric)[1]) if spec is not None else default_label(metric)

"""HTML building blocks for the report: the stylesheet, escaping, number formatting, tables."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from typing import Any

from deepworks.evaluate.specs import MetricSpec, find

CSS = """
:root { --ink: #111827; --muted: #6b7280; --line: #e5e7eb; --bg: #f3f4f6; --card: #ffffff;
  --blue: #2563eb; --orange: #ea580c; --green: #059669; --red: #dc2626; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); line-height: 1.5;
  font: 15px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue",
  Arial, sans-serif; }
header { background: linear-gradient(120deg, #1e3a8a, #2563eb 70%, #3b82f6); color: #fff;
  padding: 28px 0 22px; }
.wrap { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header h1 { margin: 0 0 4px; font-size: 28px; font-weight: 700; letter-spacing: -0.01em; }
header .date { opacity: 0.85; font-size: 14px; }
.chips { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 14px; }
.chip { background: rgba(255,255,255,0.16); border: 1px solid rgba(255,255,255,0.25);
  border-radius: 999px; padding: 3px 12px; font-size: 13px; }
.chip b { font-weight: 600; }
nav { margin-top: 14px; font-size: 13px; }
nav a { color: #dbeafe; text-decoration: none; margin-right: 14px; }
nav a:hover { text-decoration: underline; }
main { padding: 20px 0 8px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 12px;
  padding: 18px 22px 20px; margin-bottom: 20px; box-shadow: 0 1px 2px rgba(0,0,0,0.04); }
h2 { margin: 0 0 14px; font-size: 19px; font-weight: 650; }
h3 { margin: 18px 0 8px; font-size: 15px; color: #374151; }
p.note { color: var(--muted); font-size: 13px; margin: 6px 0 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 12px;
  margin-bottom: 16px; }
.card { border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px;
  background: linear-gradient(180deg, #fff, #f9fafb); }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: 0.05em; }
.card .value { font-size: 28px; font-weight: 700; font-variant-numeric: tabular-nums;
  color: #1e3a8a; }
.card .split { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; font-size: 14px; font-variant-numeric: tabular-nums; }
th { text-align: left; color: var(--muted); font-weight: 600; font-size: 12px;
  text-transform: uppercase; letter-spacing: 0.04em; border-bottom: 2px solid var(--line); }
th, td { padding: 6px 14px 6px 8px; }
td { border-bottom: 1px solid var(--line); }
td.num, th.num { text-align: right; }
tbody tr:hover { background: #f9fafb; }
tfoot td { font-weight: 600; border-top: 2px solid var(--line); border-bottom: none; }
div.bar { min-width: 96px; padding: 0 6px; border-radius: 3px; }
.figs { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { margin: 0; max-width: 100%; }
figure img { max-width: 100%; height: auto; display: block; border-radius: 6px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
pre { background: #0f172a; color: #e2e8f0; border-radius: 8px; padding: 14px 16px;
  overflow: auto; font: 12.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  max-height: 560px; margin: 0; }
pre .k { color: #93c5fd; }
pre .c { color: #94a3b8; }
details summary { cursor: pointer; color: var(--blue); margin-bottom: 8px; }
.two { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 20px; }
footer { color: var(--muted); font-size: 12px; text-align: center; padding: 4px 0 24px; }
"""


def esc(value: Any) -> str:
    """HTML-escape ``value`` as text."""
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A metric value for a table: integers with separators, floats with 4 significant digits."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.4g}"
    return str(value)


def fmt_headline(name: str, value: Any, specs: Sequence[MetricSpec] = ()) -> str:
    """A metric value for a headline card, in its spec's format (fractions as percentages);
    a metric with no spec as :func:`fmt`."""
    spec = find(name, specs)
    if spec is None or isinstance(value, bool) or not isinstance(value, int | float):
        return fmt(value)
    if isinstance(value, float) and not math.isfinite(value):
        return fmt(value)
    return spec.format(value)


def fmt_duration(seconds: float) -> str:
    """Seconds as ``1h 02m``, ``3m 05s`` or ``4.2s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def fmt_shape(shape: Any) -> str:
    """An input shape as ``1 × 28 × 28``."""
    if isinstance(shape, (list, tuple)):
        return " × ".join(str(s) for s in shape)
    return str(shape)


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric: Sequence[bool] | None = None,
    footer: Sequence[Sequence[str]] = (),
) -> str:
    """An HTML table; cells are already-escaped HTML, ``numeric`` columns are right-aligned."""
    numeric = list(numeric or [False] * len(header))

    def cells(row: Sequence[str], tag: str) -> str:
        return "".join(
            f"<{tag}{' class=num' if numeric[i] else ''}>{cell}</{tag}>"
            for i, cell in enumerate(row)
        )

    head = f"<thead><tr>{cells(header, 'th')}</tr></thead>"
    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    foot = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in footer)
    return f"<table>{head}<tbody>{body}</tbody>{f'<tfoot>{foot}</tfoot>' if foot else ''}</table>"


def bar_cell(value: Any, label: str | None = None) -> str:
    """A fraction in [0, 1] drawn as a proportional CSS bar under its value (or ``label``)."""
    frac = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0
    pct = max(0.0, min(frac, 1.0)) * 100
    style = f"background: linear-gradient(90deg, #bfdbfe {pct:.1f}%, transparent {pct:.1f}%)"
    text = f"{value:.3f}" if label is None and isinstance(value, (int, float)) else label
    return f'<div class="bar" style="{style}">{esc(text if text is not None else fmt(value))}</div>'


def figure(uri: str, alt: str, caption: str = "") -> str:
    """An ``<img>`` of a data URI inside a ``<figure>``, with an optional caption."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{esc(alt)}">{cap}</figure>'


def section(anchor: str, title: str, body: str) -> str:
    """A titled card of the report, linkable as ``#anchor``."""
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def highlight_yaml(text: str) -> str:
    """Escape YAML text and colour its keys and comments for a ``<pre>`` block."""
    lines = []
    for line in esc(text).splitlines():
        if line.lstrip().startswith("#"):
            lines.append(f'<span class="c">{line}</span>')
            continue
        lines.append(
            re.sub(r"^(\s*(?:- )?)([^\s:#][^:]*?):(?=\s|$)", r'\1<span class="k">\2</span>:', line)
        )
    return "\n".join(lines)

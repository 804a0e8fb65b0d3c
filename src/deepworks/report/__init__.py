"""Run reports: one self-contained HTML page per run directory.

``write_report(run_dir)`` reads what the Trainer wrote (config, history, metrics, evaluation,
predictions) and writes ``run_dir/report.html`` with inline CSS and PNG plots as data URIs.
:mod:`deepworks.report.plots` holds the figure helpers for other modules to reuse.
"""

from deepworks.report import plots
from deepworks.report.html import render_report, write_report
from deepworks.report.run_files import RunFiles, load_run

__all__ = ["RunFiles", "load_run", "plots", "render_report", "write_report"]

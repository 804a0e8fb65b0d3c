"""Report sections of a regression run: predicted against true values, and the residuals."""

from __future__ import annotations

from deepworks.report import plots
from deepworks.report.markup import figure
from deepworks.report.run_files import RunFiles
from deepworks.report.sections import register_sections


@register_sections("regression", tasks=("regression",))
def sections(run: RunFiles, split: str) -> list[tuple[str, str, str]]:
    """Predicted vs true scatter and residual histogram of the evaluated split."""
    preds = run.predictions
    if preds is None or preds["y_true"].size != preds["y_pred"].size:
        return []
    y_true, y_pred = preds["y_true"], preds["y_pred"]
    figs = [
        figure(
            plots.fig_to_data_uri(plots.regression_scatter(y_true, y_pred)),
            "predicted vs true",
            f"Predicted vs true on the {split} split",
        ),
        figure(
            plots.fig_to_data_uri(plots.residual_histogram(y_true, y_pred)),
            "residual histogram",
            "Residuals: a good model centres them on zero",
        ),
    ]
    return [("predictions", "Predictions", f'<div class="figs">{"".join(figs)}</div>')]

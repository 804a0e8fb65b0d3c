"""``deepworks explain RUN``: attributions, the randomization sanity check, feature visualization.

Examples::

    deepworks explain runs/digits_cnn --method ig --inputs 8 --baseline mean
    deepworks explain runs/digits_cnn --method grad_cam --target true
    deepworks explain runs/breast_cancer_mlp --method permutation
    deepworks explain runs/digits_cnn --method saliency --sanity
    deepworks explain runs/digits_cnn --visualize --class 3

Files go to ``RUN/explain/<method>/`` (``sanity_<method>``, ``activation_max``) or ``--out``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from deepworks.cli import app, out


@app.command()
def explain(
    run: Path = typer.Argument(..., help="Run directory made by deepworks train"),
    method: str = typer.Option(
        "ig", "--method", "-m", help="Attribution method (deepworks list explainers)"
    ),
    inputs: str = typer.Option(
        None,
        "--inputs",
        "-n",
        help="How many inputs of the split (default 8; permutation: all), or a .csv/.npz/image "
        "file of new inputs",
    ),
    split: str = typer.Option("test", help="Split the inputs come from: test, val or train"),
    target: str = typer.Option(
        "pred", help="Output to explain: pred (predicted class), true (label) or a class number"
    ),
    baseline: str = typer.Option(
        None,
        help="Reference input of ig, deeplift, occlusion, kernel_shap, lime: zeros, mean, blur",
    ),
    steps: int = typer.Option(None, help="Integration steps of ig (default 128)"),
    option: list[str] = typer.Option(
        None, "--option", "-o", help="A method option KEY=VALUE, e.g. -o samples=50 (repeatable)"
    ),
    sanity: bool = typer.Option(
        False, "--sanity", help="Model-parameter randomization test of --method"
    ),
    randomize: str = typer.Option(
        "cascading", help="--sanity: cascading (top layer first) or all (every layer at once)"
    ),
    visualize: bool = typer.Option(
        False, "--visualize", help="Activation maximization: the input each class responds to most"
    ),
    classes: list[int] = typer.Option(
        None, "--class", help="--visualize: class (or --layer channel) to maximize (repeatable)"
    ),
    layer: str = typer.Option(None, help="--visualize: maximize channels of this module"),
    out_dir: Path = typer.Option(None, "--out", help="Write here instead of RUN/explain/<method>"),
    seed: int = typer.Option(0, help="Seed of the random parts (noise, samples, permutations)"),
    checkpoint: str = typer.Option("best", help="Checkpoint to load: best or last"),
) -> None:
    """Explain a trained model's predictions: heatmaps, feature tables, sanity check."""
    from deepworks.cli.train import graded_line
    from deepworks.config import parse_overrides
    from deepworks.errors import ConfigError
    from deepworks.explain import runs

    for item in option or []:
        if "=" not in item or not item.partition("=")[0].strip():
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE, e.g. --option samples=50")
    options = parse_overrides(list(option or []))  # -o samples=50 -> {"samples": 50}
    if baseline is not None:
        options["baseline"] = baseline
    if steps is not None:
        options["steps"] = steps
    if visualize or method == "activation_max":
        if sanity:
            raise ConfigError("--visualize and --sanity are separate commands; give one")
        written = runs.visualize_run(
            run, list(classes or []), layer, out_dir, options, seed, checkpoint
        )
    elif classes or layer:
        raise ConfigError("--class and --layer go with --visualize")
    elif sanity:
        written = runs.sanity_run(
            run, method, randomize, inputs, split, target, out_dir, options, seed, checkpoint
        )
    else:
        written = runs.explain_run(
            run, method, inputs, split, target, out_dir, options, seed, checkpoint
        )
    for line in written.lines:
        out.print(line, markup=False)
    out.print(f"wrote {', '.join(written.files)} to {written.dir}", markup=False)
    out.print(f"graded: {graded_line(run, checkpoint)}", markup=False)

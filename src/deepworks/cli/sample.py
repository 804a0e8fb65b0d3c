"""``deepworks sample RUN --prompt TEXT``: text sampled from a trained language model."""

from __future__ import annotations

from pathlib import Path

import typer

from deepworks.cli import app, err, out


@app.command()
def sample(
    run: Path = typer.Argument(..., help="Run directory of a language_model run"),
    prompt: str = typer.Option("\n", "--prompt", "-p", help="Text to continue"),
    tokens: int = typer.Option(300, "--tokens", "-n", help="New tokens to generate"),
    temperature: float = typer.Option(0.8, help="Sharpen (< 1) or flatten (> 1); 0 is greedy"),
    top_k: int = typer.Option(None, "--top-k", help="Sample among the k likeliest tokens only"),
    top_p: float = typer.Option(
        None, "--top-p", help="Sample among the smallest set with this total probability"
    ),
    samples: int = typer.Option(1, "--samples", help="Independent samples (seeds seed, seed+1…)"),
    seed: int = typer.Option(0, help="Seed of the sampler"),
    checkpoint: str = typer.Option("best", help="Checkpoint to load: best or last"),
) -> None:
    """Continue a prompt with a trained language model (temperature, top-k, top-p)."""
    from deepworks.cli.train import graded_line
    from deepworks.errors import ConfigError
    from deepworks.run import sample_run

    if tokens < 1:
        raise ConfigError(f"--tokens {tokens}: generate at least 1 token")
    if temperature < 0:
        raise ConfigError(f"--temperature {temperature}: must be >= 0 (0 is greedy)")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"--top-k {top_k}: must be at least 1")
    if top_p is not None and not 0 < top_p <= 1:
        raise ConfigError(f"--top-p {top_p}: must be in (0, 1]")
    if samples < 1:
        raise ConfigError(f"--samples {samples}: must be at least 1")
    err.print(f"graded: {graded_line(run, checkpoint)}", markup=False)
    for i in range(samples):
        text = sample_run(run, prompt, tokens, temperature, top_k, top_p, seed + i, checkpoint)
        if samples > 1:
            out.print(f"--- sample {i + 1} (seed {seed + i}) ---", markup=False)
        out.print(text, markup=False, highlight=False)

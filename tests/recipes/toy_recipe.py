"""A toy recipe: random-search hill climbing on a quadratic bowl, one proposal per round.

It is not ``for x, y in loader``: its outer loop proposes a point, keeps it if the objective is
lower, and checkpoints every few rounds. It is the whole of a new kind of run: one module with a
config schema, an outer loop, metric specs and a report section, plus one registration line.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field

from deepworks.config import RecipeConfig, Strict
from deepworks.evaluate.specs import MetricSpec
from deepworks.recipes import Recipe, RunResult, register_recipe
from deepworks.rundir import METRICS, RunDir
from deepworks.train.checkpoint import CheckpointDir, load_checkpoint, save_checkpoint


class ClimbSection(Strict):
    dims: int = Field(4, ge=1)
    rounds: int = Field(60, ge=1)
    step: float = Field(0.5, gt=0)
    checkpoint_every: int = Field(5, ge=1)


class ClimbConfig(RecipeConfig):
    climb: ClimbSection = ClimbSection()


def objective(x: torch.Tensor) -> torch.Tensor:
    return ((x - 1.0) ** 2).sum()


@register_recipe("hill_climb")
class HillClimb(Recipe):
    """Random-search hill climbing on ((x - 1)²).sum(): a toy outer loop that is no data loop."""

    config_class = ClimbConfig
    metrics = (
        MetricSpec("objective", "min", headline=True, label="Objective"),
        MetricSpec("accepted", None, label="Accepted proposals"),
    )
    stop_after: int | None = None  # tests: raise KeyboardInterrupt after this round

    def run(self, config: ClimbConfig, run_dir: Path, context) -> RunResult:
        c, rundir = config.climb, RunDir(run_dir)
        ckpts = CheckpointDir(rundir.checkpoints, keep_last=1)
        gen = torch.Generator().manual_seed(config.seed)
        x, start, accepted, history = torch.zeros(c.dims), 0, 0, []
        if context.resume and ckpts.target("last") is not None:
            tensors, state = load_checkpoint(ckpts.newest_valid(context.warn))
            x, start, accepted = tensors["state"]["x"], state["round"], state["accepted"]
            gen.set_state(tensors["state"]["generator"])
            history = state["history"]
        for r in range(start, c.rounds):
            proposal = x + c.step * torch.randn(c.dims, generator=gen)
            if objective(proposal) < objective(x):
                x, accepted = proposal, accepted + 1
            history.append({"epoch": r, "train/objective": float(objective(x))})
            rundir.write_history(history)
            if (r + 1) % c.checkpoint_every == 0:
                state = {"round": r + 1, "accepted": accepted, "history": history}
                tensors = {"state": {"x": x, "generator": gen.get_state()}}
                ckpts.save(r + 1, lambda path, t=tensors, s=state: save_checkpoint(path, t, s))
            if self.stop_after is not None and r + 1 == self.stop_after:
                raise KeyboardInterrupt
        metrics = {"train/objective": float(objective(x)), "train/accepted": float(accepted)}
        rundir.write_json(METRICS, metrics)
        return RunResult(run_dir, config, metrics, history=history)

    def report_sections(self, run_dir: Path) -> list[tuple[str, str, str]]:
        metrics = RunDir(run_dir).metrics() or {}
        value = metrics.get("train/objective")
        body = f"<p>Final objective <b>{value:.6f}</b> (the minimum is 0).</p>" if value else ""
        return [("climb", "Hill climbing", body)]

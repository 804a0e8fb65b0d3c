"""The ``rl`` recipe: an agent in a Gymnasium environment instead of ``for x, y in loader``.

    recipe: rl
    env: {id: Taxi-v4}
    algorithm: {name: q_learning, alpha: 0.1, epsilon_decay: 2000}
    train: {steps: 5000, eval_episodes: 20}

The outer loop calls the algorithm's ``step`` — one sweep of a planning method, one episode of a
learning one — ``train.steps`` times or until it converges; every ``log_every`` steps a row of
``history.csv`` (mean return and length of those episodes, ε, ...), every ``checkpoint_every``
steps a checkpoint (the tables, the sampler's state, the history). Episodes are seeded one by one,
so a run resumed from a checkpoint replays the episodes the uninterrupted run would have played:
resume is exact. SIGINT / SIGTERM finish the step, write a checkpoint and exit with code 3. At
the end the greedy policy plays ``eval_episodes`` evaluation episodes on their own seeds
(``test/return``); grid worlds get their values and policy drawn in the report.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from deepworks.config import Open, RecipeConfig, Strict
from deepworks.errors import ConfigError
from deepworks.evaluate.specs import MetricSpec
from deepworks.recipes.base import Recipe, RunContext, RunResult
from deepworks.registry import ALGORITHMS, check_kwargs, register_recipe
from deepworks.rl.envs import episode_seed, grid_shape, make_env, tabular_sizes, transition_model
from deepworks.rundir import METRICS, RL_VALUES, RunDir
from deepworks.train.callbacks.progress import progress_bar
from deepworks.train.checkpoint import CheckpointDir, load_checkpoint, save_checkpoint
from deepworks.train.trainer import SignalGuard, TrainingInterrupted


class EnvSection(Strict):
    id: str = Field(description="A Gymnasium environment id, e.g. Taxi-v4 or FrozenLake-v1.")
    kwargs: dict[str, Any] = Field({}, description="Keyword arguments of gymnasium.make.")


class AlgorithmSection(Open):
    """The algorithm (``deepworks list algorithms``) and its options."""


class RLTrain(Strict):
    steps: int = Field(1000, ge=1, description="Sweeps (planning) or episodes (learning).")
    log_every: int = Field(100, ge=1, description="Steps per row of history.csv.")
    checkpoint_every: int = Field(500, ge=1, description="Steps between checkpoints.")
    keep_last: int = Field(2, ge=1, description="Checkpoints kept.")
    eval_episodes: int = Field(20, ge=1, description="Greedy evaluation episodes at the end.")
    progress: bool = Field(True, description="Show a progress bar.")


class RLConfig(RecipeConfig):
    env: EnvSection
    algorithm: AlgorithmSection
    train: RLTrain = RLTrain()


@register_recipe("rl")
class ReinforcementLearning(Recipe):
    """Train an agent in a Gymnasium environment, then evaluate its greedy policy."""

    config_class = RLConfig
    metrics = (
        MetricSpec("return", "max", headline=True, label="Mean episode return"),
        MetricSpec("return_std", None, label="Std of the episode return"),
        MetricSpec("length", None, label="Mean episode length", fmt=".1f"),
        MetricSpec("epsilon", None, label="Exploration rate ε", fmt=".3f"),
        MetricSpec("delta", None, label="Largest value change of the sweep", fmt=".3g"),
        MetricSpec("changed", None, label="Policy changes", fmt=".0f"),
        MetricSpec("steps", None, label="Steps (sweeps or episodes)", fmt=".0f"),
        MetricSpec("converged", None, fmt=".0f"),
    )

    def check(self, config: RLConfig, raw, where: str, sources) -> None:
        """The algorithm, its options and the environment, before anything is written."""
        pre = f"{where}: " if where else ""
        factory = ALGORITHMS.get(config.algorithm.name, where=f"{pre}algorithm.name")
        own = tuple(type(config.algorithm).model_fields)
        check_kwargs(factory, config.algorithm.kwargs, f"{pre}algorithm", also=own)
        self._build(config, where=pre)

    def _build(self, config: RLConfig, where: str = ""):
        """(environment, algorithm set up on it), with one-line errors for a bad pairing."""
        name, env_id = config.algorithm.name, config.env.id
        env = make_env(env_id, where=f"{where}env.id", **config.env.kwargs)
        n_states, n_actions = tabular_sizes(env, env_id, name)
        algo = ALGORITHMS.build(name, config.algorithm.kwargs, where=f"{where}algorithm")
        model = transition_model(env, env_id, name) if algo.needs_model else None
        algo.setup(env, n_states, n_actions, model)
        return env, algo

    def run(self, config: RLConfig, run_dir: Path, context: RunContext) -> RunResult:
        t, rundir = config.train, RunDir(run_dir)
        name = config.algorithm.name
        env, algo = self._build(config)
        n_states = algo.n_states
        rng = np.random.default_rng(config.seed)
        ckpts = CheckpointDir(rundir.checkpoints, t.keep_last)
        start, history, window = 0, [], []
        if context.resume and ckpts.target("last") is not None:
            start, history, window = _restore(ckpts.newest_valid(context.warn), algo, rng)

        def save(done: int) -> Path:
            state = {"done": done, "history": history, "window": window}
            state["rng"] = rng.bit_generator.state
            own = algo.state_dict()
            state["algorithm"] = {k: v for k, v in own.items() if not isinstance(v, np.ndarray)}
            arrays = {k: v for k, v in own.items() if isinstance(v, np.ndarray)}
            tensors = {"algorithm": {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}}
            return ckpts.save(done, lambda path: save_checkpoint(path, tensors, state))

        show = t.progress if context.progress is None else context.progress
        signals, t0 = SignalGuard(), time.perf_counter()
        done = start
        try:
            with progress_bar(show, f"{name} on {config.env.id}", t.steps, start) as advance:
                for i in range(start, t.steps):
                    if algo.converged:
                        break
                    window.append(algo.step(i, episode_seed(config.seed, i), rng))
                    done = i + 1
                    advance()
                    if done % t.log_every == 0 or algo.converged or done == t.steps:
                        history.append(_row(len(history), done, window, time.perf_counter() - t0))
                        window = []
                        rundir.write_history(history)
                    if done % t.checkpoint_every == 0:
                        save(done)
                    if signals.caught is not None:
                        path = save(done)
                        raise TrainingInterrupted(
                            f"{signal.Signals(signals.caught).name} received: stopped after "
                            f"{algo.unit} {done}, checkpoint written to {path}; continue with: "
                            f"deepworks train --resume {run_dir}"
                        )
        finally:
            signals.restore()
        if ckpts.target("last") is None or done % t.checkpoint_every:
            save(done)
        metrics = _evaluate(algo, env, config.seed, t.eval_episodes)
        metrics |= {"train/steps": float(done), "train/converged": float(algo.converged)}
        if history:
            metrics |= {k: v for k, v in history[-1].items() if k.startswith("train/")}
        shape = grid_shape(env)
        if shape is not None and shape[0] * shape[1] == n_states:
            tiles = getattr(env.unwrapped, "desc", None)
            arrays = {"values": algo.values(), "policy": algo.policy(), "shape": np.array(shape)}
            if tiles is not None:
                arrays["tiles"] = tiles.astype(str)
            rundir.write_npz(RL_VALUES, arrays)
        rundir.write_json(METRICS, metrics)
        return RunResult(run_dir, config, metrics, history=history)

    def report_sections(self, run_dir: Path) -> list[tuple[str, str, str]]:
        from deepworks.report.markup import figure
        from deepworks.report.style import fig_to_data_uri
        from deepworks.report.value_grid import arrows_for, value_grid_figure

        rundir = RunDir(run_dir)
        arrays = rundir.read_npz(RL_VALUES)
        if not arrays:
            return []
        env_id = (rundir.config_dict() or {}).get("env", {}).get("id", "")
        fig = value_grid_figure(
            arrays["values"],
            arrays["policy"],
            tuple(int(n) for n in arrays["shape"]),
            arrows_for(env_id),
            arrays.get("tiles"),
        )
        caption = f"{env_id}: V(s) of the learned values, and the greedy action in each state"
        return [("values", "Values and policy", figure(fig_to_data_uri(fig), caption, caption))]


def _row(index: int, done: int, window: list[dict[str, float]], seconds: float) -> dict:
    row: dict[str, float] = {"epoch": index, "step": done}
    for key in window[0] if window else ():
        row[f"train/{key}"] = float(np.mean([w[key] for w in window]))
    row["time"] = round(seconds, 4)
    return row


def _restore(path: Path, algo, rng: np.random.Generator) -> tuple[int, list, list]:
    tensors, state = load_checkpoint(path)
    try:
        arrays = {k: v.numpy() for k, v in tensors["algorithm"].items()}
        algo.load_state_dict(arrays | state["algorithm"])
        rng.bit_generator.state = state["rng"]
        return int(state["done"]), list(state["history"]), list(state["window"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: does not fit this algorithm ({exc})") from exc


def _evaluate(algo, env, seed: int, episodes: int) -> dict[str, float]:
    """Mean return and length of the greedy policy over seeded evaluation episodes."""
    policy = algo.policy()
    returns, lengths = [], []
    for k in range(episodes):
        s, _ = env.reset(seed=episode_seed(seed, k, evaluation=True))
        total, length, over = 0.0, 0, False
        while not over:
            s, r, terminated, truncated, _ = env.step(int(policy[s]))
            total, length, over = total + float(r), length + 1, terminated or truncated
        returns.append(total)
        lengths.append(length)
    return {
        "test/return": float(np.mean(returns)),
        "test/return_std": float(np.std(returns)),
        "test/length": float(np.mean(lengths)),
    }

"""Tabular RL: value iteration and policy iteration agree and reach the Bellman fixed point;
Q-learning solves Taxi; SARSA and expected SARSA learn CliffWalking; a run resumes exactly;
bad environments and pairings are one line."""

from __future__ import annotations

import json
import os
import signal

import gymnasium as gym
import numpy as np
import pytest
import yaml

from deepworks.cli import main
from deepworks.recipes import train
from deepworks.registry import ALGORITHMS
from deepworks.rl.dynamic_programming import PolicyIteration, ValueIteration
from deepworks.rl.td_control import TDControl
from deepworks.rundir import RunDir
from deepworks.train.trainer import TrainingInterrupted


def rl_config(env: str, algorithm: dict, **train_options) -> dict:
    return {
        "name": "agent",
        "recipe": "rl",
        "env": {"id": env},
        "algorithm": algorithm,
        "train": {"progress": False} | train_options,
    }


def bellman_residual(env_id: str, v: np.ndarray, gamma: float) -> float:
    """max_s |max_a Σ p (r + γ V(s') [not terminal]) − V(s)|, written out from env.P."""
    model = gym.make(env_id).unwrapped.P
    worst = 0.0
    for s, actions in model.items():
        best = max(
            sum(p * (r + (0.0 if done else gamma * v[s2])) for p, s2, r, done in outcomes)
            for outcomes in actions.values()
        )
        worst = max(worst, abs(best - v[s]))
    return worst


def plan(cls, env_id: str, gamma: float, **options):
    env = gym.make(env_id)
    algo = cls(gamma=gamma, **options)
    algo.setup(env, env.observation_space.n, env.action_space.n, env.unwrapped.P)
    rng = np.random.default_rng(0)
    for i in range(10_000):
        algo.step(i, 0, rng)
        if algo.converged:
            return algo, i + 1
    raise AssertionError("did not converge")


@pytest.mark.parametrize("env_id", ["FrozenLake-v1", "FrozenLake8x8-v1", "CliffWalking-v1"])
def test_value_and_policy_iteration_find_the_same_optimal_policy(env_id):
    vi, vi_sweeps = plan(ValueIteration, env_id, 0.95, theta=1e-12)
    pi, pi_steps = plan(PolicyIteration, env_id, 0.95)
    assert bellman_residual(env_id, vi.values(), 0.95) < 1e-6  # the fixed point
    assert bellman_residual(env_id, pi.values(), 0.95) < 1e-6
    np.testing.assert_allclose(vi.values(), pi.values(), atol=1e-6)
    # the same policy: each one's action is optimal under the other's Q (ties are equal)
    states = np.arange(len(vi.q))
    np.testing.assert_allclose(vi.q[states, pi.policy()], vi.q.max(axis=1), atol=1e-6)
    np.testing.assert_allclose(pi.q[states, vi.policy()], pi.q.max(axis=1), atol=1e-6)
    unique = (np.sort(vi.q, axis=1)[:, -1] - np.sort(vi.q, axis=1)[:, -2]) > 1e-6
    assert (vi.policy()[unique] == pi.policy()[unique]).all()
    assert pi_steps <= vi_sweeps  # policy iteration needs fewer (but costlier) steps


def test_q_learning_solves_taxi_through_the_cli(tmp_path, capsys):
    main(["train", "examples/taxi_qlearning.yaml", "--out", str(tmp_path), "-q"])
    run = RunDir(tmp_path / "taxi_qlearning")
    metrics = run.metrics()
    assert metrics["test/return"] >= 7.0  # "solved": mean return over 100 seeded episodes
    assert (run.manifest() or {})["recipe"] == "rl"
    assert "test/return" in capsys.readouterr().out
    rows = run.history()
    assert len(rows) == 30 and rows[-1]["train/return"] > rows[0]["train/return"]
    assert "Learning curves" in run.report_path.read_text()


def test_frozenlake_value_iteration_example_draws_its_policy(tmp_path):
    result = train("examples/frozenlake_value_iteration.yaml", out=tmp_path, progress=False)
    assert result.metrics["train/converged"] == 1.0
    page = RunDir(result.dir).report_path.read_text()
    assert "Values and policy" in page and 'alt="FrozenLake-v1: V(s)' in page


@pytest.mark.parametrize("method", ["sarsa", "expected_sarsa"])
def test_on_policy_td_learns_cliff_walking(method, tmp_path):
    algorithm = {"name": method, "alpha": 0.5, "gamma": 1.0, "epsilon_start": 0.1}
    algorithm["epsilon_end"] = 0.1
    cfg = rl_config("CliffWalking-v1", algorithm, steps=300, log_every=50, eval_episodes=1)
    run = train(cfg, out=tmp_path)
    assert run.metrics["test/return"] >= -17  # the safe path (the optimal one is -13)


def test_expected_sarsa_target_is_the_epsilon_greedy_mean():
    algo = TDControl(method="expected_sarsa")
    algo.n_actions, algo.q = 3, np.array([[1.0, 4.0, 4.0]])
    eps = 0.3  # greedy actions 1 and 2 share 1 - eps; every action gets eps / 3
    want = (eps / 3) * 1.0 + (eps / 3 + (1 - eps) / 2) * 4.0 * 2
    assert algo.next_value(0, None, eps) == pytest.approx(want)


def test_an_interrupted_run_resumes_exactly(tmp_path, monkeypatch):
    cfg = rl_config("Taxi-v4", {"name": "q_learning", "alpha": 0.5, "epsilon_decay": 300})
    cfg["train"] |= {"steps": 600, "log_every": 50, "checkpoint_every": 100}
    whole = train(cfg, out=tmp_path / "whole")
    step = TDControl.step

    def interrupted(self, index, seed, rng):
        if index == 437:  # mid-way between checkpoints: the signal's own checkpoint is used
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, index, seed, rng)

    monkeypatch.setattr(TDControl, "step", interrupted)
    with pytest.raises(TrainingInterrupted, match="SIGINT received: stopped after episode 438"):
        train(cfg, out=tmp_path / "cut")
    monkeypatch.setattr(TDControl, "step", step)
    run = tmp_path / "cut" / "agent"
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    resumed = train(resume=run)
    assert resumed.metrics == whole.metrics
    untimed = [{k: v for k, v in row.items() if k != "time"} for row in resumed.history]
    assert untimed == [{k: v for k, v in row.items() if k != "time"} for row in whole.history]
    assert len(RunDir(run).history()) == 12


@pytest.mark.parametrize(
    ("env", "algorithm", "needle"),
    [
        ("CartPol-v1", "q_learning", "env.id: 'CartPol-v1' is not a Gymnasium environment"),
        ("CartPole-v1", "q_learning", "q_learning is tabular and needs discrete states"),
        ("Taxi-v4", "q_learnin", "'q_learnin' is not an RL algorithm; did you mean 'q_learning'"),
    ],
)
def test_bad_environments_and_pairings_are_one_line(env, algorithm, needle, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(rl_config(env, {"name": algorithm})))
    with pytest.raises(SystemExit) as exc:
        main(["train", str(path), "--out", str(tmp_path / "runs")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_every_algorithm_is_listed():
    assert {"value_iteration", "policy_iteration", "q_learning", "sarsa", "expected_sarsa"} <= set(
        ALGORITHMS.names()
    )


@pytest.mark.parametrize(
    "command", [["evaluate"], ["explain", "--method", "ig"], ["embed", "--split", "test"]]
)
def test_supervised_commands_refuse_an_rl_run_in_one_line(command, tmp_path, capsys):
    cfg = rl_config("FrozenLake-v1", {"name": "value_iteration"}, eval_episodes=1)
    run = train(cfg, out=tmp_path)
    with pytest.raises(SystemExit) as exc:
        main([command[0], str(run.dir), *command[1:]])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "a run of the 'rl' recipe" in err and "\n" not in err

"""Gymnasium environments by id, with one-line errors and the facts tabular methods need.

Every environment a run uses is made here: ``make_env("Taxi-v4", seed)``. An unknown id is one
line with Gymnasium's own "did you mean"; a missing optional dependency (Box2D for LunarLander)
names the package to install. Episodes are seeded one by one (``episode_seed``), so a run
resumed at an episode boundary replays exactly the episodes the uninterrupted run would have.
"""

from __future__ import annotations

from typing import Any

from deepworks.errors import ConfigError


def gymnasium():
    """The gymnasium module, or a one-line error naming the extra that brings it."""
    try:
        import gymnasium
    except ImportError as exc:
        raise ConfigError("the rl recipe needs gymnasium: pip install -e .[rl]") from exc
    return gymnasium


def make_env(env_id: str, where: str = "env.id", **kwargs: Any):
    """``gymnasium.make(env_id, **kwargs)`` with one-line errors for a bad id or option."""
    gym = gymnasium()
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise ConfigError(f"{where}: {env_id!r} needs a package that is missing: {exc}") from exc
    except gym.error.Error as exc:
        message = str(exc).replace("`", "'")
        raise ConfigError(f"{where}: {env_id!r} is not a Gymnasium environment: {message}") from exc
    except TypeError as exc:
        raise ConfigError(f"env.kwargs: {env_id} does not take them ({exc})") from exc


def tabular_sizes(env, env_id: str, algorithm: str) -> tuple[int, int]:
    """(number of states, number of actions) of an environment with discrete spaces, or a
    one-line error: tabular methods keep one value per state and action."""
    gym = gymnasium()
    obs, act = env.observation_space, env.action_space
    if not isinstance(obs, gym.spaces.Discrete) or not isinstance(act, gym.spaces.Discrete):
        raise ConfigError(
            f"algorithm.name: {algorithm} is tabular and needs discrete states and actions; "
            f"{env_id} has {obs} observations and {act} actions (try FrozenLake-v1, Taxi-v4 or "
            "CliffWalking-v1)"
        )
    return int(obs.n), int(act.n)


def transition_model(env, env_id: str, algorithm: str) -> dict:
    """``P[s][a] = [(probability, next state, reward, terminal), ...]``, the model a planning
    method sweeps over, or a one-line error for an environment that does not publish it."""
    model = getattr(env.unwrapped, "P", None)
    if not isinstance(model, dict):
        raise ConfigError(
            f"algorithm.name: {algorithm} plans from the environment's transition model, which "
            f"{env_id} does not publish; learn from episodes instead (q_learning, sarsa)"
        )
    return model


def episode_seed(seed: int, episode: int, evaluation: bool = False) -> int:
    """The seed of one episode's reset: distinct per run seed and episode, and for evaluation."""
    return (seed * 1_000_003 + episode + (500_000_000 if evaluation else 0)) % (2**31)


def grid_shape(env) -> tuple[int, int] | None:
    """(rows, columns) of a grid-world's states (FrozenLake, CliffWalking), else None."""
    desc = getattr(env.unwrapped, "desc", None)
    if desc is not None:
        return tuple(desc.shape)
    shape = getattr(env.unwrapped, "shape", None)
    return tuple(shape) if shape is not None and len(shape) == 2 else None

"""Reinforcement learning: one algorithm per file, run by the ``rl`` recipe.

``deepworks list algorithms`` shows them. Tabular methods so far:

- :mod:`~deepworks.rl.dynamic_programming`: value iteration and policy iteration, planned from
  the environment's transition model (FrozenLake, Taxi, CliffWalking);
- :mod:`~deepworks.rl.td_control`: Q-learning, SARSA and expected SARSA with an ε-greedy
  schedule, learned from episodes.

Environments come from Gymnasium (:mod:`~deepworks.rl.envs`).
"""

from deepworks.rl import dynamic_programming, td_control  # noqa: F401  (registers them)
from deepworks.rl.base import TabularAlgorithm
from deepworks.rl.envs import make_env

__all__ = ["TabularAlgorithm", "make_env"]

"""What a tabular algorithm is to the ``rl`` recipe: tables, one step of work, a greedy policy.

The recipe calls :meth:`TabularAlgorithm.step` until the budget is spent or the algorithm says
it converged; a step is one sweep over the states (planning) or one episode (learning). The
tables and the sampler's state are the whole algorithm state, saved in checkpoints.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class TabularAlgorithm:
    """Base of tabular methods: ``q`` (states, actions) and the episode / sweep counter.

    Args:
        gamma: Discount factor of future rewards.
    """

    #: One step is a "sweep" (planning from the model) or an "episode" (learning from them).
    unit = "episode"
    #: Plans from the transition model instead of learning from episodes.
    needs_model = False

    def __init__(self, gamma: float = 0.99):
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        self.gamma = float(gamma)
        self.q: np.ndarray | None = None
        self.converged = False

    def setup(self, env, n_states: int, n_actions: int, model: dict | None) -> None:
        self.env, self.model = env, model
        self.n_states, self.n_actions = n_states, n_actions
        self.q = np.zeros((n_states, n_actions))

    def step(self, index: int, seed: int, rng: np.random.Generator) -> dict[str, float]:
        """Do one unit of work; return its logs (e.g. ``return``, ``length``, ``delta``)."""
        raise NotImplementedError

    def policy(self) -> np.ndarray:
        """The greedy action of every state (ties: the lowest action)."""
        return self.q.argmax(axis=1)

    def values(self) -> np.ndarray:
        """The state values of the greedy policy, ``V(s) = max_a Q(s, a)``."""
        return self.q.max(axis=1)

    def state_dict(self) -> dict[str, Any]:
        return {"q": self.q, "converged": self.converged}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q = np.asarray(state["q"], dtype=float).reshape(self.n_states, self.n_actions)
        self.converged = bool(state["converged"])

"""Dynamic programming: value iteration and policy iteration from the transition model.

Both solve the Bellman optimality equation of a finite MDP whose model
``P[s][a] = [(p, s', r, terminal), ...]`` the environment publishes (FrozenLake, Taxi,
CliffWalking):

    Q(s, a) = Σ_{s'} p(s' | s, a) · (r + γ · V(s') · [s' not terminal]),   V(s) = max_a Q(s, a)

- **Value iteration** (Bellman 1957) applies that update to every state, one sweep per step, until
  the largest change ``δ = max_s |V_new(s) − V(s)|`` falls below ``theta``: V is then within
  ``theta · γ / (1 − γ)`` of the fixed point.
- **Policy iteration** (Howard 1960) alternates *evaluation* — solving ``V = r_π + γ P_π V``
  exactly, one linear system — and *improvement* — ``π(s) = argmax_a Q(s, a)`` — until the policy
  no longer changes; each step is one evaluation and one improvement.
"""

from __future__ import annotations

import numpy as np

from deepworks.registry import register_algorithm
from deepworks.rl.base import TabularAlgorithm


def expected_model(model: dict, n_states: int, n_actions: int, gamma: float):
    """Dense arrays of the model: ``R[s, a]`` (expected reward) and ``T[s, a, s']``
    (discounted-transition weights ``p · [s' not terminal]``), so ``Q = R + γ T V``."""
    reward = np.zeros((n_states, n_actions))
    trans = np.zeros((n_states, n_actions, n_states))
    for s in range(n_states):
        for a in range(n_actions):
            for p, s2, r, terminal in model[s][a]:
                reward[s, a] += p * r
                if not terminal:
                    trans[s, a, s2] += p
    return reward, trans


class _Planner(TabularAlgorithm):
    unit = "sweep"
    needs_model = True

    def setup(self, env, n_states, n_actions, model) -> None:
        super().setup(env, n_states, n_actions, model)
        self.reward, self.trans = expected_model(model, n_states, n_actions, self.gamma)
        self.v = np.zeros(n_states)

    def backup(self, v: np.ndarray) -> np.ndarray:
        """``Q(s, a) = R(s, a) + γ Σ_s' T(s, a, s') V(s')`` for every state and action."""
        return self.reward + self.gamma * self.trans @ v  # (S, A)

    def values(self) -> np.ndarray:
        return self.v

    def state_dict(self):
        return super().state_dict() | {"v": self.v}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.v = np.asarray(state["v"], dtype=float).reshape(self.n_states)


@register_algorithm("value_iteration")
class ValueIteration(_Planner):
    """Value iteration: Bellman optimality sweeps over every state until the values settle.

    Args:
        gamma: Discount factor of future rewards.
        theta: Stop when no state's value changes by more than this in a sweep.
    """

    def __init__(self, gamma: float = 0.99, theta: float = 1e-10):
        super().__init__(gamma)
        self.theta = float(theta)

    def step(self, index, seed, rng) -> dict[str, float]:
        self.q = self.backup(self.v)
        v = self.q.max(axis=1)
        delta = float(np.abs(v - self.v).max())
        self.v = v
        self.converged = delta < self.theta
        return {"delta": delta}


@register_algorithm("policy_iteration")
class PolicyIteration(_Planner):
    """Policy iteration: exact evaluation of the greedy policy, then improvement, until stable.

    Args:
        gamma: Discount factor of future rewards (below 1, so each evaluation has one solution).
    """

    def __init__(self, gamma: float = 0.99):
        super().__init__(gamma)
        if self.gamma >= 1.0:
            raise ValueError("gamma must be below 1 for policy iteration's linear solve")
        self.pi: np.ndarray | None = None

    def setup(self, env, n_states, n_actions, model) -> None:
        super().setup(env, n_states, n_actions, model)
        self.pi = np.zeros(n_states, dtype=int)

    def step(self, index, seed, rng) -> dict[str, float]:
        states = np.arange(self.n_states)
        # evaluation: V = r_π + γ P_π V  ⇔  (I − γ P_π) V = r_π
        p_pi, r_pi = self.trans[states, self.pi], self.reward[states, self.pi]  # (S, S), (S,)
        self.v = np.linalg.solve(np.eye(self.n_states) - self.gamma * p_pi, r_pi)
        # improvement: greedy in Q; keep the current action on ties so that it terminates
        self.q = self.backup(self.v)
        best = self.q.max(axis=1, keepdims=True)
        keep = np.isclose(self.q[states, self.pi], best[:, 0], rtol=0, atol=1e-12)
        new = np.where(keep, self.pi, self.q.argmax(axis=1))
        changed = int((new != self.pi).sum())
        self.pi, self.converged = new, changed == 0
        return {"changed": float(changed)}

    def policy(self) -> np.ndarray:
        return self.pi

    def state_dict(self):
        return super().state_dict() | {"pi": self.pi}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.pi = np.asarray(state["pi"], dtype=int).reshape(self.n_states)

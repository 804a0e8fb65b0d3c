"""Temporal-difference control: Q-learning, SARSA and expected SARSA, with an ε-greedy schedule.

Each episode the agent acts ε-greedily in its table Q and, after every step (s, a, r, s'),
moves ``Q(s, a)`` toward a one-step target by ``α``:

    Q(s, a) ← Q(s, a) + α · (r + γ · next(s') · [s' not terminal] − Q(s, a))

The three methods differ only in ``next(s')``:

- **Q-learning** (Watkins 1989), off-policy: ``max_a' Q(s', a')``, the greedy action's value;
- **SARSA** (Rummery & Niranjan 1994), on-policy: ``Q(s', a')`` of the action actually taken next;
- **expected SARSA** (van Seijen et al. 2009): ``Σ_a' π(a' | s') Q(s', a')`` under the ε-greedy
  policy, SARSA's target without the noise of sampling ``a'``.

ε falls linearly from ``epsilon_start`` to ``epsilon_end`` over ``epsilon_decay`` episodes; the
greedy choice breaks ties at random, so an all-zero table still explores.
"""

from __future__ import annotations

import numpy as np

from deepworks.registry import register_algorithm
from deepworks.rl.base import TabularAlgorithm

METHODS = ("q_learning", "sarsa", "expected_sarsa")


class TDControl(TabularAlgorithm):
    """One-step TD control in a table (``method``: q_learning, sarsa or expected_sarsa).

    Args:
        method: Which target: q_learning, sarsa or expected_sarsa.
        alpha: Step size of each update.
        gamma: Discount factor of future rewards.
        epsilon_start: Exploration rate of the first episode.
        epsilon_end: Exploration rate after ``epsilon_decay`` episodes.
        epsilon_decay: Episodes over which ε falls linearly.
    """

    def __init__(
        self,
        method: str = "q_learning",
        alpha: float = 0.1,
        gamma: float = 0.99,
        epsilon_start: float = 1.0,
        epsilon_end: float = 0.05,
        epsilon_decay: int = 1000,
    ):
        super().__init__(gamma)
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        for name, eps in (("epsilon_start", epsilon_start), ("epsilon_end", epsilon_end)):
            if not 0 <= eps <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {eps}")
        self.method, self.alpha = method, float(alpha)
        self.eps_start, self.eps_end = float(epsilon_start), float(epsilon_end)
        self.eps_decay = max(1, int(epsilon_decay))

    def epsilon(self, episode: int) -> float:
        frac = min(1.0, episode / self.eps_decay)
        return self.eps_start + frac * (self.eps_end - self.eps_start)

    def act(self, s: int, eps: float, rng: np.random.Generator) -> int:
        """ε-greedy: a random action with probability ε, else a greedy one (ties at random)."""
        if rng.random() < eps:
            return int(rng.integers(self.n_actions))
        row = self.q[s]
        return int(rng.choice(np.flatnonzero(row == row.max())))

    def next_value(self, s2: int, a2: int | None, eps: float) -> float:
        row = self.q[s2]
        if self.method == "q_learning":
            return float(row.max())
        if self.method == "sarsa":
            return float(row[a2])
        greedy = np.flatnonzero(row == row.max())  # expected SARSA under ε-greedy
        probs = np.full(self.n_actions, eps / self.n_actions)
        probs[greedy] += (1.0 - eps) / len(greedy)
        return float(probs @ row)

    def step(self, index: int, seed: int, rng: np.random.Generator) -> dict[str, float]:
        eps = self.epsilon(index)
        s, _ = self.env.reset(seed=seed)
        a = self.act(s, eps, rng)
        total, length = 0.0, 0
        while True:
            s2, r, terminated, truncated, _ = self.env.step(a)
            total, length = total + float(r), length + 1
            # SARSA's target is the action it will take; the others choose after the update
            a2 = self.act(s2, eps, rng) if self.method == "sarsa" else None
            future = 0.0 if terminated else self.next_value(s2, a2, eps)
            self.q[s, a] += self.alpha * (r + self.gamma * future - self.q[s, a])
            if terminated or truncated:
                break
            s, a = s2, (a2 if a2 is not None else self.act(s2, eps, rng))
        return {"return": total, "length": float(length), "epsilon": eps}


@register_algorithm("q_learning")
def q_learning(**options) -> TDControl:
    """Q-learning: off-policy TD control toward the greedy next value (Watkins 1989).

    Args:
        **options: alpha, gamma, epsilon_start, epsilon_end, epsilon_decay (see TDControl).
    """
    return TDControl(method="q_learning", **options)


@register_algorithm("sarsa")
def sarsa(**options) -> TDControl:
    """SARSA: on-policy TD control toward the value of the next action taken.

    Args:
        **options: alpha, gamma, epsilon_start, epsilon_end, epsilon_decay (see TDControl).
    """
    return TDControl(method="sarsa", **options)


@register_algorithm("expected_sarsa")
def expected_sarsa(**options) -> TDControl:
    """Expected SARSA: TD control toward the next value expected under the ε-greedy policy.

    Args:
        **options: alpha, gamma, epsilon_start, epsilon_end, epsilon_decay (see TDControl).
    """
    return TDControl(method="expected_sarsa", **options)

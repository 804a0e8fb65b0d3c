"""Returns and advantages of on-policy rollouts (REINFORCE, A2C, PPO).

A rollout is ``T`` steps of ``n_envs`` environments: row ``t`` holds the reward ``r_t`` of the
action taken in ``s_t``, and flags saying whether the episode ended after it, by reaching a
terminal state (``terminated``) or by a time limit (``truncated``). Both end the episode, but
only a terminal state has value zero: a truncated episode would have gone on, so its last step
still bootstraps from the value of its final observation.

- :func:`discounted_returns`: REINFORCE's reward-to-go ``G_t = r_t + γ G_{t+1}``, cut at ends.
- :func:`gae`: generalized advantage estimation (Schulman et al. 2016), the λ-weighted sum of
  TD errors, between the one-step TD error (λ = 0) and the Monte-Carlo advantage (λ = 1).
- :func:`normalize`: zero mean, unit standard deviation, as PPO does to its advantages.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gae(
    rewards: Tensor,
    values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    last_value: Tensor,
    gamma: float,
    lam: float,
    truncated_values: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation over a rollout.

    ``values`` has ``T`` rows, ``values[t] = V(s_t)``; ``last_value = V(s_T)`` is the value of
    the observation after the rollout's last step (the one the next rollout starts from). The
    value of the state after step ``t`` is

    - ``0`` if ``terminated[t]``;
    - ``truncated_values[t]`` (``V`` of the final observation) if ``truncated[t]`` and it is
      given: SB3's convention, which adds ``γ V(final obs)`` to the truncated step's reward;
    - ``0`` if ``truncated[t]`` and ``truncated_values`` is None: CleanRL's ``ppo.py``, which
      treats a time limit like a terminal state;
    - else ``values[t + 1]``, or ``last_value`` for ``t = T − 1``.

    Then, with ``V'_t`` that value and ``done_t = terminated_t or truncated_t``,

        δ_t = r_t + γ V'_t − V(s_t)
        A_t = δ_t + γ λ (1 − done_t) A_{t+1},    A_T = 0

    Args:
        rewards: ``(T, n_envs)``.
        values: ``(T, n_envs)``, ``V(s_t)``.
        terminated: ``(T, n_envs)``, true where ``s_{t+1}`` is terminal.
        truncated: ``(T, n_envs)``, true where the episode was cut after step ``t``.
        last_value: ``(n_envs,)``, ``V(s_T)``.
        gamma: Discount factor.
        lam: GAE's λ in [0, 1].
        truncated_values: Optional ``(T, n_envs)``, ``V`` of the final observation where
            ``truncated``; read only there.

    Returns:
        ``(advantages, returns)``, both ``(T, n_envs)``, with ``returns = advantages + values``
        (the value function's regression target).
    """
    T = rewards.shape[0]
    term, trunc = terminated.float(), truncated.float()  # (T, E)
    next_values = torch.cat([values[1:], last_value.reshape(1, *values.shape[1:])])  # (T, E)
    if truncated_values is None:
        next_values = next_values * (1.0 - trunc)
    else:
        next_values = torch.where(truncated.bool(), truncated_values, next_values)
    deltas = rewards + gamma * next_values * (1.0 - term) - values  # (T, E)
    not_done = 1.0 - torch.maximum(term, trunc)  # (T, E)

    advantages = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[0])  # A_{t+1}, (E,)
    for t in reversed(range(T)):
        running = deltas[t] + gamma * lam * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values


def discounted_returns(rewards: Tensor, terminated: Tensor, gamma: float) -> Tensor:
    """Reward-to-go ``G_t = r_t + γ (1 − terminated_t) G_{t+1}`` with ``G_T = 0``.

    The rollout's end counts as an episode end (no bootstrap). Pass ``terminated | truncated``
    to cut at time limits too, so no return flows from one episode into the next.

    Args:
        rewards: ``(T,)`` or ``(T, n_envs)``.
        terminated: Same shape, true where the episode ended after step ``t``.
        gamma: Discount factor.

    Returns:
        ``G``, the shape of ``rewards``.
    """
    not_done = 1.0 - terminated.float()
    returns = torch.zeros_like(rewards, dtype=torch.float32)
    running = torch.zeros_like(returns[0])
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + gamma * not_done[t] * running
        returns[t] = running
    return returns


def normalize(x: Tensor, eps: float = 1e-8) -> Tensor:
    """``(x − mean) / (std + eps)`` over all elements (unbiased std; one element: ``x − mean``)."""
    centered = x - x.mean()
    if x.numel() < 2:
        return centered
    return centered / (x.std() + eps)

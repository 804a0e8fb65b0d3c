"""Experience replay for off-policy agents (DQN and its kin): uniform, prioritized, n-step.

A replay buffer (Lin 1992; Mnih et al. 2015) keeps the last ``capacity`` transitions
``(s, a, r, s', terminated)`` in preallocated tensors used as a ring: once full, each new
transition overwrites the oldest. Learning samples minibatches from it, which breaks the
correlation between consecutive steps and reuses each transition many times.

:class:`PrioritizedReplayBuffer` (Schaul et al. 2016, proportional variant) samples transition
``i`` with probability ``P(i) = p_i^α / Σ_k p_k^α`` where ``p_i = |δ_i| + ε`` is its last TD
error, and corrects the bias with importance weights ``w_i = (N · P(i))^-β / max_j w_j``. A
:class:`SumTree` makes sampling and updating ``O(log N)``.

:func:`nstep_targets` turns a run of rewards into n-step returns (Sutton 1988; used by Rainbow).

Storage is flat: ``n_envs`` transitions added together take ``n_envs`` consecutive slots, so
the filled part is always ``[0, len)``. ``state_dict()`` holds only tensors and ints, ready for a
safetensors checkpoint (tensors) plus JSON (ints); a resumed run samples exactly what the
uninterrupted one would have, given the same generator state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated")


class ReplayBuffer:
    """A ring of the last ``capacity`` transitions, sampled uniformly.

    Args:
        capacity: Transitions kept (over all environments); at least ``n_envs``.
        obs_shape: Shape of one observation, e.g. ``(4,)`` for CartPole.
        obs_dtype: Storage dtype of observations (``torch.uint8`` keeps Atari frames small).
        action_shape: Shape of one action: ``()`` for discrete, ``(d,)`` for continuous.
        action_dtype: Storage dtype of actions.
        n_envs: Transitions each :meth:`add` call brings, one per vectorized environment.
        device: Where the storage lives and where samples are returned.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: torch.dtype = torch.float32,
        action_shape: tuple[int, ...] = (),
        action_dtype: torch.dtype = torch.long,
        n_envs: int = 1,
        device: str | torch.device = "cpu",
    ):
        if n_envs < 1 or capacity < n_envs:
            raise ValueError(f"need capacity >= n_envs >= 1, got {capacity=} and {n_envs=}")
        self.capacity, self.n_envs = int(capacity), int(n_envs)
        self.obs_shape, self.action_shape = tuple(obs_shape), tuple(action_shape)
        self.device = torch.device(device)
        self.obs = torch.zeros((capacity, *obs_shape), dtype=obs_dtype, device=device)  # (N, *O)
        self.next_obs = torch.zeros_like(self.obs)  # (N, *O)
        self.actions = torch.zeros((capacity, *action_shape), dtype=action_dtype, device=device)
        self.rewards = torch.zeros(capacity, dtype=torch.float32, device=device)  # (N,)
        self.terminated = torch.zeros(capacity, dtype=torch.float32, device=device)  # (N,) 0/1
        self.pos = 0  # the next slot to write
        self.size = 0  # slots filled, [0, size)

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward, next_obs, terminated) -> Tensor:
        """Store one transition per environment; return the slots written, shape ``(n_envs,)``.

        Args:
            obs: Observations ``(n_envs, *obs_shape)`` (tensor or array).
            action: Actions ``(n_envs, *action_shape)``.
            reward: Rewards ``(n_envs,)``.
            next_obs: Observations after the step ``(n_envs, *obs_shape)``: for an episode
                that just ended, its final observation, not the reset one.
            terminated: ``(n_envs,)`` true where the episode reached a terminal state (not a
                time-limit truncation: a truncated step still bootstraps from ``next_obs``).
        """
        idx = (self.pos + torch.arange(self.n_envs, device=self.device)) % self.capacity
        for name, value in zip(FIELDS, (obs, action, reward, next_obs, terminated), strict=True):
            store = getattr(self, name)
            value = torch.as_tensor(value, device=self.device).to(store.dtype)
            store[idx] = value.reshape(self.n_envs, *store.shape[1:])
        self.pos = (self.pos + self.n_envs) % self.capacity
        self.size = min(self.size + self.n_envs, self.capacity)
        return idx

    def _gather(self, idx: Tensor) -> dict[str, Tensor]:
        idx = idx.to(self.device)
        return {name: getattr(self, name)[idx] for name in FIELDS}

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Draw ``batch_size`` transitions uniformly, with replacement, from the filled part.

        Args:
            batch_size: Transitions to draw.
            generator: A CPU generator; its state decides the draw (save it to resume).

        Returns:
            ``obs`` (B, *O), ``actions`` (B, *A), ``rewards`` (B,), ``next_obs`` (B, *O),
            ``terminated`` (B,) as 0.0 / 1.0.
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = torch.randint(0, self.size, (batch_size,), generator=generator)  # (B,)
        return self._gather(idx)

    def state_dict(self) -> dict[str, Any]:
        """The filled tensors and the ring position: tensors and ints only."""
        state: dict[str, Any] = {name: getattr(self, name)[: self.size].cpu() for name in FIELDS}
        return state | {"pos": self.pos, "size": self.size, "capacity": self.capacity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(
                f"replay state has capacity {int(state['capacity'])}, this buffer {self.capacity}"
            )
        size = int(state["size"])
        for name in FIELDS:
            store = getattr(self, name)
            if tuple(state[name].shape) != (size, *store.shape[1:]):
                raise ValueError(f"replay state: {name} has shape {tuple(state[name].shape)}")
            store.zero_()
            store[:size] = state[name].to(self.device, store.dtype)
        self.pos, self.size = int(state["pos"]), size


class SumTree:
    """A binary tree whose every node holds the sum of its two children; leaves are priorities.

    Node 1 is the root, node ``k`` has children ``2k`` and ``2k + 1``, and the ``capacity``
    leaves sit at ``[L, L + capacity)`` with ``L`` the smallest power of two ``>= capacity``.
    Every operation is vectorized over a batch and walks the ``log2 L`` levels once.

    Args:
        capacity: Number of leaves.
    """

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.leaf0 = 1 << max(0, (self.capacity - 1).bit_length())  # L
        self.depth = self.leaf0.bit_length() - 1  # levels below the root
        self.tree = torch.zeros(2 * self.leaf0, dtype=torch.float64)  # (2L,), node 0 unused

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def priorities(self, indices: Tensor) -> Tensor:
        return self.tree[self.leaf0 + indices.cpu()]

    def update(self, index: Tensor | int, priority: Tensor | float) -> None:
        """Set leaves ``index`` to ``priority`` and recompute the sums above them."""
        node = torch.as_tensor(index, dtype=torch.long).reshape(-1) + self.leaf0
        value = torch.as_tensor(priority, dtype=torch.float64).reshape(-1).expand(node.shape)
        self.tree[node] = value
        for _ in range(self.depth):
            node = torch.unique(node // 2)  # duplicates collapse: parents are recomputed anew
            self.tree[node] = self.tree[2 * node] + self.tree[2 * node + 1]

    def find(self, prefix_sums: Tensor) -> Tensor:
        """The leaf ``i`` with ``Σ_{k<i} p_k <= s < Σ_{k<=i} p_k`` for each prefix sum ``s``."""
        s = prefix_sums.to(torch.float64).clone()  # (B,)
        node = torch.ones_like(s, dtype=torch.long)  # (B,) start at the root
        for _ in range(self.depth):
            left = self.tree[2 * node]
            right = s >= left  # go right past the left subtree's mass
            s = torch.where(right, s - left, s)
            node = 2 * node + right.long()
        return (node - self.leaf0).clamp(max=self.capacity - 1)


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016) over a :class:`SumTree`.

    A new transition gets the largest priority seen so far, so it is replayed at least once
    soon. The importance weights are normalized by the largest weight in the sampled batch.

    Args:
        capacity: Transitions kept; see :class:`ReplayBuffer` for the other storage arguments.
        alpha: How much prioritization is used: 0 is uniform, 1 fully proportional.
        beta: Importance-sampling exponent: 1 corrects the bias fully; anneal it toward 1 by
            assigning ``buffer.beta`` (or pass ``beta`` to :meth:`sample`).
        eps: Added to ``|δ|`` so no transition ever has zero probability.
        **storage: obs_shape, obs_dtype, action_shape, action_dtype, n_envs, device.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
        **storage,
    ):
        super().__init__(capacity, obs_shape, **storage)
        if alpha < 0 or beta < 0 or eps <= 0:
            raise ValueError(f"need alpha >= 0, beta >= 0, eps > 0; got {alpha=}, {beta=}, {eps=}")
        self.alpha, self.beta, self.eps = float(alpha), float(beta), float(eps)
        self.tree = SumTree(self.capacity)  # leaves hold p_i^α
        self.max_priority = 1.0  # the largest p_i = |δ_i| + ε seen, before the exponent

    def add(self, obs, action, reward, next_obs, terminated) -> Tensor:
        idx = super().add(obs, action, reward, next_obs, terminated)
        self.tree.update(idx.cpu(), self.max_priority**self.alpha)
        return idx

    def sample(
        self, batch_size: int, generator: torch.Generator, beta: float | None = None
    ) -> dict[str, Tensor]:
        """Draw ``batch_size`` transitions with probability ``P(i) ∝ p_i^α``.

        The mass ``[0, Σ p^α)`` is cut into ``batch_size`` equal segments and one prefix sum is
        drawn uniformly in each (the paper's stratified sampling).

        Returns:
            The fields of :meth:`ReplayBuffer.sample`, plus ``indices`` (B,) for
            :meth:`update_priorities` and ``weights`` (B,), the normalized importance weights
            ``w_i = (N · P(i))^-β / max_j w_j`` with ``N = len(self)``.
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        beta = self.beta if beta is None else float(beta)
        total = self.tree.total
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64)  # (B,)
        prefix = (torch.arange(batch_size, dtype=torch.float64) + u) * (total / batch_size)
        idx = self.tree.find(prefix).clamp(max=self.size - 1)  # (B,)
        probs = self.tree.priorities(idx) / total  # P(i), (B,)
        weights = (self.size * probs) ** -beta
        weights = (weights / weights.max()).to(torch.float32)
        batch = self._gather(idx)
        return batch | {"indices": idx.to(self.device), "weights": weights.to(self.device)}

    def update_priorities(self, indices: Tensor, td_errors: Tensor) -> None:
        """Set ``p_i = |δ_i| + ε`` for the sampled ``indices`` after a learning step."""
        p = td_errors.detach().abs().to("cpu", torch.float64).reshape(-1) + self.eps  # (B,)
        self.tree.update(indices.cpu().reshape(-1), p**self.alpha)
        self.max_priority = max(self.max_priority, float(p.max()))

    def state_dict(self) -> dict[str, Any]:
        """The storage, the tree and the running maximum priority (a 0-d tensor)."""
        extra = {"tree": self.tree.tree.clone(), "max_priority": torch.tensor(self.max_priority)}
        return super().state_dict() | extra

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state["tree"].shape != self.tree.tree.shape:
            raise ValueError(f"replay state: tree has shape {tuple(state['tree'].shape)}")
        self.tree.tree = state["tree"].to(torch.float64).clone()
        self.max_priority = float(state["max_priority"])


def nstep_targets(
    rewards: Tensor,
    terminated: Tensor,
    bootstrap: Tensor,
    gamma: float,
    n: int,
    truncated: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """n-step returns along a trajectory, cut at episode ends.

    Convention: row ``t`` is the transition ``(s_t, a_t, r_t, s_{t+1})`` and ``bootstrap[t]`` is
    a value of the state *after* it, ``s_{t+1}`` (e.g. ``max_a Q_target(s_{t+1}, a)``); this
    keeps the final observation of an episode apart from the next episode's reset one. With
    ``m_t`` the steps used,

        G_t = Σ_{k<m_t} γ^k r_{t+k} + γ^{m_t} · (1 − terminated_{t+m_t−1}) · bootstrap[t+m_t−1]

    where ``m_t = n``, except that the window stops early at the first terminal (or truncated)
    step inside it, which is included, and at the end of the arrays. A terminal step is not
    bootstrapped; a truncated one or the last row is (from its own next-state value).

    Args:
        rewards: ``(T,)`` or ``(T, n_envs)``.
        terminated: Same shape, true where ``s_{t+1}`` is terminal.
        bootstrap: Same shape, the value of ``s_{t+1}``.
        gamma: Discount factor.
        n: Steps of the window, at least 1.
        truncated: Optional, same shape, true where the episode was cut by a time limit.

    Returns:
        ``(targets, steps)``: ``G_t`` as floats and ``m_t`` as longs, both of the input shape.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    shape, T = rewards.shape, rewards.shape[0]
    r = rewards.reshape(T, -1).to(torch.float32)  # (T, E)
    term = terminated.reshape(T, -1).bool()  # (T, E)
    stop = term if truncated is None else term | truncated.reshape(T, -1).bool()
    boot = bootstrap.reshape(T, -1).to(torch.float32)  # (T, E)
    t = torch.arange(T, device=r.device).unsqueeze(1).expand_as(r)  # (T, E)

    targets = torch.zeros_like(r)
    discount = torch.ones_like(r)  # γ^k for the next reward taken
    steps = torch.zeros_like(t)
    alive = torch.ones_like(term)  # the window has not hit an episode end yet
    for k in range(n):
        idx = (t + k).clamp(max=T - 1)
        alive = alive & (t + k < T)
        targets += torch.where(alive, discount * r.gather(0, idx), 0.0)
        discount = torch.where(alive, discount * gamma, discount)
        steps += alive.long()
        alive = alive & ~stop.gather(0, idx)
    last = t + steps - 1  # the window's final transition
    not_terminal = 1.0 - term.gather(0, last).float()
    targets += discount * not_terminal * boot.gather(0, last)  # discount is now γ^{m_t}
    return targets.reshape(shape), steps.reshape(shape)

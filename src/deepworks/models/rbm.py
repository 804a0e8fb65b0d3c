"""Restricted Boltzmann machine (Bernoulli visible and hidden units).

An RBM is an energy-based model of binary vectors ``v`` (visible, the data) with binary latent
units ``h`` (hidden), connected only across the two layers (no visible-visible or hidden-hidden
weights, hence "restricted")::

    E(v, h) = -b·v - c·h - hᵀ W v          W: (n_hidden, n_visible)
    p(v, h) = exp(-E(v, h)) / Z

Because the units of one layer do not talk to each other, each layer given the other factorises
into independent Bernoullis, which makes block Gibbs sampling cheap::

    p(h_j = 1 | v) = σ(c_j + W_j·v)          p(v_i = 1 | h) = σ(b_i + (Wᵀh)_i)

Summing the hidden units out gives the *free energy*, with ``p(v) = exp(-F(v)) / Z``::

    F(v) = -b·v - Σ_j softplus(c_j + W_j·v)

The log-likelihood gradient is ``-∂F(v_data)/∂θ + E_model[∂F(v)/∂θ]``. The model expectation is
intractable; contrastive divergence (CD-k, Hinton 2002) replaces it with the free energy of
``v_k``, a sample after k Gibbs steps started at the data (persistent CD keeps the chains
running across updates instead). Minimising the surrogate loss

    loss = mean F(v_0) - mean F(v_k)          (v_k treated as a constant)

with SGD therefore applies exactly the CD update ``ΔW = lr (p(h|v_0) v_0ᵀ - p(h|v_k) v_kᵀ) / B``
(and the matching bias updates); ``deepworks.tasks.rbm`` does this inside the ordinary Trainer.

Inputs in [0, 1] (e.g. grey levels) are read as the probabilities of the visible units: the
formulas above hold for them unchanged, as in scikit-learn's ``BernoulliRBM``.

Example:
    >>> rbm = RBM(in_features=64, hidden=128)
    >>> features = rbm(x)                 # p(h = 1 | v), (B, 128)
    >>> digits = rbm.sample(16, steps=1000)  # p(v | h) after 1000 Gibbs steps from noise
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepworks.models.base import Model
from deepworks.registry import PositiveFloat, PositiveInt, register_model


@register_model("rbm")
class RBM(Model):
    """Bernoulli-Bernoulli restricted Boltzmann machine.

    Args:
        in_features: Number of visible units (inputs are flattened).
        hidden: Number of hidden units.
        init_std: Standard deviation of the initial weights (biases start at zero); small
            weights keep the initial Gibbs chains mixing (Hinton's guide suggests 0.01).
    """

    family = "generative"
    example_input_shape = (12,)

    def __init__(
        self, in_features: PositiveInt, hidden: PositiveInt = 64, init_std: PositiveFloat = 0.01
    ):
        super().__init__()
        if in_features < 1 or hidden < 1:
            raise ValueError(f"in_features and hidden must be >= 1, not {in_features}, {hidden}")
        self.in_features, self.hidden = in_features, hidden
        self.weight = nn.Parameter(torch.randn(hidden, in_features) * init_std)  # W (H, V)
        self.visible_bias = nn.Parameter(torch.zeros(in_features))  # b (V,)
        self.hidden_bias = nn.Parameter(torch.zeros(hidden))  # c (H,)

    @staticmethod
    def example_input(n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(n, 12, generator=generator)  # probabilities in [0, 1]

    # --- the two conditionals ----------------------------------------------------------------
    @staticmethod
    def flat(v: torch.Tensor) -> torch.Tensor:
        return v.flatten(1) if v.ndim > 2 else v  # images (B, C, H, W) -> (B, V)

    def p_h(self, v: torch.Tensor) -> torch.Tensor:
        """p(h = 1 | v) = σ(c + W v), (B, H)."""
        return torch.sigmoid(F.linear(self.flat(v), self.weight, self.hidden_bias))

    def p_v(self, h: torch.Tensor) -> torch.Tensor:
        """p(v = 1 | h) = σ(b + Wᵀ h), (B, V)."""
        return torch.sigmoid(F.linear(h, self.weight.t(), self.visible_bias))

    def sample_h(self, v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(self.p_h(v), generator=generator)

    def sample_v(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(self.p_v(h), generator=generator)

    # --- energies ----------------------------------------------------------------------------
    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """E(v, h) = -b·v - c·h - hᵀ W v, (B,)."""
        v = self.flat(v)
        return (
            -(v @ self.visible_bias)
            - (h @ self.hidden_bias)
            - (F.linear(v, self.weight) * h).sum(-1)
        )

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = -log Σ_h exp(-E(v, h)) = -b·v - Σ_j softplus(c_j + W_j·v), (B,)."""
        v = self.flat(v)
        hidden = F.linear(v, self.weight, self.hidden_bias)  # (B, H)
        return -(v @ self.visible_bias) - F.softplus(hidden).sum(-1)

    # --- sampling ----------------------------------------------------------------------------
    @torch.no_grad()
    def gibbs(
        self, v: torch.Tensor, k: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """k steps of block Gibbs sampling v → h → v from ``v``; returns the binary v_k, (B, V)."""
        v = self.flat(v)
        for _ in range(k):
            v = self.sample_v(self.sample_h(v, generator), generator)
        return v

    @torch.no_grad()
    def reconstruct(
        self, v: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One Gibbs step's mean: p(v | h) with h ~ p(h | v), (B, V)."""
        return self.p_v(self.sample_h(v, generator))

    @torch.no_grad()
    def sample(
        self,
        n: int,
        steps: int = 1000,
        generator: torch.Generator | None = None,
        init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``n`` samples after ``steps`` Gibbs steps from uniform binary noise (or ``init``).

        Returns the mean p(v | h) of the last step (smoother to look at than binary v)."""
        w = self.weight
        if init is None:
            init = torch.rand(n, self.in_features, device=w.device, generator=generator)
            init = (init < 0.5).to(w.dtype)
        v = self.gibbs(init, max(steps - 1, 0), generator)
        return self.reconstruct(v, generator)

    @torch.no_grad()
    def pseudo_log_likelihood(
        self,
        v: torch.Tensor,
        index: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Stochastic pseudo-log-likelihood per sample, (B,), as scikit-learn's ``score_samples``.

        The pseudo-likelihood Π_i p(v_i | v_-i) avoids Z; one random unit i per sample stands in
        for the sum over units: ``V · log σ(F(ṽ) - F(v))``, ṽ = v with unit i flipped.

        Args:
            index: The unit flipped in each sample, (B,); drawn at random when None.
        """
        v = self.flat(v)
        n, width = v.shape
        if index is None:
            index = torch.randint(0, width, (n,), device=v.device, generator=generator)
        rows = torch.arange(n, device=v.device)
        flipped = v.clone()
        flipped[rows, index] = 1 - flipped[rows, index]
        return width * F.logsigmoid(self.free_energy(flipped) - self.free_energy(v))

    # --- as a module -------------------------------------------------------------------------
    def forward_features(self, v: torch.Tensor) -> torch.Tensor:
        return self.p_h(v)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """The hidden probabilities p(h = 1 | v): the features an RBM learns, (B, H)."""
        return self.p_h(v)

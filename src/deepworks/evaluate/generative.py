"""How good are generated samples? A Fréchet distance and class accuracy under a reference
classifier trained on the same data.

The Fréchet Inception Distance (Heusel et al., 2017) compares the mean and covariance of two sets
of features: ``‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½)``. Inception features mean nothing for
8×8 digits, so the features here are the penultimate layer of a small classifier trained on the
run's own training split ("digits-FID"). The same classifier says which class a sample looks like,
which scores a conditional model: a sample drawn for class 3 should be classified as 3.

Two baselines frame the number: uniform noise in the data's range (far: what "no model" scores)
and held-out real data against itself (near: the floor that sampling noise allows).

Example:
    >>> ref = reference_classifier(data)
    >>> sample_quality(samples, labels, data.test.x, ref)
    {'fid': 3.1, 'fid_noise': 410.0, 'fid_real': 1.2, 'class_accuracy': 0.93, ...}
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from deepworks.data.bundle import DataBundle
from deepworks.evaluate.specs import MetricSpec

#: What :func:`sample_quality` emits.
SAMPLE_QUALITY_METRICS = (
    MetricSpec("fid", "min", headline=True, fmt=".2f"),
    MetricSpec("fid_noise", None, headline=True, label="FID of noise (baseline)", fmt=".2f"),
    MetricSpec("fid_real", None, label="FID of real data (floor)", fmt=".2f"),
    MetricSpec("class_accuracy", "max", headline=True, fmt=".2%"),
    MetricSpec("reference_accuracy", None, label="Reference classifier accuracy", fmt=".2%"),
)

_CACHE: dict[str, ReferenceClassifier] = {}


class ReferenceClassifier(nn.Module):
    """An MLP (flattened input → 256 → 64 → classes) trained full-batch with Adam, seeded.

    ``features`` are the 64 activations before the output layer.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, int] = (256, 64)):
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden[0]),
            nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
        )
        self.head = nn.Linear(hidden[1], num_classes)
        self.test_accuracy: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def fit(self, x: torch.Tensor, y: torch.Tensor, steps: int = 200, seed: int = 0):
        with torch.random.fork_rng(devices=[]):  # leaves the training run's RNG untouched
            torch.manual_seed(seed)
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    m.reset_parameters()
            opt = torch.optim.Adam(self.parameters(), lr=3e-3, weight_decay=1e-4)
            self.train()
            for _ in range(steps):
                loss = nn.functional.cross_entropy(self(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.eval()
        return self

    @torch.no_grad()
    def features(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        return self.body(_float(x)).double().numpy()

    @torch.no_grad()
    def predict(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        return self(_float(x)).argmax(1).numpy()


def _float(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = x.detach().cpu() if torch.is_tensor(x) else x
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def reference_classifier(data: DataBundle, seed: int = 0) -> ReferenceClassifier:
    """The reference classifier of ``data``: trained on its training split, scored on its test
    split, and kept for the process (the same data gives the same classifier)."""
    if data.num_classes is None:
        raise ValueError(f"{data.name} has no class labels to train a reference classifier on")
    x, y = data.train.x.float().cpu(), data.train.y.long().cpu()
    key = hashlib.sha1(x.numpy().tobytes() + y.numpy().tobytes() + bytes([seed])).hexdigest()
    if key not in _CACHE:
        with torch.random.fork_rng(devices=[]):  # building it draws initial weights
            ref = ReferenceClassifier(int(np.prod(x.shape[1:])), data.num_classes)
        ref.fit(x, y, seed=seed)
        held_out = data.test if data.test is not None else data.val
        if held_out is not None and len(held_out):
            pred = ref.predict(held_out.x)
            ref.test_accuracy = float((pred == held_out.y.numpy()).mean())
        _CACHE[key] = ref
    return _CACHE[key]


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets of shape (N, D)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr((Σa Σb)^½) = Σ √λ of the symmetric Σa^½ Σb Σa^½, which eigh handles when Σ is singular
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_covmean = np.sqrt(np.clip(lam, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_covmean)


def real_floor(data: DataBundle, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` training samples (a seeded draw): the FID that real data reaches against a held-out
    split of the same size, the floor a generator can hope for."""
    x = data.train.x
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx]


def noise_like(real: torch.Tensor | np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` samples of uniform noise over the value range of ``real``, in its shape."""
    real = np.asarray(real.cpu() if torch.is_tensor(real) else real, np.float32)
    rng = np.random.default_rng(seed)
    return rng.uniform(real.min(), real.max(), size=(n, *real.shape[1:])).astype(np.float32)


def sample_quality(
    samples: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | None,
    real: torch.Tensor | np.ndarray,
    reference: ReferenceClassifier,
    real_reference: torch.Tensor | np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Sample-quality figures of generated ``samples`` against held-out ``real`` data.

    Args:
        samples: Generated samples, in the data's space (scaled like ``real``).
        labels: The class each sample was generated for (conditional models), else None.
        real: Held-out real samples (the test split).
        reference: The :func:`reference_classifier` of the data.
        real_reference: Other real samples (e.g. the validation split) for the ``fid_real``
            floor; left out if None.

    Returns:
        ``fid`` (samples vs real), ``fid_noise`` (uniform noise vs real: the baseline),
        ``fid_real`` (real vs real, when given), ``class_accuracy`` (conditional samples
        classified as their class) and ``reference_accuracy`` (the classifier on real test data).
    """
    real_feats = reference.features(real)
    out = {
        "fid": frechet_distance(reference.features(samples), real_feats),
        "fid_noise": frechet_distance(
            reference.features(noise_like(real, len(samples), seed)), real_feats
        ),
    }
    if real_reference is not None:
        out["fid_real"] = frechet_distance(reference.features(real_reference), real_feats)
    if labels is not None:
        labels = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
        out["class_accuracy"] = float((reference.predict(samples) == labels).mean())
    if reference.test_accuracy is not None:
        out["reference_accuracy"] = reference.test_accuracy
    return out

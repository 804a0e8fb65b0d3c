"""Adversarial robustness: attacks (``deepworks list attacks``) and adversarial training.

Attacks (``deepworks attack RUN --method pgd --eps 0.1``): :mod:`~deepworks.robust.fgsm`,
:mod:`~deepworks.robust.pgd` (L-inf and L2), :mod:`~deepworks.robust.cw` (Carlini-Wagner L2) and
:mod:`~deepworks.robust.square` (black-box). Adversarial training (PGD-AT, TRADES) is a task:
:mod:`deepworks.tasks.adversarial`.

Example:
    >>> from deepworks.robust import InputSpaceModel, robust_accuracy
    >>> robust_accuracy(InputSpaceModel(model), x_test, y_test, "pgd", eps=0.1, steps=20)
"""

from deepworks.robust import cw, fgsm, pgd, square  # noqa: F401  (register the attacks)
from deepworks.robust.common import (
    Attack,
    InputSpaceModel,
    build_attack,
    robust_accuracy,
    robustness_curve,
    run_attack,
)

__all__ = [
    "Attack",
    "InputSpaceModel",
    "build_attack",
    "robust_accuracy",
    "robustness_curve",
    "run_attack",
]

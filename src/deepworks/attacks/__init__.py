"""Adversarial attacks (``deepworks list attacks``): techniques on a model, below the tasks.

:mod:`~deepworks.attacks.fgsm`, :mod:`~deepworks.attacks.pgd` (L-inf and L2),
:mod:`~deepworks.attacks.cw` (Carlini-Wagner L2) and :mod:`~deepworks.attacks.square`
(black-box), on what they share (:mod:`~deepworks.attacks.common`: the threat model, the raw
input space, robust accuracy). Adversarial training (PGD-AT, TRADES) is a task that uses them
(:mod:`deepworks.tasks.adversarial`); attacking a trained run (``deepworks attack RUN``) is
:mod:`deepworks.robust`.

Example:
    >>> from deepworks.attacks import InputSpaceModel, robust_accuracy
    >>> robust_accuracy(InputSpaceModel(model), x_test, y_test, "pgd", eps=0.1, steps=20)
"""

from deepworks.attacks import cw, fgsm, pgd, square  # noqa: F401  (register the attacks)
from deepworks.attacks.common import (
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

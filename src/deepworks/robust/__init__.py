"""Adversarial robustness of a trained run: ``deepworks attack RUN --method pgd --eps 0.1``.

:func:`~deepworks.robust.evaluate.attack_run` attacks a run's test split and writes clean vs
robust accuracy per eps, with example images. The attacks themselves (``deepworks list
attacks``) are :mod:`deepworks.attacks`, re-exported here; adversarial training (PGD-AT,
TRADES) is a task: :mod:`deepworks.tasks.adversarial`.

Example:
    >>> from deepworks.robust import InputSpaceModel, robust_accuracy
    >>> robust_accuracy(InputSpaceModel(model), x_test, y_test, "pgd", eps=0.1, steps=20)
"""

from deepworks.attacks import (
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

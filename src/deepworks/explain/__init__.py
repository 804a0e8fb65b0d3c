"""Explainability: attributions (``deepworks list explainers``), feature visualization and the
model-parameter randomization sanity check.

Captum is imported only when a method runs, so ``import deepworks`` works without it; a method
that needs it and cannot find it raises one line: ``deepworks explain needs captum: pip install
-e .[explain]``.
"""

from deepworks.explain import attention, permutation  # noqa: F401  (register the methods)
from deepworks.explain.attributions import Attribution, Context, attribute, grad_cam_layer
from deepworks.explain.sanity import randomization_test
from deepworks.explain.visualize import activation_maximization

__all__ = [
    "Attribution",
    "Context",
    "activation_maximization",
    "attribute",
    "grad_cam_layer",
    "randomization_test",
]

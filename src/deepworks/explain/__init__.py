"""Explainability: attributions (``deepworks list explainers``), feature visualization and the
model-parameter randomization sanity check. Captum is imported only when a method runs."""

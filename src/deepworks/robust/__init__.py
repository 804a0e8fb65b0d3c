"""Adversarial robustness: attacks (``deepworks list attacks``) and adversarial training."""

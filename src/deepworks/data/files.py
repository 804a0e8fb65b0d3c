"""Datasets from the user's files: CSV, NPZ and folders of images (placeholder, being written)."""

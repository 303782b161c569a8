"""Datasets: raw sources, the prepared cache, the training Dataset and batch augmentation."""

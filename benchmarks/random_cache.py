"""The cache the training and GPU benchmarks time on: random images and random labels.

Its content does not matter to a throughput figure, only its shape: `size`-px uint8 images, one
patient per image, train and val splits, and labels positive 30% of the time. The benchmarks run
as scripts, so this folder is on `sys.path` and they import it as `random_cache`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrtool.data.cache import PreparedData, write_cache


def make_cache(root: Path, n_train: int, n_val: int, size: int, n_labels: int) -> PreparedData:
    """A generated cache of `size`-px images with `n_labels` random labels (train and val splits), seeded."""
    rng = np.random.default_rng(0)
    n = n_train + n_val
    images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    index = pd.DataFrame(
        {
            "id": [f"img{i}" for i in range(n)],
            "patient": [f"p{i}" for i in range(n)],
            "view": "PA",
            "split": ["train"] * n_train + ["val"] * n_val,
            "source": "bench",
            "source_path": "-",
        }
    )
    labels = [f"finding{j}" for j in range(n_labels)]
    for label in labels:
        index[label] = (rng.random(n) < 0.3).astype(float)
    return PreparedData(write_cache(root, images, index, labels))

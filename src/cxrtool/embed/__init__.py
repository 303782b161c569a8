"""Maps of the images and of the network's latent space: SOM, t-SNE and UMAP, with cluster scores.

The library entry point is `run_embed(EmbedConfig(...)) -> dict` (see `pipeline.py`); the pieces
are usable on their own: `features` (sampling, latent and pixel features, PCA), `som` (the
self-organising map and its neighbourhood schedules), `maps` (2-D coordinates per method),
`scores` (silhouette, k-NN accuracy, class centroid distances) and `plots`.
"""

from .config import EmbedConfig
from .pipeline import run_embed

__all__ = ["EmbedConfig", "run_embed"]

"""The options of `cxrtool embed`, validated in one place.

`EmbedConfig` is filled by `cxrtool.config.build_config` (defaults < `--config FILE.yaml` <
command options) and checked in `__post_init__`, so a bad value fails before any image is read,
with one line naming the option. The defaults are tuned so that every map finishes within a
minute on 10,000 images on a 2-core CPU (see docs/performance.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..config import require
from ..errors import CxrError, did_you_mean

SPACES = ("latent", "pixels")
METHODS = ("som", "tsne", "umap")
SOM_SCHEDULES = ("paper", "minisom")
MULTI_LABEL = ("multiple", "first")


def _choices(value: str, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    """'both'/'all' -> every choice; 'a,b' -> ('a', 'b'); anything else is a one-line error."""
    if value in ("both", "all"):
        return allowed
    picked = tuple(v.strip().lower() for v in str(value).split(",") if v.strip())
    for v in picked:
        if v not in allowed:
            raise CxrError(
                f"{option}: unknown value {v!r}; choose {', '.join(allowed)} or "
                f"{'both' if len(allowed) == 2 else 'all'}.{did_you_mean(v, list(allowed))}"
            )
    require(bool(picked), f"{option}: give a value")
    return tuple(dict.fromkeys(picked))


def parse_grid(value: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """'10x10' (or '10,10', or [10, 10]) -> (10, 10)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        rows, cols = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", str(value))
        if not match:
            raise CxrError(f"--som-grid: {value!r} is not a grid size; write ROWSxCOLS, e.g. 10x10")
        rows, cols = match.groups()
    rows, cols = int(rows), int(cols)
    require(
        2 <= rows <= 200 and 2 <= cols <= 200, f"--som-grid: {rows}x{cols} is out of range; each side must be 2..200"
    )
    return rows, cols


@dataclass
class EmbedConfig:
    """Everything `run_embed` needs; every field has a command-line or YAML spelling."""

    run: Path | None = None  # run directory (None: the newest under ./runs)
    data: Path | None = None  # prepared cache (None: the one the run was trained on)
    split: str = "test"  # train / val / test / all (all: mapped together, scored per split)
    allow_seen: bool = False  # map and score images the run's lineage saw (latent scores labelled in-sample)
    space: str = "both"  # latent, pixels, both (or "latent,pixels")
    method: str = "all"  # som, tsne, umap, all (or "som,tsne")
    max_images: int = 10000  # stratified, seeded sample; 0 = every image
    pca: int = 50  # PCA dimensions before any map (capped by the sample size)
    perplexity: float = 30.0  # t-SNE perplexity (capped for small samples)
    tsne_iter: int = 500  # t-SNE optimisation steps (Barnes-Hut)
    tsne_angle: float = 0.65  # Barnes-Hut accuracy/speed trade-off (scikit-learn's 0.5 costs 25% more)
    umap_neighbors: int = 15  # UMAP n_neighbors (capped for small samples)
    umap_epochs: int = 200  # UMAP optimisation epochs (its own default above 10,000 points)
    som_grid: str = "10x10"  # SOM rows x columns
    som_epochs: int = 10  # passes over the sample (online updates, one per image)
    som_schedule: str = "paper"  # paper: sigma0*exp(-t^2 log(4 sigma0)/T^2); minisom: sigma0/(1+2t/T)
    som_sigma: float | None = None  # initial neighbourhood radius (None: half the longer grid side)
    som_lr: float = 0.5  # initial learning rate
    pixel_size: int = 32  # pixel space: images downsampled to this side (32 -> 1024-d)
    multi_label: str = "multiple"  # colour/score an image with several findings as "multiple" or by its first
    knn: int = 5  # neighbours for the k-NN accuracy
    image_size: int | None = None  # network input (None: the model card's)
    checkpoint: str = "best"  # which checkpoint of the run: best or last
    batch_size: int = 64
    device: str = "auto"
    seed: int = 0
    out: Path | None = None  # None: RUN/embed/
    overwrite: bool = False

    def __post_init__(self) -> None:
        _ = (self.spaces, self.methods, self.grid)  # parse now: a bad value fails before any work
        require(
            self.split in ("train", "val", "test", "all"),
            f"--split: unknown split {self.split!r}; choose train, val, test or all",
        )
        require(int(self.max_images) >= 0, "--max-images: must be 0 (every image) or a positive number")
        require(self.max_images == 0 or self.max_images >= 10, "--max-images: a map needs at least 10 images")
        require(int(self.pca) >= 2, "--pca: must be at least 2 dimensions")
        require(float(self.perplexity) > 0, "--perplexity: must be positive (5 to 50 is usual)")
        require(int(self.tsne_iter) >= 250, "--tsne-iter: scikit-learn needs at least 250 iterations")
        require(0.0 < float(self.tsne_angle) <= 1.0, "--tsne-angle: must be in (0, 1]")
        require(int(self.umap_neighbors) >= 2, "--umap-neighbors: must be at least 2")
        require(int(self.umap_epochs) >= 10, "--umap-epochs: must be at least 10")
        require(int(self.som_epochs) >= 1, "--som-epochs: must be at least 1")
        require(
            self.som_schedule in SOM_SCHEDULES,
            f"--som-schedule: unknown schedule {self.som_schedule!r}; choose paper or minisom",
        )
        require(self.som_sigma is None or float(self.som_sigma) > 0, "--som-sigma: must be positive")
        require(0 < float(self.som_lr) <= 1, "--som-lr: must be in (0, 1]")
        require(4 <= int(self.pixel_size) <= 256, "--pixel-size: must be 4..256")
        require(self.multi_label in MULTI_LABEL, f"--multi-label: choose multiple or first, not {self.multi_label!r}")
        require(int(self.knn) >= 1, "--knn: must be at least 1")
        require(self.image_size is None or int(self.image_size) >= 16, "--image-size: must be at least 16")
        require(self.checkpoint in ("best", "last"), f"--checkpoint: choose best or last, not {self.checkpoint!r}")
        require(int(self.batch_size) >= 1, "--batch-size: must be at least 1")

    @property
    def spaces(self) -> tuple[str, ...]:
        return _choices(str(self.space).lower(), SPACES, "--space")

    @property
    def methods(self) -> tuple[str, ...]:
        return _choices(str(self.method).lower(), METHODS, "--method")

    @property
    def grid(self) -> tuple[int, int]:
        return parse_grid(self.som_grid)

    @property
    def sigma0(self) -> float:
        return float(self.som_sigma) if self.som_sigma is not None else max(self.grid) / 2.0

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
from ..optionspec import option

SPACES = ("latent", "pixels")
METHODS = ("som", "tsne", "umap")
SOM_SCHEDULES = ("paper", "minisom")
MULTI_LABEL = ("multiple", "first")
SPLITS = ("train", "val", "test", "all")


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
    """Everything `run_embed` needs: the fields with `option(...)` are `cxrtool embed`'s options, the rest YAML only."""

    run: Path | None = option(None, help="Run directory (same as the RUN argument).")  # None: the newest under ./runs
    data: Path | None = option(None, help="Prepared cache to map (default: the run's training data).")
    split: str = option(
        "test",
        help="train, val, test or all (default: test, images the network never trained on; all: scores per split).",
        choices=SPLITS,
    )
    allow_seen: bool = option(
        False,
        help="Score images the run (or a run it was finetuned from) trained or validated on, labelled in-sample.",
    )
    space: str = option("both", help="latent, pixels or both (default: both).", choices=(*SPACES, "both"))
    method: str = option(
        "all", help="som, tsne, umap or all (or a list: som,tsne) (default: all).", choices=(*METHODS, "all")
    )
    max_images: int = option(10000, help="Stratified seeded sample size; 0 = every image (default: 10000).")
    pca: int = option(50, help="PCA dimensions before any map (default: 50).")  # capped by the sample size
    perplexity: float = option(30.0, help="t-SNE perplexity (capped for small samples) (default: 30).")
    tsne_iter: int = option(500, help="t-SNE iterations (default: 500).")  # Barnes-Hut optimisation steps
    tsne_angle: float = 0.65  # Barnes-Hut accuracy/speed trade-off (scikit-learn's 0.5 costs 25% more)
    umap_neighbors: int = option(15, help="UMAP n_neighbors (default: 15).")  # capped for small samples
    # 200: UMAP's own default above 10,000 points
    umap_epochs: int = option(200, help="UMAP optimisation epochs (default: 200).")
    som_grid: str = option("10x10", help="SOM size ROWSxCOLS (default: 10x10).")
    som_epochs: int = option(10, help="SOM passes over the images (default: 10).")  # online updates, one per image
    # the minisom schedule: sigma0/(1+2t/T)
    som_schedule: str = option(
        "paper",
        help="paper (sigma0*exp(-t^2 log(4 sigma0)/T^2)) or minisom (default: paper).",
        choices=SOM_SCHEDULES,
    )
    som_sigma: float | None = option(None, help="SOM initial radius (default: half the longer grid side).")
    som_lr: float = 0.5  # initial learning rate
    pixel_size: int = option(32, help="Pixel space: images downsampled to this side (default: 32).")  # 32 -> 1024-d
    multi_label: str = option(
        "multiple",
        help="Images with several findings: 'multiple' or 'first' (default: multiple).",
        choices=MULTI_LABEL,
    )
    knn: int = 5  # neighbours for the k-NN accuracy
    image_size: int | None = option(None, help="Network input size (default: the model card's).")
    checkpoint: str = "best"  # which checkpoint of the run: best or last
    batch_size: int = option(64, help="Images per forward pass (default: 64).")
    device: str = option("auto", help="auto, cpu, cuda or mps (default: auto).")
    seed: int = option(0, help="Seed for the sample and every map (default: 0).")
    out: Path | None = option(None, help="Output folder (default: RUN/embed/).")
    overwrite: bool = option(False, help="Replace maps written by an earlier embed.")

    def __post_init__(self) -> None:
        _ = (self.spaces, self.methods, self.grid)  # parse now: a bad value fails before any work
        require(
            self.split in SPLITS,
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

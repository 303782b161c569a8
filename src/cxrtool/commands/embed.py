"""`cxrtool embed`: the images and the network's latent space on 2-D maps, with cluster scores (see docs/embed.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import CxrError
from .support import quiet_option, user_errors


def register(app: typer.Typer) -> None:
    @app.command("embed")
    @user_errors
    def embed(
        run_arg: Path | None = typer.Argument(
            None, metavar="RUN", help="Run directory (default: the newest under ./runs)."
        ),
        run: Path | None = typer.Option(None, "--run", help="Run directory (same as the RUN argument)."),
        data: Path | None = typer.Option(
            None, "--data", help="Prepared cache to map (default: the run's training data)."
        ),
        split: str | None = typer.Option(
            None,
            "--split",
            help="train, val, test or all (default: test, images the network never trained on; all: scores per split).",
        ),
        space: str | None = typer.Option(None, "--space", help="latent, pixels or both (default: both)."),
        method: str | None = typer.Option(
            None, "--method", help="som, tsne, umap or all (or a list: som,tsne) (default: all)."
        ),
        max_images: int | None = typer.Option(
            None, "--max-images", help="Stratified seeded sample size; 0 = every image (default: 10000)."
        ),
        pca: int | None = typer.Option(None, "--pca", help="PCA dimensions before any map (default: 50)."),
        perplexity: float | None = typer.Option(
            None, "--perplexity", help="t-SNE perplexity (capped for small samples) (default: 30)."
        ),
        tsne_iter: int | None = typer.Option(None, "--tsne-iter", help="t-SNE iterations (default: 500)."),
        umap_neighbors: int | None = typer.Option(None, "--umap-neighbors", help="UMAP n_neighbors (default: 15)."),
        umap_epochs: int | None = typer.Option(None, "--umap-epochs", help="UMAP optimisation epochs (default: 200)."),
        som_grid: str | None = typer.Option(None, "--som-grid", help="SOM size ROWSxCOLS (default: 10x10)."),
        som_epochs: int | None = typer.Option(None, "--som-epochs", help="SOM passes over the images (default: 10)."),
        som_schedule: str | None = typer.Option(
            None, "--som-schedule", help="paper (sigma0*exp(-t^2 log(4 sigma0)/T^2)) or minisom (default: paper)."
        ),
        som_sigma: float | None = typer.Option(
            None, "--som-sigma", help="SOM initial radius (default: half the longer grid side)."
        ),
        pixel_size: int | None = typer.Option(
            None, "--pixel-size", help="Pixel space: images downsampled to this side (default: 32)."
        ),
        multi_label: str | None = typer.Option(
            None, "--multi-label", help="Images with several findings: 'multiple' or 'first' (default: multiple)."
        ),
        image_size: int | None = typer.Option(
            None, "--image-size", help="Network input size (default: the model card's)."
        ),
        out: Path | None = typer.Option(None, "--out", help="Output folder (default: RUN/embed/)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace maps written by an earlier embed."),
        allow_seen: bool = typer.Option(
            False,
            "--allow-seen",
            help="Score images the run (or a run it was finetuned from) trained or validated on, labelled in-sample.",
        ),
        seed: int | None = typer.Option(None, "--seed", help="Seed for the sample and every map (default: 0)."),
        batch_size: int | None = typer.Option(None, "--batch-size", help="Images per forward pass (default: 64)."),
        device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or mps (default: auto)."),
        config: Path | None = typer.Option(None, "--config", help="YAML file of options (options given here win)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    ) -> None:
        """Map images and the latent space with SOM, t-SNE and UMAP; score how well findings cluster."""
        quiet_option(quiet)
        # lazy: keeps cxrtool --help fast
        from ..config import build_config
        from ..embed import EmbedConfig, run_embed

        if run_arg is not None and run is not None and run_arg != run:
            raise CxrError(f"give the run once: as the argument ({run_arg}) or as --run ({run})")
        cfg = build_config(
            EmbedConfig,
            config,
            run=run_arg or run,
            data=data,
            split=split,
            space=space,
            method=method,
            max_images=max_images,
            pca=pca,
            perplexity=perplexity,
            tsne_iter=tsne_iter,
            umap_neighbors=umap_neighbors,
            umap_epochs=umap_epochs,
            som_grid=som_grid,
            som_epochs=som_epochs,
            som_schedule=som_schedule,
            som_sigma=som_sigma,
            pixel_size=pixel_size,
            multi_label=multi_label,
            image_size=image_size,
            out=out,
            overwrite=overwrite or None,
            allow_seen=allow_seen or None,
            seed=seed,
            batch_size=batch_size,
            device=device,
        )
        run_embed(cfg)

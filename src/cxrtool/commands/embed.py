"""`cxrtool embed`: the images and the network's latent space on 2-D maps, with cluster scores (see docs/embed.md).

Its options are the fields of `EmbedConfig` (embed/config.py) that carry `option(...)`.
"""

from __future__ import annotations

import typer

from .configured import Given, add_command, config_file, quiet, run_argument


def embed_config() -> type:
    from ..embed import EmbedConfig  # lazy: the embed package imports torch; keeps cxrtool --help fast

    return EmbedConfig


def embed(given: Given) -> None:
    """Map images and the latent space with SOM, t-SNE and UMAP; score how well findings cluster."""
    from ..embed import run_embed  # lazy: keeps cxrtool --help fast

    run_embed(given.config())


def register(app: typer.Typer) -> None:
    add_command(
        app,
        "embed",
        embed,
        embed_config,
        run_argument(),
        config_file("YAML file of options (options given here win)."),
        quiet(),
    )

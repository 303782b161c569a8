"""`cxrtool prepare ...`: raw datasets -> the decoded, patient-split cache (see docs/prepare.md).

Each subcommand gathers its options into the source's config dataclass (options left unset do not
override `--config FILE.yaml`) and makes one call into `cxrtool.data.prepare` / `data.combine`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from .configured import Extra, Given, add_command, config_file, flag, quiet
from .options import SharedOption, config_values, with_options
from .support import quiet_option, user_errors

DIST_HELP = "Near-duplicate threshold: bits (of 256) two fingerprints may differ by (default: 40)."
OVERWRITE_HELP = "Replace a cache prepared with other settings."
CONFIG_HELP = "YAML file of option values (options given here win)."
QUIET_HELP = "No progress bars or notes."

# The options of every `prepare SOURCE` that decodes raw images into a cache, declared once.
SOURCES = ("nih", "covid", "folder")
CACHE_OPTIONS: tuple[SharedOption, ...] = (
    SharedOption("out", Path | None, ("--out",), "Cache folder to write.", {s: f"data/{s}" for s in SOURCES}),
    SharedOption("size", int | None, ("--size",), "Side of the cached square images in pixels (default: 256)."),
    SharedOption("workers", int | None, ("--workers",), "Decoding processes (default: min(8, CPU count))."),
    SharedOption("seed", int | None, ("--seed",), "Seed of the patient split (default: 0)."),
    SharedOption(
        "val_frac", float | None, ("--val-frac",), "Fraction of images for validation (by patient) (default: 0.1)."
    ),
    SharedOption(
        "test_frac",
        float | None,
        ("--test-frac",),
        "Fraction of images for test (by patient; ignored with NIH's official lists) (default: 0.2).",
    ),
    SharedOption("max_distance", int | None, ("--max-distance",), DIST_HELP),
    SharedOption("overwrite", bool, ("--overwrite",), OVERWRITE_HELP, value_if_absent=False),
    SharedOption("config", Path | None, ("--config",), CONFIG_HELP, to_config=False),
    SharedOption("quiet", bool, ("--quiet", "-q"), QUIET_HELP, to_config=False, value_if_absent=False),
)


def _cache_config(cls, own: dict, shared: dict):
    """The source's config: defaults < --config file < the options given (own and shared)."""
    from ..config import build_config  # lazy: keeps cxrtool --help fast

    quiet_option(shared["quiet"])
    values = config_values(CACHE_OPTIONS, shared)
    values["overwrite"] = values["overwrite"] or None  # False means "not given": the file may say true
    return build_config(cls, shared["config"], **own, **values)


def register(app: typer.Typer) -> None:
    prepare_app = typer.Typer(
        help="Decode a dataset once into a patient-split cache that every other command reads.", no_args_is_help=True
    )
    app.add_typer(prepare_app, name="prepare")
    add_command(
        prepare_app,
        "synthetic",
        synthetic,
        synthetic_config,
        SYNTHETIC_OUT,
        flag("overwrite", "Write into a folder that already holds files."),
        quiet(),
    )

    @prepare_app.command("nih")
    @user_errors
    @with_options(CACHE_OPTIONS, "nih")
    def nih(
        root: Path = typer.Argument(..., help="Folder holding the NIH label file and images (any sub-folders)."),
        views: str | None = typer.Option(None, "--views", help="Keep only these views, e.g. PA,AP (default: all)."),
        findings: str | None = typer.Option(
            None, "--findings", help="Label columns, comma-separated (default: the 14 NIH findings)."
        ),
        labels: Path | None = typer.Option(
            None, "--labels", help="The label file, if not Data_Entry_2017*.csv[.gz] under ROOT."
        ),
        **shared: Any,
    ) -> None:
        """NIH ChestX-ray14 -> cache (official lists when present, else a seeded patient split)."""
        from ..data.prepare import PrepareNihConfig, prepare_nih  # lazy: keeps cxrtool --help fast

        prepare_nih(
            _cache_config(PrepareNihConfig, dict(root=root, views=views, findings=findings, labels_file=labels), shared)
        )

    @prepare_app.command("covid")
    @user_errors
    @with_options(CACHE_OPTIONS, "covid")
    def covid(
        root: Path = typer.Argument(..., help="The covid-chestxray-dataset folder (metadata.csv, images/)."),
        views: str | None = typer.Option(None, "--views", help="Views to keep (default: PA,AP,AP Supine)."),
        findings: str | None = typer.Option(
            None, "--findings", help="Labels: COVID-19 and/or Pneumonia (default: COVID-19)."
        ),
        **shared: Any,
    ) -> None:
        """Cohen/Dao COVID-19 collection -> cache (frontal X-rays, split by patient, duplicates grouped)."""
        from ..data.prepare import PrepareCovidConfig, prepare_covid  # lazy: keeps cxrtool --help fast

        prepare_covid(_cache_config(PrepareCovidConfig, dict(root=root, views=views, findings=findings), shared))

    @prepare_app.command("folder")
    @user_errors
    @with_options(CACHE_OPTIONS, "folder")
    def folder(
        csv: Path = typer.Argument(..., help="CSV with one row per image."),
        image_col: str | None = typer.Option(None, "--image-col", help="Column with the image path (default: image)."),
        label_cols: str | None = typer.Option(
            None, "--label-cols", help="Label columns, comma-separated (cells 1/0, blank = not annotated)."
        ),
        patient_col: str | None = typer.Option(
            None, "--patient-col", help="Column with the patient id (strongly advised)."
        ),
        view_col: str | None = typer.Option(None, "--view-col", help="Column with the view (PA, AP, ...)."),
        root: Path | None = typer.Option(
            None, "--root", help="Folder the image paths are relative to (default: the CSV's folder)."
        ),
        name: str | None = typer.Option(None, "--name", help="Dataset name for the `source` column (default: folder)."),
        allow_outside_root: bool = typer.Option(
            False, "--allow-outside-root", help="Accept image paths that lead outside --root (../x, /elsewhere/x)."
        ),
        **shared: Any,
    ) -> None:
        """Any labelled set described by a CSV -> cache."""
        from ..data.prepare import PrepareFolderConfig, prepare_folder  # lazy: keeps cxrtool --help fast

        own = dict(
            csv=csv,
            image_col=image_col,
            label_cols=label_cols,
            patient_col=patient_col,
            view_col=view_col,
            image_root=root,
            name=name,
            allow_outside_root=allow_outside_root or None,  # False means "not given": the file may say true
        )
        prepare_folder(_cache_config(PrepareFolderConfig, own, shared))

    add_command(prepare_app, "combine", combine, combine_config, config_file(CONFIG_HELP), quiet(QUIET_HELP))
    add_command(prepare_app, "dedupe", dedupe, dedupe_config, quiet(QUIET_HELP), show_defaults=False)


def synthetic_config() -> type:
    from ..data.sources.synthetic import SyntheticConfig  # lazy: keeps cxrtool --help fast

    return SyntheticConfig


SYNTHETIC_OUT = Extra(
    "out", Path, typer.Argument(help="Folder to write the raw dataset into (NIH layout)."), default=...
)


def synthetic(given: Given) -> None:
    """Write generated chest-like X-rays with drawn lesions at known boxes, in the NIH layout."""
    # lazy: keeps cxrtool --help fast
    from ..data.sources.synthetic import write_raw
    from ..progress import result

    out = given.extras["out"]
    counts = write_raw(out, given.config(), overwrite=given.extras["overwrite"])
    result(f"wrote {counts['images']} images of {counts['patients']} patients ({counts['boxes']} boxes) to {out}")


def combine_config() -> type:
    from ..data.combine import CombineConfig  # lazy: keeps cxrtool --help fast

    return CombineConfig


def combine(given: Given) -> None:
    """A class-balanced set from several caches (the 15-class NIH + COVID-19 set)."""
    from ..data.combine import combine as run_combine  # lazy: keeps cxrtool --help fast

    run_combine(given.config())


def dedupe_config() -> type:
    from ..data.combine import DedupeConfig  # lazy: keeps cxrtool --help fast

    return DedupeConfig


def dedupe(given: Given) -> None:
    """Find near-duplicate radiographs across caches; optionally drop them from one."""
    from ..data.combine import dedupe as run_dedupe  # lazy: keeps cxrtool --help fast

    run_dedupe(given.config())

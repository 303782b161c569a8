"""`cxrtool prepare ...`: raw datasets -> the decoded, patient-split cache (see docs/prepare.md).

Each subcommand gathers its options into the source's config dataclass (options left unset do not
override `--config FILE.yaml`) and makes one call into `cxrtool.data.prepare` / `data.combine`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

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

    @prepare_app.command("synthetic")
    @user_errors
    def synthetic(
        out: Path = typer.Argument(..., help="Folder to write the raw dataset into (NIH layout)."),
        patients: int = typer.Option(200, help="Number of patients (each has 1-3 images)."),
        size: int = typer.Option(256, help="Image side in pixels."),
        seed: int = typer.Option(0, help="Random seed: the same seed writes the same images."),
        shortcut: float = typer.Option(
            0.0, help="0..1: how strongly the AP view tag predicts COVID-19 (a planted shortcut)."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Write into a folder that already holds files."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    ) -> None:
        """Write generated chest-like X-rays with drawn lesions at known boxes, in the NIH layout."""
        quiet_option(quiet)
        # lazy: keeps cxrtool --help fast
        from ..data.sources.synthetic import SyntheticConfig, write_raw
        from ..progress import result

        counts = write_raw(
            out, SyntheticConfig(n_patients=patients, size=size, seed=seed, shortcut=shortcut), overwrite=overwrite
        )
        result(f"wrote {counts['images']} images of {counts['patients']} patients ({counts['boxes']} boxes) to {out}")

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

    @prepare_app.command("combine")
    @user_errors
    def combine_cmd(
        data: list[Path] = typer.Argument(..., help="Prepared caches (same --size), e.g. data/nih data/covid."),
        out: Path = typer.Option(..., "--out", help="Cache folder to write."),
        per_class: int | None = typer.Option(None, "--per-class", help="Positive images per class (default: 200)."),
        classes: str | None = typer.Option(
            None, "--classes", help="Classes, comma-separated (default: the 14 NIH findings and COVID-19)."
        ),
        seed: int | None = typer.Option(None, "--seed", help="Seed of the selection (default: 0)."),
        covid_negative: str | None = typer.Option(
            None,
            "--covid-negative",
            help="Caches (folder names, comma-separated) whose every image is a COVID-19 negative, or none "
            "(default: those prepared from NIH ChestX-ray14).",
        ),
        max_distance: int | None = typer.Option(None, "--max-distance", help=DIST_HELP),
        overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
        config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
        quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    ) -> None:
        """A class-balanced set from several caches (the 15-class NIH + COVID-19 set)."""
        quiet_option(quiet)
        # lazy: keeps cxrtool --help fast
        from ..config import build_config, parse_list
        from ..data.combine import CombineConfig, combine

        cfg = build_config(
            CombineConfig,
            config,
            data=data,
            out=out,
            per_class=per_class,
            seed=seed,
            classes=parse_list(classes, "--classes") if classes else None,
            covid_negative=parse_list(covid_negative, "--covid-negative") if covid_negative else None,
            max_distance=max_distance,
            overwrite=overwrite or None,
        )
        combine(cfg)

    @prepare_app.command("dedupe")
    @user_errors
    def dedupe_cmd(
        data: list[Path] = typer.Argument(..., help="Prepared caches to compare, e.g. data/nih data/external."),
        drop_from: Path | None = typer.Option(
            None, "--drop-from", help="Remove from this cache (one of DATA) the images duplicated in the others."
        ),
        max_distance: int | None = typer.Option(None, "--max-distance", help=DIST_HELP),
        report: Path | None = typer.Option(None, "--report", help="Write every pair found to this CSV."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace an existing --report file (never a cache's or a run's own file)."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    ) -> None:
        """Find near-duplicate radiographs across caches; optionally drop them from one."""
        quiet_option(quiet)
        # lazy: keeps cxrtool --help fast
        from ..config import build_config
        from ..data.combine import DedupeConfig, dedupe

        dedupe(
            build_config(
                DedupeConfig,
                None,
                data=data,
                drop_from=drop_from,
                max_distance=max_distance,
                report=report,
                overwrite=overwrite,
            )
        )

"""`cxrtool prepare ...`: raw datasets -> the decoded, patient-split cache (see docs/prepare.md).

Each subcommand gathers its options into the source's config dataclass (options left unset do not
override `--config FILE.yaml`) and makes one call into `cxrtool.data.prepare` / `data.combine`.
There is one subcommand per source in the registry (data/sources/registry.py), built from what
the source registered: its name, help, own options and config; the options every source shares
are `CACHE_OPTIONS` below.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ..data.sources.registry import Source, SourceOption
from .configured import Extra, Given, add_command, config_file, flag, quiet
from .examples import EXAMPLES, polish
from .options import SharedOption, config_values, with_options
from .support import quiet_option, user_errors

DIST_HELP = "Near-duplicate threshold: bits (of 256) two fingerprints may differ by (default: 40)."
OVERWRITE_HELP = "Replace a cache prepared with other settings."
CONFIG_HELP = "YAML file of option values (options given here win)."
QUIET_HELP = "No progress bars or notes."

# The options of every `prepare SOURCE` that decodes raw images into a cache, declared once.
CACHE_OPTIONS: tuple[SharedOption, ...] = (
    SharedOption("out", Path | None, ("--out",), "Cache folder to write."),  # default: the source's config's
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


def _own_parameter(option: SourceOption) -> inspect.Parameter:
    """A source's own option as the parameter Typer reads (an argument is required)."""
    if option.argument:
        marker, default = typer.Argument(help=option.help), inspect.Parameter.empty
    else:
        marker, default = typer.Option(*option.flags, help=option.help), False if option.switch else None
    return inspect.Parameter(
        option.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[option.type, marker]
    )


def _source_command(source: Source) -> Callable[..., None]:
    """`prepare NAME`: the source's own options, then CACHE_OPTIONS, into its config; one prepare call."""

    def command(**values: Any) -> None:
        from ..data.prepare import prepare  # lazy: keeps cxrtool --help fast

        own = {}
        for option in source.options:
            value = values.pop(option.name)
            # A switch left off is "not given": a --config file may turn it on.
            own[option.config_field] = (value or None) if option.switch else value
        prepare(_cache_config(source.config, own, values))

    command.__name__ = source.name
    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [*map(_own_parameter, source.options), inspect.Parameter("shared", inspect.Parameter.VAR_KEYWORD)]
    )
    # --out's help shows the default the source's config gives (data/NAME).
    out_default = next(f.default for f in dataclasses.fields(source.config) if f.name == "out")
    rows = tuple(
        dataclasses.replace(row, default={source.name: str(out_default)}) if row.name == "out" else row
        for row in CACHE_OPTIONS
    )
    return with_options(rows, source.name)(command)


def source_commands() -> dict[str, Any]:
    """The click command of every registered source, by name, with its examples attached."""
    # lazy: the registry imports every source module (pandas, numpy); only `prepare` needs them
    from ..data.sources.registry import sources

    builder = typer.Typer()
    builder.callback()(_no_options)  # a callback makes Typer build a group even for one source
    for source in sources():  # nih, covid, folder, ...: each source module registers itself
        builder.command(source.name, help=source.help)(user_errors(_source_command(source)))
        EXAMPLES[f"prepare {source.name}"] = source.examples
    commands = dict(typer.main.get_command(builder).commands)
    for name, command in commands.items():
        polish(command, f"prepare {name}")
    return commands


def _no_options() -> None:
    """(The group `source_commands` builds its commands in; never run.)"""


class PrepareGroup(TyperGroup):
    """`prepare`'s subcommands, the sources' added the first time any subcommand is looked at.

    Building a source's subcommand imports its module, and with it pandas and numpy; deferring
    that to `prepare` keeps `cxrtool --help` and every other command from paying for it.
    `polish` (examples, flag display) reads `eager_commands` so as not to load them early.
    """

    SOURCES_AFTER = ("synthetic",)  # --help lists the generator, the sources, then the rest

    _commands: dict[str, Any]
    _sources_added = False

    @property
    def commands(self) -> dict[str, Any]:
        if not self._sources_added:
            self._sources_added = True
            before = {n: c for n, c in self._commands.items() if n in self.SOURCES_AFTER}
            after = {n: c for n, c in self._commands.items() if n not in self.SOURCES_AFTER}
            self._commands = {**before, **source_commands(), **after}
        return self._commands

    @commands.setter
    def commands(self, value: dict[str, Any]) -> None:
        self._commands = value

    @property
    def eager_commands(self) -> dict[str, Any]:
        """The subcommands built so far (the sources' only once `commands` was read)."""
        return self._commands


def register(app: typer.Typer) -> None:
    prepare_app = typer.Typer(
        cls=PrepareGroup,
        help="Decode a dataset once into a patient-split cache that every other command reads.",
        no_args_is_help=True,
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

"""The dataset sources `prepare` reads: each source module registers itself here, once.

A source module (nih.py, covid.py, folder.py, ...) ends with `register_source(Source(...))`,
which says everything the rest of the tool needs to know about it:

- `name`: the `prepare NAME` subcommand, the manifest `source` of its caches (unless
  `cache_source` says otherwise, as `folder --name` does) and the default `--out data/NAME`;
- `help`, `options` and `examples`: the subcommand's help line, its own options (`SourceOption`;
  the options every source shares are declared once in commands/prepare.py) and `--help` examples;
- `config` and `read`: its config dataclass (a `PrepareOptions`) and its reader
  (config -> `SourceTable`), which `data.prepare.prepare` runs;
- `pre_pandemic`: every image predates COVID-19, so `prepare combine` takes its caches as
  COVID-19 negatives (ChestX-ray14 was collected in 1992-2015);
- `label_aliases`: its publisher's names for our labels (lower case -> canonical), which
  `labels.canonical` accepts everywhere.

`sources()` imports every module of this package once (so a new module is found without being
listed anywhere) and returns the sources in `rank` order. This module itself uses the standard
library only, so the layers below the sources (`labels`) can read it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import CxrError, did_you_mean

# Modules of this package that are not sources (they register nothing).
NOT_SOURCES = {"base", "registry"}


@dataclass(frozen=True)
class SourceOption:
    """One option (or the positional argument) of a source's own subcommand.

    `name` is the parameter's name and `field` the config field it fills (default: the same).
    `argument`: a required positional argument rather than an option. `switch`: an on/off flag
    whose absence leaves a `--config` file's value in place.
    """

    name: str
    type: Any
    help: str
    flags: tuple[str, ...] = ()
    field: str | None = None
    argument: bool = False
    switch: bool = False

    @property
    def config_field(self) -> str:
        return self.field or self.name


@dataclass(frozen=True)
class Source:
    """A raw-data layout `prepare` can read (see the module docstring for each field)."""

    name: str
    help: str
    config: type
    read: Callable[[Any], Any]  # config -> SourceTable
    options: tuple[SourceOption, ...] = ()
    examples: tuple[str, ...] = ()
    pre_pandemic: bool = False
    label_aliases: dict[str, str] = field(default_factory=dict)
    cache_source: Callable[[Any], str] | None = None  # config -> manifest `source` (default: name)
    rank: int = 100  # place among `prepare`'s subcommands in --help (lower first)

    def source_of(self, cfg: Any) -> str:
        """The manifest `source` of the cache `cfg` makes."""
        return self.cache_source(cfg) if self.cache_source is not None else self.name


_SOURCES: dict[str, Source] = {}
_discovered = False
_aliases: dict[str, str] | None = None  # label_aliases(), merged once per set of sources


def register_source(source: Source) -> Source:
    """Add a source (called once, at the bottom of its module); a name or config taken twice is a bug."""
    if source.name in _SOURCES and _SOURCES[source.name] is not source:
        raise ValueError(f"a prepare source named {source.name!r} is registered twice")
    if any(s.config is source.config and s.name != source.name for s in _SOURCES.values()):
        raise ValueError(f"{source.config.__name__} is the config of two sources")
    for alias in source.label_aliases:
        if alias != alias.lower():
            raise ValueError(f"{source.name}: label alias {alias!r} must be lower case")
    global _aliases
    _SOURCES[source.name] = source
    _aliases = None
    return source


def _discover() -> None:
    """Import every module of this package once, so that each registers its source."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name not in NOT_SOURCES:
            importlib.import_module(f"{__package__}.{module.name}")


def sources() -> list[Source]:
    """Every registered source, in `rank` order (then by name)."""
    _discover()
    return sorted(_SOURCES.values(), key=lambda s: (s.rank, s.name))


def source_names() -> list[str]:
    return [s.name for s in sources()]


def get_source(name: str) -> Source:
    """The source called `name`; an unknown name is one line listing the known ones."""
    _discover()
    if name not in _SOURCES:
        known = source_names()
        raise CxrError(f"unknown prepare source {name!r}; known: {', '.join(known)}.{did_you_mean(name, known)}")
    return _SOURCES[name]


def source_for_config(cfg: Any) -> Source:
    """The source whose config `cfg` is (the most derived class registered)."""
    _discover()
    for cls in type(cfg).__mro__:
        for source in _SOURCES.values():
            if source.config is cls:
                return source
    raise TypeError(f"{type(cfg).__name__} is not the config of a registered prepare source")


def is_pre_pandemic(cache_source: str) -> bool:
    """Whether a cache's manifest `source` names a source whose images all predate COVID-19."""
    _discover()
    source = _SOURCES.get(cache_source)
    return source is not None and source.pre_pandemic


def label_aliases() -> dict[str, str]:
    """Every source's names for our labels (lower case -> canonical), merged."""
    global _aliases
    if _aliases is None:
        merged: dict[str, str] = {}
        for source in sources():
            for alias, label in source.label_aliases.items():
                if merged.setdefault(alias, label) != label:
                    raise ValueError(f"label alias {alias!r} means {merged[alias]} and {label} in two sources")
        _aliases = merged
    return _aliases

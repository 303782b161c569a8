"""Configuration: dataclasses filled from defaults, an optional YAML file, then command options.

Each command's options are collected into a dataclass (defined beside the code that uses it, e.g.
`cxrtool.train.config.TrainConfig`); `build_config` layers the values: the dataclass defaults,
then `--config FILE.yaml`, then the options actually given on the command line (options left at
None are "not given"). Validation lives in each dataclass's `__post_init__` and raises
`CxrError` naming the option. `dump_config` writes the resolved config next to a run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import CxrError, did_you_mean

C = TypeVar("C")


def load_yaml(path: Path | None) -> dict[str, Any]:
    """Read a YAML mapping of option names to values ('-' and '_' both accepted in names)."""
    if path is None:
        return {}
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CxrError(f"{path}: config file not found (--config)") from None
    except yaml.YAMLError as exc:
        raise CxrError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CxrError(f"{path}: a config file must be a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _coerce(field: dataclasses.Field, value: Any) -> Any:
    """Paths given as strings in YAML become Path objects; everything else is kept."""
    if value is None:
        return None
    type_name = str(field.type)
    if "Path" in type_name and isinstance(value, str):
        return Path(value)
    return value


def build_config(cls: type[C], config_file: Path | None = None, **options: Any) -> C:
    """Dataclass defaults < YAML file < options that are not None."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in load_yaml(config_file).items():
        if key not in fields:
            raise CxrError(f"{config_file}: unknown option {key!r}.{did_you_mean(key, list(fields))}")
        values[key] = _coerce(fields[key], value)
    for key, value in options.items():
        if key not in fields:
            raise TypeError(f"{cls.__name__} has no field {key!r}")
        if value is not None:
            values[key] = value
    return cls(**values)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict (Paths as strings, tuples as lists) for YAML/JSON output."""

    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if dataclasses.is_dataclass(v):
            return config_to_dict(v)
        return v

    return {f.name: plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def dump_config(cfg: Any, path: Path) -> Path:
    """Write the resolved config as YAML (readable back with `--config`)."""
    from .runs import atomic_write_text

    return atomic_write_text(Path(path), yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def parse_list(value: str | list[str] | tuple[str, ...] | None, option: str) -> list[str]:
    """'PA,AP' or ['PA', 'AP'] -> ['PA', 'AP']; an empty list is an error naming the option."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [x for v in value for x in str(v).split(",")]
    items = [x.strip() for x in items if x.strip()]
    if not items:
        raise CxrError(f"{option}: give at least one value")
    return items


def require(condition: bool, message: str) -> None:
    """Raise a CxrError with `message` unless `condition` holds (for __post_init__ checks)."""
    if not condition:
        raise CxrError(message)

"""Configuration: dataclasses filled from defaults, an optional YAML file, then command options.

Each command's options are collected into a dataclass (defined beside the code that uses it, e.g.
`cxrtool.train.config.TrainConfig`); `build_config` layers the values: the dataclass defaults,
then `--config FILE.yaml`, then the options actually given on the command line (options left at
None are "not given"). YAML values are first checked against the field types (a bool only from
true/false, an int only from a whole number), every wrong key listed. Validation of values
lives in each dataclass's `__post_init__` and raises `CxrError` naming the option. `dump_config` writes the resolved config next to a run.

Every YAML document read (`--config`, a run's config.yaml) goes through `read_yaml`, which has
limits: at most MAX_YAML_BYTES, MAX_YAML_DEPTH levels of nesting and MAX_YAML_NODES values once
aliases are expanded, all checked on PyYAML's event stream before anything is built, so an alias
bomb ("billion laughs") or a 2,000-deep document is one line, not a hang or a RecursionError.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .atomic import atomic_write_text
from .errors import CxrError, did_you_mean

C = TypeVar("C")

# Limits on a YAML document: a config file is a few hundred bytes of flat option: value lines.
MAX_YAML_BYTES = 1024 * 1024
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000


def _check_yaml_events(text: str, path: Path) -> None:
    """Refuse a document nested deeper than MAX_YAML_DEPTH or over MAX_YAML_NODES values expanded.

    Walks the event stream (the parser is iterative, unlike the composer): each collection's
    size is its values with aliases counted at the size of what they name, so the check costs
    one pass whatever the aliases would expand to.
    """
    sizes: dict[str, int] = {}  # anchor -> expanded size of the node it names
    stack: list[list] = [[None, 0]]  # open collections: [anchor, expanded size so far]
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            stack.append([event.anchor, 1])
            if len(stack) - 1 > MAX_YAML_DEPTH:
                raise CxrError(f"{path}: YAML nested more than {MAX_YAML_DEPTH} levels deep; a config file is flat")
            continue
        if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, n = stack.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, n = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            anchor, n = None, sizes.get(event.anchor, 1)
        else:
            continue
        if anchor is not None:
            sizes[anchor] = n
        stack[-1][1] += n
        if stack[-1][1] > MAX_YAML_NODES:
            raise CxrError(
                f"{path}: YAML expands to over {MAX_YAML_NODES:,} values (aliases counted); "
                "refused as an alias bomb, a config file is a few option: value lines"
            )


def read_yaml(path: Path, what: str = "YAML file") -> Any:
    """A YAML document from `path`, within the size, depth and alias limits; CxrError otherwise."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CxrError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise CxrError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise CxrError(f"{path}: is a folder; give the {what} itself")
    if not stat.S_ISREG(st.st_mode):
        raise CxrError(f"{path}: not a regular file; give the {what} itself")
    if st.st_size > MAX_YAML_BYTES:
        raise CxrError(f"{path}: {st.st_size:,} bytes, over the {MAX_YAML_BYTES // 1024} KiB limit for a {what}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CxrError(f"{path}: not UTF-8 text (byte {exc.start}); save the {what} as UTF-8") from None
    except OSError as exc:
        raise CxrError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        _check_yaml_events(text, path)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CxrError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def load_yaml(path: Path | None) -> dict[str, Any]:
    """Read a YAML mapping of option names to values ('-' and '_' both accepted in names)."""
    if path is None:
        return {}
    path = Path(path)
    data = read_yaml(path, "config file (--config)")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CxrError(f"{path}: a config file must be a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _type_name(tp: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text", Path: "a path"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _check_value(tp: Any, value: Any) -> tuple[bool, Any, str]:
    """(ok, value converted to `tp`, what was expected) for one YAML value against a field's type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return True, None, "null"
        wanted = []
        for arg in (a for a in args if a is not type(None)):
            ok, converted, expected = _check_value(arg, value)
            if ok:
                return True, converted, expected
            wanted.append(expected)
        return False, value, " or ".join(wanted)
    if origin in (list, tuple):
        item = args[0] if args else Any
        expected = f"a list of {_type_name(item)}"
        if isinstance(value, str) and item in (str, float, int, Path):
            return True, value, expected  # "PA,AP" as on the command line; __post_init__ splits it
        if not isinstance(value, list):
            return False, value, expected
        out = []
        for v in value:
            ok, converted, _ = _check_value(item, v)
            if not ok:
                return False, value, expected
            out.append(converted)
        return True, out, expected
    if tp is bool:
        return isinstance(value, bool), value, _type_name(tp)
    if tp is int:  # bools are ints in Python, and 1.7 must not quietly become 1
        return isinstance(value, int) and not isinstance(value, bool), value, _type_name(tp)
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value, _type_name(tp)
    if tp is str:  # a number is fine as text (`som_grid: 12`); a YAML bool (`split: no`) is a slip
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, str(value), _type_name(tp)
        return isinstance(value, str), value, _type_name(tp)
    if tp is Path:
        return isinstance(value, str) and value != "", Path(value) if isinstance(value, str) else value, _type_name(tp)
    return True, value, _type_name(tp)  # a type we do not check (Any, nested configs)


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    return text if len(text) <= 40 else text[:37] + "..."


def build_config(cls: type[C], config_file: Path | None = None, **options: Any) -> C:
    """Dataclass defaults < YAML file < options that are not None.

    YAML values are checked against the field types first: bools take only true/false, ints
    only whole numbers, floats any number, paths text; every wrong value is listed, one per line.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in load_yaml(config_file).items():
        if key not in fields:
            raise CxrError(f"{config_file}: unknown option {key!r}.{did_you_mean(key, list(fields))}")
        ok, converted, expected = _check_value(hints[key], value)
        if ok:
            values[key] = converted
        else:
            problems.append(f"{config_file}: {key}: expected {expected}, got {_shown(value)}")
    if problems:
        raise CxrError("\n".join(problems))
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

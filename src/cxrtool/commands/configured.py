"""Commands built from their config dataclass: each option is declared once, on the config's field.

A command module writes a module-level function `fn(given: Given)` and registers it with
`add_command(app, name, fn, config_class, *extras)`. The Typer parameters are made from the
fields of the config class that carry `optionspec.option(...)` (flag, help, default, choices, in
the fields' order), followed by the `extras`: what is no config field (`--quiet`, `--config`, a
RUN argument, `--resume`). So adding an option is one new field with `option(...)`: it appears in
`--help` and reaches the config `given.config()` builds, through `build_config` (defaults <
`--config FILE.yaml` < options given).

The config classes live beside the code that uses them, and importing those imports torch; so a
command's parameters are made when it is first parsed, asked for `--help` or completed
(`ConfigCommand`), never when `cxrtool --help` lists the commands.

Where a command reads a `--config` file, an option left out arrives as None ("not given", so the
file's value stands) and its help says the default in words; where it reads none, Typer shows the
field's default.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from ..errors import CxrError
from ..optionspec import OptionSpec, option_spec
from .support import quiet_option, user_errors


@dataclass(frozen=True)
class Extra:
    """A parameter that is no config field: its name in `Given.extras`, type, Typer declaration, default.

    `same_as` names a config field the parameter gives too (the RUN argument and `--run`): a value
    given only here goes to the field, and two different values are refused.
    """

    name: str
    type: Any
    info: Any  # typer.Option(...) or typer.Argument(...)
    default: Any = None
    same_as: str | None = None


def quiet(help: str = "No progress bars.") -> Extra:
    return Extra("quiet", bool, typer.Option("--quiet", "-q", help=help), False)


def config_file(help: str = "YAML file of option values.") -> Extra:
    return Extra("config", Path | None, typer.Option("--config", help=help))


def flag(name: str, help: str) -> Extra:
    """An on-only flag the command handles itself (e.g. train's `--resume`, `--overwrite`)."""
    return Extra(name, bool, typer.Option(f"--{name.replace('_', '-')}", help=help), False)


def run_argument(help: str = "Run directory (default: the newest under ./runs).") -> Extra:
    """The run as the first argument, the same as `--run` (the config's `run` field)."""
    return Extra("run_arg", Path | None, typer.Argument(metavar="RUN", help=help), same_as="run")


@dataclass
class Given:
    """What the command line gave: config field values (None: not given) and the extras."""

    cls: type
    values: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)

    def config(self, **changes: Any) -> Any:
        """The config: defaults < `--config` file < the options given < `changes`."""
        # lazy: keeps cxrtool --help fast (config imports yaml)
        from ..config import build_config

        return build_config(self.cls, self.extras.get("config"), **{**self.values, **changes})


@dataclass(frozen=True)
class CommandSpec:
    """How to build one command: its function, config class (imported when needed) and extras."""

    fn: Callable[[Given], Any]
    config_class: Callable[[], type]
    extras: tuple[Extra, ...]
    first: tuple[str, ...] = ()  # fields shown before the others in --help (the command's own, for finetune)
    show_defaults: bool | None = None  # Typer shows the fields' defaults (None: where no --config file is read)

    def absent_is_none(self) -> bool:
        """Whether an option left out arrives as None (not given) rather than as the field's default."""
        reads_config_file = any(e.name == "config" for e in self.extras)
        return reads_config_file or self.show_defaults is False

    def parameters(self, cls: type) -> tuple[list[inspect.Parameter], dict[str, OptionSpec]]:
        """The Typer parameters (arguments first, then options) and the specs of the config fields among them."""
        hints = typing.get_type_hints(cls)
        specs = {f.name: (f, s) for f in dataclasses.fields(cls) if (s := option_spec(f)) is not None}
        order = [n for n in self.first if n in specs] + [n for n in specs if n not in self.first]
        if clash := sorted(set(specs) & {e.name for e in self.extras}):
            raise ValueError(f"{cls.__name__}: {clash} are both config fields and extras of {self.fn.__name__}")
        fields = [_field_parameter(n, *specs[n], hints[n], self.absent_is_none()) for n in order]
        extras = [_parameter(e.name, e.type, e.info, e.default) for e in self.extras]
        params = fields + extras
        is_argument = [isinstance(p.annotation.__metadata__[0], typer.models.ArgumentInfo) for p in params]
        params = [p for p, a in zip(params, is_argument) if a] + [p for p, a in zip(params, is_argument) if not a]
        return params, {n: specs[n][1] for n in order}

    def callable(self) -> Callable[..., Any]:
        """The function Typer calls: its signature made from the config class (imported now)."""
        cls = self.config_class()
        params, specs = self.parameters(cls)
        extras = {e.name: e for e in self.extras}

        @user_errors
        def command(**values: Any) -> Any:
            quiet_option(values.get("quiet", False))
            given = Given(cls, {n: values[n] for n in specs}, {n: values[n] for n in extras})
            for name, spec in specs.items():
                if spec.parse is not None and given.values[name] is not None:
                    given.values[name] = spec.parse(given.values[name], spec.flags_for(name)[0])
            for extra in extras.values():
                if extra.same_as is not None:
                    given.values[extra.same_as] = _once(extra, given.extras[extra.name], given.values[extra.same_as])
            return self.fn(given)

        command.__name__ = self.fn.__name__
        command.__doc__ = self.fn.__doc__
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return command


def _once(extra: Extra, as_argument: Any, as_option: Any) -> Any:
    """One value from the argument and the option that both give it; two different ones are refused."""
    if as_argument is not None and as_option is not None and as_argument != as_option:
        raise CxrError(
            f"give the {extra.same_as} once: as the argument ({as_argument}) or as --{extra.same_as} ({as_option})"
        )
    return as_option if as_argument is None else as_argument


def _field_parameter(
    name: str, f: dataclasses.Field, spec: OptionSpec, hint: Any, absent_is_none: bool
) -> inspect.Parameter:
    has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    if not has_default:
        default: Any = ...  # required (e.g. `prepare combine --out`)
    elif absent_is_none:
        default = None  # "not given": a --config file's value stands, and the help says the default
    else:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    tp = spec.type if spec.type is not None else hint
    if default is None:
        tp = tp | None
    extra = {}
    if spec.choices:
        extra["autocompletion"] = lambda incomplete: [c for c in spec.choices if c.startswith(incomplete)]
    if spec.argument:
        info = typer.Argument(metavar=spec.metavar, help=spec.help, **extra)
    else:
        info = typer.Option(*spec.flags_for(name), metavar=spec.metavar, help=spec.help, **extra)
    return _parameter(name, tp, info, default)


def _parameter(name: str, tp: Any, info: Any, default: Any) -> inspect.Parameter:
    kind = inspect.Parameter.KEYWORD_ONLY
    if default is ...:
        return inspect.Parameter(name, kind, annotation=Annotated[tp, info])
    return inspect.Parameter(name, kind, default=default, annotation=Annotated[tp, info])


class ConfigCommand(TyperCommand):
    """A Typer command whose parameters and callback are made from its `CommandSpec` on first use.

    Typer builds the command from a placeholder without parameters; `params` and `callback` are
    made the first time click reads them (to parse, to format `--help`, to complete), by building
    the real function into a one-command Typer app (Typer's public way of turning a function into
    a click command). Listing the commands (`cxrtool --help`) reads only names and help text.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._built: tuple[list[Any], Any] | None = None
        self.spec: CommandSpec | None = None
        super().__init__(*args, **kwargs)

    def _build(self) -> tuple[list[Any], Any]:
        if self._built is None:
            assert self.spec is not None, "a ConfigCommand is made by add_command"
            single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
            single.command(self.name)(self.spec.callable())
            real = typer.main.get_command(single)
            self._built = (real.params, real.callback)
        return self._built

    @property  # type: ignore[override]
    def params(self) -> list[Any]:
        return self._build()[0]

    @params.setter
    def params(self, value: list[Any]) -> None:
        pass  # the placeholder's (none): the real ones are built from the spec

    @property  # type: ignore[override]
    def callback(self) -> Any:
        return self._build()[1]

    @callback.setter
    def callback(self, value: Any) -> None:
        # The placeholder's callback carries the spec (Typer's wrapper copies the function's __dict__).
        self.spec = getattr(value, "command_spec", None)


def add_command(
    app: typer.Typer,
    name: str,
    fn: Callable[[Given], Any],
    config_class: Callable[[], type],
    *extras: Extra,
    first: tuple[str, ...] = (),
    show_defaults: bool | None = None,
) -> None:
    """Register `fn` as `name`: options from `config_class()`'s fields, then `extras`; help from fn's docstring."""

    def placeholder() -> None:
        """Stands for the command until its parameters are built (ConfigCommand)."""

    spec = CommandSpec(fn, config_class, extras, first, show_defaults)
    placeholder.command_spec = spec  # type: ignore[attr-defined]
    app.command(name, cls=ConfigCommand, help=inspect.getdoc(fn))(placeholder)

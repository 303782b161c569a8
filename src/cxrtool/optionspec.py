"""How a config field is spelled on the command line: `option(...)`, declared on the dataclass.

A command's options are the fields of its config dataclass that carry an `OptionSpec` (put there
by `option(default, help=...)` in place of a plain default); `cxrtool.commands.configured` builds the
Typer command from them. A field without one is read from `--config FILE.yaml` only. This module
imports nothing of the command line (no Typer), so the layers that hold the configs stay below it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SPEC_KEY = "cxrtool.option"  # the key of a field's metadata that holds its OptionSpec


@dataclass(frozen=True)
class OptionSpec:
    """The command-line side of one config field.

    `flags`: the spellings (default `--field-name`; `--x/--no-x` for an on/off pair). `help` is the
    text `--help` shows, defaults said in it where the command reads a `--config` file.
    `argument`: a positional argument instead of an option (`metavar` names it in `--help`).
    `type`: what the command line reads where it differs from the field's type (text for a
    comma-separated list), and `parse(value, flag)` turns it into the field's value. `choices`
    are offered by shell completion; the config's `__post_init__` still checks the value, with its
    own message.
    """

    help: str
    flags: tuple[str, ...] = ()
    argument: bool = False
    metavar: str | None = None
    type: Any = None
    parse: Callable[[Any, str], Any] | None = None
    choices: tuple[str, ...] = ()

    def flags_for(self, name: str) -> tuple[str, ...]:
        return self.flags or (f"--{name.replace('_', '-')}",)


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    default_factory: Any = dataclasses.MISSING,
    **spec: Any,
) -> Any:
    """A dataclass field with `default` (or `default_factory`) that is also a command-line option.

    `spec` is the rest of `OptionSpec` (flags, argument, metavar, type, parse, choices).
    """
    return dataclasses.field(
        default=default,
        default_factory=default_factory,
        metadata={SPEC_KEY: OptionSpec(help=help, **spec)},
    )


def option_spec(f: dataclasses.Field) -> OptionSpec | None:
    """The field's OptionSpec, or None for a field that is no command-line option."""
    return f.metadata.get(SPEC_KEY)

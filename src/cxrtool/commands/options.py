"""Options declared once and shared by several commands (`SharedOption`, `with_options`).

Typer reads a command's options from its function signature. A command that shares options with
others declares only its own parameters and `**shared`; `with_options(rows, kind)` appends the
shared rows to the signature Typer sees (after the command's own, so its own lead in `--help`),
and the function receives their values in `shared`. A row's help and shown default may differ
per command (`kind`), so one table serves, e.g., both `pretrain` and `finetune`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer


@dataclass(frozen=True)
class SharedOption:
    """One shared option: its parameter name, type, flags and help.

    `help` is one text, or one per command where they differ; `default` is what each command's
    help shows as the default (absent: nothing shown). `to_config` is False for options the
    command layer handles itself (resume, overwrite, the config file, quiet). `value_if_absent`
    is what the function receives when the option is not given (None: "not given", so a
    `--config` file's value is kept).
    """

    name: str
    type: Any
    flags: tuple[str, ...]
    help: str | dict[str, str]
    default: dict[str, str] = field(default_factory=dict)
    to_config: bool = True
    value_if_absent: Any = None

    def help_for(self, kind: str) -> str:
        text = self.help[kind] if isinstance(self.help, dict) else self.help
        shown = self.default.get(kind)
        return f"{text} (default: {shown})" if shown is not None else text

    def parameter(self, kind: str) -> inspect.Parameter:
        option = typer.Option(*self.flags, help=self.help_for(kind))
        return inspect.Parameter(
            self.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=self.value_if_absent,
            annotation=Annotated[self.type, option],
        )


def with_options(rows: tuple[SharedOption, ...], kind: str) -> Callable[[Callable], Callable]:
    """Give a command function `fn(own..., **shared)` the shared rows as real parameters.

    The rows go into `__signature__` and their types into `__annotations__` (Typer reads both);
    `__wrapped__` is removed so that Typer sees the new signature, not the function's own.
    """

    def decorate(fn: Callable) -> Callable:
        # eval_str: the own annotations become real types (Typer reads them from this module later)
        own = [
            p
            for p in inspect.signature(fn, eval_str=True).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        params = own + [row.parameter(kind) for row in rows]

        @functools.wraps(fn)
        def command(**values: Any) -> Any:
            return fn(**values)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__
        return command

    return decorate


def config_values(rows: tuple[SharedOption, ...], shared: dict[str, Any]) -> dict[str, Any]:
    """The values of the rows that go into the command's config, by option name."""
    return {row.name: shared[row.name] for row in rows if row.to_config}

"""`--help` on every command: examples at the end, flags shown as flags, and shell completion."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.commands.examples import EXAMPLES

runner = CliRunner()


def _command_paths(command, path=()):
    subcommands = getattr(command, "commands", {})
    if not subcommands:
        yield path
    for name, sub in subcommands.items():
        yield from _command_paths(sub, (*path, name))


PATHS = list(_command_paths(typer.main.get_command(app)))


def test_every_command_has_examples_that_name_it():
    assert {" ".join(p) for p in PATHS} == set(EXAMPLES)
    for path, lines in EXAMPLES.items():
        assert lines and all(line.startswith(f"cxrtool {path}") for line in lines), path


@pytest.mark.parametrize("path", PATHS, ids=" ".join)
def test_help_ends_with_examples_and_shows_no_python_types(path):
    text = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"}).output
    assert "Examples:" in text and EXAMPLES[" ".join(path)][0] in text
    for python_type in ("<bool>", "list[", "[[RUN]]"):
        assert python_type not in text, (path, python_type)


def test_shell_completion_is_offered():
    text = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "--install-completion" in text and "<bool>" not in text

"""Options declared once, on the config dataclass: a new field is a new option, and nothing else changes.

A field added to a command's config with `option(...)` appears in that command's `--help` and its
value reaches the config the command passes on (through `--config FILE.yaml` too); the commands'
parameters are built only when a command is used, so `cxrtool --help` imports no torch.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import typer
from typer.testing import CliRunner

import cxrtool.commands.demo as demo_command
import cxrtool.commands.embed as embed_command
from cxrtool.cli import app
from cxrtool.demo import DemoConfig
from cxrtool.embed import EmbedConfig
from cxrtool.optionspec import option, option_spec

runner = CliRunner()


@dataclasses.dataclass
class EmbedWithProbe(EmbedConfig):
    probe_size: int = option(7, help="A field added by the test (default: 7).")


@dataclasses.dataclass
class DemoWithProbe(DemoConfig):
    probe_level: str = option("low", help="A field added by the test.", choices=("low", "high"))


def _app_with(module, config_class, monkeypatch, runner_name: str) -> tuple[typer.Typer, list]:
    """A fresh app holding `module`'s command, built from `config_class`; the configs it passes on."""
    seen: list = []
    monkeypatch.setattr(module, f"{module.__name__.rsplit('.', 1)[1]}_config", lambda: config_class)
    monkeypatch.setattr(runner_name, lambda cfg, **_: seen.append(cfg))
    fresh = typer.Typer()
    module.register(fresh)
    fresh.callback()(lambda: None)  # a group, as in cxrtool, so the command is named on the line
    return fresh, seen


def test_a_field_added_to_a_config_is_an_option_that_reaches_the_config(monkeypatch, tmp_path):
    fresh, seen = _app_with(embed_command, EmbedWithProbe, monkeypatch, "cxrtool.embed.run_embed")
    text = runner.invoke(fresh, ["embed", "--help"], env={"COLUMNS": "200"}).output
    assert "--probe-size" in text and "A field added by the test (default: 7)." in text
    assert "--pca" in text  # the config's own options are still there

    assert runner.invoke(fresh, ["embed", "--probe-size", "11", "--pca", "3"]).exit_code == 0
    assert isinstance(seen[-1], EmbedWithProbe) and (seen[-1].probe_size, seen[-1].pca) == (11, 3)
    assert runner.invoke(fresh, ["embed"]).exit_code == 0
    assert seen[-1].probe_size == 7  # not given: the field's default
    yaml = tmp_path / "options.yaml"
    yaml.write_text("probe_size: 5\noverwrite: true\n")
    assert runner.invoke(fresh, ["embed", "--config", str(yaml)]).exit_code == 0
    assert (seen[-1].probe_size, seen[-1].overwrite) == (5, True)  # a flag not given leaves the file's value
    assert runner.invoke(fresh, ["embed", "--config", str(yaml), "--probe-size", "9"]).exit_code == 0
    assert seen[-1].probe_size == 9  # the command line wins over the file


def test_a_command_without_a_config_file_shows_the_field_default(monkeypatch):
    fresh, seen = _app_with(demo_command, DemoWithProbe, monkeypatch, "cxrtool.demo.run_demo")
    text = runner.invoke(fresh, ["demo", "--help"], env={"COLUMNS": "200"}).output
    assert "--probe-level" in text and "[default: low]" in text
    assert runner.invoke(fresh, ["demo", "--probe-level", "high", "--quick"]).exit_code == 0
    assert (seen[-1].probe_level, seen[-1].quick) == ("high", True)
    # the choices are offered by shell completion
    command = typer.main.get_command(fresh).commands["demo"]
    level = next(p for p in command.params if p.name == "probe_level")
    ctx = command.make_context("demo", [], resilient_parsing=True)
    assert [item.value for item in level.shell_complete(ctx, "h")] == ["high"]


def test_every_option_field_of_every_command_is_in_its_help():
    from cxrtool.commands.configured import ConfigCommand

    def commands(group, path=()):
        for name, sub in getattr(group, "commands", {}).items():
            if isinstance(sub, ConfigCommand):
                yield (*path, name), sub
            yield from commands(sub, (*path, name))

    found = list(commands(typer.main.get_command(app)))
    assert {" ".join(p) for p, _ in found} >= {"pretrain", "finetune", "evaluate", "predict", "cam", "embed"}
    for path, command in found:
        text = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"}).output
        cls = command.spec.config_class()
        for f in dataclasses.fields(cls):
            if (spec := option_spec(f)) is not None and not spec.argument:
                assert spec.flags_for(f.name)[0].split("/")[0] in text, (path, f.name)


def test_the_run_is_given_once(tmp_path):
    res = runner.invoke(app, ["evaluate", str(tmp_path / "a"), "--run", str(tmp_path / "b")])
    assert res.exit_code == 2 and "give the run once" in res.output


def test_cxrtool_help_imports_no_torch():
    code = (
        "import sys\n"
        "from cxrtool.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Transfer learning on chest X-rays" in out
    assert out.strip().splitlines()[-1] == "False"

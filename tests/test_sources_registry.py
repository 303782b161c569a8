"""The dataset-source registry: every source is a `prepare` subcommand built from what it registered,
and a new source (one module calling `register_source`) is found, prepared and combined like the others."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from cxrtool.commands import prepare as prepare_commands
from cxrtool.commands.examples import EXAMPLES
from cxrtool.data.cache import PreparedData
from cxrtool.data.combine_labels import pre_pandemic
from cxrtool.data.labels import canonical
from cxrtool.data.prepare import prepare
from cxrtool.data.sources import registry
from cxrtool.data.sources.base import PrepareOptions, SourceTable
from cxrtool.data.sources.registry import Source, SourceOption, get_source, register_source, sources
from cxrtool.errors import CxrError

runner = CliRunner()
SOURCES = sources()


def _app() -> typer.Typer:
    app = typer.Typer()
    prepare_commands.register(app)
    return app


def test_the_sources_are_found_in_their_order():
    assert [s.name for s in SOURCES][:3] == ["nih", "covid", "folder"]
    assert [s.name for s in SOURCES if s.pre_pandemic] == ["nih"]


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_every_source_is_a_subcommand_with_its_own_and_the_shared_options(source: Source):
    assert issubclass(source.config, PrepareOptions) and callable(source.read)
    assert get_source(source.name) is source
    text = runner.invoke(_app(), ["prepare", source.name, "--help"], env={"COLUMNS": "250"}).output
    assert source.help in text
    for option in source.options:
        shown = option.name.upper() if option.argument else option.flags[0]
        assert (shown.lower() if option.argument else shown) in text.lower(), (source.name, option.name)
        assert option.help in text
    for flag in ("--out", "--size", "--val-frac", "--overwrite", "--config"):
        assert flag in text
    assert f"data/{source.name}" in text  # --out's default names the source
    assert EXAMPLES[f"prepare {source.name}"] == source.examples and source.examples
    assert all(line.startswith(f"cxrtool prepare {source.name} ") for line in source.examples)
    for alias, label in source.label_aliases.items():
        assert canonical(alias.title()) == label


def test_pre_pandemic_and_aliases_come_from_the_registry():
    assert pre_pandemic({"source": "nih"}) and not pre_pandemic({"source": "covid"})
    assert not pre_pandemic({"source": "folder"}) and not pre_pandemic({})
    assert canonical("Pleural Effusion") == "Effusion"  # the folder source's alias
    assert canonical(" pleural thickening ") == "Pleural_Thickening"  # our own spelling variant
    assert canonical("Not A Label") == "Not A Label"


def test_an_unknown_source_is_one_line():
    with pytest.raises(CxrError, match=r"unknown prepare source 'nhi'.*nih"):
        get_source("nhi")


def test_a_name_taken_twice_is_refused():
    nih = get_source("nih")
    with pytest.raises(ValueError, match="registered twice"):
        register_source(Source(name="nih", help="x", config=PrepareOptions, read=lambda cfg: None))
    assert get_source("nih") is nih


# ---------------------------------------------------------------- a new source, as a new module would add it


@dataclass(kw_only=True)
class PrepareTilesConfig(PrepareOptions):
    root: Path
    out: Path = Path("data/tiles")
    bright: bool = False


def read_tiles(cfg: PrepareTilesConfig) -> SourceTable:
    """One image per file under root; patient = the file's first letter; 'Opacity' = bright."""
    files = sorted(cfg.root.glob("*.png"))
    rows = pd.DataFrame(
        {
            "id": [f.stem for f in files],
            "patient": [f.stem[0] for f in files],
            "view": "PA",
            "source_path": [f.name for f in files],
            "path": [str(f) for f in files],
            "Effusion": [float(np.asarray(Image.open(f)).mean() > 128) for f in files],
        }
    )
    notes = ["bright switch on"] if cfg.bright else []
    return SourceTable(name="tiles", rows=rows, labels=["Effusion"], notes=notes)


TILES = Source(
    name="tiles",
    help="Test tiles -> cache.",
    config=PrepareTilesConfig,
    read=read_tiles,
    options=(
        SourceOption("root", Path, "Folder of tiles.", argument=True),
        SourceOption("bright", bool, "Note the bright switch.", ("--bright",), switch=True),
    ),
    examples=("cxrtool prepare tiles raw/tiles",),
    pre_pandemic=True,
    label_aliases={"fluid": "Effusion"},
)


@pytest.fixture()
def tiles(monkeypatch, tmp_path) -> Path:
    # The registry as a copy, so that the test's source is gone afterwards.
    monkeypatch.setattr(registry, "_SOURCES", dict(registry._SOURCES))
    monkeypatch.setattr(registry, "_aliases", None)
    monkeypatch.setitem(EXAMPLES, "prepare tiles", ())  # the key goes again afterwards
    register_source(TILES)
    root = tmp_path / "tiles"
    root.mkdir()
    rng = np.random.default_rng(0)
    for k in range(12):
        value = 200 if k % 3 == 0 else 40
        pixels = np.clip(rng.normal(value, 20, (40, 40)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"{'abcdef'[k % 6]}{k:02d}.png")
    return root


def test_a_registered_source_is_prepared_and_combined_like_the_others(tiles, tmp_path):
    assert [s.name for s in sources()][-1] == "tiles" and canonical("Fluid") == "Effusion"
    out = tmp_path / "cache"
    data = prepare(PrepareTilesConfig(root=tiles, out=out, size=32, workers=1, max_distance=0))
    assert isinstance(data, PreparedData) and data.manifest["source"] == "tiles"
    assert len(data.index) == 12 and data.labels == ["Effusion"]
    assert int(np.nansum(data.index["Effusion"])) == 4
    assert pre_pandemic(data.manifest)


def test_a_registered_source_gets_its_subcommand(tiles, tmp_path):
    app = _app()
    text = runner.invoke(app, ["prepare", "tiles", "--help"], env={"COLUMNS": "250"}).output
    assert "Test tiles -> cache." in text and "--bright" in text and "data/tiles" in text
    out = tmp_path / "by-cli"
    res = runner.invoke(app, ["prepare", "tiles", str(tiles), "--out", str(out), "--size", "32", "--workers", "1"])
    assert res.exit_code == 0, res.output
    data = PreparedData(out)
    assert data.manifest["settings"]["bright"] is False and data.manifest["settings"]["size"] == 32
    # A switch left off keeps a --config file's value; given, it is on.
    config = tmp_path / "tiles.yaml"
    config.write_text("bright: true\n")
    res = runner.invoke(
        app, ["prepare", "tiles", str(tiles), "--out", str(tmp_path / "c2"), "--size", "32", "--config", str(config)]
    )
    assert res.exit_code == 0, res.output
    assert PreparedData(tmp_path / "c2").manifest["settings"]["bright"] is True
    assert PreparedData(tmp_path / "c2").manifest["notes"] == ["bright switch on"]


def _imported_by(args: list[str]) -> list[str]:
    """The heavy modules imported by a fresh `cxrtool ARGS` (through click, in a child process)."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cxrtool.cli import app\n"
        f"assert CliRunner().invoke(app, {args!r}).exit_code == 0\n"
        "print(' '.join(m for m in ('torch', 'torchvision', 'pandas', 'cxrtool.data.sources.nih') if m in sys.modules))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


def test_the_architecture_names_come_without_torch():
    code = "import sys, cxrtool.models.archs as a; a.arch_choices(); print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def test_help_imports_no_torch_and_the_sources_only_for_prepare():
    assert _imported_by(["--help"]) == []  # the sources' subcommands are built on first use
    assert _imported_by(["prepare", "nih", "--help"]) == ["pandas", "cxrtool.data.sources.nih"]

"""Maps record the weights they were made of; a run trained further since shows them as stale."""

from __future__ import annotations

import shutil

import pandas as pd
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.models.provenance import CURRENT, STALE, UNKNOWN, cam_status, weights_sha256

runner = CliRunner()


def test_maps_made_of_earlier_weights_are_named_stale_in_the_report(tmp_path, trained_run, synth_data):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    label = synth_data.labels[0]
    args = ["cam", str(run), "--data", str(synth_data.root), "--split", "all", "--allow-seen"]
    res = runner.invoke(app, [*args, "--max-images", "3", "--class", label, "--no-overlays", "-q", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    cams = pd.read_csv(run / "cam" / "cams.csv")
    assert set(cams["checkpoint"]) == {"best"}
    assert set(cams["weights_sha256"]) == {weights_sha256(run / "checkpoints" / "best")}
    assert cam_status(run / "cam" / "cams.csv", run)[0] == CURRENT

    # The run is trained further: its best weights change (here: other bytes in the same file).
    weights = next((run / "checkpoints" / "best").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes() + b" ")
    state, why = cam_status(run / "cam" / "cams.csv", run)
    assert state == STALE and "3 of 3 map(s)" in why
    res = runner.invoke(app, ["report", str(run), "-q"])
    assert res.exit_code == 0, res.output
    assert "3 of 3 map(s) were made of earlier weights" in (run / "report.html").read_text(encoding="utf-8")


def test_an_older_listing_without_weights_is_unknown_not_stale(tmp_path):
    listing = tmp_path / "cams.csv"
    pd.DataFrame({"id": ["a.png"], "class": ["Mass"], "method": ["cam"], "map": ["m.npy"]}).to_csv(listing, index=False)
    assert cam_status(listing, tmp_path)[0] == UNKNOWN

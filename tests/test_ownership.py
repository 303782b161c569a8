"""Output folders own only what they wrote (issue 21, "Data loss" 1-5, 9, 20, 27).

Each case the sweep reproduced is run again here: a user's file in an output folder is refused
by name and kept, with or without --overwrite; --overwrite removes only the files the folder's
record lists; a file --out never replaces a cache's or a run's own file; cam names inputs that
share a file name apart and indexes what a halfway stop wrote; export takes the folder's lock and
clears a killed export's temporary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import pretrain_cli
from PIL import Image
from typer.testing import CliRunner

from cxrtool.atomic import atomic_write_text
from cxrtool.cli import app
from cxrtool.errors import CxrError
from cxrtool.owned import RECORD, claim_folder, read_record, release_claims
from cxrtool.run_locks import new_run_dir, release_locks

runner = CliRunner()


def one_line_refusal(res, *parts: str) -> None:
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output
    line = " ".join(res.output.split())  # the console wraps long lines
    for part in parts:
        assert part in line, res.output


@pytest.fixture()
def run_copy(tmp_path, trained_run) -> Path:
    """A finished run made without a record (as an older cxrtool left it), free to change."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


# ---------------------------------------------------------------- the record itself


def test_the_record_lists_each_file_as_it_is_written_and_overwrite_removes_only_those(tmp_path):
    out = tmp_path / "out"
    claim_folder(out, "evaluate")
    atomic_write_text(out / "metrics.json", "{}")
    atomic_write_text(out / "sub" / "table.csv", "a\n")
    release_claims()  # as if the command were killed here: its files are still known as its own
    assert read_record(out) == {"metrics.json": "evaluate", "sub/table.csv": "evaluate"}
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CxrError, match=r"holds notes\.txt, which no cxrtool command wrote"):
        claim_folder(out, "evaluate")
    (out / "notes.txt").unlink()
    owned = claim_folder(out, "evaluate")
    (out / "sub" / "mine.txt").write_text("mine")  # arrived after the check: still never removed
    assert owned.clear("evaluate") == 2
    assert (out / "sub" / "mine.txt").read_text() == "mine"
    assert not (out / "metrics.json").exists() and read_record(out) == {}
    release_claims()


def test_a_line_cut_short_by_a_crash_is_ignored_and_odd_names_round_trip(tmp_path):
    out = tmp_path / "out"
    claim_folder(out, "cam")
    odd = os.fsdecode(b"caf\xe9.npy")  # not UTF-8: a surrogate escape
    atomic_write_text(out / odd, "x")
    release_claims()
    with open(out / RECORD, "ab") as fh:
        fh.write(b'{"path": "half')  # killed while appending
    assert read_record(out) == {odd: "cam"}
    assert claim_folder(out, "cam").clear() == 1
    assert not (out / odd).exists()
    release_claims()


def test_a_file_written_beside_a_record_outside_the_claimed_folder_is_recorded_there(tmp_path):
    run = tmp_path / "run"
    claim_folder(run, "pretrain")
    release_claims()
    claim_folder(run / "eval", "evaluate")  # the command's own folder
    atomic_write_text(run / "lineage.json", "{}")  # a file it adds to the run it reads
    release_claims()
    assert read_record(run) == {"lineage.json": "evaluate"}
    assert claim_folder(run, "pretrain").clear() == 1 and not (run / "eval").exists()
    release_claims()


# ---------------------------------------------------------------- item 1: pretrain, finetune, import


def test_item1_pretrain_into_a_folder_of_notes_refuses_and_keeps_them(tmp_path, synth_data):
    out = tmp_path / "u3"
    (out / "cam").mkdir(parents=True)
    (out / "eval-notes.txt").write_text("x")
    (out / "fold-3-results.csv").write_text("x")
    (out / "cam" / "figure1.png").write_bytes(b"png")
    res = pretrain_cli(synth_data, out)
    one_line_refusal(res, str(out), "which no cxrtool command wrote there")
    res = pretrain_cli(synth_data, out, "--overwrite")
    one_line_refusal(res, "which no cxrtool command wrote there")
    assert (out / "eval-notes.txt").read_text() == "x"
    assert (out / "fold-3-results.csv").read_text() == "x"
    assert (out / "cam" / "figure1.png").read_bytes() == b"png"
    assert not (out / RECORD).exists()  # a refused folder is left exactly as it was


def test_item1_overwrite_of_a_finished_run_removes_only_its_files(tmp_path, synth_data):
    out = tmp_path / "run"
    assert pretrain_cli(synth_data, out).exit_code == 0
    record = read_record(out)
    assert {"config.yaml", "manifest.json", "metrics.csv", "checkpoints/best/", "checkpoints/last/"} <= set(record)
    (out / "evaluation_notes.xlsx").write_text("mine")
    one_line_refusal(pretrain_cli(synth_data, out, "--overwrite"), "holds evaluation_notes.xlsx")
    (out / "evaluation_notes.xlsx").unlink()
    res = pretrain_cli(synth_data, out, "--overwrite")
    assert res.exit_code == 0, res.output
    assert (out / "checkpoints" / "best" / "card.json").is_file()


def test_item1_a_run_made_before_records_keeps_a_users_file(run_copy, synth_data):
    (run_copy / "eval").mkdir()
    (run_copy / "eval" / "notes.txt").write_text("mine")  # eval/ holds no metrics.json: not an evaluation
    one_line_refusal(pretrain_cli(synth_data, run_copy, "--overwrite"), "holds eval/notes.txt")
    assert (run_copy / "eval" / "notes.txt").read_text() == "mine"
    (run_copy / "eval" / "notes.txt").unlink()
    res = pretrain_cli(synth_data, run_copy, "--overwrite")  # the old version's exact names are adopted
    assert res.exit_code == 0, res.output


def test_item1_names_alone_prove_nothing_without_a_cxrtool_manifest(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("mine: 1\n")
    (out / "manifest.json").write_text("{}")  # not one cxrtool wrote
    for kind in ("pretrain", "import"):
        with pytest.raises(CxrError, match="which no cxrtool command wrote"):
            new_run_dir(kind, "tiny", out=out, overwrite=True)
        release_locks()
    assert (out / "config.yaml").read_text() == "mine: 1\n"


# ---------------------------------------------------------------- items 2 and 3: a file --out


def test_item2_dedupe_report_never_replaces_a_caches_index(tmp_path, synth_data):
    index = synth_data.root / "index.csv"
    before = index.read_bytes()
    for extra in ([], ["--overwrite"]):
        res = runner.invoke(app, ["prepare", "dedupe", str(synth_data.root), "--report", str(index), *extra])
        one_line_refusal(res, "--report", "never replaced")
    assert index.read_bytes() == before
    mine = tmp_path / "pairs.csv"
    mine.write_text("mine")
    res = runner.invoke(app, ["prepare", "dedupe", str(synth_data.root), "--report", str(mine)])
    one_line_refusal(res, "exists; pass --overwrite")
    assert mine.read_text() == "mine"


def test_item3_report_out_refuses_a_caches_and_a_runs_files(tmp_path, synth_data, run_copy):
    index = synth_data.root / "index.csv"
    before = index.read_bytes()
    for target in (index, run_copy / "manifest.json"):
        kept = target.read_bytes()
        res = runner.invoke(app, ["report", str(run_copy), "--out", str(target), "--overwrite"])
        one_line_refusal(res, "never replaced")
        assert target.read_bytes() == kept
    assert index.read_bytes() == before
    page = tmp_path / "page.html"
    page.write_text("mine")
    one_line_refusal(runner.invoke(app, ["report", str(run_copy), "--out", str(page)]), "exists; pass --overwrite")
    assert page.read_text() == "mine"
    assert runner.invoke(app, ["report", str(run_copy), "--out", str(page), "--overwrite"]).exit_code == 0
    assert page.read_text().startswith("<!doctype html>")
    for _ in range(2):  # the run's own page is the run's: rewritten, and recorded as the report's
        assert runner.invoke(app, ["report", str(run_copy)]).exit_code == 0
    assert read_record(run_copy)["report.html"] == "report"


# ---------------------------------------------------------------- item 4: evaluate, embed, compare


def test_item4_evaluate_embed_compare_refuse_a_folder_with_a_users_files(tmp_path, run_copy, synth_data):
    cases = {
        "evaluate": (["evaluate", str(run_copy), "--bootstrap", "0", "--device", "cpu"], "config.yaml"),
        "embed": (["embed", "--run", str(run_copy), "--method", "som", "--device", "cpu"], "scores.json"),
        "compare": (["compare", "--arm", f"a={run_copy}"], "arms.csv"),
    }
    for name, (args, user_file) in cases.items():
        out = tmp_path / name
        out.mkdir()
        (out / user_file).write_text("mine")
        for extra in ([], ["--overwrite"]):
            res = runner.invoke(app, [*args, "--out", str(out), "-q", *extra])
            one_line_refusal(res, f"holds {user_file}, which no cxrtool command wrote")
        assert (out / user_file).read_text() == "mine", name
        assert sorted(p.name for p in out.iterdir()) == [user_file], name


def test_item4_evaluate_overwrite_removes_only_what_the_evaluation_wrote(tmp_path, run_copy):
    out = tmp_path / "ev"
    args = ["evaluate", str(run_copy), "--bootstrap", "0", "--device", "cpu", "--out", str(out), "-q"]
    assert runner.invoke(app, args).exit_code == 0
    written = set(read_record(out))
    assert {"metrics.json", "predictions.csv", "roc.png"} <= written
    one_line_refusal(runner.invoke(app, args), "holds an earlier evaluation")
    res = runner.invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert set(read_record(out)) == written
    (out / "roc-notes.txt").write_text("mine")
    one_line_refusal(runner.invoke(app, [*args, "--overwrite"]), "holds roc-notes.txt")
    assert (out / "roc-notes.txt").read_text() == "mine" and (out / "metrics.json").is_file()


# ---------------------------------------------------------------- item 5: demo


def test_item5_demo_overwrite_keeps_a_thesis(tmp_path):
    out = tmp_path / "thesis_dir"
    out.mkdir()
    (out / "thesis.tex").write_text("\\documentclass{article}")
    res = runner.invoke(app, ["demo", "--out", str(out), "--quick", "--overwrite", "--device", "cpu"])
    one_line_refusal(res, "holds thesis.tex, which no cxrtool command wrote")
    assert (out / "thesis.tex").read_text() == "\\documentclass{article}"
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_item5_demo_overwrite_clears_what_an_earlier_demo_recorded(tmp_path):
    from cxrtool.demo import DemoConfig, _claim_out

    out = tmp_path / "demo"
    _claim_out(DemoConfig(out=out))  # what a demo records before its first step
    (out / "raw").mkdir()
    (out / "raw" / "image.png").write_bytes(b"png")
    (out / "runs" / "r").mkdir(parents=True)
    claim_folder(out / "runs" / "r", "pretrain")  # a run inside it keeps its own record
    atomic_write_text(out / "runs" / "r" / "metrics.csv", "epoch\n")
    release_locks()
    with pytest.raises(CxrError, match="pass --overwrite"):
        _claim_out(DemoConfig(out=out))
    release_locks()
    _claim_out(DemoConfig(out=out, overwrite=True))
    release_locks()
    assert not (out / "raw").exists() and not (out / "runs").exists()


# ---------------------------------------------------------------- items 9 and 20: cam


def _images(synth_data, folder: Path, names: list[str]) -> list[Path]:
    paths = []
    for r, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(synth_data.images[r])).save(path)
        paths.append(path)
    return paths


def cam_cli(*args: str):
    return runner.invoke(app, ["cam", *args, "--quiet", "--device", "cpu"])


def test_item9_inputs_sharing_a_file_name_get_maps_of_their_own(tmp_path, synth_data, run_copy):
    paths = _images(synth_data, tmp_path, ["sa/img.png", "sb/img.png", "sc/img_2.png"])
    out = tmp_path / "cams"
    res = cam_cli(*map(str, paths), "--run", str(run_copy), "--class", "Cardiomegaly", "--out", str(out))
    assert res.exit_code == 0, res.output
    index = pd.read_csv(out / "cams.csv")
    assert len(index) == 3 and index["map"].nunique() == 3 and index["overlay"].nunique() == 3
    maps = [np.load(p) for p in index["map"]]
    assert all(Path(p).is_file() for p in index["map"])
    assert not np.array_equal(maps[0], maps[1])  # two images, two maps: none replaced another
    assert set(index["map"]) <= {str(out / p) for p in read_record(out)}


def test_item9_a_halfway_stop_still_indexes_the_maps_it_wrote(tmp_path, synth_data, run_copy):
    first, second = _images(synth_data, tmp_path, ["b.png", "z.png"])
    out = tmp_path / "cams"
    base = ["--run", str(run_copy), "--out", str(out), "--no-overlays"]
    assert cam_cli(str(second), *base).exit_code == 0
    res = cam_cli(str(first), str(second), *base)  # z's map exists: the call stops at it
    one_line_refusal(res, "exists; pass --overwrite")
    index = pd.read_csv(out / "cams.csv")
    assert sorted(index["id"]) == ["b.png", "z.png"]
    written = {p.name for p in (out / "maps").iterdir()}
    assert written == {Path(p).name for p in index["map"]}  # no map in the folder is unlisted


def test_item20_cam_into_a_folder_with_someone_elses_cams_csv_is_one_line(tmp_path, synth_data, run_copy):
    (path,) = _images(synth_data, tmp_path, ["a.png"])
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "cams.csv").write_text("patient,score\n1,2\n")
    for extra in ([], ["--overwrite"]):
        res = cam_cli(str(path), "--run", str(run_copy), "--out", str(out), *extra)
        one_line_refusal(res, "holds cams.csv, which no cxrtool command wrote")
    assert (out / "cams.csv").read_text() == "patient,score\n1,2\n"


# ---------------------------------------------------------------- item 27: export


def test_item27_export_takes_the_folders_lock(tmp_path, run_copy):
    out = tmp_path / "ts"
    code = (
        "import sys, time\nfrom cxrtool.locks import hold_lock\n"
        "with hold_lock(sys.argv[1], what='export'):\n    print('held', flush=True)\n    time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        res = runner.invoke(app, ["export", str(run_copy), "--format", "torchscript", "--out", str(out)])
        one_line_refusal(res, f"pid {child.pid}")
    finally:
        child.kill()
        child.wait()
    assert not (out / "model.pt").exists()


def test_item27_a_killed_exports_temporary_is_cleared(tmp_path, run_copy):
    out = tmp_path / "ts"
    args = ["export", str(run_copy), "--format", "torchscript", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    assert set(read_record(out)) == {"model.pt", "card.json"}
    (out / ".model.pt.tmp-999999").write_bytes(b"half")  # what a SIGKILL during the write leaves
    (out / "mine.txt").write_text("mine")
    one_line_refusal(runner.invoke(app, [*args, "--overwrite"]), "holds mine.txt")
    (out / "mine.txt").unlink()
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    assert sorted(p.name for p in out.iterdir() if p.name != RECORD) == ["card.json", "model.pt"]
    card = json.loads((out / "card.json").read_text())
    assert card["export"]["format"] == "torchscript"

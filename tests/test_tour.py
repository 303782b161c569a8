"""The README's tour is examples/tour.sh, and the script runs end to end on the real sample data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOUR = ROOT / "examples" / "tour.sh"


def _readme_tour() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## A tour on the real datasets") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip().startswith("cxrtool ")]


def _script_commands() -> list[str]:
    lines = [line.strip() for line in TOUR.read_text(encoding="utf-8").splitlines()]
    # The script appends its scale-down options as bash arrays: "${train[@]}".
    return [re.sub(r'(\s+"\$\{\w+\[@\]\}")+$', "", line) for line in lines if line.startswith("cxrtool ")]


def test_the_script_is_the_readme_tour_command_for_command():
    readme = _readme_tour()
    assert len(readme) >= 10
    assert _script_commands() == readme


@pytest.mark.slow
def test_the_tour_runs_as_typed_on_the_sample_data(tmp_path, nih_root, covid_root):
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "ChestX-ray14").symlink_to(nih_root)
    (home / "data" / "covid-chestxray-dataset").symlink_to(covid_root)
    env = {
        **os.environ,
        "HOME": str(home),
        "CXRTOOL_TOUR_SMALL": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    work = tmp_path / "tour"
    done = subprocess.run(["bash", str(TOUR), str(work)], env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    runs = {p.name.split("-")[0]: p for p in (work / "runs").iterdir()}
    pretrain, finetune = runs["pretrain"], runs["finetune"]
    # After the finetune, the commands about NIH's findings took the pretraining run.
    metrics = json.loads((pretrain / "eval" / "metrics.json").read_text())
    assert "Cardiomegaly" in json.dumps(metrics) and "CheXNet" in (pretrain / "eval" / "per_label.md").read_text()
    assert not (finetune / "eval").exists()
    cams = (pretrain / "cam").rglob("*.png")
    assert any("Cardiomegaly" in p.name for p in cams)
    assert list((pretrain / "cam").rglob("box_scores*.csv"))
    assert not (finetune / "cam").exists()
    assert (finetune / "embed").is_dir() and (finetune / "report.html").is_file()

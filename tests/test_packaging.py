"""What the wheel holds, and which commit a run records as cxrtool's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from cxrtool.environment import git_commit

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_what_it_names_and_its_licence(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    build = (
        "import warnings, sys; warnings.simplefilter('error');"
        "from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    )
    # warnings as errors: a licence field that setuptools deprecates fails the build here.
    done = subprocess.run(
        [sys.executable, "-c", build, str(tmp_path)], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = tmp_path / done.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "cxrtool/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata


def test_the_commit_is_cxrtools_own_not_the_repository_it_is_installed_in(tmp_path):
    user_project = tmp_path / "thesis"
    site = user_project / ".venv" / "site-packages"
    shutil.copytree(ROOT / "src" / "cxrtool", site / "cxrtool", ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(user_project), "-c", "user.name=u", "-c", "user.email=u@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    (user_project / "notes.txt").write_text("mine\n")
    subprocess.run([*git, "add", "notes.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "user's work"], check=True)
    users_commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    probe = "import cxrtool.environment as r; print(r.__file__); print(r.git_commit())"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    where, commit = out.stdout.split()
    assert where.startswith(str(site)) and commit != users_commit


def test_a_source_checkout_records_its_own_head():
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0 and Path(git_commit.__code__.co_filename).is_relative_to(ROOT):
        assert git_commit() == head.stdout.strip()

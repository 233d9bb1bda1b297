"""The repository installs as the ``meshdex`` package, never as bare top-level names."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("index", "node", "sync", "proto")


def _declared_packages() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(pyproject["tool"]["setuptools"]["packages"])


def _package_folders() -> set[str]:
    found = {"meshdex"}
    for top in CODE_FOLDERS:
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT)
            found.add(".".join(("meshdex", *rel.parts)))
    return found


def test_every_package_folder_is_declared_in_pyproject():
    assert _package_folders() - _declared_packages() == set()


def test_non_editable_install_runs_outside_the_repo(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT)],
        check=True,
        cwd=tmp_path,
    )
    assert (target / "meshdex" / "index").is_dir()
    assert list((target / "meshdex" / "index" / "rotations").glob("*.rot")), "no model rotation"
    sample = target / "meshdex" / "node" / "sample"
    assert (sample / "queries.txt").is_file() and (sample / "LICENSE.rst").is_file()
    assert len(list((sample / "python-tutorial").glob("*.rst"))) == 17
    for bare in CODE_FOLDERS:
        assert not (target / bare).exists(), f"{bare} installed as a bare top-level package"
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import meshdex.node; print(meshdex.node.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env=env, check=True,
    )
    assert where.stdout.strip().startswith(str(target))
    result = subprocess.run(
        [sys.executable, "-m", "meshdex", "--help"],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "meshdex" in result.stdout

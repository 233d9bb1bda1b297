"""Where the data directory is: explicit path, else $MESHDEX_DATA_DIR, else XDG, else ~/.local."""

from __future__ import annotations

from pathlib import Path

import pytest
from meshdex.node.paths import resolve_data_dir


@pytest.mark.parametrize(
    ("given", "env", "expected"),
    [
        ("/srv/x", {"MESHDEX_DATA_DIR": "/ignored"}, "/srv/x"),
        (None, {"MESHDEX_DATA_DIR": "/env/dir", "XDG_DATA_HOME": "/xdg"}, "/env/dir"),
        (None, {"XDG_DATA_HOME": "/xdg"}, "/xdg/meshdex"),
        (None, {"XDG_DATA_HOME": "relative/ignored"}, "{home}/.local/share/meshdex"),
        (None, {}, "{home}/.local/share/meshdex"),
    ],
)
def test_data_dir_resolution(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    given: str | None,
    env: dict[str, str],
    expected: str,
) -> None:
    for name in ("MESHDEX_DATA_DIR", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_dir(given) == Path(expected.format(home=tmp_path))


def test_relative_data_dir_becomes_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("data") == tmp_path / "data"

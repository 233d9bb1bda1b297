"""The files in deploy/ stay true to the code they describe."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from meshdex.node.config import NodeConfig, load_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_example_config_loads_and_documents_the_defaults():
    loaded = load_config(config_path=DEPLOY / "config.example.toml", environ={})
    defaults = NodeConfig()
    for entry in dataclasses.fields(NodeConfig):
        if loaded.sources[entry.name] != "default":
            assert getattr(loaded.config, entry.name) == getattr(defaults, entry.name), entry.name
    loaded.config.validate()


def test_systemd_unit_runs_serve_with_the_config():
    settings: dict[str, list[str]] = {}
    for line in (DEPLOY / "meshdex.service").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings.setdefault(key, []).append(value)
    assert settings["ExecStart"][0].split()[-1] == "serve"
    assert any(value.startswith("MESHDEX_CONFIG=") for value in settings["Environment"])
    assert settings["KillSignal"] == ["SIGTERM"]


def test_example_config_shows_every_setting_but_the_data_dir():
    """A user who copies the example finds every key `meshdex config show` prints, sync and
    pairing included (the README's two-device set-up sets sync_listen and pair_listen)."""
    text = (DEPLOY / "config.example.toml").read_text()
    shown = {line.lstrip("# ").partition(" =")[0] for line in text.splitlines()
             if " = " in line}
    settings = {entry.name for entry in dataclasses.fields(NodeConfig)} - {"data_dir"}
    assert sorted(settings - shown) == []

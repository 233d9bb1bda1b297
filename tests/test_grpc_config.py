"""Node configuration: defaults, TOML, env vars and flags, and the refusals that keep it safe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from meshdex.index.errors import InvalidArgument
from meshdex.node.config import NodeConfig, is_loopback_address, load_config


def test_precedence_is_defaults_then_file_then_env_then_flags(tmp_path):
    config_file = tmp_path / "config.toml"
    config_file.write_text('[node]\nlisten = "127.0.0.1:9000"\nmax_concurrent_rpcs = 3\n'
                           'grace_period_s = 2.5\n')
    loaded = load_config(config_path=config_file,
                         environ={"MESHDEX_MAX_CONCURRENT_RPCS": "5"},
                         flags={"grace_period_s": 1, "listen": None})
    config = loaded.config
    assert (config.listen, config.max_concurrent_rpcs, config.grace_period_s) == (
        "127.0.0.1:9000", 5, 1.0)
    assert config.max_message_bytes == NodeConfig().max_message_bytes
    assert loaded.sources["listen"] == str(config_file)
    assert loaded.sources["max_concurrent_rpcs"] == "MESHDEX_MAX_CONCURRENT_RPCS"
    assert loaded.sources["grace_period_s"] == "flag"
    assert loaded.sources["max_message_bytes"] == "default"


def test_secure_defaults():
    config = NodeConfig()
    assert config.listen.startswith("127.0.0.1:")
    assert config.allow_unauthenticated_loopback is False
    assert config.tls_cert is None
    config.validate()


BAD_CONFIGS = [
    ('[node]\nlisten = "0.0.0.0:7710"\n', "without TLS"),
    ('[node]\nlisten = "192.168.1.5:7710"\n', "without TLS"),
    ('[node]\ntls_cert = "/x.crt"\n', "must be set together"),
    ('[node]\ntls_cert = "/missing.crt"\ntls_key = "/missing.key"\n', "does not exist"),
    ('[node]\nmax_concurrent_rpcs = 0\n', "at least 1"),
    ('[node]\nmax_concurrent_rpcs = "many"\n', "must be int"),
    ('[node]\nlisten = "nohostport"\n', "not HOST:PORT"),
    ('[node]\nlisen = "127.0.0.1:1"\n', "unknown setting 'lisen'"),
    ('[server]\nlisten = "127.0.0.1:1"\n', "unknown config table"),
    ('[node\n', "not valid TOML"),
    ('[node]\nllm_timeout_s = -5\n', "llm_timeout_s must be a number of seconds > 0"),
    ('[node]\ncall_idle_timeout_s = nan\n', "call_idle_timeout_s must be a number"),
    ('[node]\nsync_interval_s = inf\n', "sync_interval_s must be a number"),
    ('[node]\nsync_max_clock_skew_min = 0\n', "sync_max_clock_skew_min must be a number of "
     "minutes > 0"),
    ('[node]\nsync_max_clock_skew_min = nan\n', "sync_max_clock_skew_min must be a number"),
    ('[node]\ngrace_period_s = -1\n', "grace_period_s must be >= 0"),
    ('[node]\nllm_url = "localhost:11434"\n', "llm_url must be an http"),
    ('[node]\nsync_listen = "0.0.0.0"\n', "sync_listen must be HOST:PORT"),
    ('[node]\npair_listen = "7712"\n', "pair_listen must be HOST:PORT"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_bad_configs_are_refused_with_what_to_change(tmp_path, text, message):
    config_file = tmp_path / "config.toml"
    config_file.write_text(text)
    with pytest.raises(InvalidArgument, match=message):
        load_config(config_path=config_file, environ={}).config.validate()


def test_env_values_are_typed(tmp_path):
    loaded = load_config(environ={"MESHDEX_ALLOW_UNAUTHENTICATED_LOOPBACK": "yes",
                                  "MESHDEX_DATA_DIR": str(tmp_path)}, config_path=None)
    assert loaded.config.allow_unauthenticated_loopback is True
    assert loaded.config.data_dir == Path(tmp_path)
    with pytest.raises(InvalidArgument, match="MESHDEX_GRACE_PERIOD_S"):
        load_config(environ={"MESHDEX_GRACE_PERIOD_S": "soon"})


def test_an_empty_listener_variable_turns_the_listener_off() -> None:
    """``MESHDEX_SYNC_LISTEN=""`` is the documented "off"; it was read as unset, so the
    default listener started. Other empty variables still count as unset."""
    config = load_config(environ={"MESHDEX_SYNC_LISTEN": "", "MESHDEX_PAIR_LISTEN": "",
                                  "MESHDEX_LISTEN": ""}, config_path=None).config
    assert (config.sync_listen, config.pair_listen) == ("", "")
    assert config.listen == NodeConfig().listen
    config.validate()


def test_serve_refuses_a_negative_llm_timeout_before_listening(tmp_path) -> None:
    config_file = tmp_path / "config.toml"
    config_file.write_text('[node]\nllm_timeout_s = -5\n')
    done = subprocess.run([sys.executable, "-m", "meshdex", "--data-dir", str(tmp_path / "data"),
                           "serve", "--config", str(config_file)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "llm_timeout_s must be a number of seconds > 0, got -5" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_data_dir_in_the_config_file_is_refused_naming_the_flag(tmp_path) -> None:
    """Only serve, token and config read the file: with data_dir there, `serve` held one
    directory while `add`, `search` and `status` used the default one, beside it and not
    through it."""
    config_file = tmp_path / "config.toml"
    config_file.write_text(f'[node]\ndata_dir = "{tmp_path / "data"}"\n')
    for command in (["config", "show"], ["serve", "--listen", "127.0.0.1:0"]):
        done = subprocess.run([sys.executable, "-m", "meshdex", *command, "--config",
                               str(config_file)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "data_dir" in done.stderr and "--data-dir" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(("listen", "loopback"), [
    ("127.0.0.1:1", True), ("127.8.9.1:1", True), ("[::1]:1", True), ("localhost:1", True),
    ("unix:/run/meshdex.sock", True), ("0.0.0.0:1", False), ("[::]:1", False),
    ("10.0.0.2:1", False), ("example.org:1", False),
])
def test_loopback_detection(listen, loopback):
    assert is_loopback_address(listen) is loopback

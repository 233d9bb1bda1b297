"""Node configuration: one dataclass holding every default, filled from TOML, env vars and flags.

Precedence, lowest first: the defaults in ``NodeConfig``; the TOML file's ``[node]`` table
(``--config PATH``, else ``$MESHDEX_CONFIG``, else ``$XDG_CONFIG_HOME/meshdex/config.toml`` if it
exists); environment variables ``MESHDEX_<FIELD>`` (e.g. ``MESHDEX_LISTEN``); command-line
flags. ``meshdex config show`` prints the result and where each value came from. An empty
variable counts as unset, except for the listeners, where "" is the documented way to turn one
off (``MESHDEX_SYNC_LISTEN=""``).

Example ``config.toml``::

    [node]
    listen = "0.0.0.0:7710"          # beyond loopback: tls_cert and tls_key are required
    tls_cert = "/etc/meshdex/node.crt"
    tls_key = "/etc/meshdex/node.key"
    max_concurrent_rpcs = 32
"""

from __future__ import annotations

import ipaddress
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from meshdex.index.errors import InvalidArgument
from meshdex.node.hlc import DEFAULT_MAX_CLOCK_SKEW_MS
from meshdex.node.paths import default_data_dir

ENV_PREFIX = "MESHDEX_"
MEBIBYTE_BYTES = 1024 * 1024
MINUTE_MS = 60_000
DEFAULT_PORT = 7710
DEFAULT_SYNC_PORT = 7711
DEFAULT_PAIR_PORT = 7712
MAX_PORT = 65535
INDEX_POLICIES = ("fetch", "build", "auto")  # see NodeConfig.index_policy


def default_config_path() -> Path:
    """``$XDG_CONFIG_HOME/meshdex/config.toml`` (``~/.config/...`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "meshdex" / "config.toml"


# Settings every command needs before it reads a config file (only serve, token and config
# read it): in the file, `serve` used one data directory while `add` and `search` used another.
NOT_IN_FILE = {"data_dir": "use --data-dir DIR or MESHDEX_DATA_DIR, which every command reads"}
# Durations that must be a finite number of seconds above zero.
POSITIVE_SECONDS = ("call_idle_timeout_s", "sync_interval_s", "llm_timeout_s")
# Settings where "" is a value (the listener is off), from an environment variable too.
OFF_WHEN_EMPTY = ("sync_listen", "pair_listen")


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    """Everything ``meshdex serve`` needs; each field's default is the documented default."""

    data_dir: Path = field(default_factory=default_data_dir)
    # host:port, [v6]:port, or unix:/path. Plaintext is accepted only on loopback or a unix
    # socket; any other address needs tls_cert and tls_key.
    listen: str = f"127.0.0.1:{DEFAULT_PORT}"
    tls_cert: Path | None = None  # PEM server certificate (chain)
    tls_key: Path | None = None  # PEM private key for tls_cert
    # Largest message either way; bigger uploads must use the UpsertDocuments stream.
    max_message_bytes: int = 16 * MEBIBYTE_BYTES
    max_batch_documents: int = 1000  # documents per Upsert request / stream message
    # Calls served at once; one more gets RESOURCE_EXHAUSTED instead of waiting in a queue.
    max_concurrent_rpcs: int = 16
    # At most this many of those calls for one token, so one caller cannot take every slot.
    max_calls_per_token: int = 8
    # A call whose client sends no request message for this long ends with DEADLINE_EXCEEDED.
    call_idle_timeout_s: float = 30.0
    grace_period_s: float = 10.0  # how long in-flight calls may finish after SIGTERM
    # Secure default: every call needs a bearer token, loopback included. Set true to let
    # callers on 127.0.0.1/::1/unix sockets in without one while no token exists.
    allow_unauthenticated_loopback: bool = False
    # `meshdex mcp`: offer add_documents/delete_documents to the assistant (off: read-only tools).
    mcp_writes: bool = False
    # `meshdex ask`: an OpenAI-compatible chat completions server (Ollama, llama.cpp, vLLM).
    # Unset until configured; a non-loopback URL is refused unless allow_remote_llm is true.
    llm_url: str | None = None
    llm_model: str | None = None
    allow_remote_llm: bool = False
    llm_timeout_s: float = 120.0  # longest wait for the server's next bytes
    # Folders `serve` keeps in step with collections, as "COLLECTION=FOLDER" entries (a TOML
    # list, or comma-separated in MESHDEX_WATCH); see `meshdex watch`.
    watch: tuple[str, ...] = ()
    # Peer sync (meshdex.sync): mutual-TLS listener for paired devices, and the pairing
    # listener invites point at (server TLS only). "" turns either off. A LAN node sets
    # 0.0.0.0:7711 / 0.0.0.0:7712, and sync_advertise to the address peers should dial if
    # it has a fixed one (else invites name its host name and then its LAN addresses).
    sync_listen: str = f"127.0.0.1:{DEFAULT_SYNC_PORT}"
    pair_listen: str = f"127.0.0.1:{DEFAULT_PAIR_PORT}"
    sync_advertise: str = ""  # host (or host,host) put into invites; default: the listen host
    sync_interval_s: float = 30.0  # periodic reconcile with every peer
    # Collections received from peers with an http embedder are created but never built
    # automatically (their text would leave the device) unless this is set.
    sync_allow_network_embedders: bool = False
    # How far ahead of this device's clock a peer's change may be stamped. Changes stamped
    # further ahead are refused (a far-future stamp would win last-writer-wins against every
    # honest edit until real time caught up); raise it when this device's clock is behind.
    sync_max_clock_skew_min: float = DEFAULT_MAX_CLOCK_SKEW_MS / MINUTE_MS
    # What to do with a paired peer's index bundle: "fetch" installs it (no embedding here),
    # "build" always indexes here, "auto" fetches when it is compatible and covers every
    # document this device holds, and builds otherwise.
    index_policy: str = "auto"
    # LAN discovery (mDNS, meshdex.sync.discovery): announce this node and follow paired
    # peers' addresses. Only while sync_listen is a non-loopback address; trust still comes
    # from pairing alone. false: peers are dialled at their recorded addresses only.
    discovery: bool = True

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None

    @property
    def sync_max_clock_skew_ms(self) -> int:
        """``sync_max_clock_skew_min`` in ms; ``InvalidArgument`` unless a finite number of
        minutes above zero (checked here too: `meshdex sync` uses it without ``validate``)."""
        return int(_above_zero("sync_max_clock_skew_min", self.sync_max_clock_skew_min,
                               unit="minutes") * MINUTE_MS)

    def validate(self) -> None:
        """Refuse configurations that would be insecure or cannot work, with what to change."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidArgument("tls_cert and tls_key must be set together",
                                  hint="set both, or neither for loopback-only plaintext")
        if not self.tls_enabled and not is_loopback_address(self.listen):
            raise InvalidArgument(
                f"refusing to listen on {self.listen} without TLS",
                hint="set tls_cert and tls_key (config, MESHDEX_TLS_CERT/KEY or --tls-cert/"
                "--tls-key), or listen on 127.0.0.1, ::1 or a unix: socket",
            )
        for name in ("max_message_bytes", "max_batch_documents", "max_concurrent_rpcs",
                     "max_calls_per_token"):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in POSITIVE_SECONDS:
            _above_zero(name, getattr(self, name), unit="seconds")
        _above_zero("sync_max_clock_skew_min", self.sync_max_clock_skew_min, unit="minutes")
        if not math.isfinite(self.grace_period_s) or self.grace_period_s < 0:
            raise InvalidArgument(f"grace_period_s must be >= 0, got {self.grace_period_s}")
        if self.index_policy not in INDEX_POLICIES:
            raise InvalidArgument(f"index_policy must be one of {', '.join(INDEX_POLICIES)}, "
                                  f"not {self.index_policy!r}")
        if self.llm_url is not None and not self.llm_url.startswith(("http://", "https://")):
            raise InvalidArgument(f"llm_url must be an http:// or https:// URL, got "
                                  f"{self.llm_url!r}", hint="e.g. http://127.0.0.1:11434")
        for name in OFF_WHEN_EMPTY:
            listen = getattr(self, name)
            if listen and not _is_host_port(listen):  # said now, not when serve starts it
                raise InvalidArgument(f"{name} must be HOST:PORT, or \"\" to turn it off, got "
                                      f"{listen!r}")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise InvalidArgument(f"{name} file does not exist: {path}")
        for entry in self.watch:
            collection, sep, folder = entry.partition("=")
            if not sep or not collection.strip() or not folder.strip():
                raise InvalidArgument(f"watch entries look like COLLECTION=FOLDER, got {entry!r}")


def _above_zero(name: str, value: float, *, unit: str) -> float:
    """``value``, or ``InvalidArgument`` unless it is a finite number above zero."""
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgument(f"{name} must be a number of {unit} > 0, got {value}")
    return value


@dataclass(frozen=True, kw_only=True)
class LoadedConfig:
    """A config and, per field, where its value came from ("default", a file path, an env var
    name, or "flag")."""

    config: NodeConfig
    sources: dict[str, str]


def split_host_port(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:7710"`` → ``("127.0.0.1", 7710)``; ``"[::1]:7710"`` → ``("::1", 7710)``."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidArgument(f"listen address {listen!r} is not HOST:PORT or unix:/path")
    if int(port) > MAX_PORT:
        raise InvalidArgument(f"listen address {listen!r}: port must be 0-{MAX_PORT}")
    return host.strip("[]"), int(port)


def _is_host_port(listen: str) -> bool:
    try:
        split_host_port(listen)
    except InvalidArgument:
        return False
    return True


def is_loopback_address(listen: str) -> bool:
    """True for unix sockets and loopback hosts (127.0.0.0/8, ::1, localhost)."""
    if listen.startswith("unix:"):
        return True
    return is_loopback_host(split_host_port(listen)[0])


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _field_types() -> dict[str, type]:
    hints = typing.get_type_hints(NodeConfig)
    resolved = {}
    for item in fields(NodeConfig):
        hint = hints[item.name]
        if isinstance(hint, types.UnionType):  # X | None
            hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        resolved[item.name] = hint
    return resolved


def _coerce(name: str, value: Any, kind: type, origin: str) -> Any:
    """Turn a TOML/env/flag value into the field's type, or say which setting is wrong."""
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is Path:
            return Path(str(value)).expanduser()
        if kind is int and isinstance(value, float):
            raise ValueError(value)
        if typing.get_origin(kind) is tuple:  # a TOML list, or "a,b" from env and flags
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise ValueError(value)
            return tuple(item.strip() for item in items if item.strip())
        return kind(value)
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"{name} from {origin} must be {kind.__name__}, got {value!r}"
        ) from None


def _read_toml(path: Path) -> Mapping[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidArgument(f"cannot read config file: {error.strerror}", path=path) from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidArgument(f"config file is not valid TOML: {error}", path=path) from None
    unknown_tables = set(document) - {"node"}
    if unknown_tables:
        raise InvalidArgument(f"unknown config table(s) {sorted(unknown_tables)}", path=path,
                              hint="node settings go under [node]")
    return document.get("node", {})


def load_config(
    *,
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    """Merge defaults, the TOML file, ``MESHDEX_*`` env vars and flags (``None`` flags are
    ignored); unknown keys and ill-typed values raise ``InvalidArgument``."""
    environ = os.environ if environ is None else environ
    kinds = _field_types()
    values: dict[str, Any] = {}
    sources = {name: "default" for name in kinds}

    path = config_path or (Path(environ["MESHDEX_CONFIG"]) if environ.get("MESHDEX_CONFIG")
                           else None)
    if path is None and default_config_path().is_file():
        path = default_config_path()
    if path is not None:
        for key, value in _read_toml(path).items():
            if key not in kinds:
                raise InvalidArgument(f"unknown setting {key!r} in [node]", path=path,
                                      hint=f"known settings: {', '.join(sorted(kinds))}")
            if key in NOT_IN_FILE:
                raise InvalidArgument(f"{key} cannot be set in the config file", path=path,
                                      hint=NOT_IN_FILE[key])
            values[key] = _coerce(key, value, kinds[key], str(path))
            sources[key] = str(path)
    for name, kind in kinds.items():
        env_name = ENV_PREFIX + name.upper()
        if environ.get(env_name) or (name in OFF_WHEN_EMPTY and env_name in environ):
            values[name] = _coerce(name, environ[env_name], kind, env_name)
            sources[name] = env_name
    for name, value in (flags or {}).items():
        if value is None:
            continue
        if name not in kinds:
            raise InvalidArgument(f"unknown setting {name!r}")
        values[name] = _coerce(name, value, kinds[name], "flag")
        sources[name] = "flag"
    return LoadedConfig(config=replace(NodeConfig(), **values), sources=sources)

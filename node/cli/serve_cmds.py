"""Commands that run and secure a node: ``serve``, ``token create|list|revoke``, ``config show``.

Thin click layer over ``meshdex.node.server``, ``meshdex.node.auth`` and
``meshdex.node.config``; errors are ``MeshdexError`` and become one line in ``main``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from meshdex.node.auth import SCOPES, TokenStore
from meshdex.node.cli.remote import refuse_remote
from meshdex.node.config import LoadedConfig, NodeConfig, load_config
from meshdex.node.server import serve
from meshdex.node.store import Store

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="TOML config file (default: $MESHDEX_CONFIG, else ~/.config/meshdex/config.toml "
    "if it exists). Settings go under [node]; see `meshdex config show`.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _load(ctx: click.Context, config_path: Path | None, **flags: Any) -> LoadedConfig:
    data_dir = (ctx.find_root().obj or {}).get("data_dir")
    return load_config(config_path=config_path, flags={"data_dir": data_dir, **flags})


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.command("serve")
@config_option
@click.option("--listen", help="HOST:PORT or unix:PATH (default 127.0.0.1:7710). Anything "
              "but loopback or a unix socket needs --tls-cert and --tls-key.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path),
              help="PEM server certificate.")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path),
              help="PEM private key of --tls-cert.")
@click.option("--max-concurrent-rpcs", type=int,
              help="Calls served at once; more get RESOURCE_EXHAUSTED (default 16).")
@click.option("--max-calls-per-token", type=int,
              help="Calls one token may have in progress at once (default 8).")
@click.option("--call-idle-timeout-s", type=float,
              help="End a call whose client sends no request message for this long "
              "(default 30).")
@click.option("--grace-period-s", type=float,
              help="Seconds in-flight calls may finish after SIGTERM (default 10).")
@click.option("--allow-unauthenticated-loopback/--require-tokens", default=None,
              help="Let loopback callers in without a token while none exists (default: "
              "tokens always required).")
@click.option("--sync-listen", help="HOST:PORT of the peer-sync listener, mutual TLS with paired "
              "devices only (default 127.0.0.1:7711; \"\" turns sync off).")
@click.option("--pair-listen", help="HOST:PORT where invites are redeemed (default "
              "127.0.0.1:7712; \"\" turns pairing off).")
@click.pass_context
def serve_command(ctx: click.Context, config_path: Path | None, **flags: Any) -> None:
    """Run this device's node: the gRPC query API, with health checks and reflection.

    Runs until SIGTERM or Ctrl-C, then stops taking calls, lets running ones finish within the
    grace period and closes the store. Callers need a bearer token (`meshdex token create`);
    while it runs, this device's own commands on the same data directory (add, rm, build,
    sync, compact, peer ...) go through it without one.

    \b
    Example:
      meshdex token create --scope read      # once; prints the token
      meshdex serve
      meshdex serve --listen 0.0.0.0:7710 --tls-cert node.crt --tls-key node.key
      meshdex --node 127.0.0.1:7710 --token mdx_... list
    """
    config = _load(ctx, config_path, **flags).config

    def ready(address: str) -> None:
        mode = "TLS" if config.tls_enabled else "plaintext, local only"
        click.echo(f"meshdex node listening on {address} ({mode}); data in {config.data_dir}",
                   err=True)
        if TokenStore(config.data_dir).is_empty() and not config.allow_unauthenticated_loopback:
            click.echo("note: no tokens exist yet, so other clients are refused; create one "
                       "with `meshdex token create --scope read` (this device's own meshdex "
                       "commands go through the node without one)", err=True)
        sys.stderr.flush()

    from meshdex.node.cli.sync_cmds import SyncCompanion
    from meshdex.node.watch import node_with_watchers  # the node, plus config.watch folders

    serve(config, open_node=node_with_watchers, on_ready=ready, companions=[SyncCompanion])
    click.echo("meshdex node stopped", err=True)


@click.group("token")
@click.pass_context
def token_group(ctx: click.Context) -> None:
    """Create, list and revoke the bearer tokens clients present to this device's node.

    \b
    Example:
      meshdex token create --scope read --label laptop
      meshdex token list
      meshdex token revoke 1a2b3c4d
    """
    refuse_remote(ctx, "tokens are kept in this device's data directory, not managed through "
                  "the node's API")


@token_group.command("create")
@click.option("--scope", type=click.Choice(SCOPES), required=True,
              help="read: list, get, search, status. write: also create, add, delete, build. "
              "admin: also drop collections.")
@click.option("--label", default="", help="A note to recognise the token by in `token list`.")
@config_option
@json_option
@click.pass_context
def token_create_command(ctx: click.Context, scope: str, label: str, config_path: Path | None,
                         as_json: bool) -> None:
    """Create a token and print it once (only its SHA-256 is stored).

    \b
    Example:
      meshdex token create --scope write --label ci
    """
    data_dir = _load(ctx, config_path).config.data_dir
    Store.require_existing(data_dir)  # a token in a mistyped directory no node would accept
    record, token = TokenStore(data_dir).create(scope, label=label)
    if as_json:
        _print_json({"token_id": record.token_id, "scope": record.scope, "token": token})
        return
    click.echo(token)
    click.echo(f"token {record.token_id} ({scope}) created; it is shown only now — store it "
               "safely", err=True)


@token_group.command("list")
@config_option
@json_option
@click.pass_context
def token_list_command(ctx: click.Context, config_path: Path | None, as_json: bool) -> None:
    """List tokens (ids, scopes, labels; never the tokens themselves).

    \b
    Example:
      meshdex token list --json
    """
    records = TokenStore(_load(ctx, config_path).config.data_dir).list()
    if as_json:
        _print_json([{"token_id": r.token_id, "scope": r.scope, "label": r.label,
                      "created_at": r.created_at} for r in records])
        return
    if not records:
        click.echo("no tokens; create one with `meshdex token create --scope read`")
    for record in records:
        label = f"  {record.label}" if record.label else ""
        click.echo(f"{record.token_id}  {record.scope:<5}  {record.created_at}{label}")


@token_group.command("revoke")
@click.argument("token_id")
@config_option
@click.pass_context
def token_revoke_command(ctx: click.Context, token_id: str, config_path: Path | None) -> None:
    """Revoke a token, by its id or the whole token; a running node refuses it from its
    next call on.

    \b
    Example:
      meshdex token revoke 1a2b3c4d
      meshdex token revoke mdx_1a2b3c4d_...     # a leaked token, pasted whole
    """
    record = TokenStore(_load(ctx, config_path).config.data_dir).revoke(token_id)
    click.echo(f"revoked token {record.token_id} ({record.scope})")


@click.group("config")
@click.pass_context
def config_group(ctx: click.Context) -> None:
    """Inspect the node configuration (TOML file, MESHDEX_* env vars, flags).

    \b
    Example:
      meshdex config show
    """
    refuse_remote(ctx, "config show reads this device's configuration, not the node's")


@config_group.command("show")
@config_option
@json_option
@click.pass_context
def config_show_command(ctx: click.Context, config_path: Path | None, as_json: bool) -> None:
    """Print the effective configuration and where each value came from.

    \b
    Example:
      meshdex config show
      MESHDEX_LISTEN=127.0.0.1:9000 meshdex config show --json
    """
    loaded = _load(ctx, config_path)
    values = {name: getattr(loaded.config, name) for name in NodeConfig.__dataclass_fields__}
    if as_json:
        _print_json({name: {"value": str(value) if isinstance(value, Path) else value,
                            "source": loaded.sources[name]} for name, value in values.items()})
        return
    width = max(map(len, values))
    for name, value in values.items():
        shown = "(unset)" if value is None else value
        click.echo(f"{name:<{width}} = {shown}  # {loaded.sources[name]}")


COMMANDS = [serve_command, token_group, config_group]

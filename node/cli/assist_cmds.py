"""Commands that connect meshdex to the tools people already use: ``mcp``, ``ask`` and ``watch``.

Thin click layer over ``meshdex.node.mcp_server``, ``meshdex.node.ask`` and
``meshdex.node.watch``; each works embedded or against ``--node`` through ``open_node``.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click
from meshdex.node.auth import TokenStore
from meshdex.node.cli.remote import open_node
from meshdex.node.cli.serve_cmds import _load, config_option
from meshdex.node.config import split_host_port


@click.command("mcp")
@config_option
@click.option("--http", "http_address", metavar="HOST:PORT", default=None,
              help="Serve the streamable HTTP transport at http://HOST:PORT/mcp instead of "
              "stdio. Callers need a meshdex bearer token; anything but loopback needs "
              "tls_cert and tls_key.")
@click.pass_context
def mcp_command(ctx: click.Context, config_path: Path | None, http_address: str | None) -> None:
    """Run a Model Context Protocol server for assistants and editors (stdio by default).

    Tools: search, list_collections, get_document, status; add_documents and
    delete_documents too when the config sets mcp_writes = true. Embedded it opens the data
    directory read-only unless writes are on, so `meshdex add` keeps working beside it.

    \b
    Example:
      claude mcp add meshdex -- meshdex mcp
      meshdex --node 127.0.0.1:7710 --token mdx_... mcp
      meshdex token create --scope read && meshdex mcp --http 127.0.0.1:7711
    """
    from meshdex.node.mcp_server import McpTools, build_mcp_server, run_stdio, serve_http

    config = _load(ctx, config_path).config
    if http_address is not None:
        replace(config, listen=http_address).validate()  # loopback, or TLS configured
        host, port = split_host_port(http_address)
    with open_node(ctx, readonly=not config.mcp_writes) as node:
        server = build_mcp_server(McpTools(node, writes=config.mcp_writes))
        if http_address is None:
            run_stdio(server)
            return

        def ready(url: str) -> None:
            click.echo(f"meshdex mcp listening on {url}", err=True)
            if TokenStore(config.data_dir).is_empty():
                click.echo("note: no tokens exist yet, so every call will be refused; create "
                           "one with `meshdex token create --scope read`", err=True)
            sys.stderr.flush()

        serve_http(server, host=host, port=port, tokens=TokenStore(config.data_dir),
                   scope="write" if config.mcp_writes else "read",
                   tls_cert=str(config.tls_cert) if config.tls_cert else None,
                   tls_key=str(config.tls_key) if config.tls_key else None, on_ready=ready)


COMMANDS = [mcp_command]

"""Commands that connect meshdex to the tools people already use: ``mcp``, ``ask`` and ``watch``.

Thin click layer over ``meshdex.node.mcp_server``, ``meshdex.node.ask`` and
``meshdex.node.watch``; each works embedded or against ``--node`` through ``open_node``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click
from meshdex.index.errors import InvalidArgument, MeshdexError
from meshdex.node.auth import TokenStore
from meshdex.node.cli.docs_cmds import collection_option, json_option, top_k_option
from meshdex.node.cli.remote import beside_serving_node, open_node, refuse_remote
from meshdex.node.cli.serve_cmds import _load, config_option
from meshdex.node.config import split_host_port
from meshdex.node.errors import StoreLocked
from meshdex.node.readers import READERS
from meshdex.node.records import scores_text

if TYPE_CHECKING:
    from meshdex.node.watch import Watcher


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
      meshdex token create --scope read && meshdex mcp --http 127.0.0.1:7720
    """
    from meshdex.node.mcp_server import McpTools, build_mcp_server, run_stdio, serve_http

    config = _load(ctx, config_path).config
    if http_address is not None:
        if http_address.startswith("unix:"):
            raise InvalidArgument(f"--http takes HOST:PORT, got {http_address!r}",
                                  hint="e.g. --http 127.0.0.1:7720; without --http, mcp "
                                  "speaks stdio")
        host, port = split_host_port(http_address)
        replace(config, listen=http_address).validate()  # loopback, or TLS configured
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


@click.command("ask")
@click.argument("question")
@collection_option
@top_k_option(default=5, help="Passages to put in the prompt.")
@click.option("--filter", "filter_spec", help="Metadata filter for the retrieval, as in search.")
@click.option("--llm-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:11434 (Ollama) "
              "or http://127.0.0.1:8080 (llama.cpp). Config: llm_url.")
@click.option("--llm-model", help="Model the server should use, e.g. llama3.2. Config: llm_model.")
@click.option("--allow-remote-llm", is_flag=True, default=None,
              help="Allow an LLM URL that is not on this machine (the prompt carries your "
              "passages). Config: allow_remote_llm.")
@click.option("--timeout-s", "llm_timeout_s", type=float,
              help="Longest wait for the server's next bytes (default 120). "
              "Config: llm_timeout_s.")
@click.option("--no-stream", is_flag=True, help="Wait for the whole answer instead of "
              "printing it as it is generated.")
@config_option
@json_option
@click.pass_context
def ask_command(ctx: click.Context, question: str, collection: str, top_k: int,
                filter_spec: str | None, config_path: Path | None, no_stream: bool,
                as_json: bool, **flags: object) -> None:
    """Answer QUESTION with a local LLM from the passages it retrieves, citing them.

    The top passages go into the prompt numbered [1], [2], ...; the answer streams to the
    terminal, then the sources it cited are listed with their scores. Nothing leaves this
    machine unless the LLM URL is remote and you allowed that.

    \b
    Example:
      meshdex ask -c notes "how do I rotate the logs?" --llm-url http://127.0.0.1:11434 \\
          --llm-model llama3.2
      meshdex ask "what did we decide about backups?" --top-k 8 --json
    """
    from meshdex.node.ask import ChatClient, ask

    config = _load(ctx, config_path, **flags).config
    if not config.llm_url or not config.llm_model:
        raise InvalidArgument("ask needs an LLM: set llm_url and llm_model",
                              hint="e.g. --llm-url http://127.0.0.1:11434 --llm-model llama3.2, "
                              "or llm_url / llm_model under [node] in the config")
    llm = ChatClient(config.llm_url, model=config.llm_model, timeout_s=config.llm_timeout_s,
                     allow_remote=config.allow_remote_llm)

    shown: list[str] = []

    def show(piece: str) -> None:
        shown.append(piece)
        click.echo(piece, nl=False)
        sys.stdout.flush()

    with open_node(ctx, readonly=True) as node:
        try:
            result = ask(node, llm, collection, question, top_k=top_k, filter=filter_spec,
                         stream=not no_stream, on_token=None if as_json else show)
        except MeshdexError:
            if shown:
                click.echo()  # the error goes on a line of its own, not after the answer
            raise
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    click.echo()
    listed = result.cited or result.sources
    click.echo("\nsources:" if result.cited else "\nthe answer cited no passage; it was given:")
    for source in listed:
        scores = scores_text(score=source.score, similarity=source.similarity, bm25=source.bm25)
        click.echo(f"  [{source.number}] {source.source or source.document_id}  ({scores})")
    timings = result.timings
    click.echo(f"({result.model}: {timings.retrieve_s:.2f} s retrieval, {timings.llm_s:.2f} s "
               f"answer, {timings.total_s:.2f} s in all)", err=True)


@click.command("watch")
@click.argument("folders", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@collection_option
@click.option("--ignore", "patterns", multiple=True, metavar="PATTERN",
              help="gitignore-style pattern to leave out (repeatable); each folder's "
              ".gitignore and .meshdexignore apply too.")
@click.option("--debounce-s", type=float, default=0.5, show_default=True,
              help="Quiet time after the last change before the collection is updated.")
@click.option("--no-build", is_flag=True, help="Update documents only; leave the index as is.")
@click.option("--once", is_flag=True, help="Catch up with the folders and exit.")
@click.option("--source", "source_kind", type=click.Choice(sorted(READERS)),
              help="Read each FOLDER as one source of this kind, as `meshdex add --source` "
              "does (a Maildir for email, a Slack export); ignore patterns do not apply.")
@click.pass_context
def watch_command(ctx: click.Context, folders: tuple[Path, ...], collection: str,
                  patterns: tuple[str, ...], debounce_s: float, no_build: bool,
                  once: bool, source_kind: str | None) -> None:
    """Keep a collection in step with folders: changed files re-ingested, deleted ones removed.

    Starts by catching up on what changed since the last run (only files whose content
    differs are re-read into the store and re-embedded), then follows changes as they happen;
    a burst of writes becomes one update and one delta build. Files are read as `meshdex add`
    reads them, into the same documents and ids (Python per function and class, PDF per page,
    mbox and .eml per message, browser history, ChatGPT conversations.json). Binary, huge and
    unreadable files are skipped with one log line each. Runs embedded, on the machine that
    has the folders.

    \b
    Example:
      meshdex watch ~/notes ~/work/docs -c notes
      meshdex watch ~/notes -c notes --ignore "drafts/" --ignore "*.tmp"
      meshdex watch ~/notes -c notes --once      # catch up and exit
      meshdex watch ~/Mail/inbox --source email -c mail
    """
    import signal

    from meshdex.node.service import Node
    from meshdex.node.stop_flag import StopFlag
    from meshdex.node.watch import FolderSync, SyncReport, WatchedFolder, Watcher

    refuse_remote(ctx, "watch reads local folders and runs embedded")
    watched = [WatchedFolder.of(folder, ignore=patterns, source_kind=source_kind)
               for folder in folders]

    def report(result: SyncReport) -> None:
        click.echo(f"{collection}: {result.summary()}", err=True)
        sys.stderr.flush()

    try:
        node = Node.open((ctx.find_root().obj or {}).get("data_dir"))
    except StoreLocked as error:
        entries = ", ".join(f'"{collection}={folder.root}"' for folder in watched)
        raise beside_serving_node(
            error, f"let the node watch instead: add {entries} to `watch` under [node] in its "
            "config (or MESHDEX_WATCH) and restart it") from None
    with node:
        sync = FolderSync(node, collection, watched, build=not no_build)
        if once:
            report(sync.catch_up())
            return
        watcher = Watcher(sync, debounce_s=debounce_s, max_delay_s=max(debounce_s, 5.0),
                          on_pass=report)
        stop = StopFlag()
        signal.signal(signal.SIGTERM, stop.set)
        watcher.start()
        click.echo(f"watching {', '.join(str(f.root) for f in watched)} for {collection!r}; "
                   "Ctrl-C stops", err=True)
        sys.stderr.flush()
        try:
            while not stop.wait(0.5) and not watcher.wait(0):
                pass
        except KeyboardInterrupt:
            if not watcher.idle:
                click.echo("stopping after the pass in progress; Ctrl-C again stops at once",
                           err=True)
        finally:
            _stop_watching(watcher)
        if watcher.failure is not None:
            raise watcher.failure


def _stop_watching(watcher: Watcher) -> None:
    """Let a pass in progress commit. A second Ctrl-C ends the process here, as kill -9 would
    (each committed write stays), rather than closing the store under the running pass, which
    aborted the interpreter ("terminate called without an active exception", exit -6)."""
    from meshdex.node.cli.main import EXIT_INTERRUPTED

    try:
        watcher.stop()
    except KeyboardInterrupt:
        click.echo("\ninterrupted: stopped during a pass; what was already written is kept",
                   err=True)
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)


COMMANDS = [mcp_command, ask_command, watch_command]

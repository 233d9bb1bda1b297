"""Commands that read documents back out: ``show`` prints one, ``export`` writes a collection
as the JSONL that ``meshdex add --jsonl`` reads, so what went in can always come out.

Both work embedded and through ``--node`` with the same output: they ask the node for the
listing (``list_documents``) and each document (``get_document``), which both sides serve.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
from meshdex.node.cli.docs_cmds import collection_option, counted, json_option
from meshdex.node.cli.remote import open_node
from meshdex.node.errors import DocumentNotFound
from meshdex.node.records import Document
from tqdm import tqdm


def _updated(document: Document) -> str:
    stamp = datetime.fromtimestamp(document.hlc.physical_ms / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


@click.command("show")
@click.argument("doc_id", metavar="ID")
@collection_option
@json_option
@click.pass_context
def show_command(ctx: click.Context, doc_id: str, collection: str, as_json: bool) -> None:
    """Print one document: its id, source, last write, metadata and whole text.

    The id is as `meshdex docs` lists it (typed in the other Unicode normal form works too).
    An unknown id exits 3.

    \b
    Example:
      meshdex show notes/tea.md
      meshdex show -c code "corp/c.py#parse" --json
    """
    with open_node(ctx, readonly=True) as node:
        document = node.get_document(collection, doc_id)
    if as_json:
        click.echo(json.dumps(document.to_dict(), indent=2, ensure_ascii=False))
        return
    click.echo(f"id:       {document.id}")
    if document.source:
        click.echo(f"source:   {document.source}")
    click.echo(f"updated:  {_updated(document)}")
    click.echo(f"passages: {len(document.passage_keys)}")
    if document.metadata:
        click.echo("metadata: " + json.dumps(document.metadata, ensure_ascii=False,
                                             sort_keys=True))
    click.echo()
    click.echo(document.text, nl=not document.text.endswith("\n"))


def export_record(document: Document) -> dict[str, Any]:
    """The JSONL object of ``document`` as ``meshdex add --jsonl`` reads it back (a missing
    source is written as null: left out, ``add`` would record the JSONL line instead)."""
    return {"id": document.id, "text": document.text, "metadata": document.metadata,
            "source": document.source}


@contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    """stdout, or ``path`` written under a temporary name and renamed into place when the
    export is complete, so a failed or interrupted export leaves no partial file."""
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


@click.command("export")
@collection_option
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE (complete or not at all) instead of stdout.")
@click.option("--prefix", "id_prefix", default="", help="Only documents whose id starts so.")
@click.pass_context
def export_command(ctx: click.Context, collection: str, output: Path | None,
                   id_prefix: str) -> None:
    """Write a collection's documents as JSONL, one {"id", "text", "metadata", "source"}
    object a line, sorted by id: what `meshdex add --jsonl` reads, on this device or another
    (embeddings are not exported; `meshdex build` computes them again).

    \b
    Example:
      meshdex export -c notes > notes.jsonl
      meshdex export -c notes -o notes.jsonl
      meshdex add --jsonl notes.jsonl -c notes-copy
    """
    written = 0
    with open_node(ctx, readonly=True) as node, _output(output) as out:
        summaries = list(node.list_documents(collection, id_prefix=id_prefix))
        with tqdm(total=len(summaries), unit="document", desc="exporting", file=sys.stderr,
                  disable=not sys.stderr.isatty()) as bar:
            for summary in summaries:
                try:
                    document = node.get_document(collection, summary.id)
                except DocumentNotFound:
                    continue  # deleted since the listing
                out.write(json.dumps(export_record(document), ensure_ascii=False) + "\n")
                written += 1
                bar.update()
    if output is not None:
        click.echo(f"exported {counted(written, 'document')} of {collection!r} to {output}",
                   err=True)


COMMANDS = [show_command, export_command]

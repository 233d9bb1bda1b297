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
from meshdex.index.errors import NotFound
from meshdex.node.cli.docs_cmds import collection_option, counted, json_option
from meshdex.node.cli.remote import open_node
from meshdex.node.client import MeshdexClient
from meshdex.node.errors import DocumentNotFound
from meshdex.node.readers import READERS
from meshdex.node.records import Document
from meshdex.node.service import Node
from meshdex.node.validation import MAX_DOCUMENT_ID_BYTES
from tqdm import tqdm

# How a file (or folder) read as several documents names them: its id, a separator, a part.
PART_SEPARATORS = tuple(sorted({reader.sub_document_separator for reader in READERS.values()
                                if reader.sub_document_separator}))
PARTS_NAMED = 5  # parts a `show` of the file's own id names (then "and N more")


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
    An unknown id exits 3; the id of a file read as several documents (a PDF's pages, a
    Python file's functions) names them.

    \b
    Example:
      meshdex show notes/tea.md
      meshdex show -c code "corp/c.py#parse" --json
    """
    with open_node(ctx, readonly=True) as node:
        try:
            document = node.get_document(collection, doc_id)
        except NotFound as error:  # a remote node's is NotFound: the wire keeps no subclass
            raise _naming_its_parts(error, node, collection, doc_id) from None
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


def _naming_its_parts(error: NotFound, node: Node | MeshdexClient, collection: str,
                      doc_id: str) -> NotFound:
    """``error``, or for the id of a file or folder read as several documents (a PDF's pages,
    a Python file's functions: ``report.pdf#page=2``) one that names them: `show` of the
    file's own id said only that there was no such document."""
    prefixes = [doc_id + separator for separator in PART_SEPARATORS
                if len((doc_id + separator).encode()) <= MAX_DOCUMENT_ID_BYTES]
    try:
        parts = [summary.id for prefix in prefixes
                 for summary in node.list_documents(collection, id_prefix=prefix)]
    except NotFound:  # no such collection
        return error
    if not parts:
        return error
    named = ", ".join(parts[:PARTS_NAMED]) + (f" and {len(parts) - PARTS_NAMED} more"
                                              if len(parts) > PARTS_NAMED else "")
    return DocumentNotFound(
        f"no document {doc_id!r} in collection {collection!r}; {len(parts)} documents were "
        f"read from it: {named}",
        hint=f"show one of them (e.g. meshdex show -c {collection} '{parts[0]}'); "
             f"meshdex docs -c {collection} --prefix '{doc_id}' lists them all")


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

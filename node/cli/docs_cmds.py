"""Commands that manage collections and documents: ``init``, ``add``, ``list``, ``rm``, ``status``.

A thin layer: parse options, call ``Node`` / ``meshdex.node.ingest``, print. Errors are raised
as ``MeshdexError`` and turned into one line and an exit code by the group in ``main``.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click
from meshdex.index.chunking import DEFAULT_MAX_CHARS, DEFAULT_OVERLAP_CHARS, ChunkingParams
from meshdex.index.embedders import EMBEDDER_KINDS, EmbedderSpec
from meshdex.index.embedders_local import MODEL_ID, PRECISIONS
from meshdex.index.errors import InvalidArgument, NotFound
from meshdex.node.cli.main import EXIT_CODES, EXIT_PARTIAL_FAILURE
from meshdex.node.cli.remote import open_node
from meshdex.node.errors import CollectionNotFound
from meshdex.node.ingest import (
    IngestItem,
    IngestSummary,
    TaskReads,
    ingest,
    read_jsonl,
)
from meshdex.node.readers import READERS, collect_sources
from meshdex.node.records import CollectionInfo, DataCompaction, Outcome, SourceScope
from meshdex.node.service import DEFAULT_COLLECTION, UNICODE_FORMS, Node
from meshdex.node.validation import MAX_TOP_K, check_document
from tqdm import tqdm

collection_option = click.option(
    "--collection",
    "-c",
    default=DEFAULT_COLLECTION,
    show_default=True,
    help="Which collection to work on.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _check_top_k(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """Refused here, by the option's name: the search's own check says ``top_k``."""
    if not 1 <= value <= MAX_TOP_K:
        raise InvalidArgument(f"--top-k must be in [1, {MAX_TOP_K}], got {value}")
    return value


def top_k_option(*, default: int, help: str | None = None) -> Callable[[Any], Any]:
    """``--top-k`` / ``-k`` of the commands that search."""
    return click.option("--top-k", "-k", default=default, show_default=True, type=int,
                        callback=_check_top_k, help=help)


DOCS_LIMIT = 100  # documents ``meshdex docs`` lists unless told otherwise


def _data_dir(ctx: click.Context) -> Path | None:
    return (ctx.obj or {}).get("data_dir")


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _describe(info: CollectionInfo) -> str:
    spec = info.embedder
    where = f" at {spec.url}" if spec.url else ""
    return (
        f"{spec.kind} {spec.model_id} ({spec.precision}){where}; passages up to "
        f"{info.chunking.max_chars} chars, {info.chunking.overlap_chars} overlap"
    )


@click.command("init")
@collection_option
@click.option(
    "--embedder",
    type=click.Choice(EMBEDDER_KINDS),
    default="local",
    show_default=True,
    help="local: the packaged model, nothing leaves this machine. http: an OpenAI-compatible "
    "/v1/embeddings server you name with --embedder-url (passage text is sent to it).",
)
@click.option("--embedder-url", help="Base URL of the http embedder, e.g. http://127.0.0.1:11434.")
@click.option("--embedder-model", help="Model id the http embedder serves.")
@click.option("--api-key-env", help="Environment variable holding the http embedder's API key.")
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=EmbedderSpec().precision,
    show_default=True,
    help="Precision of the local model (part of its fingerprint: fixed for the collection).",
)
@click.option(
    "--max-chars",
    type=int,
    default=DEFAULT_MAX_CHARS,
    show_default=True,
    help="Longest passage, in characters.",
)
@click.option(
    "--overlap-chars",
    type=int,
    default=DEFAULT_OVERLAP_CHARS,
    show_default=True,
    help="Characters repeated between neighbouring passages.",
)
@json_option
@click.pass_context
def init_command(
    ctx: click.Context,
    collection: str,
    embedder: str,
    embedder_url: str | None,
    embedder_model: str | None,
    api_key_env: str | None,
    precision: str,
    max_chars: int,
    overlap_chars: int,
    as_json: bool,
) -> None:
    """Create a collection (the data directory too, if needed).

    \b
    Example:
      meshdex init
      meshdex init -c papers --max-chars 800
      meshdex init -c remote --embedder http --embedder-url http://127.0.0.1:8080 \\
          --embedder-model BAAI/bge-small-en-v1.5
    """
    if embedder == "http":
        if ctx.get_parameter_source("precision") is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("--precision is the local model's; an http embedder "
                                   "computes at whatever precision its server uses")
        spec = EmbedderSpec(
            kind="http",
            model_id=embedder_model or MODEL_ID,
            url=embedder_url,
            api_key_env=api_key_env,
        )
    elif embedder_url or embedder_model or api_key_env:
        raise click.UsageError("--embedder-url/--embedder-model/--api-key-env need --embedder http")
    else:
        spec = EmbedderSpec(precision=precision)
    chunking = ChunkingParams(max_chars=max_chars, overlap_chars=overlap_chars)
    with open_node(ctx) as node:
        info = node.create_collection(collection, embedder=spec, chunking=chunking)
        if as_json:
            _print_json(info.to_dict())
        else:
            click.echo(f"created collection {info.name!r} in {node.data_dir}: {_describe(info)}")


@click.command("add")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--jsonl",
    "jsonl_files",
    multiple=True,
    type=click.Path(path_type=Path),
    help='A file with one JSON object per line: {"id": ..., "text": ..., "metadata": {...}}. '
    "Repeatable.",
)
@collection_option
@click.option(
    "--id-prefix",
    help="Prefix for document ids of files (default: the folder's name and '/'; ids are the "
    "prefix plus the path relative to the folder given).",
)
@click.option(
    "--follow-symlinks", is_flag=True,
    help="Also read what symlinks in the folders point to outside them (default: skipped, "
    "with a line naming each).",
)
@click.option(
    "--source",
    "source_kind",
    type=click.Choice(sorted(READERS)),
    help="Read every PATH (file or folder) as this kind of source instead of by file type; "
    "needed for folder sources (slack, a Maildir for email) and renamed files.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Read everything and show what would be added, skipped or refused; change nothing. "
    "Exits with the code the add would (2: all skipped, 11: some refused).",
)
@json_option
@click.pass_context
def add_command(
    ctx: click.Context,
    paths: tuple[Path, ...],
    jsonl_files: tuple[Path, ...],
    collection: str,
    id_prefix: str | None,
    follow_symlinks: bool,
    source_kind: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Add files, folders or JSONL documents to a collection (created if missing).

    Folders are walked for text (txt, md, rst), HTML (text extracted), source code (Python
    split into one document per function and class, with its symbol name in metadata), PDF
    (one document per page), email (.eml, .mbox: one per message), browser history (Chrome
    History, Firefox places.sqlite) and ChatGPT conversations.json; hidden files, binaries and
    other types are skipped and counted. --source reads a path as one kind of source (slack
    export folders, Maildir folders). Unchanged documents are left alone, changed ones
    replaced; the functions, pages or conversations an edited file no longer has are removed
    (a mailbox's messages and browser history stay). Bad inputs are reported with file and
    line, the rest still go in, and the exit code is 11 (partial failure). When nothing could
    be added and something was skipped (e.g. `add /bin/ls`), the exit code is 2. Symlinks
    leading outside the folders given are skipped unless --follow-symlinks. Documents of files
    deleted from a folder stay: `meshdex watch FOLDER --once` removes them (and `watch`
    keeps the collection in step with the folder from then on).

    \b
    Example:
      meshdex add ~/notes
      meshdex add README.md docs/ --collection project
      meshdex add --jsonl articles.jsonl
      meshdex add ~/Mail/inbox --source email -c mail
      meshdex add slack-export/ --source slack --dry-run
    """
    if not paths and not jsonl_files:
        raise click.UsageError("give at least one PATH or --jsonl FILE")
    tasks, decided = collect_sources(list(paths), id_prefix=id_prefix,
                                     follow_symlinks=follow_symlinks, source_kind=source_kind)
    task_reads = TaskReads(tasks)
    items = itertools.chain(
        decided,
        task_reads,
        itertools.chain.from_iterable(read_jsonl(path) for path in jsonl_files),
    )
    if dry_run:
        _exit_as_add(ctx, _print_dry_run(collection, items, as_json), dry_run=True)
        return
    total = None if jsonl_files else len(decided) + len(tasks)
    with (
        open_node(ctx) as node,
        tqdm(
            total=total,
            unit="item",
            desc="adding",
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
        ) as bar,
    ):
        summary = ingest(node, collection, items, on_item=bar.update, sources=task_reads)
    _print_summary(summary, as_json)
    _exit_as_add(ctx, summary, dry_run=False)


def _exit_as_add(ctx: click.Context, summary: IngestSummary, *, dry_run: bool) -> None:
    """End ``add`` (or its dry run, with the code the add would end with): 2 when every input
    was skipped, 11 when some were refused, else 0."""
    if summary.nothing_taken:
        was = "would be" if dry_run else "was"
        click.echo(f"error: nothing {was} added: every input {was} skipped", err=True)
        ctx.exit(EXIT_CODES[InvalidArgument])
    if summary.partial_failure:
        ctx.exit(EXIT_PARTIAL_FAILURE)


def _dry_run_entry(item: IngestItem) -> dict[str, Any]:
    """What ``add`` would do with ``item``: add it, skip it, or refuse it (unreadable, or a
    document the node would reject, e.g. an id over the limit)."""
    if item.doc is not None:
        try:
            check_document(item.doc)
        except InvalidArgument as error:
            return {"origin": item.origin, "action": "error", "reason": str(error)}
        return {"origin": item.origin, "action": "add", "id": item.doc.id,
                "metadata": item.doc.metadata, "chars": len(item.doc.text)}
    if item.skipped is not None:
        return {"origin": item.origin, "action": "skip", "reason": item.skipped}
    return {"origin": item.origin, "action": "error", "reason": item.error or "unreadable"}


def _print_dry_run(collection: str, items: Iterable[IngestItem],
                   as_json: bool) -> IngestSummary:
    """List what ``add`` would do with each item; the summary the add would end with (its
    added count standing for every document that would go in)."""
    listed = [_dry_run_entry(item) for item in items]
    summary = IngestSummary(collection=collection)
    for entry in listed:
        if entry["action"] == "add":
            summary.counts[Outcome.ADDED.value] += 1
        elif entry["action"] == "skip":
            summary.skipped[entry["reason"]] += 1
        else:
            summary.errors.append((entry["origin"], entry["reason"]))
    if as_json:
        _print_json(listed)
    else:
        for entry in listed:
            if entry["action"] == "add":
                click.echo(f"would add {entry['id']} ({entry['chars']} chars) from "
                           f"{entry['origin']}")
            else:
                click.echo(f"would {entry['action']} {entry['origin']}: {entry['reason']}",
                           err=entry["action"] == "error")
    return summary


def _print_summary(summary: IngestSummary, as_json: bool) -> None:
    for origin, reason in summary.errors:
        click.echo(f"error: {origin}: {reason}", err=True)
    for origin, doc_id, first in summary.repeated:
        click.echo(f"warning: {origin}: document id {doc_id!r} was given before, at {first}; "
                   "the later one is kept", err=True)
    if as_json:
        _print_json(summary.to_dict())
        return
    if summary.created_collection:
        click.echo(f"created collection {summary.collection!r} with default settings")
    data = summary.to_dict()
    click.echo(
        f"{summary.collection}: added {data['added']}, updated {data['updated']}, "
        f"unchanged {data['unchanged']}"
        + (f", removed {data['removed']} no longer in their files" if data["removed"] else "")
    )
    if summary.skipped:
        reasons = ", ".join(
            f"{reason} {count}" for reason, count in sorted(summary.skipped.items())
        )
        click.echo(f"skipped {sum(summary.skipped.values())}: {reasons}")
    if summary.errors:
        click.echo(f"{len(summary.errors)} item(s) not added (see errors above)")


@click.command("list")
@json_option
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """List collections with their document and passage counts.

    \b
    Example:
      meshdex list
      meshdex list --json
    """
    with open_node(ctx, readonly=True) as node:
        collections = node.list_collections()
    if as_json:
        _print_json([info.to_dict() for info in collections])
        return
    if not collections:
        click.echo("no collections yet; `meshdex add PATH` creates 'default'")
    for info in collections:
        click.echo(
            f"{info.name}: {info.document_count} documents, {info.passage_count} passages"
            f" — {_describe(info)}"
        )


@click.command("docs")
@collection_option
@click.option("--prefix", "id_prefix", default="",
              help="Only documents whose id starts with this (a folder: notes/; a split file: "
              "corp/c.py).")
@click.option("--limit", type=click.IntRange(min=1), default=DOCS_LIMIT, show_default=True,
              help="List at most this many.")
@json_option
@click.pass_context
def docs_command(ctx: click.Context, collection: str, id_prefix: str, limit: int,
                 as_json: bool) -> None:
    """List the documents of a collection, sorted by id: id, size of the text, passages,
    last write (UTC) and source. Runs embedded or through --node.

    \b
    Example:
      meshdex docs -c notes
      meshdex docs -c code --prefix corp/c.py --json
      meshdex docs -c mail --limit 1000
    """
    with open_node(ctx, readonly=True) as node:
        documents = list(node.list_documents(collection, id_prefix=id_prefix,
                                             limit=limit + 1))
    more = len(documents) > limit
    listed = [summary.to_dict() for summary in documents[:limit]]
    if as_json:
        _print_json({"collection": collection, "documents": listed, "more": more})
        return
    if not listed:
        click.echo(f"no documents in {collection!r}"
                   + (f" with ids starting {id_prefix!r}" if id_prefix else ""))
    for entry in listed:
        updated = entry["updated"][:19].replace("T", " ")
        click.echo(f"{entry['id']}  {_size(entry['size_bytes'])}, "
                   f"{counted(entry['passages'], 'passage')}, {updated}  "
                   f"{entry['source'] or ''}".rstrip())
    if more:
        click.echo("… more documents: raise --limit, or narrow them with --prefix")


@click.command("rm")
@click.argument("ids", nargs=-1, required=True)
@collection_option
@json_option
@click.pass_context
def rm_command(ctx: click.Context, ids: tuple[str, ...], collection: str, as_json: bool) -> None:
    """Delete documents by id (they leave tombstones, so the deletion syncs to peers).

    The id of a file that was read into several documents (a Python file by function and
    class, a PDF by page: corp/c.py#parse, r.pdf#page=2) deletes all of them. Ids that are not
    in the collection are reported; the exit code is 3 if none was found and 11 if only some
    were.

    \b
    Example:
      meshdex rm notes/old.md
      meshdex rm -c papers paper-17 paper-18
      meshdex rm -c code corp/c.py      # every function and class read from it
    """
    scopes = [scope for scope in map(_split_file, ids) if scope is not None]
    with open_node(ctx, existing_store=True) as node:
        report = node.delete_documents(collection, ids, sources=scopes)
        respelled = {scope.owner_id: _respelled(scope) for scope in scopes
                     if not any(map(scope.owns, report.deleted))}
        retry = [other for others in respelled.values() for other in others]
        if retry:
            more = node.delete_documents(collection, (), sources=retry).deleted
            report = replace(report, deleted=report.deleted + more)
    parts = {scope.owner_id: [doc_id for doc_id in report.deleted
                              if any(owner.owns(doc_id)
                                     for owner in (scope, *respelled.get(scope.owner_id, ())))]
             for scope in scopes}
    report = replace(report, not_found=[doc_id for doc_id in report.not_found
                                        if not parts.get(doc_id)])
    if as_json:
        _print_json(report.to_dict())
    elif report.deleted or not report.not_found:  # else the errors below say it all
        click.echo(f"{collection}: deleted {len(report.deleted)}")
        for owner_id, owned in parts.items():
            if owned != [owner_id]:
                click.echo(f"{owner_id}: deleted the {counted(len(owned), 'document')} read "
                           "from it")
    for doc_id in report.not_found:
        click.echo(f"error: no document {doc_id!r} in collection {collection!r}", err=True)
    if report.not_found:
        ctx.exit(EXIT_PARTIAL_FAILURE if report.deleted else EXIT_CODES[NotFound])


def _split_file(doc_id: str) -> SourceScope | None:
    """The documents a reader splits the file ``doc_id`` names into (its id, the reader's
    separator and a part, as ``FileTask.owns``), when a reader claims files of that name."""
    reader = next((reader for reader in READERS.values() if reader.claims(Path(doc_id))), None)
    if reader is None or reader.sub_document_separator is None:
        return None
    return SourceScope(owner_id=doc_id, separator=reader.sub_document_separator,
                       keep=frozenset())


def _respelled(scope: SourceScope) -> list[SourceScope]:
    """``scope`` with its file named in the other Unicode normal forms (``UNICODE_FORMS``), as
    ``delete_documents`` tries for an id: the parts of a split file typed NFC but stored NFD."""
    spellings = dict.fromkeys(unicodedata.normalize(form, scope.owner_id)
                              for form in UNICODE_FORMS)
    return [replace(scope, owner_id=spelling) for spelling in spellings
            if spelling != scope.owner_id]


@click.command("drop")
@click.option("--collection", "-c", required=True, help="The collection to drop.")
@click.option("--yes", is_flag=True, help="Drop it without asking.")
@click.pass_context
def drop_command(ctx: click.Context, collection: str, yes: bool) -> None:
    """Delete a collection from this device: its documents, its index and its caches.

    Asks first (on the terminal, or a y read from stdin) unless --yes; with nobody to answer
    it refuses (exit 2). Peers keep their copies: this is not a deletion that syncs (`meshdex
    rm` is), and a collection a paired peer shares is refused (exit 5) until `meshdex peer
    unshare` stops the sync that would bring it back. An unknown collection exits 3. Runs
    embedded or through --node (admin token).

    \b
    Example:
      meshdex drop -c scratch
      meshdex drop -c scratch --yes
    """
    with open_node(ctx) as node:
        info = next((info for info in node.list_collections() if info.name == collection),
                    None)
        if info is None:
            raise CollectionNotFound.named(collection)
        documents = counted(info.document_count, "document")
        if not yes:
            _confirm(f"drop collection {collection!r} with its {documents} and its index "
                     "from this device?", refused=f"not dropping collection {collection!r}")
        node.drop_collection(collection)
    click.echo(f"dropped collection {collection!r} ({documents}) from this device")


def _confirm(question: str, *, refused: str) -> None:
    """Ask ``question`` on stderr; exit 1 on a no, ``InvalidArgument`` with nobody to answer
    (stdin closed or empty)."""
    try:
        agreed = click.confirm(question, default=False, err=True)
    except click.Abort:
        click.echo(err=True)  # ends the prompt's line
        raise InvalidArgument(f"{refused} without an answer",
                              hint="give --yes to drop it without asking") from None
    if not agreed:
        click.echo("nothing dropped", err=True)
        click.get_current_context().exit(1)


@click.command("status")
@json_option
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """Show this device's id, its store, every collection's counts and conflicts, and its
    peers (lag, last sync, last error).

    \b
    Example:
      meshdex status
      meshdex --data-dir /srv/meshdex status --json
    """
    from meshdex.node.cli.sync_cmds import local_peers, peer_lines

    with open_node(ctx, readonly=True) as node:
        status = node.status()
        embedded = isinstance(node, Node)
    if embedded:  # a serving node fills them in itself; here they are read from the files
        status = replace(status, peers=local_peers(ctx))
    if as_json:
        _print_json(status.to_dict())
        return
    click.echo(f"data dir:    {status.data_dir}")
    click.echo(f"device id:   {status.device_id or 'none yet (`meshdex id` creates it)'}")
    click.echo(f"store id:    {status.store_id} (stamps this store's writes)")
    click.echo(f"changes:     {status.last_seq}")
    click.echo(f"store size:  {_size(status.store_bytes)}")
    click.echo(f"collections: {len(status.collections)}")
    for info in status.collections:
        click.echo(
            f"  {info.name}: {info.document_count} documents, {info.passage_count} passages, "
            f"{info.tombstone_count} deleted, {status.conflicts.get(info.name, 0)} conflicts"
        )
    click.echo(f"indexes:     {len(status.indexes)}")
    for summary in status.indexes:
        if summary.damaged:
            click.echo(f"  {summary.collection}: {summary.damaged}")
            continue
        freshness = ("documents changed since: run meshdex build" if summary.stale
                     else "indexes documents not in this store yet (sync them, or import "
                          "the bundle exported --with-documents)"
                     if summary.waiting_for_documents else "current")
        click.echo(
            f"  {summary.collection}: generation {summary.generation}, {summary.passages} "
            f"passages, {_size(summary.bundle_bytes)}, {summary.model_id} "
            f"({summary.model_hash[:12]}), {freshness}"
        )
    for line in peer_lines(status):
        click.echo(line)
    if status.decisions:
        click.echo("recent index decisions:")
    for record in status.decisions:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.at_ms / 1000))
        click.echo(f"  {when} {record.trigger} {record.collection}: {record.decision} — "
                   + "; ".join(record.reasons))


@click.command("compact")
@json_option
@click.pass_context
def compact_command(ctx: click.Context, as_json: bool) -> None:
    """Give deleted documents' disk back: from the indexes, then the store.

    Each collection's index drops the passages of deleted documents for good, with nothing
    re-embedded (an index with a graph only marks them, until its next rebuild), its keyword
    index is rewritten without them, and the store is rewritten without its free pages. The
    store also drops the tombstones of deleted documents that every device which synced the
    collection with this one (shared with it now or not) and every paired device sharing it
    have acknowledged: all of them when no device ever synced it; it says how many it kept
    and which devices they wait for (`meshdex peer forget` lets go of devices no longer
    paired). Runs embedded, beside a serving node (through it), or through
    --node on a serving node (admin token). Searches and readers keep working meanwhile;
    writes wait. meshdex also compacts the store by itself at the end of a write once its
    free pages pass 1 MiB and a tenth of the file (dropping tombstones the same way; the
    indexes keep the deleted passages until the next build or compact). A collection whose
    index cannot be read is named and left as it is, the rest are compacted, and the exit
    code is 11 (partial failure).

    \b
    Example:
      meshdex compact
      meshdex --data-dir /srv/meshdex compact --json
      meshdex --node 127.0.0.1:7710 --token mdx_... compact
    """
    with open_node(ctx, existing_store=True) as node:
        report = node.compact()
    damaged = [index for index in report.indexes if index.damaged]
    if as_json:
        _print_json(asdict(report))
    else:
        _print_compaction(report)
    for index in damaged:
        click.echo(f"error: collection {index.collection}: its indexes were left as they are: "
                   f"{index.damaged}", err=True)
    if damaged:
        ctx.exit(EXIT_PARTIAL_FAILURE)


def _print_compaction(report: DataCompaction) -> None:
    for index in report.indexes:
        if index.dropped_passages:
            dropped = counted(index.dropped_passages, "deleted passage")
            click.echo(f"collection {index.collection}: dropped {dropped} from its indexes: "
                       f"{_size(index.before_bytes)} -> "
                       f"{_size(index.after_bytes)}")
    count = report.tombstones_dropped
    dropped = f", dropped {counted(count, 'tombstone')} of deleted documents" if count else ""
    click.echo(f"compacted the store: {_size(report.before_bytes)} -> "
               f"{_size(report.after_bytes)}{dropped}")
    if report.tombstones_kept:
        who = _waiting_for(report)
        click.echo(f"kept {counted(report.tombstones_kept, 'tombstone')}"
                   + (": not yet acknowledged by " + ", ".join(who) if who else ""))


def counted(count: int, noun: str) -> str:
    """``1 tombstone``, ``2 tombstones``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _waiting_for(report: DataCompaction) -> list[str]:
    """Who a kept tombstone waits for, for a person: paired peers by short id (`meshdex
    peers` names them), devices no longer paired with the command that lets them go."""
    who = [f"peer {device_id[:7]}" for device_id in report.waiting_for_peers]
    if report.waiting_for_unpaired:
        count = report.waiting_for_unpaired
        who.append(f"{counted(count, 'device')} no longer paired "
                   f"(`meshdex peer forget` lets {'it' if count == 1 else 'them'} go)")
    return who


def _size(size: int) -> str:
    """Bytes in the largest binary unit that keeps the figure at or above 1 (``0.0 MiB`` told
    a user nothing about a store of a few notes)."""
    if size < 1024:
        return f"{size} B"
    scaled = size / 1024
    for unit in ("KiB", "MiB"):
        if scaled < 1024:
            return f"{scaled:.1f} {unit}"
        scaled /= 1024
    return f"{scaled:.1f} GiB"


COMMANDS: list[Callable[..., Any]] = [
    init_command,
    add_command,
    list_command,
    docs_command,
    rm_command,
    drop_command,
    status_command,
    compact_command,
]

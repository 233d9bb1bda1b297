"""Turning files and JSONL into documents, and feeding them to a ``Node`` with a full account.

Walking: text (txt, md, rst, ...), HTML (text extracted with the standard library's parser)
and source code, chosen by extension, also gzipped (``.md.gz``, as Debian ships docs). Richer
sources (PDF, mail, browser history, chat exports, Python split by symbol) are read by a
``SourceReader`` the caller passes in: claimed by file type while walking, or named explicitly
(``source=``) for a file or folder; one source may yield many documents, each bad one reported.
Hidden files and folders, binaries (a NUL byte in the first block), unsupported types and
empty files are skipped and counted by reason. Problems
with one input (bad UTF-8, an invalid JSON line, metadata that is not an object, empty text)
are reported with file and line; every other input still goes in.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Protocol

from meshdex.index.errors import InvalidArgument
from meshdex.index.json_limits import MAX_JSON_DEPTH, loads_json
from meshdex.node.records import DocumentInput, Outcome, SourceScope, UpsertReport
from meshdex.node.service import Node

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 64 * 1024 * 1024  # read (after gunzip) at most this much of one file
GZIP_SUFFIX = ".gz"
BINARY_SNIFF_BYTES = 8192
SKIPPED_TOO_LARGE = "too large"  # a skip that says nothing of what the input holds now
# The latest documents held back so a repeated id is written once (``_RepeatWindow``): at most
# this many, and this much text. Few enough that a long add commits as it goes (an interrupted
# or killed one keeps what it wrote), many enough for the repeats an export has near each other.
REPEAT_WINDOW_DOCUMENTS = 1024
REPEAT_WINDOW_CHARS = 64 * 1024 * 1024
SCOPES_PER_DELETE = 256  # re-read inputs per delete call: one bounded message over --node

PLAIN_TEXT_TYPES = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "rst",
    ".adoc": "asciidoc",
    ".org": "org",
    ".tex": "latex",
}
HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})
CODE_LANGUAGES = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".jsx": "javascript",
    ".go": "go",
    ".rs": "rust",
    ".c": "c",
    ".h": "c",
    ".cc": "c++",
    ".cpp": "c++",
    ".hpp": "c++",
    ".java": "java",
    ".kt": "kotlin",
    ".scala": "scala",
    ".swift": "swift",
    ".rb": "ruby",
    ".php": "php",
    ".cs": "c#",
    ".lua": "lua",
    ".pl": "perl",
    ".r": "r",
    ".sh": "shell",
    ".bash": "shell",
    ".zsh": "shell",
    ".sql": "sql",
    ".proto": "protobuf",
    ".css": "css",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".ini": "ini",
    ".cfg": "ini",
}
JSONL_FIELDS = frozenset({"id", "text", "metadata", "source"})


@dataclass(frozen=True, kw_only=True)
class IngestItem:
    """One input: a document to add, or why it was skipped, or what was wrong with it.

    ``origin`` says where it came from (``path`` or ``path:line``) for messages.
    """

    origin: str
    doc: DocumentInput | None = None
    skipped: str | None = None  # reason, e.g. "hidden", "binary"
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class FileTask:
    """A file found by the walk, to be read into a document."""

    path: Path
    doc_id: str
    relative: str
    reader: SourceReader | None = None  # None: read as one text file (``read_file``)

    def owns(self, doc_id: str) -> bool:
        """Whether ``doc_id`` has the shape of a document read from this input: its own id,
        or that id, its reader's separator and a part (``a.py#parse``, ``r.pdf#page=2``)."""
        separator = self.reader.sub_document_separator if self.reader is not None else None
        return doc_id == self.doc_id or (separator is not None
                                         and doc_id.startswith(self.doc_id + separator))

    def stale_scope(self, produced: Iterable[str]) -> SourceScope | None:
        """After a complete read that yielded ``produced``, what the input's other documents
        are: stale (the scope to delete them by), or None where they stay or the ids are not
        per input."""
        reader = self.reader
        if reader is None or reader.sub_document_separator is None or reader.keeps_dropped:
            return None
        return SourceScope(owner_id=self.doc_id, separator=reader.sub_document_separator,
                           keep=frozenset(produced))


class SourceReader(Protocol):
    """Reads one kind of source (a PDF, a mailbox, a history database...) into documents.

    Implementations live in ``meshdex.node.readers``, one module each; ingestion only needs
    this much of them.
    """

    kind: str  # the name ``meshdex add --source KIND`` uses, e.g. "pdf"
    # Documents of one input are ``task.doc_id`` + this + part (and maybe ``task.doc_id``).
    # None: ids are not per input (a message id names a mail in every mailbox).
    sub_document_separator: str | None
    # False: what a complete re-read no longer yields is deleted (a function removed from a
    # file). True: it stays (browsers expire old history, a mailbox loses moved messages).
    keeps_dropped: bool

    def claims(self, path: Path) -> bool:
        """Whether a file met while walking is this reader's (by name or suffix; no I/O)."""
        ...

    def read(self, task: FileTask) -> Iterator[IngestItem]:
        """One item per document in ``task.path`` (a file, or a folder for folder sources).

        Must not raise for bad input: an unreadable or malformed source, or one bad record in
        it, is an item with ``error`` and every other record still comes out. Document ids
        start with ``task.doc_id`` (mail: the message id, so copies collapse) and are the same
        on every read of the same input.
        """
        ...


@dataclass(kw_only=True)
class IngestSummary:
    """What an ingestion did: the store's report plus skips and per-item errors."""

    collection: str
    created_collection: bool = False
    counts: Counter[str] = field(default_factory=Counter)  # added / updated / unchanged
    removed: list[str] = field(default_factory=list)  # stale documents of re-read sources
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count
    errors: list[tuple[str, str]] = field(default_factory=list)  # (origin, reason)
    # (origin, document id, origin of its first occurrence): the later one was kept
    repeated: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def partial_failure(self) -> bool:
        return bool(self.errors)

    @property
    def nothing_taken(self) -> bool:
        """Inputs were given but every one was skipped: a failure, not a silent success
        (with errors too, ``partial_failure`` already makes the exit code non-zero)."""
        return not sum(self.counts.values()) and bool(self.skipped) and not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "created_collection": self.created_collection,
            "added": self.counts[Outcome.ADDED.value],
            "updated": self.counts[Outcome.UPDATED.value],
            "unchanged": self.counts[Outcome.UNCHANGED.value],
            "removed": len(self.removed),
            "skipped": dict(sorted(self.skipped.items())),
            "errors": [{"origin": origin, "reason": reason} for origin, reason in self.errors],
            "repeated": [{"origin": origin, "id": doc_id, "first": first}
                         for origin, doc_id, first in self.repeated],
        }


# ------------------------------------------------------------------------------ walking


SYMLINK_OUTSIDE = "symlink leading outside the folders given (--follow-symlinks to include)"


def collect_files(
    paths: Sequence[Path],
    *,
    id_prefix: str | None = None,
    follow_symlinks: bool = False,
    readers: Sequence[SourceReader] = (),
    source: SourceReader | None = None,
) -> tuple[list[FileTask], list[IngestItem]]:
    """Walk ``paths`` (files or folders) in sorted order.

    Returns the files to read and the items already decided (skipped or erroneous). A file's
    document id is ``id_prefix`` (default: the folder's name and ``/``, or nothing for a file
    given directly) followed by its path relative to the folder given. A symlink met in a
    folder whose target lies outside every folder given is skipped, with a warning naming it,
    unless ``follow_symlinks``: adding ``~/notes`` must not index ``/etc/passwd`` because a
    link points there. A file one of ``readers`` claims is read by it; with ``source`` every
    path given, file or folder, is one source for that reader and nothing is walked.
    """
    tasks: list[FileTask] = []
    decided: list[IngestItem] = []
    roots = [Path(given).resolve() for given in paths if Path(given).is_dir()]
    for given in paths:
        given = Path(given)
        if not given.exists():
            decided.append(IngestItem(origin=str(given), error="no such file or directory"))
        elif source is not None:
            prefix = id_prefix if id_prefix is not None else ""
            resolved = given.resolve()
            tasks.append(FileTask(path=resolved, doc_id=prefix + resolved.name,
                                  relative=resolved.name, reader=source))
        elif given.is_dir():
            root = given.resolve()
            prefix = id_prefix if id_prefix is not None else f"{root.name}/"
            walk = _FolderWalk(root=root, prefix=prefix, roots=roots,
                               follow_symlinks=follow_symlinks, readers=readers)
            walk.run(tasks, decided)
        else:
            prefix = id_prefix if id_prefix is not None else ""
            _consider_file(given.resolve(), given.name, prefix, tasks, decided, readers)
    return tasks, decided


def read_task(task: FileTask) -> Iterator[IngestItem]:
    """The items of one collected task: its reader's documents, or the file as one text."""
    if task.reader is None:
        yield read_file(task)
    else:
        yield from task.reader.read(task)


class TaskReads:
    """The items of collected tasks, noting for each one a reader split into documents what
    it owns (``SourceScope``), so that ``ingest`` can delete what a re-read no longer yields.

    Only an input read to the end without an error or a part too large to read gets a scope:
    a file that failed half way (a damaged PDF page) keeps its previous documents.
    """

    def __init__(self, tasks: Sequence[FileTask]) -> None:
        self._tasks = tasks
        self.scopes: list[SourceScope] = []

    def __iter__(self) -> Iterator[IngestItem]:
        for task in self._tasks:
            produced: set[str] = set()
            clean = True
            for item in read_task(task):
                if item.doc is not None:
                    produced.add(item.doc.id)
                clean = clean and read_completely(item)
                yield item
            scope = task.stale_scope(produced) if clean else None
            if scope is not None:
                self.scopes.append(scope)


def read_completely(item: IngestItem) -> bool:
    """Whether an item leaves its input's read complete: not an error, not a part skipped
    for being too large (what it held is unknown)."""
    return item.error is None and item.skipped != SKIPPED_TOO_LARGE


@dataclass(frozen=True, kw_only=True)
class _FolderWalk:
    """One folder given to ``collect_files``, and the symlink policy for what it holds."""

    root: Path
    prefix: str
    roots: list[Path]  # every folder given: a link into any of them stays inside
    follow_symlinks: bool
    readers: Sequence[SourceReader]

    def _escapes(self, path: Path) -> bool:
        if self.follow_symlinks or not path.is_symlink():
            return False
        target = path.resolve()
        return not any(target.is_relative_to(root) for root in self.roots)

    def run(self, tasks: list[FileTask], decided: list[IngestItem]) -> None:
        visited: set[Path] = set()  # real folders walked, so a followed link cycle ends
        for folder, dirnames, filenames in os.walk(self.root, followlinks=self.follow_symlinks):
            here = Path(folder)
            real = here.resolve()
            if real in visited:
                dirnames[:] = []
                continue
            visited.add(real)
            kept = []
            for name in sorted(dirnames):
                if name.startswith("."):
                    decided.append(IngestItem(origin=str(here / name), skipped="hidden"))
                elif self._escapes(here / name):
                    decided.append(self._outside(here / name))
                else:
                    kept.append(name)
            dirnames[:] = kept
            for name in sorted(filenames):
                path = here / name
                if self._escapes(path):
                    decided.append(self._outside(path))
                    continue
                _consider_file(path, path.relative_to(self.root).as_posix(), self.prefix,
                               tasks, decided, self.readers)

    @staticmethod
    def _outside(path: Path) -> IngestItem:
        logger.warning("skipped %s: it links to %s, outside the folders given "
                       "(--follow-symlinks to include it)", path, path.resolve())
        return IngestItem(origin=str(path), skipped=SYMLINK_OUTSIDE)


def _content_suffix(path: Path) -> str:
    """The suffix naming the content type; ``notes.md.gz`` is markdown (read through gzip)."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] == GZIP_SUFFIX:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def _supported(suffix: str) -> bool:
    return suffix in PLAIN_TEXT_TYPES or suffix in HTML_EXTENSIONS or suffix in CODE_LANGUAGES


def _consider_file(
    path: Path,
    relative: str,
    prefix: str,
    tasks: list[FileTask],
    decided: list[IngestItem],
    readers: Sequence[SourceReader] = (),
) -> None:
    reader = next((reader for reader in readers if reader.claims(path)), None)
    if path.name.startswith("."):
        decided.append(IngestItem(origin=str(path), skipped="hidden"))
    elif not path.is_file():
        decided.append(IngestItem(origin=str(path), skipped="not a regular file"))
    elif reader is not None:
        tasks.append(FileTask(path=path, doc_id=prefix + relative, relative=relative,
                              reader=reader))
    elif not _supported(_content_suffix(path)):
        decided.append(IngestItem(origin=str(path), skipped="unsupported type"))
    else:
        tasks.append(FileTask(path=path, doc_id=prefix + relative, relative=relative))


def _read_bytes(path: Path) -> bytes | None:
    """The file's bytes (gunzipped for ``.gz``), or None when over ``MAX_FILE_BYTES``."""
    if path.stat().st_size > MAX_FILE_BYTES:
        return None
    if path.suffix.lower() != GZIP_SUFFIX:
        return path.read_bytes()
    with gzip.open(path, "rb") as stream:
        data = stream.read(MAX_FILE_BYTES + 1)  # bounded: a small .gz may inflate enormously
    return data if len(data) <= MAX_FILE_BYTES else None


def read_file(task: FileTask) -> IngestItem:
    """Read one file into a document (text extracted from HTML), or say why not."""
    origin = str(task.path)
    try:
        data = _read_bytes(task.path)
    except (OSError, EOFError) as error:
        reason = getattr(error, "strerror", None) or error
        return IngestItem(origin=origin, error=f"cannot read: {reason}")
    if data is None:
        return IngestItem(origin=origin, skipped=SKIPPED_TOO_LARGE)
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        return IngestItem(origin=origin, skipped="binary")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return IngestItem(origin=_line_origin(origin, data, error.start), error=_utf8_error(error))
    suffix = _content_suffix(task.path)
    metadata: dict[str, Any] = {"path": task.relative}
    if suffix in HTML_EXTENSIONS:
        text, title = extract_html(text)
        metadata["type"] = "html"
        if title:
            metadata["title"] = title
    elif suffix in CODE_LANGUAGES:
        metadata["type"] = "code"
        metadata["language"] = CODE_LANGUAGES[suffix]
    else:
        metadata["type"] = PLAIN_TEXT_TYPES[suffix]
    if not text.strip():
        return IngestItem(origin=origin, skipped="empty")
    doc = DocumentInput(id=task.doc_id, text=text, metadata=metadata, source=origin)
    return IngestItem(origin=origin, doc=doc)


def _line_origin(origin: str, data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    return f"{origin}:{line}"


def _utf8_error(error: UnicodeDecodeError) -> str:
    bad = error.object[error.start : error.start + 1].hex()
    return f"not valid UTF-8 (byte 0x{bad} at offset {error.start})"


# --------------------------------------------------------------------------------- HTML


_BLOCK_TAGS = frozenset(
    "address article aside blockquote body dd details div dl dt fieldset figcaption figure "
    "footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section table td th tr ul".split()
)
_SKIPPED_TAGS = frozenset({"script", "style", "head", "noscript", "template", "svg"})


class _TextExtractor(HTMLParser):
    """Collects visible text; block elements become paragraph breaks, ``<pre>`` keeps spaces."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self._skip_depth = 0
        self._pre_depth = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIPPED_TAGS:
            self._skip_depth += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")
            if tag == "pre":
                self._pre_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")
            if tag == "pre":
                self._pre_depth = max(0, self._pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif self._skip_depth:
            return
        elif self._pre_depth:
            self.parts.append(data)
        else:
            self.parts.append(re.sub(r"\s+", " ", data))


def extract_html(html: str) -> tuple[str, str | None]:
    """Visible text of an HTML page (paragraphs separated by blank lines) and its title."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    lines = [line.rstrip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    title = re.sub(r"\s+", " ", "".join(parser.title)).strip() or None
    return text, title


# -------------------------------------------------------------------------------- JSONL


def read_jsonl(path: Path) -> Iterator[IngestItem]:
    """One item per non-blank line of ``{"id", "text", "metadata"?, "source"?}`` objects."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as error:
        yield IngestItem(origin=str(path), error=f"cannot read: {error.strerror or error}")
        return
    with handle:
        for number, raw in enumerate(handle, start=1):
            origin = f"{path}:{number}"
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                yield IngestItem(origin=origin, error=_utf8_error(error))
                continue
            yield _jsonl_item(origin, line)


def _jsonl_item(origin: str, line: str) -> IngestItem:
    try:
        # the line's object holds the metadata one level down
        record = loads_json(line, what="the line", max_depth=MAX_JSON_DEPTH + 1)
    except InvalidArgument as error:
        return IngestItem(origin=origin, error=str(error))
    if not isinstance(record, dict):
        return IngestItem(origin=origin, error="a line must be a JSON object")
    unknown = sorted(set(record) - JSONL_FIELDS)
    if unknown:
        return IngestItem(
            origin=origin,
            error=f"unknown field(s) {', '.join(unknown)}; expected id, text, metadata, source",
        )
    doc_id, text = record.get("id"), record.get("text")
    metadata = record.get("metadata", {})
    if not isinstance(doc_id, str):
        return IngestItem(origin=origin, error='"id" must be a string')
    if not isinstance(text, str):
        return IngestItem(origin=origin, error=f'document {doc_id!r}: "text" must be a string')
    if not text.strip():
        return IngestItem(origin=origin, error=f"document {doc_id!r}: text is empty")
    if not isinstance(metadata, dict):
        return IngestItem(
            origin=origin, error=f'document {doc_id!r}: "metadata" must be a JSON object'
        )
    source = record.get("source", origin)
    return IngestItem(
        origin=origin,
        doc=DocumentInput(id=doc_id, text=text, metadata=metadata, source=source),
    )


# ------------------------------------------------------------------------------ feeding


def ingest(
    node: Node,
    collection: str,
    items: Iterable[IngestItem],
    *,
    on_item: Callable[[], None] | None = None,
    sources: TaskReads | None = None,
) -> IngestSummary:
    """Add the documents among ``items`` to ``collection`` (created with defaults if missing).

    Skips and errors are tallied; documents the node rejects are reported with their origin.
    A document id given more than once is written once, as its last occurrence
    (``summary.repeated`` names each repeat; see ``_RepeatWindow``).
    ``on_item`` is called once per item consumed (for a progress bar). ``sources``, whose
    items are among ``items``: once they are in, the documents its re-read inputs no longer
    yield are deleted (``summary.removed``).
    """
    summary = IngestSummary(collection=collection)
    origins: list[str] = []  # of each document written, by its position in the upsert
    first_seen: dict[str, str] = {}  # document id -> the origin it was first given at
    window = _RepeatWindow()

    def written(released: Iterable[tuple[str, DocumentInput]]) -> Iterator[DocumentInput]:
        for origin, doc in released:
            origins.append(origin)
            yield doc

    def documents() -> Iterator[DocumentInput]:
        for item in items:
            if on_item is not None:
                on_item()
            if item.doc is not None:
                doc_id = item.doc.id
                if doc_id in first_seen:  # e.g. a JSONL export listing a document twice
                    summary.repeated.append((item.origin, doc_id, first_seen[doc_id]))
                else:
                    first_seen[doc_id] = item.origin
                yield from written(window.hold(item.origin, item.doc))
            elif item.skipped is not None:
                logger.info("skipped %s: %s", item.origin, item.skipped)
                summary.skipped[item.skipped] += 1
            else:
                summary.errors.append((item.origin, item.error or "unreadable"))
        yield from written(window.drain())

    # Only documents that were there before can be gone from their re-read sources (and a
    # collection is created only when a document goes in).
    existed = any(info.name == collection for info in node.list_collections())
    report = node.upsert_documents(collection, documents(), create_missing=True)
    _tally(summary, report, origins)
    scopes = sources.scopes if sources is not None and existed else []
    for start in range(0, len(scopes), SCOPES_PER_DELETE):
        summary.removed += node.delete_documents(
            collection, (), sources=scopes[start:start + SCOPES_PER_DELETE]).deleted
    return summary


class _RepeatWindow:
    """The latest documents given, held back so that an id given again replaces its earlier
    occurrence before either is written: the later one wins, and an unchanged input added
    again writes nothing (writing both replaced the document twice on every add, each time
    a change that sync ships).

    At most ``REPEAT_WINDOW_DOCUMENTS`` documents and ``REPEAT_WINDOW_CHARS`` of text are
    held; past either the oldest documents are written, so a repeat further on than that is
    written after its first occurrence (the later one still wins).
    """

    def __init__(self) -> None:
        # document id -> (origin, document) of its latest occurrence, oldest first
        self._held: dict[str, tuple[str, DocumentInput]] = {}
        self._chars = 0

    def hold(self, origin: str, doc: DocumentInput) -> Iterator[tuple[str, DocumentInput]]:
        """Hold ``doc`` in place of an earlier one of its id; yields the oldest documents
        held, with their origins, once there is more text than the window keeps."""
        earlier = self._held.pop(doc.id, None)
        if earlier is not None:
            self._chars -= len(earlier[1].text)
        self._held[doc.id] = (origin, doc)
        self._chars += len(doc.text)
        while len(self._held) > 1 and (self._chars > REPEAT_WINDOW_CHARS
                                       or len(self._held) > REPEAT_WINDOW_DOCUMENTS):
            yield self._release()

    def drain(self) -> Iterator[tuple[str, DocumentInput]]:
        """Every document still held, oldest first."""
        while self._held:
            yield self._release()

    def _release(self) -> tuple[str, DocumentInput]:
        origin, doc = self._held.pop(next(iter(self._held)))
        self._chars -= len(doc.text)
        return origin, doc


def _tally(summary: IngestSummary, report: UpsertReport, origins: list[str]) -> None:
    summary.created_collection = report.created_collection
    for item in report.items:
        if item.outcome is Outcome.REJECTED:
            summary.errors.append((origins[item.position], item.reason or "rejected"))
        else:
            summary.counts[item.outcome.value] += 1

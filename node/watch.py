"""``meshdex watch``: keep a collection in step with folders as their files change.

``FolderSync`` is the logic, without threads: each pass walks the folders as ``meshdex add``
does (``collect_sources``, stat only), reads only the files it was told changed (or every file on
a catch-up) with add's readers, upserts the documents that differ from what the collection
holds, tombstones documents whose file is gone, and runs a delta build when anything changed.
A file therefore gives the documents, and ids, that ``add`` gives it (folder name, ``/``, path
inside it; a Python file one per function and class, a PDF one per page, an mbox one per
message), so a folder added once can be watched later. A re-read drops what the file no
longer yields where ``add`` would (a function deleted from the file), and a read that fails
half way (a Python file saved with a syntax error) keeps what the file had. With a source kind
(``--source``) the folder is one source of that kind, read whole (a Maildir, a Slack export).
A rename is a delete of the old id and an add of the new one.

``Watcher`` adds the threads: watchdog's observer collects changed paths, and one worker waits
until the folders have been quiet for ``debounce_s`` (at most ``max_delay_s`` under a steady
stream) and runs a pass, so a burst of writes becomes one upsert batch and one build. Started,
it first catches up on whatever changed while it was not running (a restart after ``kill -9``
included: each acknowledged write is durable, and hashes say what is already in).

Ignore rules are ``.gitignore`` and ``.meshdexignore`` at a folder's root plus patterns given
by the caller, in gitignore syntax (``pathspec``); hidden files and folders are never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pathspec
from meshdex.index.errors import InvalidArgument
from meshdex.node.config import NodeConfig
from meshdex.node.indexing import BuildReport
from meshdex.node.ingest import FileTask, read_completely, read_task
from meshdex.node.readers import collect_sources, reader_named
from meshdex.node.records import Document, DocumentInput, Outcome
from meshdex.node.service import Node
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

logger = logging.getLogger(__name__)

DEFAULT_DEBOUNCE_S = 0.5  # quiet time after the last event before a pass runs
DEFAULT_MAX_DELAY_S = 5.0  # under a steady stream of events, a pass runs at least this often
IGNORE_FILE_NAMES = (".gitignore", ".meshdexignore")
DELETE_BATCH_IDS = 1000


@dataclass(frozen=True, kw_only=True)
class WatchedFolder:
    """One folder: its resolved root, the id prefix of its documents, its ignore rules, and
    the source kind it is read as whole (None: walked file by file)."""

    root: Path
    prefix: str
    extra_patterns: tuple[str, ...] = ()
    source_kind: str | None = None

    @classmethod
    def of(cls, path: Path, *, ignore: Sequence[str] = (),
           source_kind: str | None = None) -> WatchedFolder:
        root = Path(path).expanduser().resolve()
        if not root.is_dir():
            raise InvalidArgument(f"not a folder: {path}", hint="watch takes folders")
        if source_kind is not None:
            reader_named(source_kind)  # an unknown kind is refused before anything is read
        return cls(root=root, prefix=f"{root.name}/", extra_patterns=tuple(ignore),
                   source_kind=source_kind)

    def ignore_spec(self) -> pathspec.GitIgnoreSpec:
        """The rules now: read afresh so an edited ``.gitignore`` takes effect."""
        lines = list(self.extra_patterns)
        for name in IGNORE_FILE_NAMES:
            try:
                lines += (self.root / name).read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as error:
                logger.warning("cannot read %s: %s", self.root / name, error)
        return pathspec.GitIgnoreSpec.from_lines(lines)

    def contains(self, path: Path) -> bool:
        return path == self.root or self.root in path.parents


@dataclass(kw_only=True)
class SyncReport:
    """What one pass did."""

    counts: Counter[str] = field(default_factory=Counter)  # added / updated / unchanged / deleted
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> files
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    build: BuildReport | None = None

    @property
    def changed(self) -> bool:
        return any(self.counts[name] for name in ("added", "updated", "deleted"))

    def summary(self) -> str:
        counts = self.counts
        line = (f"+{counts['added']} ~{counts['updated']} -{counts['deleted']} "
                f"({counts['unchanged']} unchanged")
        if self.skipped:
            skipped = sorted(self.skipped.items())
            line += ", skipped " + ", ".join(f"{n} {why}" for why, n in skipped)
        if self.errors:
            line += f", {len(self.errors)} unreadable"
        line += ")"
        if self.build is not None:
            line += (f"; index {self.build.action} generation {self.build.generation} "
                     f"({self.build.passages} passages)")
        return line


def _named(path: Path, wanted: set[Path]) -> bool:
    """Whether an event named the file or a folder above it (a folder moved in, say)."""
    return path in wanted or any(parent in wanted for parent in path.parents)


def _fingerprint(doc: Document | DocumentInput) -> str:
    """What the store compares to call an upsert unchanged: text, metadata and source."""
    content = json.dumps([doc.text, doc.metadata, doc.source], sort_keys=True,
                         ensure_ascii=False)
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _owned(known: Iterable[str], tasks: Sequence[FileTask]) -> dict[str, set[str]]:
    """Task doc id -> the known ids shaped like its documents (``FileTask.owns``)."""
    by_id = {task.doc_id: task for task in tasks}
    separators = {task.reader.sub_document_separator for task in tasks
                  if task.reader is not None and task.reader.sub_document_separator}
    owned: dict[str, set[str]] = {}
    for doc_id in known:
        # the owner's id is the whole id or the part before a separator
        ends = [match.start() for separator in separators
                for match in re.finditer(re.escape(separator), doc_id)]
        for end in [len(doc_id), *ends]:
            task = by_id.get(doc_id[:end])
            if task is not None and task.owns(doc_id):
                owned.setdefault(task.doc_id, set()).add(doc_id)
                break
    return owned


@dataclass(frozen=True, kw_only=True)
class _Read:
    """The documents one read of a task gave, and whether it read the whole input."""

    docs: list[DocumentInput]
    complete: bool


class FolderSync:
    """Brings ``collection`` in line with ``folders``; not thread-safe (one worker calls it)."""

    def __init__(self, node: Node, collection: str, folders: Sequence[WatchedFolder], *,
                 build: bool = True) -> None:
        prefixes = Counter(folder.prefix for folder in folders)
        clashes = sorted(prefix for prefix, n in prefixes.items() if n > 1)
        if clashes:
            raise InvalidArgument(f"folders with the same name would share document ids: "
                                  f"{', '.join(clashes)}", hint="watch them into separate "
                                  "collections")
        self.node = node
        self.collection = collection
        self.folders = list(folders)
        self.build = build
        self._known: dict[str, str] | None = None  # doc id -> fingerprint, for our prefixes
        # Inputs read -> (mtime_ns, size) then, so a pass that was not told about an input that
        # gave nothing to the collection (binary, empty, a mailbox) does not read it again.
        self._read_stat: dict[Path, tuple[int, int]] = {}

    def _known_fingerprints(self) -> dict[str, str]:
        if self._known is None:
            self._known = {}
            if self.node.store.has_collection(self.collection):
                prefixes = self._prefixes()
                self._known = {doc.id: _fingerprint(doc)
                               for doc in self.node.store.iter_documents(self.collection)
                               if doc.id.startswith(prefixes)}
        return self._known

    def _prefixes(self) -> tuple[str, ...]:
        return tuple(folder.prefix for folder in self.folders)

    def catch_up(self) -> SyncReport:
        """Read every file and apply what differs: the first pass, and after a restart."""
        return self.sync(None)

    def sync(self, changed: Iterable[Path] | None) -> SyncReport:
        """One pass. ``changed``: the paths events named (files or folders); None reads all.

        Files not named are not read; any document whose file is gone (deleted, renamed,
        newly ignored, hidden) is tombstoned either way. Documents whose ids are not under a
        folder's prefix (a mail's message id) are never tombstoned, as ``add`` keeps them.
        """
        report = SyncReport()
        known = self._known_fingerprints()
        wanted = None if changed is None else {Path(p).resolve() for p in changed}
        above = set() if wanted is None else {parent for p in wanted for parent in p.parents}
        tasks = [task for folder in self.folders for task in self._tasks(folder)]
        owned = _owned(known, tasks)
        keep: set[str] = set()
        upserts: list[DocumentInput] = []
        for task in tasks:
            had = owned.get(task.doc_id, set())
            # named by an event, or under a folder an event named, or, for a folder source,
            # holding what an event named; or not named yet giving nothing to the collection
            # and changed since last read: an event was lost
            if not (wanted is None or _named(task.path, wanted) or task.path in above
                    or (not had and self._changed_since_read(task.path))):
                keep |= had
                continue
            read = self._read(task, report)
            produced = {doc.id for doc in read.docs}
            replaced = task.reader is None or (read.complete
                                               and task.stale_scope(produced) is not None)
            keep |= produced if replaced else had | produced
            for doc in read.docs:
                if known.get(doc.id) == _fingerprint(doc):
                    report.counts["unchanged"] += 1
                else:
                    upserts.append(doc)
        if upserts:
            self._upsert(upserts, known, report)
        gone = sorted(set(known) - keep)
        for start in range(0, len(gone), DELETE_BATCH_IDS):
            deleted = self.node.delete_documents(self.collection,  # ids as stored: exact
                                                 gone[start:start + DELETE_BATCH_IDS],
                                                 match_unicode_forms=False)
            report.counts["deleted"] += len(deleted.deleted)
        for doc_id in gone:
            known.pop(doc_id, None)
        if self.build and (report.changed or self._index_behind()):
            report.build = self.node.build(self.collection)
        return report

    def _index_behind(self) -> bool:
        """Whether the collection holds documents its index does not cover: none built yet, or
        a pass that wrote documents stopped before its build (Ctrl-C, a failed build), which
        a later pass finding every file unchanged would otherwise never build."""
        info = next((info for info in self.node.list_collections()
                     if info.name == self.collection), None)
        if info is None or not info.document_count:
            return False
        summary = next((summary for summary in self.node.indexes.summaries()
                        if summary.collection == self.collection), None)
        return summary is None or summary.stale

    def _upsert(self, docs: list[DocumentInput], known: dict[str, str],
                report: SyncReport) -> None:
        upsert = self.node.upsert_documents(self.collection, docs, create_missing=True)
        prefixes = self._prefixes()
        for doc, item in zip(docs, upsert.items, strict=True):
            if item.outcome is Outcome.REJECTED:
                report.errors.append((item.id, item.reason or "rejected"))
                logger.warning("skipped %s: %s", item.id, item.reason)
                continue
            report.counts[item.outcome.value] += 1
            if doc.id.startswith(prefixes):
                known[doc.id] = _fingerprint(doc)

    def _tasks(self, folder: WatchedFolder) -> list[FileTask]:
        """The folder's inputs ``meshdex add`` would read, minus the ignored files."""
        tasks, _ = collect_sources([folder.root], source_kind=folder.source_kind)
        if folder.source_kind is not None:
            return tasks  # one source, read whole
        spec = folder.ignore_spec()
        return [task for task in tasks if not spec.match_file(task.relative)]

    def _changed_since_read(self, path: Path) -> bool:
        try:
            stat = path.stat()
        except OSError:
            return True
        return self._read_stat.get(path) != (stat.st_mtime_ns, stat.st_size)

    def _read(self, task: FileTask, report: SyncReport) -> _Read:
        try:
            stat = task.path.stat()
            self._read_stat[task.path] = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            self._read_stat.pop(task.path, None)
        docs: list[DocumentInput] = []
        complete = True
        for item in read_task(task):
            complete = complete and read_completely(item)
            if item.doc is not None:
                docs.append(item.doc)
            elif item.skipped is not None:
                report.skipped[item.skipped] += 1
                logger.warning("skipped %s: %s", item.origin, item.skipped)
            else:
                report.errors.append((item.origin, item.error or "unreadable"))
                logger.warning("skipped %s: %s", item.origin, item.error)
        return _Read(docs=docs, complete=complete)


class _Collector(FileSystemEventHandler):
    """Records the paths watchdog reports (both ends of a move) and wakes the worker."""

    def __init__(self, on_paths: Callable[[list[Path]], None]) -> None:
        self.on_paths = on_paths

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads change nothing
        if event.is_directory and event.event_type == "modified":
            return  # an entry inside changed: that entry has its own event; naming the folder
            # would make the pass re-read every file below it
        paths = [event.src_path, getattr(event, "dest_path", "")]
        self.on_paths([Path(_text(p)) for p in paths if p])


def _text(path: str | bytes) -> str:
    return path.decode(errors="surrogateescape") if isinstance(path, bytes) else path


class Watcher:
    """Runs ``FolderSync`` passes on a worker thread as watchdog reports changes."""

    def __init__(self, sync: FolderSync, *, debounce_s: float = DEFAULT_DEBOUNCE_S,
                 max_delay_s: float = DEFAULT_MAX_DELAY_S,
                 on_pass: Callable[[SyncReport], None] | None = None) -> None:
        if debounce_s < 0 or max_delay_s < debounce_s:
            raise InvalidArgument("need 0 <= debounce_s <= max_delay_s")
        self.sync = sync
        self.debounce_s = debounce_s
        self.max_delay_s = max_delay_s
        self.on_pass = on_pass
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending: set[Path] = set()
        self._full_pass = False
        self._busy = False  # a pass is running
        self._first_event_at = 0.0
        self._last_event_at = 0.0
        self._observer: Any = None
        self._worker: threading.Thread | None = None
        self.failure: Exception | None = None

    def start(self) -> SyncReport:
        """Watch, catch up on what changed while not watching, then serve events in the
        background. Events arriving during the catch-up are kept for the next pass."""
        self._observer = Observer()
        handler = _Collector(self._record)
        for folder in self.sync.folders:
            self._observer.schedule(handler, str(folder.root), recursive=True)
        self._observer.start()
        report = self.sync.catch_up()
        if self.on_pass is not None:
            self.on_pass(report)
        self._worker = threading.Thread(target=self._run, name="meshdex-watch", daemon=True)
        self._worker.start()
        return report

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop watching; a pass in progress finishes first (its writes are committed)."""
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout_s)
        if self._worker is not None:
            self._worker.join(timeout_s)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until stopped (or the worker failed); True if it stopped in time."""
        return self._stop.wait(timeout_s)

    @property
    def idle(self) -> bool:
        """No change is waiting and no pass is running: the collection and its index reflect
        every event received so far."""
        with self._lock:
            return not self._busy and not self._pending and not self._full_pass

    def _record(self, paths: list[Path]) -> None:
        now = time.monotonic()
        relevant = [path for path in paths if self._relevant(path)]
        if not relevant:
            return
        with self._lock:
            if not self._pending and not self._full_pass:
                self._first_event_at = now
            for path in relevant:
                if path.name in IGNORE_FILE_NAMES:
                    self._full_pass = True  # the rules changed: re-decide every file
                self._pending.add(path)
            self._last_event_at = now
        self._wake.set()

    def _relevant(self, path: Path) -> bool:
        """Events inside hidden folders (``.git``) or the store itself are noise."""
        for folder in self.sync.folders:
            if folder.contains(path):
                parts = path.relative_to(folder.root).parts
                if parts == (path.name,) and path.name in IGNORE_FILE_NAMES:
                    return True
                return not any(part.startswith(".") for part in parts)
        return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.wait()
                self._wake.clear()
                if self._stop.is_set():
                    return
                self._settle()
                with self._lock:
                    paths, self._pending = self._pending, set()
                    full, self._full_pass = self._full_pass, False
                    self._busy = bool(paths) or full
                if not self._busy:
                    continue
                try:
                    report = self.sync.sync(None if full else paths)
                finally:
                    with self._lock:
                        self._busy = False
                if self.on_pass is not None:
                    self.on_pass(report)
        except Exception as error:  # surfaced to the caller through ``failure``
            logger.exception("watch pass failed")
            self.failure = error
            self._stop.set()

    def _settle(self) -> None:
        """Sleep until the folders have been quiet for ``debounce_s`` (or ``max_delay_s``)."""
        while not self._stop.is_set():
            with self._lock:
                quiet_at = self._last_event_at + self.debounce_s
                latest_at = self._first_event_at + self.max_delay_s
            now = time.monotonic()
            if now >= min(quiet_at, latest_at):
                return
            time.sleep(min(quiet_at, latest_at) - now)


def watch_entries(entries: Sequence[str]) -> dict[str, list[Path]]:
    """``["notes=~/notes", "notes=~/docs"]`` → ``{"notes": [~/notes, ~/docs]}``."""
    folders: dict[str, list[Path]] = {}
    for entry in entries:
        collection, sep, folder = entry.partition("=")
        if not sep or not collection.strip() or not folder.strip():
            raise InvalidArgument(f"watch entries look like COLLECTION=FOLDER, got {entry!r}")
        folders.setdefault(collection.strip(), []).append(Path(folder.strip()).expanduser())
    return folders


@contextmanager
def node_with_watchers(config: NodeConfig) -> Iterator[Node]:
    """The node ``serve`` runs, with a ``Watcher`` per collection of ``config.watch``.

    Each watcher catches up before this yields, so the node serves caught-up collections; the
    watchers stop before the node closes (a pass in progress commits first).
    """
    with Node.open(config.data_dir) as node:
        watchers = []
        try:
            for collection, folders in watch_entries(config.watch).items():
                sync = FolderSync(node, collection, [WatchedFolder.of(f) for f in folders])
                watcher = Watcher(sync, on_pass=lambda report, name=collection: logger.info(
                    "watch %s: %s", name, report.summary()))
                watchers.append(watcher)
                watcher.start()
            yield node
        finally:
            for watcher in watchers:
                watcher.stop()

"""The node's keyword (BM25) indexes: one per collection, kept beside its ``.leann`` bundle.

A keyword index is rebuilt locally from the store's passages rather than shipped inside the
bundle: measured on the docs corpus (``bench/results/keyword.md``) it is 13% of the raw text,
three times the 3.9% the rest of the index takes, on every bundle transfer (and twice on disk
once unpacked, as tantivy reads a directory), against a second or two to rebuild it from
passages the receiving device already holds. It lives in
``DATA_DIR/indexes/keyword-vFORMAT/COLLECTION/BUNDLE_ID/`` so it always names the keyword
format (``KEYWORD_FORMAT_VERSION``) and the bundle generation it matches: a build updates it
with the same delta (or builds it afresh), and a search that finds none for the current bundle
(one received from a peer, an older data directory, an older format) builds it first; one
tantivy cannot read is removed and rebuilt. Directories of superseded bundles and of older
formats are removed once the new one is in place.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from meshdex.index.keyword import (
    KEYWORD_FORMAT_VERSION,
    KeywordIndex,
    KeywordIndexFailed,
    deleted_documents,
)
from meshdex.node.paths import make_tree_private

logger = logging.getLogger(__name__)

KEYWORD_DIR_NAME = f"keyword-v{KEYWORD_FORMAT_VERSION}"
_OLDER_FORMAT_DIR = re.compile(r"keyword(?:-v\d+)?")
REBUILD_DELETED_FRACTION = 0.25  # as the bundle's REBUILD_TOMBSTONE_FRACTION
# A label's delete scans the whole label column (``meshdex.index.keyword``), so removing R
# labels from N passages costs R x N; a rebuild costs N, so the break-even R does not depend
# on N: 12,300 removed labels in bench/results/keyword_labels.md (8,800 in a run under load 5;
# a node's rebuild also reads every text), so past this many the rebuild is taken.
REBUILD_REMOVED_LABELS = 8_000

TextsOf = Callable[[], tuple[Sequence[str], Sequence[int]]]  # (texts, labels) to index


class KeywordIndexes:
    """Keyword indexes of one data directory's collections; safe to share between threads."""

    def __init__(self, root: Path) -> None:
        self.root = root / KEYWORD_DIR_NAME
        self._open: dict[str, tuple[str, KeywordIndex]] = {}  # collection -> (bundle id, index)
        self._lock = threading.Lock()

    def _path(self, collection: str, bundle_id: str) -> Path:
        return self.root / collection / bundle_id

    def after_build(
        self,
        collection: str,
        bundle_id: str,
        *,
        parent_bundle_id: str | None,
        added: Iterable[tuple[str, int]],
        removed: Iterable[int],
        everything: TextsOf,
        afresh: bool = False,
    ) -> KeywordIndex:
        """Index the bundle ``bundle_id`` just written: the delta applied to the parent's
        keyword index when there is one, else (or when ``afresh``) ``everything`` indexed
        anew. A delta's removed passages keep their postings (tantivy only marks them), so
        ``meshdex compact``, which is to give their disk back, asks for ``afresh``."""
        path = self._path(collection, bundle_id)
        parent = self._path(collection, parent_bundle_id) if parent_bundle_id else None
        removed = list(removed)
        with self._lock:
            if (not afresh and parent is not None and parent.is_dir()
                    and not _too_many_deleted(parent, removed)):
                index = KeywordIndex.open(parent).updated(path, added=added, removed=removed)
            else:
                texts, labels = everything()
                index = KeywordIndex.build(path, texts, labels)
            self._install(collection, bundle_id, index)
        return index

    def for_search(self, collection: str, bundle_id: str, everything: TextsOf) -> KeywordIndex:
        """The keyword index matching bundle ``bundle_id``, built from ``everything`` if none."""
        with self._lock:
            cached = self._open.get(collection)
            if cached is not None and cached[0] == bundle_id:
                return cached[1]
            path = self._path(collection, bundle_id)
            try:
                index = KeywordIndex.open(path)
            except FileNotFoundError:
                index = self._build_missing(path, everything)
            except KeywordIndexFailed as error:
                index = None if os.access(path, os.W_OK) else self._open_read_only(path)
                if index is None:
                    logger.warning("rebuilding a keyword index tantivy cannot read: %s", error)
                    shutil.rmtree(path, ignore_errors=True)
                    index = self._build_missing(path, everything)
            self._install(collection, bundle_id, index)
            return index

    @staticmethod
    def _open_read_only(path: Path) -> KeywordIndex | None:
        """The index in a folder this process cannot write (a read-only data directory), from
        a temporary copy; None if that cannot be read either."""
        try:
            return KeywordIndex.open_copy(path)
        except (OSError, KeywordIndexFailed) as error:
            logger.debug("cannot read a copy of the keyword index %s: %s", path, error)
            return None

    def _build_missing(self, path: Path, everything: TextsOf) -> KeywordIndex:
        texts, labels = everything()
        logger.info("building the keyword index for %s (%d passages)", path, len(texts))
        try:
            return KeywordIndex.build(path, texts, labels)
        except (OSError, KeywordIndexFailed) as error:
            try:
                return KeywordIndex.open(path)  # another process built it meanwhile
            except (OSError, KeywordIndexFailed):
                pass
            # A read-only data directory: the index still serves, from memory.
            logger.warning("keyword index kept in memory: cannot write %s: %s", path, error)
            return KeywordIndex.build(None, texts, labels)

    def bytes_on_disk(self, collection: str) -> int:
        """Bytes of the collection's keyword index files (0 if it has none)."""
        folder = self.root / collection
        if not folder.is_dir():
            return 0
        return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())

    def forget(self, collection: str) -> None:
        """Drop the collection's keyword indexes from memory and disk."""
        with self._lock:
            self._open.pop(collection, None)
        shutil.rmtree(self.root / collection, ignore_errors=True)

    def _install(self, collection: str, bundle_id: str, index: KeywordIndex) -> None:
        self._open[collection] = (bundle_id, index)
        folder = self.root / collection
        if index.path is None or not folder.is_dir():
            return
        make_tree_private(self.root)  # tantivy writes its files with the process umask
        for stale in folder.iterdir():
            if stale.name != bundle_id and ".tmp-" not in stale.name:  # not a writer's scratch
                shutil.rmtree(stale, ignore_errors=True)
        for older in self.root.parent.iterdir():
            if older != self.root and _OLDER_FORMAT_DIR.fullmatch(older.name):
                shutil.rmtree(older, ignore_errors=True)


def _too_many_deleted(parent: Path, removed: list[int]) -> bool:
    """Whether the parent's deleted documents and ``removed`` pass ``REBUILD_DELETED_FRACTION``
    of its documents (tantivy only marks a deleted document and keeps its postings until a
    merge, which a big segment rarely takes part in), or ``removed`` alone passes
    ``REBUILD_REMOVED_LABELS``: either way the index is written afresh."""
    if len(removed) > REBUILD_REMOVED_LABELS:
        return True
    total, deleted = deleted_documents(parent)
    return total > 0 and deleted + len(removed) > REBUILD_DELETED_FRACTION * total

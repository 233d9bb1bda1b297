"""``Node``: the domain API of one device, called by the embedded CLI and the gRPC servicer alike.

It validates what callers pass (``meshdex.node.validation``), batches document writes into
durable store transactions, and reports per item. It owns no wire or terminal concerns.
"""

from __future__ import annotations

import itertools
import logging
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import BundleError, FailedPrecondition, InvalidArgument
from meshdex.index.filters import check_fields_known, parse_filter
from meshdex.index.keyword import KeywordIndexFailed
from meshdex.index.params import BuildParams, SearchParams
from meshdex.node.errors import DocumentNotFound
from meshdex.node.indexing import (
    BuildProgress,
    BuildReport,
    IndexManager,
    IndexStats,
    PinReport,
)
from meshdex.node.paths import resolve_data_dir
from meshdex.node.records import (
    CollectionInfo,
    DataCompaction,
    DeleteReport,
    Document,
    DocumentInput,
    DocumentSummary,
    IndexCompaction,
    ItemOutcome,
    NodeStatus,
    Outcome,
    PeerStatus,
    SearchResults,
    SourceScope,
    UpsertReport,
)
from meshdex.node.store import Store
from meshdex.node.validation import (
    check_collection_name,
    check_document,
    check_document_id,
    check_limit,
)
from meshdex.sync.errors import TrustStoreCorrupt
from meshdex.sync.identity import existing_device_id
from meshdex.sync.trust import TrustStore, sharing_of

logger = logging.getLogger(__name__)

DEFAULT_COLLECTION = "default"
# A batch is one fsynced transaction: large enough that fsync does not dominate ingestion,
# small enough that a crash loses at most one unacknowledged batch.
BATCH_DOCUMENTS = 256
BATCH_TEXT_BYTES = 8 * 1024 * 1024

STATUS_DECISIONS = 10  # newest index decisions shown by status
# A name typed on one system and a file named on another (macOS writes names decomposed) may
# spell the same id in different Unicode normal forms: lookups try these after the id as given.
UNICODE_FORMS = ("NFC", "NFD")

ProgressCallback = Callable[[int], None]  # called with how many more inputs were handled


class Node:
    """One device's collections and documents. Open with ``Node.open``; close or use ``with``."""

    def __init__(self, store: Store, *, indexes: IndexManager | None = None) -> None:
        self.store = store
        self.indexes = indexes or IndexManager(store)
        # The paired devices' file of this data directory, read for which of them share a
        # collection: a deleted document's tombstone waits for those (``compact``).
        self.trust = TrustStore(store.data_dir)
        # Set by peer sync when it runs beside this node (``meshdex serve``): the paired
        # devices ``status`` shows, with their connection state.
        self.peers_source: Callable[[], list[PeerStatus]] | None = None

    @classmethod
    def open(cls, data_dir: Path | str | None = None, *, readonly: bool = False) -> Node:
        """Open the node's store in ``data_dir`` (default: ``resolve_data_dir``).

        Raises ``StoreLocked`` when another process writes there (unless ``readonly``), and
        for ``readonly`` ``NotFound`` when no store exists yet.
        """
        return cls(Store.open(resolve_data_dir(data_dir), readonly=readonly))

    @property
    def data_dir(self) -> Path:
        return self.store.data_dir

    @property
    def device_id(self) -> str:
        return self.store.device_id

    def close(self) -> None:
        self.indexes.close()
        self.store.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------------- collections

    def create_collection(
        self,
        name: str,
        *,
        embedder: EmbedderSpec | None = None,
        chunking: ChunkingParams | None = None,
    ) -> CollectionInfo:
        """Create an empty collection; ``CollectionExists`` if taken. Defaults: local model."""
        return self.store.create_collection(
            check_collection_name(name),
            embedder=embedder or EmbedderSpec(),
            chunking=chunking or ChunkingParams(),
        )

    def get_collection(self, name: str) -> CollectionInfo:
        """``CollectionNotFound`` if there is none by that name."""
        return self.store.get_collection(check_collection_name(name))

    def list_collections(self) -> list[CollectionInfo]:
        """Every collection with its counts, sorted by name."""
        return self.store.list_collections()

    def drop_collection(self, name: str) -> None:
        """Delete a collection and everything in it from this device, its index included.

        ``FailedPrecondition`` while a paired peer shares it: the next sync would bring it
        back, so dropping it is only meaningful once it is unshared.
        """
        self.store.get_collection(check_collection_name(name))  # CollectionNotFound first
        sharing = [peer.name or peer.device_id for peer in self.trust.all()
                   if name in peer.collections]
        if sharing:
            raise FailedPrecondition(
                f"collection {name!r} is shared with {', '.join(sharing)}: the next sync "
                "would bring it back",
                hint=f"stop sharing it first: meshdex peer unshare {sharing[0]} {name}")
        with self.indexes.exclusive(name):
            self.indexes.forget(name)
            self.store.drop_collection(name)

    # ------------------------------------------------------------------------ documents

    def upsert_documents(
        self,
        collection: str,
        docs: Iterable[DocumentInput],
        *,
        create_missing: bool = False,
        progress: ProgressCallback | None = None,
    ) -> UpsertReport:
        """Add or replace documents; invalid ones are rejected per item, the rest go in.

        Writes are committed in batches; when this returns, every item reported as added,
        updated or unchanged is durable, and the store has compacted itself if the batches
        left enough free pages or grew it by half (``Store.compact_if_worthwhile``). With
        ``create_missing`` a missing collection is created with default settings when the
        first valid document goes in (``report.created_collection``), so an ``add`` of which
        nothing could be read leaves no empty collection behind; otherwise
        ``CollectionNotFound``. Re-adding an unchanged document is a no-op.
        """
        check_collection_name(collection)
        to_create = not self.store.has_collection(collection)
        if to_create and not create_missing:
            self.store.get_collection(collection)  # raises CollectionNotFound
        created = False
        items: list[ItemOutcome] = []
        batch: list[tuple[int, DocumentInput]] = []
        batch_bytes = 0
        handled = 0
        store_bytes_before = self.store.store_bytes()

        def flush() -> None:
            nonlocal batch, batch_bytes, handled, to_create, created
            if batch and to_create:
                self.create_collection(collection)
                to_create, created = False, True
            if batch:
                outcomes = self.store.upsert_documents(collection, [doc for _, doc in batch])
                items.extend(
                    ItemOutcome(position=position, id=doc.id, outcome=outcome)
                    for (position, doc), outcome in zip(batch, outcomes, strict=True)
                )
            if progress is not None and handled:
                progress(handled)
            batch, batch_bytes, handled = [], 0, 0

        for position, doc in enumerate(docs):
            handled += 1
            try:
                check_document(doc)
            except InvalidArgument as error:
                items.append(_rejected(position, doc, str(error)))
                continue
            batch.append((position, doc))
            batch_bytes += len(doc.text)
            if len(batch) >= BATCH_DOCUMENTS or batch_bytes >= BATCH_TEXT_BYTES:
                flush()
        flush()
        self._compact_if_worthwhile(bytes_before=store_bytes_before)
        items.sort(key=lambda item: item.position)
        return UpsertReport(collection=collection, items=items, created_collection=created)

    def delete_documents(
        self, collection: str, ids: Iterable[str], *, sources: Sequence[SourceScope] = (),
        match_unicode_forms: bool = True,
    ) -> DeleteReport:
        """Tombstone documents by id; ids not live in the collection are listed as not found.

        An id not live as given deletes the live document spelled as its NFC, else its NFD
        form (``UNICODE_FORMS``); ``deleted`` names the ids actually deleted. A caller passing
        ids it read from the store, which are exact, turns that off with
        ``match_unicode_forms=False``. ``sources``: also tombstone what each re-read source
        file owns and no longer holds (``SourceScope``), in the same transaction.
        """
        check_collection_name(collection)
        id_list = [check_document_id(doc_id) for doc_id in ids]
        for scope in sources:
            check_document_id(scope.owner_id)
            if not scope.separator:
                raise InvalidArgument(f"source scope {scope.owner_id!r} has no separator")
        deleted, not_found = self.store.delete_documents(collection, id_list, sources=sources)
        for form in UNICODE_FORMS if match_unicode_forms else ():
            spelled = [(doc_id, unicodedata.normalize(form, doc_id)) for doc_id in not_found]
            tries = [other for doc_id, other in spelled if other != doc_id]
            if tries:
                deleted += self.store.delete_documents(collection, tries)[0]
                done = set(deleted)
                found = {doc_id for doc_id, other in spelled if other in done}
                not_found = [doc_id for doc_id in not_found if doc_id not in found]
        self._compact_if_worthwhile()
        return DeleteReport(collection=collection, deleted=deleted, not_found=not_found)

    def get_document(self, collection: str, doc_id: str) -> Document:
        """The live document; if none has the id as given, the one spelled as its NFC, else
        its NFD form (``UNICODE_FORMS``; ``Document.id`` says which). ``DocumentNotFound`` if
        none is live."""
        collection, doc_id = check_collection_name(collection), check_document_id(doc_id)
        try:
            return self.store.get_document(collection, doc_id)
        except DocumentNotFound as error:
            missing = error
        for form in UNICODE_FORMS:
            other = unicodedata.normalize(form, doc_id)
            if other != doc_id:
                try:
                    return self.store.get_document(collection, other)
                except DocumentNotFound:
                    continue
        raise missing

    def list_documents(self, collection: str, *, id_prefix: str = "",
                       limit: int | None = None) -> Iterator[DocumentSummary]:
        """The collection's live documents without their texts, sorted by id (bytewise
        UTF-8), read lazily from one snapshot: those whose id starts with ``id_prefix``, at
        most ``limit`` (None: all). ``CollectionNotFound`` at the call, not the first read."""
        self.store.get_collection(check_collection_name(collection))
        if id_prefix:
            check_document_id(id_prefix)
        documents = self.store.iter_documents(collection, id_prefix=id_prefix)
        return map(DocumentSummary.of, itertools.islice(documents, check_limit(limit)))

    # -------------------------------------------------------------------------- indexes

    def build(
        self,
        collection: str,
        *,
        params: BuildParams | None = None,
        rebuild: bool = False,
        progress: BuildProgress | None = None,
    ) -> BuildReport:
        """Bring the collection's index up to date: a delta when it can, a rebuild when not."""
        return self.indexes.build(
            check_collection_name(collection), params=params, rebuild=rebuild, progress=progress
        )

    def search(
        self,
        collection: str,
        query: str,
        *,
        top_k: int = 5,
        filter: str | Mapping[str, Any] | None = None,
        params: SearchParams | Mapping[str, Any] | None = None,
        deadline: float | None = None,
        mode: str | None = None,
    ) -> SearchResults:
        """Top-k passages, filtered during the search (see ``IndexManager.search``).

        ``params`` may be a ``SearchParams`` or its dict form (unknown keys: InvalidArgument);
        ``mode`` is "semantic", "keyword" or "hybrid" (None: the default, hybrid). A filter
        that matches nothing because it names a field no document has is ``InvalidArgument``.
        """
        if isinstance(params, Mapping):
            params = SearchParams.from_dict(dict(params))
        results = self.indexes.search(
            check_collection_name(collection), query, top_k=top_k, filter=filter,
            params=params, deadline=deadline, mode=mode,
        )
        if filter and not results.hits:
            self._check_filter_fields(collection, filter)
        return results

    def pin(self, collection: str, filter: str | Mapping[str, Any],
            progress: Callable[[int, int], None] | None = None) -> PinReport:
        """Keep exact embeddings of the passages of documents matching ``filter`` (see
        ``IndexManager.pin``)."""
        report = self.indexes.pin(check_collection_name(collection), filter, progress=progress)
        if not report.documents:
            self._check_filter_fields(collection, filter)
        return report

    def unpin(self, collection: str, filter: str | Mapping[str, Any] | None) -> PinReport:
        """Stop pinning the passages of documents matching ``filter``, or every pin for None
        (see ``IndexManager.unpin``)."""
        report = self.indexes.unpin(check_collection_name(collection), filter)
        if filter is not None and not report.documents:
            self._check_filter_fields(collection, filter)
        return report

    def _check_filter_fields(self, collection: str, filter: str | Mapping[str, Any]) -> None:
        """``InvalidArgument`` naming the fields there are when a filter that matched nothing
        names a field no document of the collection has: a mistyped field, not an answer."""
        check_fields_known(parse_filter(filter), self.store.metadata_fields(collection),
                           collection=collection)

    def index_stats(self, collection: str) -> IndexStats:
        """Index bytes by section against raw passage bytes, build params and fingerprint."""
        return self.indexes.stats(check_collection_name(collection))

    # --------------------------------------------------------------------------- status

    def compact(self) -> DataCompaction:
        """Give deleted documents' disk back: their passages leave every collection's indexes
        (nothing is re-embedded, ``IndexManager.drop_deleted``), then the store drops the
        tombstones no device has still to learn of (the paired devices sharing a collection,
        from the trust store) and is rewritten without its free pages (``Store.compact``).
        ``TrustStoreCorrupt`` before anything changes if the paired devices cannot be read."""
        peers = self.trust.all()
        paired = sharing_of(peers)
        indexes = [self._drop_deleted(info.name) for info in self.store.list_collections()]
        store = self.store.compact(paired=paired)
        waiting_peers = sorted(peer.device_id for peer in peers
                               if peer.store_id in store.waiting_for)
        known_stores = {peer.store_id for peer in peers}
        return DataCompaction(before_bytes=store.before_bytes, after_bytes=store.after_bytes,
                              tombstones_dropped=store.tombstones_dropped, indexes=indexes,
                              tombstones_kept=store.tombstones_kept,
                              waiting_for_peers=waiting_peers,
                              waiting_for_unpaired=len(store.waiting_for - known_stores))

    def _drop_deleted(self, collection: str) -> IndexCompaction:
        """``IndexManager.drop_deleted``, with an index that cannot be read left as it is and
        named in the report: one damaged collection does not stop the others' compaction nor
        the store's (a search skips passages whose documents are gone either way)."""
        try:
            return self.indexes.drop_deleted(collection)
        except (BundleError, KeywordIndexFailed) as error:
            logger.warning("compact: left the indexes of %r as they are: %s", collection, error)
            size = self.indexes.bytes_on_disk(collection)
            return IndexCompaction(collection=collection, dropped_passages=0, before_bytes=size,
                                   after_bytes=size, damaged=str(error))

    def _compact_if_worthwhile(self, *, bytes_before: int | None = None) -> None:
        """The store's compaction at the end of a write request, when due, dropping the
        tombstones no paired device sharing their collection has still to learn of."""
        self.store.compact_if_worthwhile(bytes_before=bytes_before, pairings=self._pairings)

    def _pairings(self) -> Mapping[str, Sequence[str]] | None:
        """The paired devices sharing each collection; None (every tombstone kept) when the
        trust store cannot be read: the request's writes are committed already and must not
        be reported as failed (``meshdex peers`` reports the damaged file)."""
        try:
            return self.trust.sharing()
        except TrustStoreCorrupt as error:
            logger.warning("compacting without dropping tombstones: %s", error)
            return None

    def status(self) -> NodeStatus:
        """Device and store ids, change-log position, store size, every collection's counts
        and conflict records, and the paired devices (when ``peers_source`` is set)."""
        collections = self.store.list_collections()
        try:
            peer_id = existing_device_id(self.data_dir)
        except TrustStoreCorrupt as error:
            logger.warning("status without the device id: %s", error)
            peer_id = None
        return NodeStatus(
            data_dir=self.data_dir,
            device_id=str(peer_id) if peer_id else "",
            store_id=self.device_id,
            last_seq=self.store.last_seq,
            max_hlc=self.store.max_hlc,
            store_bytes=self.store.store_bytes(),
            collections=collections,
            indexes=self.indexes.summaries(),
            decisions=self.indexes.decisions.recent(STATUS_DECISIONS),
            peers=self.peers_source() if self.peers_source is not None else [],
            conflicts={info.name: self.store.count_conflicts(info.name) for info in collections},
        )


def _rejected(position: int, doc: DocumentInput, reason: str) -> ItemOutcome:
    doc_id = doc.id if isinstance(doc.id, str) else repr(doc.id)
    return ItemOutcome(position=position, id=doc_id, outcome=Outcome.REJECTED, reason=reason)

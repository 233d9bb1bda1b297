"""``MeshdexClient``: a typed Python client for a meshdex node, with the ``Node`` method names.

Every method returns the same ``meshdex.node.records`` dataclasses the embedded ``Node``
returns and raises the same ``MeshdexError`` subclasses (decoded from the gRPC status), so code
written against one works against the other (see ``meshdex.node.cli.remote``).

Defaults: each call has a deadline (``DEFAULT_DEADLINES_S``); idempotent calls (reads, unary
Upsert of the same content, Delete) are retried by gRPC on UNAVAILABLE with backoff. TLS is
used whenever ``tls_ca`` is given or the target is not loopback (plaintext only on loopback,
like the server); the bearer token travels as ``authorization`` metadata.

Example::

    with MeshdexClient("127.0.0.1:7710", token=os.environ["MESHDEX_TOKEN"]) as client:
        for info in client.list_collections():
            print(info.name, info.document_count)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import DeadlineExceeded, InvalidArgument, MeshdexError
from meshdex.node import wire
from meshdex.node.client_tls import connection_error, read_ca
from meshdex.node.config import is_loopback_address
from meshdex.node.grpc_errors import error_from_rpc
from meshdex.node.records import (
    CollectionInfo,
    DataCompaction,
    DeleteReport,
    Document,
    DocumentInput,
    DocumentSummary,
    NodeStatus,
    SearchResults,
    SourceScope,
    UpsertReport,
)
from meshdex.node.validation import check_limit, check_search
from meshdex.proto.meshdex.v1 import node_pb2 as pb
from meshdex.proto.meshdex.v1 import node_pb2_grpc

if TYPE_CHECKING:
    from meshdex.index.params import BuildParams
    from meshdex.node.indexing import BuildReport, PinReport

DEFAULT_DEADLINES_S: dict[str, float | None] = {
    "default": 10.0,
    "Search": 30.0,
    "Upsert": 120.0,
    "UpsertDocuments": 600.0,
    "Build": None,  # a build of a large collection takes as long as it takes; cancel to stop
    "Pin": None,  # embeds every matching passage: as long as a build of them
    "ListDocuments": 600.0,  # streamed: the whole listing of a large collection
}
UPLOAD_BATCH_DOCUMENTS = 256
UPLOAD_BATCH_TEXT_BYTES = 4 * 1024 * 1024  # a quarter of the node's default message limit
CLIENT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
IDEMPOTENT_METHODS = ("ListCollections", "GetDocument", "Search", "Status", "DeleteDocuments",
                      "Upsert")
RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.2s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
SERVICE = "meshdex.v1.MeshdexNode"


def _is_loopback_node(target: str) -> bool:
    """Whether the node address is on this machine (plaintext allowed); ``InvalidArgument``
    naming the node address (not a listen address) when it is not one."""
    try:
        return is_loopback_address(target)
    except InvalidArgument:
        raise InvalidArgument(f"node address {target!r} is not HOST:PORT or unix:/path",
                              hint="e.g. --node 127.0.0.1:7710") from None


def _service_config() -> str:
    return json.dumps({"methodConfig": [{
        "name": [{"service": SERVICE, "method": method} for method in IDEMPOTENT_METHODS],
        "retryPolicy": RETRY_POLICY,
    }]})


def _batches(docs: Iterable[DocumentInput], size: int,
             max_bytes: int) -> Iterator[list[DocumentInput]]:
    """Consecutive batches of at most ``size`` documents and about ``max_bytes`` of text, so
    one stream message stays well under the node's message size limit."""
    batch: list[DocumentInput] = []
    batch_bytes = 0
    for doc in docs:
        doc_bytes = len(doc.text.encode("utf-8")) if isinstance(doc.text, str) else 0
        if batch and (len(batch) >= size or batch_bytes + doc_bytes > max_bytes):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(doc)
        batch_bytes += doc_bytes
    if batch:
        yield batch


class MeshdexClient:
    """A connection to one node. Thread-safe; close it (or use ``with``) when done."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls_ca: Path | None = None,
        tls_server_name: str | None = None,
        deadlines_s: dict[str, float | None] | None = None,
    ) -> None:
        self.target = target
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._deadlines = {**DEFAULT_DEADLINES_S, **(deadlines_s or {})}
        options = [
            ("grpc.service_config", _service_config()),
            ("grpc.enable_retries", 1),
            ("grpc.max_receive_message_length", CLIENT_MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", CLIENT_MAX_MESSAGE_BYTES),
        ]
        if tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        self._tls = tls_ca is not None or not _is_loopback_node(target)
        if self._tls:
            root = read_ca(Path(tls_ca)) if tls_ca is not None else None
            credentials = grpc.ssl_channel_credentials(root_certificates=root)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = node_pb2_grpc.MeshdexNodeStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> MeshdexClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def data_dir(self) -> Path:
        """The node's data directory (on the node's machine), as its Status reports it."""
        return self.status().data_dir

    @property
    def device_id(self) -> str:
        return self.status().device_id

    def _timeout(self, method: str, deadline: float | None = None) -> float | None:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded("the deadline passed before the call was sent")
            return remaining
        return self._deadlines.get(method, self._deadlines["default"])

    def _call(self, method: str, request: Any, *, deadline: float | None = None) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self._timeout(method, deadline),
                                               metadata=self._metadata)
        except grpc.RpcError as error:
            raise self._error(error) from None

    def _error(self, error: grpc.RpcError) -> MeshdexError:
        """The meshdex error for a failed call: what went wrong with TLS when that is why."""
        return (connection_error(error, target=self.target, tls=self._tls)
                or error_from_rpc(error))

    @property
    def channel(self) -> grpc.Channel:
        """The channel, for stubs of other services this node serves (e.g. sync admin)."""
        return self._channel

    def call_stub(self, method: Any, request: Any, *, timeout_s: float | None) -> Any:
        """Call a stub method of another service on this channel with this client's token;
        a failure raises the same ``MeshdexError`` as this client's own calls."""
        try:
            return method(request, timeout=timeout_s, metadata=self._metadata)
        except grpc.RpcError as error:
            raise self._error(error) from None

    # --- collections ---------------------------------------------------------------------

    def create_collection(self, name: str, *, embedder: EmbedderSpec | None = None,
                          chunking: ChunkingParams | None = None) -> CollectionInfo:
        """Create a collection; AlreadyExists if the name is taken."""
        request = pb.CreateCollectionRequest(
            name=name,
            embedder=wire.embedder_to_wire(embedder) if embedder else None,
            chunking=wire.chunking_to_wire(chunking) if chunking else None,
        )
        return wire.collection_from_wire(self._call("CreateCollection", request))

    def list_collections(self) -> list[CollectionInfo]:
        response = self._call("ListCollections", pb.ListCollectionsRequest())
        return [wire.collection_from_wire(info) for info in response.collections]

    def drop_collection(self, name: str) -> None:
        """Drop a collection; NotFound if it does not exist. Needs an admin token."""
        self._call("DropCollection", pb.DropCollectionRequest(name=name))

    # --- documents -----------------------------------------------------------------------

    def upsert_documents(
        self,
        collection: str,
        docs: Iterable[DocumentInput],
        *,
        create_missing: bool = False,
        progress: Callable[[int], None] | None = None,
        batch_documents: int = UPLOAD_BATCH_DOCUMENTS,
        batch_text_bytes: int = UPLOAD_BATCH_TEXT_BYTES,
    ) -> UpsertReport:
        """Add or replace documents, streamed in batches; per-item outcomes in the report.

        Each batch is committed on arrival, so if the call fails part-way the earlier batches
        are in; re-sending everything is safe (unchanged documents are no-ops).
        ``progress(n)`` is called as each batch of ``n`` documents is sent. Batches hold at
        most ``batch_documents`` documents and about ``batch_text_bytes`` of text (keep it
        under the node's ``max_message_bytes``).
        """
        if batch_documents < 1:
            raise InvalidArgument("batch_documents must be at least 1")

        def encode(batch: list[DocumentInput]) -> pb.UpsertRequest:
            if progress is not None:
                progress(len(batch))
            return pb.UpsertRequest(collection=collection, create_missing=create_missing,
                                    documents=[wire.document_input_to_wire(d) for d in batch])

        requests = (encode(batch)
                    for batch in _batches(docs, batch_documents, batch_text_bytes))
        first = next(requests, None)
        if first is None:
            return UpsertReport(collection=collection, items=[])
        second = next(requests, None)
        if second is None:  # one batch: the unary call, which gRPC may retry
            return wire.upsert_report_from_wire(self._call("Upsert", first))

        def stream() -> Iterator[pb.UpsertRequest]:
            yield first
            yield second
            yield from requests

        return wire.upsert_report_from_wire(self._call("UpsertDocuments", stream()))

    def delete_documents(
        self, collection: str, ids: Iterable[str], *, sources: Sequence[SourceScope] = ()
    ) -> DeleteReport:
        request = pb.DeleteDocumentsRequest(
            collection=collection, ids=list(ids),
            sources=[wire.source_scope_to_wire(scope) for scope in sources])
        return wire.delete_report_from_wire(self._call("DeleteDocuments", request))

    def get_document(self, collection: str, doc_id: str) -> Document:
        """One live document; NotFound if the collection or document does not exist."""
        request = pb.GetDocumentRequest(collection=collection, id=doc_id)
        return wire.document_from_wire(self._call("GetDocument", request))

    def list_documents(self, collection: str, *, id_prefix: str = "",
                       limit: int | None = None) -> Iterator[DocumentSummary]:
        """``Node.list_documents`` on the serving node, read as it streams."""
        request = pb.ListDocumentsRequest(collection=collection, id_prefix=id_prefix,
                                          limit=check_limit(limit) or 0)
        stream = self._stub.ListDocuments(request, timeout=self._timeout("ListDocuments"),
                                          metadata=self._metadata)
        try:
            yield from map(wire.document_summary_from_wire, stream)
        except grpc.RpcError as error:
            raise self._error(error) from None

    def status(self) -> NodeStatus:
        return wire.status_from_wire(self._call("Status", pb.StatusRequest()))

    def compact(self) -> DataCompaction:
        """``Node.compact`` on the serving node. Needs an admin token."""
        return wire.compaction_from_wire(self._call("Compact", pb.CompactRequest()))

    # --- index ---------------------------------------------------------------------------

    def search(self, collection: str, query: str, *, top_k: int = wire.DEFAULT_TOP_K,
               filter: str | dict[str, Any] | None = None,
               params: dict[str, Any] | None = None,
               deadline: float | None = None, mode: str | None = None) -> SearchResults:
        """The ``top_k`` closest passages; ``deadline`` is a ``time.monotonic()`` instant."""
        check_search(query, top_k)
        request = pb.SearchRequest(
            collection=collection, query=query, top_k=top_k,
            filter=wire.to_json(filter) if isinstance(filter, dict) else (filter or ""),
            params_json=wire.to_json(params) if params else "",
            mode=mode or "",
        )
        return wire.search_result_from_wire(self._call("Search", request, deadline=deadline))

    def build(
        self,
        collection: str,
        *,
        params: BuildParams | dict[str, Any] | None = None,
        rebuild: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> BuildReport:
        """Build the collection's index, calling ``progress(stage, done, total)`` as it goes."""
        if params is not None and not isinstance(params, dict):
            params = params.to_dict()
        request = pb.BuildRequest(collection=collection, rebuild=rebuild,
                                  params_json=wire.to_json(params) if params else "")
        summary = self._streamed("Build", request, progress)
        return wire.build_report_from_wire(summary)

    def pin(self, collection: str, filter: str | dict[str, Any],
            progress: Callable[[int, int], None] | None = None) -> PinReport:
        """``Node.pin`` on the serving node, calling ``progress(done, total)`` as it embeds."""
        request = pb.PinRequest(collection=collection,
                                filter=wire.to_json(filter) if isinstance(filter, dict) else filter)
        summary = self._streamed(
            "Pin", request,
            None if progress is None else lambda _stage, done, total: progress(done, total))
        return wire.pin_report_from_wire(summary)

    def unpin(self, collection: str, filter: str | dict[str, Any] | None) -> PinReport:
        """``Node.unpin`` on the serving node (None: every pin)."""
        request = pb.UnpinRequest(
            collection=collection, all=filter is None,
            filter=wire.to_json(filter) if isinstance(filter, dict) else filter or "")
        return wire.pin_report_from_wire(self._call("Unpin", request).summary_json)

    def _streamed(self, method: str, request: Any,
                  progress: Callable[[str, int, int], None] | None) -> str:
        """Relay a streamed build's progress; the summary JSON of its last message."""
        try:
            for update in getattr(self._stub, method)(request, timeout=self._timeout(method),
                                                      metadata=self._metadata):
                if update.done:
                    return update.summary_json
                if progress is not None:
                    progress(update.stage, update.done_items, update.total_items)
        except grpc.RpcError as error:
            raise self._error(error) from None
        raise DeadlineExceeded(f"the {method.lower()} stream ended without a result",
                               hint=f"the node may have shut down; run {method.lower()} again")

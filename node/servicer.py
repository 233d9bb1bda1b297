"""The ``meshdex.v1.MeshdexNode`` servicer: decode the request, call the ``Node``, encode.

No domain logic lives here. Errors are raised as ``MeshdexError`` and mapped to status codes by
``ErrorMappingInterceptor``; authentication and concurrency limits are interceptors too.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import grpc
from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import DeadlineExceeded, InvalidArgument
from meshdex.index.params import BuildParams
from meshdex.node import wire
from meshdex.node.indexing import BuildReport, PinReport
from meshdex.node.records import (
    CollectionInfo,
    DeleteReport,
    Document,
    DocumentInput,
    NodeStatus,
    SearchResults,
    UpsertReport,
)
from meshdex.proto.meshdex.v1 import node_pb2 as pb
from meshdex.proto.meshdex.v1 import node_pb2_grpc

# gRPC reports "no deadline" as a time remaining of centuries; anything beyond this is none.
NO_DEADLINE_S = 10.0**8
BUILD_PROGRESS_POLL_S = 0.25

ProgressCallback = Callable[[str, int, int], None]  # (stage, done_items, total_items)


def stream_build(run: Callable[[ProgressCallback], Any], context: grpc.ServicerContext, *,
                 name: str) -> Iterator[pb.BuildProgress]:
    """Run ``run(progress)`` on its own thread and relay its progress callbacks as messages;
    the last message carries ``result.to_dict()`` as its summary. A build that outlives its
    caller stops at its next progress callback. Shared by every RPC that streams a build."""
    updates: queue.Queue[pb.BuildProgress] = queue.Queue()
    outcome: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if not context.is_active():
            raise DeadlineExceeded("build abandoned: the caller went away")
        updates.put(pb.BuildProgress(stage=stage, done_items=done, total_items=total))

    def work() -> None:
        try:
            outcome["result"] = run(progress)
        except BaseException as error:  # re-raised on the RPC thread below
            outcome["error"] = error

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    while worker.is_alive() or not updates.empty():
        try:
            yield updates.get(timeout=BUILD_PROGRESS_POLL_S)
        except queue.Empty:
            continue
    if "error" in outcome:
        raise outcome["error"]
    yield pb.BuildProgress(stage="done", done=True,
                           summary_json=wire.to_json(outcome["result"].to_dict()))


class NodeAPI(Protocol):
    """What the servicer needs of ``meshdex.node.service.Node`` (and the client mirrors).

    Every method may raise ``MeshdexError`` subclasses; the servicer never catches them.
    Implementations must be safe to call from many threads at once.
    """

    def create_collection(self, name: str, *, embedder: EmbedderSpec,
                          chunking: ChunkingParams) -> CollectionInfo: ...

    def list_collections(self) -> list[CollectionInfo]: ...

    def drop_collection(self, name: str) -> None: ...

    def upsert_documents(self, collection: str, docs: Iterable[DocumentInput], *,
                         create_missing: bool = False) -> UpsertReport: ...

    def delete_documents(self, collection: str, ids: Iterable[str]) -> DeleteReport: ...

    def get_document(self, collection: str, doc_id: str) -> Document: ...

    def status(self) -> NodeStatus: ...

    def search(self, collection: str, query: str, *, top_k: int, filter: str | None,
               params: dict[str, Any] | None, deadline: float | None,
               mode: str | None) -> SearchResults: ...

    def build(self, collection: str, *, params: BuildParams | None = None, rebuild: bool = False,
              progress: ProgressCallback | None = None) -> BuildReport: ...

    def pin(self, collection: str, filter: str,
            progress: Callable[[int, int], None] | None = None) -> PinReport: ...

    def unpin(self, collection: str, filter: str | None) -> PinReport: ...


def call_deadline(context: grpc.ServicerContext) -> float | None:
    """The caller's deadline as a ``time.monotonic()`` instant, or None if it set none."""
    remaining = context.time_remaining()
    if remaining is None or remaining > NO_DEADLINE_S:
        return None
    return time.monotonic() + remaining


class MeshdexNodeServicer(node_pb2_grpc.MeshdexNodeServicer):
    """Thin adapter from ``meshdex.v1.MeshdexNode`` calls to a ``NodeAPI``."""

    def __init__(self, node: NodeAPI, *, max_batch_documents: int) -> None:
        self.node = node
        self.max_batch_documents = max_batch_documents

    def CreateCollection(self, request: pb.CreateCollectionRequest,
                         context: grpc.ServicerContext) -> pb.Collection:
        info = self.node.create_collection(
            wire.require(request.name, "name"),
            embedder=wire.embedder_from_wire(request.embedder),
            chunking=wire.chunking_from_wire(request.chunking),
        )
        return wire.collection_to_wire(info)

    def ListCollections(self, request: pb.ListCollectionsRequest,
                        context: grpc.ServicerContext) -> pb.ListCollectionsResponse:
        return pb.ListCollectionsResponse(
            collections=[wire.collection_to_wire(info) for info in self.node.list_collections()]
        )

    def DropCollection(self, request: pb.DropCollectionRequest,
                       context: grpc.ServicerContext) -> pb.DropCollectionResponse:
        self.node.drop_collection(wire.require(request.name, "name"))
        return pb.DropCollectionResponse()

    def _upsert(self, requests: Iterable[pb.UpsertRequest]) -> UpsertReport:
        collection = ""
        create_missing = False
        parts = []
        position = 0
        for request in requests:
            if request.collection and collection and request.collection != collection:
                raise InvalidArgument(
                    f"one upload goes to one collection: got {request.collection!r} "
                    f"after {collection!r}")
            if not collection:
                collection = wire.require(request.collection, "collection")
                create_missing = request.create_missing
            batch = wire.decode_batch(request.documents, first_position=position,
                                      max_documents=self.max_batch_documents)
            position += len(request.documents)
            report = (self.node.upsert_documents(collection, batch.documents,
                                                 create_missing=create_missing)
                      if batch.documents else None)
            parts.append((batch, report))
        if not collection:
            raise InvalidArgument("collection is required (the upload held no messages)")
        return wire.merge_reports(collection, parts)

    def Upsert(self, request: pb.UpsertRequest,
               context: grpc.ServicerContext) -> pb.UpsertResponse:
        return wire.upsert_report_to_wire(self._upsert([request]))

    def UpsertDocuments(self, request_iterator: Iterator[pb.UpsertRequest],
                        context: grpc.ServicerContext) -> pb.UpsertResponse:
        return wire.upsert_report_to_wire(self._upsert(request_iterator))

    def DeleteDocuments(self, request: pb.DeleteDocumentsRequest,
                        context: grpc.ServicerContext) -> pb.DeleteDocumentsResponse:
        if not request.ids and not request.sources:
            raise InvalidArgument("ids or sources is required (at least one document id)")
        report = self.node.delete_documents(
            wire.require(request.collection, "collection"), list(request.ids),
            sources=[wire.source_scope_from_wire(scope) for scope in request.sources])
        return wire.delete_report_to_wire(report)

    def GetDocument(self, request: pb.GetDocumentRequest,
                    context: grpc.ServicerContext) -> pb.Document:
        document = self.node.get_document(wire.require(request.collection, "collection"),
                                          wire.require(request.id, "id"))
        return wire.document_to_wire(document)

    def ListDocuments(self, request: pb.ListDocumentsRequest,
                      context: grpc.ServicerContext) -> Iterator[pb.DocumentSummary]:
        summaries = self.node.list_documents(
            wire.require(request.collection, "collection"), id_prefix=request.id_prefix,
            limit=request.limit or None)
        return map(wire.document_summary_to_wire, summaries)

    def Status(self, request: pb.StatusRequest,
               context: grpc.ServicerContext) -> pb.NodeStatus:
        return wire.status_to_wire(self.node.status())

    def Compact(self, request: pb.CompactRequest,
                context: grpc.ServicerContext) -> pb.CompactResponse:
        return wire.compaction_to_wire(self.node.compact())

    def Search(self, request: pb.SearchRequest,
               context: grpc.ServicerContext) -> pb.SearchResponse:
        call = wire.search_request_from_wire(request)
        result = self.node.search(call.collection, call.query, top_k=call.top_k,
                                  filter=call.filter, params=call.params,
                                  deadline=call_deadline(context), mode=call.mode)
        return wire.search_result_to_wire(result)

    def Build(self, request: pb.BuildRequest,
              context: grpc.ServicerContext) -> Iterator[pb.BuildProgress]:
        call = wire.build_request_from_wire(request)
        return stream_build(
            lambda progress: self.node.build(call.collection, params=call.params,
                                             rebuild=call.rebuild, progress=progress),
            context, name=f"build-{call.collection}")

    def Pin(self, request: pb.PinRequest,
            context: grpc.ServicerContext) -> Iterator[pb.BuildProgress]:
        collection = wire.require(request.collection, "collection")
        filter_spec = wire.require(request.filter, "filter")
        return stream_build(
            lambda progress: self.node.pin(
                collection, filter_spec,
                progress=lambda done, total: progress("embedding", done, total)),
            context, name=f"pin-{collection}")

    def Unpin(self, request: pb.UnpinRequest,
              context: grpc.ServicerContext) -> pb.UnpinResponse:
        collection = wire.require(request.collection, "collection")
        if request.all == bool(request.filter):
            raise InvalidArgument("give exactly one of filter and all")
        report = self.node.unpin(collection, None if request.all else request.filter)
        return pb.UnpinResponse(summary_json=wire.to_json(report.to_dict()))

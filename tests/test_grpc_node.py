"""Every RPC of meshdex.v1.MeshdexNode against a real node (real LMDB) on a loopback port.

Round trips go through ``MeshdexClient`` (what users call); bad inputs go through the raw stub
so the exact status code and message are checked.
"""

from __future__ import annotations

import json

import grpc
import pytest
from grpc_support import started_node
from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import AlreadyExists, InvalidArgument, NotFound
from meshdex.node.records import DocumentInput, Outcome
from meshdex.proto.meshdex.v1 import node_pb2 as pb
from meshdex.proto.meshdex.v1 import node_pb2_grpc

MAX_BATCH_DOCUMENTS = 5
MAX_MESSAGE_BYTES = 64 * 1024


@pytest.fixture
def server(tmp_path):
    with started_node(tmp_path, max_batch_documents=MAX_BATCH_DOCUMENTS,
                      max_message_bytes=MAX_MESSAGE_BYTES) as server:
        with server.client() as client:
            client.create_collection("docs")
            client.upsert_documents("docs", [
                DocumentInput(id="a", text="alpha text", metadata={"lang": "en", "year": 2021},
                              source="notes/a.md"),
            ])
        yield server


@pytest.fixture
def client(server):
    with server.client() as client:
        yield client


@pytest.fixture
def stub(server):
    channel = server.channel()
    yield node_pb2_grpc.MeshdexNodeStub(channel), server.metadata("admin")
    channel.close()


def test_create_list_and_drop_collections(client):
    info = client.create_collection(
        "papers", embedder=EmbedderSpec(precision="bf16"),
        chunking=ChunkingParams(max_chars=500, overlap_chars=50))
    assert (info.name, info.embedder.precision, info.chunking.max_chars) == ("papers", "bf16", 500)
    assert [c.name for c in client.list_collections()] == ["docs", "papers"]
    client.drop_collection("papers")
    assert [c.name for c in client.list_collections()] == ["docs"]
    with pytest.raises(NotFound, match="papers"):
        client.drop_collection("papers")


def test_create_collection_twice_is_already_exists(client):
    with pytest.raises(AlreadyExists, match="docs"):
        client.create_collection("docs")


def test_upsert_get_and_delete_round_trip(client):
    report = client.upsert_documents("docs", [
        DocumentInput(id="b", text="beta text", metadata={"tags": ["x", "y"], "n": 1.5}),
        DocumentInput(id="a", text="alpha text", metadata={"lang": "en", "year": 2021},
                      source="notes/a.md"),
    ])
    assert [(i.id, i.outcome) for i in report.items] == [("b", Outcome.ADDED),
                                                         ("a", Outcome.UNCHANGED)]
    document = client.get_document("docs", "b")
    assert (document.text, document.metadata, document.source) == (
        "beta text", {"tags": ["x", "y"], "n": 1.5}, None)
    assert document.passage_keys and all(len(key) == 32 for key in document.passage_keys)
    assert client.get_document("docs", "a").source == "notes/a.md"

    deleted = client.delete_documents("docs", ["b", "nope"])
    assert (deleted.deleted, deleted.not_found) == (["b"], ["nope"])
    with pytest.raises(NotFound, match="b"):
        client.get_document("docs", "b")


def test_streamed_upsert_spans_many_messages_and_reports_positions(client):
    docs = [DocumentInput(id=f"d{i}", text=f"document number {i}") for i in range(12)]
    docs[7] = DocumentInput(id="d7", text="")  # rejected by the node, the rest go in
    report = client.upsert_documents("docs", docs, batch_documents=MAX_BATCH_DOCUMENTS)
    assert [item.position for item in report.items] == list(range(12))
    assert report.count(Outcome.ADDED) == 11
    assert [(r.position, r.id) for r in report.rejected] == [(7, "d7")]
    assert "empty" in report.rejected[0].reason
    assert client.get_document("docs", "d11").text == "document number 11"


def test_an_upload_larger_than_one_message_is_streamed_in_batches(client):
    docs = [DocumentInput(id=f"big{i}", text=f"{i} " + "word " * 4000) for i in range(8)]
    sent = []
    report = client.upsert_documents("docs", docs, batch_text_bytes=MAX_MESSAGE_BYTES // 2,
                                      progress=sent.append)
    assert sum(len(d.text) for d in docs) > 2 * MAX_MESSAGE_BYTES
    assert len(sent) > 1 and sum(sent) == 8
    assert report.count(Outcome.ADDED) == 8
    assert client.get_document("docs", "big7").text == docs[7].text


def test_upsert_can_create_the_missing_collection(client):
    report = client.upsert_documents("fresh", [DocumentInput(id="x", text="hello")],
                                     create_missing=True)
    assert report.created_collection
    with pytest.raises(NotFound, match="other"):
        client.upsert_documents("other", [DocumentInput(id="x", text="hello")])


def test_status_reports_counts(client):
    status = client.status()
    (docs,) = status.collections
    assert (docs.name, docs.document_count) == ("docs", 1)
    assert status.last_seq >= 1 and status.store_id and status.max_hlc is not None


def test_status_carries_index_generations_and_decisions(client):
    assert client.status().indexes == []
    client.build("docs")
    client.upsert_documents("docs", [DocumentInput(id="b", text="beta text", metadata={},
                                                   source=None)])
    status = client.status()
    (index,) = status.indexes
    assert (index.collection, index.generation, index.passages, index.stale) == (
        "docs", 1, 1, True)
    assert len(index.model_hash) == 64
    (decision,) = status.decisions
    assert (decision.trigger, decision.decision, decision.reasons, decision.generation) == (
        "build", "built", ("no index yet",), 1)


def test_metadata_that_is_not_a_json_object_is_rejected_per_item(stub):
    call, metadata = stub
    response = call.Upsert(pb.UpsertRequest(collection="docs", documents=[
        pb.DocumentInput(id="good", text="fine", metadata_json='{"k": 1}'),
        pb.DocumentInput(id="list", text="fine", metadata_json="[1, 2]"),
        pb.DocumentInput(id="broken", text="fine", metadata_json="{nope"),
    ]), metadata=metadata)
    outcomes = [(i.id, pb.ItemOutcome.Outcome.Name(i.outcome)) for i in response.items]
    assert outcomes == [("good", "ADDED"), ("list", "REJECTED"), ("broken", "REJECTED")]
    assert "must be a JSON object" in response.items[1].reason
    assert "not valid JSON" in response.items[2].reason


def _too_big_upsert() -> pb.UpsertRequest:
    return pb.UpsertRequest(collection="docs", documents=[
        pb.DocumentInput(id="big", text="x" * (MAX_MESSAGE_BYTES + 1))])


def _too_many_upsert() -> pb.UpsertRequest:
    return pb.UpsertRequest(collection="docs", documents=[
        pb.DocumentInput(id=f"n{i}", text="t") for i in range(MAX_BATCH_DOCUMENTS + 1)])


BAD_REQUESTS = [
    ("CreateCollection", pb.CreateCollectionRequest(), "INVALID_ARGUMENT", "name is required"),
    ("CreateCollection", pb.CreateCollectionRequest(name="no spaces"), "INVALID_ARGUMENT",
     "invalid collection name"),
    ("CreateCollection", pb.CreateCollectionRequest(name="docs"), "ALREADY_EXISTS", "docs"),
    ("CreateCollection", pb.CreateCollectionRequest(
        name="x", embedder=pb.EmbedderSpec(kind="cloud")), "INVALID_ARGUMENT", "embedder kind"),
    ("CreateCollection", pb.CreateCollectionRequest(
        name="x", embedder=pb.EmbedderSpec(kind="http")), "INVALID_ARGUMENT", "needs a url"),
    ("CreateCollection", pb.CreateCollectionRequest(
        name="x", chunking=pb.ChunkingParams(max_chars=100, overlap_chars=100)),
     "INVALID_ARGUMENT", "overlap_chars"),
    ("DropCollection", pb.DropCollectionRequest(name="ghost"), "NOT_FOUND", "ghost"),
    ("Upsert", pb.UpsertRequest(documents=[pb.DocumentInput(id="a", text="t")]),
     "INVALID_ARGUMENT", "collection is required"),
    ("Upsert", pb.UpsertRequest(collection="ghost", documents=[
        pb.DocumentInput(id="a", text="t")]), "NOT_FOUND", "ghost"),
    ("Upsert", _too_many_upsert(), "RESOURCE_EXHAUSTED", f"limit is {MAX_BATCH_DOCUMENTS}"),
    ("Upsert", _too_big_upsert(), "RESOURCE_EXHAUSTED", "larger than max"),
    ("DeleteDocuments", pb.DeleteDocumentsRequest(collection="docs"), "INVALID_ARGUMENT",
     "ids or sources is required"),
    ("DeleteDocuments", pb.DeleteDocumentsRequest(collection="ghost", ids=["a"]), "NOT_FOUND",
     "ghost"),
    ("GetDocument", pb.GetDocumentRequest(collection="docs"), "INVALID_ARGUMENT",
     "id is required"),
    ("GetDocument", pb.GetDocumentRequest(collection="docs", id="zzz"), "NOT_FOUND", "zzz"),
    ("GetDocument", pb.GetDocumentRequest(collection="ghost", id="a"), "NOT_FOUND", "ghost"),
    ("Search", pb.SearchRequest(collection="docs", query="  "), "INVALID_ARGUMENT",
     "query must be non-empty text"),
    ("Search", pb.SearchRequest(collection="docs", query="q", top_k=5000), "INVALID_ARGUMENT",
     "top_k must be an integer in [1, 1000]"),
    ("Search", pb.SearchRequest(collection="docs", query="q"), "FAILED_PRECONDITION",
     "meshdex build"),
    ("Search", pb.SearchRequest(collection="ghost", query="q"), "NOT_FOUND", "ghost"),
    ("Search", pb.SearchRequest(collection="docs", query="q", params_json="[1]"),
     "INVALID_ARGUMENT", "params_json must be a JSON object"),
    ("Search", pb.SearchRequest(query="q"), "INVALID_ARGUMENT", "collection is required"),
    ("Build", pb.BuildRequest(), "INVALID_ARGUMENT", "collection is required"),
    ("Build", pb.BuildRequest(collection="ghost"), "NOT_FOUND", "ghost"),
    ("Build", pb.BuildRequest(collection="docs", params_json='{"MM": 3}'), "INVALID_ARGUMENT",
     "MM"),
    ("Build", pb.BuildRequest(collection="docs", params_json="3"), "INVALID_ARGUMENT",
     "params_json must be a JSON object"),
]


@pytest.mark.parametrize(("method", "request_message", "code", "fragment"), BAD_REQUESTS,
                         ids=[f"{m}-{c}-{f}" for m, _, c, f in BAD_REQUESTS])
def test_bad_input_gets_its_status_code_and_message(stub, method, request_message, code,
                                                    fragment):
    call, metadata = stub
    rpc = getattr(call, method)
    with pytest.raises(grpc.RpcError) as failure:
        result = rpc(request_message, metadata=metadata, timeout=10)
        if method == "Build":
            list(result)
    assert failure.value.code().name == code
    assert fragment in failure.value.details()


def test_a_stream_cannot_switch_collections(stub, client):
    call, metadata = stub
    client.create_collection("other")
    messages = iter([
        pb.UpsertRequest(collection="docs", documents=[pb.DocumentInput(id="s1", text="one")]),
        pb.UpsertRequest(collection="other", documents=[pb.DocumentInput(id="s2", text="two")]),
    ])
    with pytest.raises(grpc.RpcError) as failure:
        call.UpsertDocuments(messages, metadata=metadata, timeout=10)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "one upload goes to one collection" in failure.value.details()
    # the first batch was acknowledged per message; the refused one never went in
    assert client.get_document("docs", "s1").text == "one"
    with pytest.raises(NotFound):
        client.get_document("other", "s2")


def test_client_raises_domain_errors_with_the_servers_message(client):
    with pytest.raises(InvalidArgument, match="invalid collection name"):
        client.create_collection("bad/name")


def test_metadata_json_round_trips_numbers_exactly(client):
    metadata = {"int": 3, "float": 3.0, "nested": {"list": [1, "two", None, True]}}
    client.upsert_documents("docs", [DocumentInput(id="m", text="meta", metadata=metadata)])
    got = client.get_document("docs", "m").metadata
    assert json.dumps(got, sort_keys=True) == json.dumps(metadata, sort_keys=True)
    assert isinstance(got["int"], int) and isinstance(got["float"], float)

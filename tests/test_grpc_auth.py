"""Bearer-token authentication and scopes on a real node: who may call what."""

from __future__ import annotations

import stat

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_support import started_node
from meshdex.index.errors import NotFound, PermissionDenied, Unauthenticated
from meshdex.node.auth import (
    METHOD_SCOPES,
    SCOPES,
    SYNC_ADMIN_METHOD_SCOPES,
    TokenStore,
    scope_allows,
)
from meshdex.node.client import MeshdexClient
from meshdex.node.config import NodeConfig
from meshdex.node.server import start_server
from meshdex.node.service import Node
from meshdex.proto.meshdex.v1 import node_pb2 as pb
from meshdex.proto.meshdex.v1 import node_pb2_grpc, sync_pb2

# A cheap request per RPC; what matters is whether auth lets it through.
REQUESTS = {
    "CreateCollection": pb.CreateCollectionRequest(),
    "ListCollections": pb.ListCollectionsRequest(),
    "DropCollection": pb.DropCollectionRequest(),
    "Upsert": pb.UpsertRequest(),
    "UpsertDocuments": pb.UpsertRequest(),  # sent as a one-message stream
    "DeleteDocuments": pb.DeleteDocumentsRequest(),
    "GetDocument": pb.GetDocumentRequest(),
    "ListDocuments": pb.ListDocumentsRequest(),
    "Search": pb.SearchRequest(),
    "Status": pb.StatusRequest(),
    "Build": pb.BuildRequest(),
    "Pin": pb.PinRequest(),
    "Unpin": pb.UnpinRequest(),
    "Compact": pb.CompactRequest(),
}
SERVICE = pb.DESCRIPTOR.services_by_name["MeshdexNode"]


@pytest.fixture
def server(tmp_path):
    with started_node(tmp_path) as server:
        yield server


def _code_of(server, method: str, metadata) -> grpc.StatusCode:
    with server.channel() as channel:
        stub = node_pb2_grpc.MeshdexNodeStub(channel)
        request = REQUESTS[method]
        if method == "UpsertDocuments":
            request = iter([request])
        try:
            result = getattr(stub, method)(request, metadata=metadata, timeout=10)
            # streams: their status comes with the first read
            if method in ("Build", "Pin", "ListDocuments"):
                list(result)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_every_rpc_of_both_services_has_a_scope():
    assert set(METHOD_SCOPES) == {method.name for method in SERVICE.methods}
    assert set(METHOD_SCOPES.values()) <= set(SCOPES)
    admin = sync_pb2.DESCRIPTOR.services_by_name["MeshdexSyncAdmin"]
    assert set(SYNC_ADMIN_METHOD_SCOPES) == {method.name for method in admin.methods}
    assert set(SYNC_ADMIN_METHOD_SCOPES.values()) <= set(SCOPES)


@pytest.mark.parametrize("method", sorted(METHOD_SCOPES))
@pytest.mark.parametrize("scope", SCOPES)
def test_scope_table_is_enforced_for_every_rpc(server, method, scope):
    code = _code_of(server, method, server.metadata(scope))
    if scope_allows(scope, METHOD_SCOPES[method]):
        assert code not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
    else:
        assert code == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("method", sorted(METHOD_SCOPES))
def test_calls_without_a_token_are_unauthenticated(server, method):
    assert _code_of(server, method, ()) == grpc.StatusCode.UNAUTHENTICATED


BAD_HEADERS = [
    ("Basic dXNlcjpwYXNz", "must be `Bearer <token>`"),
    ("Bearer ", "must be `Bearer <token>`"),
    ("Bearer not-a-token", "malformed bearer token"),
    ("Bearer mdx_00000000_forged", "unknown or revoked token"),
]


@pytest.mark.parametrize(("header", "message"), BAD_HEADERS)
def test_malformed_or_unknown_tokens_are_refused_with_a_reason(server, header, message):
    with server.channel() as channel:
        stub = node_pb2_grpc.MeshdexNodeStub(channel)
        with pytest.raises(grpc.RpcError) as failure:
            stub.Status(pb.StatusRequest(), metadata=(("authorization", header),), timeout=10)
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert message in failure.value.details()


def test_client_errors_name_the_needed_scope(server):
    with server.client("read") as client:
        assert client.list_collections() == []
        with pytest.raises(PermissionDenied, match="needs 'write'"):
            client.create_collection("x")
    with server.client(None) as client, pytest.raises(Unauthenticated,
                                                      match="token create --scope read"):
        client.status()


def test_a_revoked_token_is_refused_on_the_next_call(server, tmp_path):
    tokens = TokenStore(tmp_path)
    record, token = tokens.create("read")
    with MeshdexClient(server.address, token=token) as client:
        assert client.status().collections == []
        tokens.revoke(record.token_id)
        with pytest.raises(Unauthenticated, match="revoked"):
            client.status()


def test_tokens_are_stored_hashed_in_a_private_file(tmp_path):
    tokens = TokenStore(tmp_path)
    record, token = tokens.create("write", label="laptop")
    text = tokens.path.read_text()
    assert token not in text and record.sha256 in text
    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600
    assert [(r.token_id, r.scope, r.label) for r in tokens.list()] == [
        (record.token_id, "write", "laptop")]
    with pytest.raises(NotFound, match="no token"):
        tokens.revoke("deadbeef")


def test_health_and_reflection_need_no_token(server):
    with server.channel() as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="meshdex.v1.MeshdexNode"), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_loopback_without_tokens_only_when_configured_and_no_token_exists(tmp_path):
    with Node.open(tmp_path) as node:
        for allow, expected in ((False, "refused"), (True, "allowed")):
            config = NodeConfig(data_dir=tmp_path, listen="127.0.0.1:0",
                                allow_unauthenticated_loopback=allow)
            running = start_server(node, config)
            try:
                with MeshdexClient(running.address) as client:
                    try:
                        client.status()
                        outcome = "allowed"
                    except Unauthenticated:
                        outcome = "refused"
                    assert outcome == expected
                    if allow:  # once a token exists, tokens are required again
                        TokenStore(tmp_path).create("read")
                        with pytest.raises(Unauthenticated):
                            client.status()
            finally:
                running.stop(0)

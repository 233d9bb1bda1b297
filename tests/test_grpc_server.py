"""Server behaviour: health, reflection, deadlines, overload, TLS, unix sockets, shutdown state.

Deadline and overload mechanics use ``BlockingNode`` (a real ``Node`` whose ``get_document``
can be held) because the behaviour under test is the server's, not the store's.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_support import self_signed_certificate, started_node
from meshdex.index.errors import DeadlineExceeded, MeshdexError, ResourceExhausted
from meshdex.node.client import MeshdexClient
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node
from meshdex.proto.meshdex.v1 import node_pb2 as pb
from meshdex.proto.meshdex.v1 import node_pb2_grpc

SERVICE = "meshdex.v1.MeshdexNode"


class BlockingNode:
    """A real Node whose ``get_document`` waits until ``release`` is set (or ``hold_s``)."""

    def __init__(self, node: Node, *, hold_s: float = 30.0) -> None:
        self._node = node
        self.hold_s = hold_s
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def __getattr__(self, name):
        return getattr(self._node, name)

    def get_document(self, collection, doc_id):
        self.entered.release()
        self.release.wait(self.hold_s)
        return self._node.get_document(collection, doc_id)


@pytest.fixture
def node(tmp_path):
    with Node.open(tmp_path) as node:
        node.create_collection("docs")
        node.upsert_documents("docs", [DocumentInput(id="a", text="alpha")])
        yield node


def _health(channel, service=SERVICE):
    return health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_health_is_serving_then_not_serving_during_shutdown(tmp_path, node):
    blocking = BlockingNode(node)
    with started_node(tmp_path, node=blocking, grace_period_s=5) as server:
        channel = server.channel()
        assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert _health(channel, "") == health_pb2.HealthCheckResponse.SERVING
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        with ThreadPoolExecutor(1) as pool, server.client() as client:
            in_flight = pool.submit(client.get_document, "docs", "a")
            blocking.entered.acquire(timeout=5)
            stopping = threading.Thread(target=server.running.stop, args=(5,))
            stopping.start()
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            blocking.release.set()
            assert in_flight.result(timeout=10).text == "alpha"  # finished within the grace
            stopping.join(10)
        channel.close()


def test_reflection_lists_and_describes_the_service(tmp_path):
    with started_node(tmp_path) as server, server.channel() as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = iter([
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
        ])
        listed, described = list(stub.ServerReflectionInfo(requests, timeout=10))
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names
    assert described.file_descriptor_response.file_descriptor_proto
    assert b"MeshdexNode" in described.file_descriptor_response.file_descriptor_proto[0]


def test_a_call_past_its_deadline_is_deadline_exceeded(tmp_path, node):
    blocking = BlockingNode(node, hold_s=2.0)
    with started_node(tmp_path, node=blocking) as server:
        with server.client(deadlines_s={"default": 0.3}) as client:
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                client.get_document("docs", "a")
            assert time.monotonic() - started < 1.5


def test_search_receives_the_callers_deadline(tmp_path, node):
    seen = {}

    class DeadlineRecorder(BlockingNode):
        def search(self, collection, query, **options):
            seen.update(options, now=time.monotonic())
            raise DeadlineExceeded("stopped recomputing: the deadline passed")

    with started_node(tmp_path, node=DeadlineRecorder(node)) as server, server.client() as client:
        with pytest.raises(DeadlineExceeded, match="stopped recomputing"):
            client.search("docs", "alpha", deadline=time.monotonic() + 20.0)
    # the client's 20 s, less transit; gRPC's timeout header may round it up by a fraction
    assert 0.0 < seen["deadline"] - seen["now"] <= 20.5
    assert seen["top_k"] == 5 and seen["filter"] is None  # Node.search's default top_k


def test_overload_is_resource_exhausted_not_a_queue(tmp_path, node):
    blocking = BlockingNode(node)
    with started_node(tmp_path, node=blocking, max_concurrent_rpcs=2) as server:
        with ThreadPoolExecutor(2) as pool, server.client() as client:
            busy = [pool.submit(client.get_document, "docs", "a") for _ in range(2)]
            for _ in busy:
                assert blocking.entered.acquire(timeout=5)
            started = time.monotonic()
            with pytest.raises(ResourceExhausted, match="node is busy: 2 calls"):
                client.status()
            assert time.monotonic() - started < 1.0  # refused at once, not queued
            with server.channel() as channel:  # probes still answer under load, saying so
                assert _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
                assert _health(channel, "") == health_pb2.HealthCheckResponse.SERVING
            blocking.release.set()
            assert [f.result(timeout=10).id for f in busy] == ["a", "a"]
            with server.channel() as channel:
                assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
            assert client.status().collections[0].name == "docs"


LOCAL_NAMES = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]


def test_tls_beyond_loopback_with_a_self_signed_certificate(tmp_path, node):
    cert, key = self_signed_certificate(tmp_path, LOCAL_NAMES)
    with started_node(tmp_path, node=node, listen="0.0.0.0:0", tls_cert=cert,
                      tls_key=key) as server:
        port = server.address.rpartition(":")[2]
        with MeshdexClient(f"127.0.0.1:{port}", token=server.tokens["read"],
                           tls_ca=cert) as client:
            assert [c.name for c in client.list_collections()] == ["docs"]
        plaintext = grpc.insecure_channel(f"127.0.0.1:{port}")
        with pytest.raises(grpc.RpcError) as failure:
            node_pb2_grpc.MeshdexNodeStub(plaintext).Status(
                pb.StatusRequest(), metadata=server.metadata("read"), timeout=3)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        plaintext.close()
        # a CA the server's certificate is not from
        other_cert, _ = self_signed_certificate(tmp_path / "other", LOCAL_NAMES)
        with MeshdexClient(f"127.0.0.1:{port}", token=server.tokens["read"],
                           tls_ca=other_cert, deadlines_s={"default": 3}) as client:
            with pytest.raises(MeshdexError, match="certificate is not trusted"):
                client.status()


def test_plaintext_beyond_loopback_is_refused(tmp_path, node):
    with pytest.raises(MeshdexError, match="without TLS"):
        with started_node(tmp_path, node=node, listen="0.0.0.0:0"):
            pass


def test_unix_socket_serves_plaintext(tmp_path, node):
    socket = f"unix:{tmp_path}/node.sock"
    with started_node(tmp_path, node=node, listen=socket) as server:
        assert server.address == socket
        with server.client("read") as client:
            assert client.get_document("docs", "a").text == "alpha"

"""Who gets a call slot on a real ``meshdex serve`` process: authentication before admission,
idle limits on request streams, a per-token cap, and health while saturated (issue 8, item 1).

Each stalled call is a client-streaming call whose request iterator never yields, the cheapest
way to hold a server call open.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_support import ServeProcess
from meshdex.node.auth import SERVICE_NAME, TokenStore
from meshdex.proto.meshdex.v1 import node_pb2 as pb

STALLED_CALLS = 20
STATUS_METHOD = f"/{SERVICE_NAME}/Status"
UPSERT_STREAM_METHOD = f"/{SERVICE_NAME}/UpsertDocuments"


def _never_yields(release: threading.Event):
    release.wait()
    return
    yield  # a generator that sends nothing until released


def _stall(stack: ExitStack, address: str, method: str, release: threading.Event,
           metadata=()) -> grpc.Future:
    """Open a channel and start a client-streaming call on ``method`` that sends nothing."""
    channel = stack.enter_context(grpc.insecure_channel(address))
    call = channel.stream_unary(
        method, request_serializer=pb.StatusRequest.SerializeToString,
        response_deserializer=pb.NodeStatus.FromString,
    ).future(_never_yields(release), metadata=metadata, timeout=120)
    stack.callback(call.cancel)
    return call


def _status_code(address: str, token: str) -> grpc.StatusCode:
    with grpc.insecure_channel(address) as channel:
        try:
            channel.unary_unary(STATUS_METHOD,
                                request_serializer=pb.StatusRequest.SerializeToString,
                                response_deserializer=pb.NodeStatus.FromString)(
                pb.StatusRequest(), metadata=(("authorization", f"Bearer {token}"),),
                timeout=10)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def _health(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5).status


@pytest.fixture
def tokens(tmp_path):
    store = TokenStore(tmp_path)
    return {scope: store.create(scope)[1] for scope in ("read", "write")}


@pytest.mark.parametrize("method", [STATUS_METHOD, UPSERT_STREAM_METHOD])
def test_tokenless_stalled_streams_do_not_block_a_legitimate_call(tmp_path, tokens, method):
    serve = ServeProcess(tmp_path, "--max-concurrent-rpcs", "4")
    release = threading.Event()
    try:
        with ExitStack() as stack:
            stalled = [_stall(stack, serve.address, method, release)
                       for _ in range(STALLED_CALLS)]
            time.sleep(1)
            assert _status_code(serve.address, tokens["read"]) == grpc.StatusCode.OK
            # each token-less call was refused from its metadata, without waiting for a message
            for call in stalled:
                assert call.exception(timeout=10).code() == grpc.StatusCode.UNAUTHENTICATED
            release.set()
    finally:
        release.set()
        serve.stop()


def test_a_silent_request_stream_ends_after_the_idle_limit(tmp_path, tokens):
    serve = ServeProcess(tmp_path, env={"MESHDEX_CALL_IDLE_TIMEOUT_S": "1"})
    release = threading.Event()
    metadata = (("authorization", f"Bearer {tokens['write']}"),)
    try:
        with ExitStack() as stack:
            started = time.monotonic()
            call = _stall(stack, serve.address, UPSERT_STREAM_METHOD, release, metadata)
            error = call.exception(timeout=20)
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "no request message for 1 s" in error.details()
            assert time.monotonic() - started < 15
            release.set()
    finally:
        release.set()
        serve.stop()


def test_one_token_cannot_take_every_slot_and_health_reports_saturation(tmp_path, tokens):
    serve = ServeProcess(tmp_path, "--max-concurrent-rpcs", "4",
                         env={"MESHDEX_MAX_CALLS_PER_TOKEN": "2"})
    release = threading.Event()
    write = (("authorization", f"Bearer {tokens['write']}"),)
    try:
        with ExitStack() as stack:
            held = [_stall(stack, serve.address, UPSERT_STREAM_METHOD, release, write)
                    for _ in range(3)]
            time.sleep(1)
            refused = [call for call in held if call.done()]
            assert len(refused) == 1
            assert refused[0].exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "token" in refused[0].exception().details()
            assert _status_code(serve.address, tokens["read"]) == grpc.StatusCode.OK
            assert _health(serve.address, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
            # two more tokens' worth of stalled calls fill all four slots: health says so
            read = (("authorization", f"Bearer {tokens['read']}"),)
            held += [_stall(stack, serve.address, STATUS_METHOD, release, read)
                     for _ in range(2)]
            time.sleep(1)
            assert (_health(serve.address, SERVICE_NAME)
                    == health_pb2.HealthCheckResponse.NOT_SERVING)
            assert _health(serve.address, "") == health_pb2.HealthCheckResponse.SERVING
            release.set()
    finally:
        release.set()
        serve.stop()

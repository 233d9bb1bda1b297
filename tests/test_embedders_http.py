"""The HTTP embedder against a real loopback server: batching, retries, timeouts, bad answers."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest
from fakes import FakeEmbeddingServer, HashingEmbedder
from meshdex.index.embedders_http import HttpEmbedder, embeddings_endpoint
from meshdex.index.errors import EmbedderError, InvalidArgument

FAST_BACKOFF_S = 0.01


@pytest.fixture
def server():
    with FakeEmbeddingServer() as running:
        yield running


def _embedder(server: FakeEmbeddingServer, **overrides) -> HttpEmbedder:
    options = {"url": server.url, "model": "fake-bow", "backoff_s": FAST_BACKOFF_S} | overrides
    embedder = HttpEmbedder(**options)
    assert embedder.dim == server.embedder.dim  # probe now, so scripts hit the call under test
    return embedder


def test_batches_are_sent_in_order_and_match_the_served_model(server):
    embedder = _embedder(server, batch_size=64)
    texts = [f"passage {i} about topic {i % 7}" for i in range(150)]
    vectors = embedder.embed_documents(texts)
    assert [len(request["input"]) for request in server.requests[1:]] == [64, 64, 22]
    np.testing.assert_allclose(vectors, HashingEmbedder().embed_documents(texts), atol=1e-6)
    assert embedder.model_calls == 4  # probe + 3 batches


def test_transient_failures_are_retried_until_success(server):
    embedder = _embedder(server, max_retries=3)
    server.script = [503, 502, 429]
    assert embedder.embed_query("retry me").shape == (server.embedder.dim,)
    assert len(server.requests) == 1 + 4


def test_retries_are_bounded(server):
    embedder = _embedder(server, max_retries=2)
    server.script = [503] * 5
    with pytest.raises(EmbedderError, match="HTTP 503.*gave up after 3 attempts"):
        embedder.embed_query("never works")
    assert len(server.requests) == 1 + 3


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_are_not_retried(server, status):
    embedder = _embedder(server, max_retries=3)
    server.script = [status]
    with pytest.raises(EmbedderError, match=f"HTTP {status}") as raised:
        embedder.embed_query("bad request")
    assert raised.value.recoverable is False
    assert len(server.requests) == 1 + 1


def test_a_stalled_server_times_out(server):
    embedder = _embedder(server, timeout_s=0.3, max_retries=1)
    server.script = [2.0, 2.0]
    started = time.monotonic()
    with pytest.raises(EmbedderError, match="gave up after 2 attempts"):
        embedder.embed_query("slow")
    assert time.monotonic() - started < 1.5


def test_an_unreachable_server_is_an_embedder_error():
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    embedder = HttpEmbedder(url=f"http://127.0.0.1:{port}", model="m", max_retries=1,
                            backoff_s=FAST_BACKOFF_S)
    with pytest.raises(EmbedderError, match="cannot reach the embedder"):
        embedder.embed_query("anyone there?")


def _entries(*vectors: list, indices: list[int] | None = None) -> bytes:
    """An embeddings response body; json writes NaN/Infinity literals as many servers do."""
    indices = indices if indices is not None else list(range(len(vectors)))
    data = [{"index": i, "embedding": v} for i, v in zip(indices, vectors, strict=True)]
    return json.dumps({"data": data}).encode()


ONES = [1.0] * 64


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>proxy error</html>", "malformed"),
        (b'{"result": []}', "malformed"),
        (_entries(), "0 entries for 1 inputs"),
        (_entries(ONES, ONES), "2 entries for 1 inputs"),
        (_entries([1.0] * 32), "dimension 32, expected 64"),
        (_entries([*ONES[:-1], float("nan")]), "NaN or infinite"),
        (_entries([*ONES[:-1], float("inf")]), "NaN or infinite"),
        (_entries([0.0] * 64), "zero vector"),
        (_entries(["x"] * 64), "non-numeric"),
        (_entries(ONES, indices=[3]), "bad index"),
    ],
    ids=["not json", "no data", "too few", "too many", "wrong dim", "nan", "inf", "zero",
         "strings", "bad index"],
)
def test_malformed_responses_are_refused(server, body, message):
    embedder = _embedder(server, max_retries=0)
    server.script = [body]
    with pytest.raises(EmbedderError, match=message):
        embedder.embed_query("one text")


def test_shuffled_response_entries_are_put_back_in_input_order(server):
    embedder = _embedder(server)
    expected = HashingEmbedder().embed_documents(["first", "second"])
    server.script = [_entries(expected[1].tolist(), expected[0].tolist(), indices=[1, 0])]
    np.testing.assert_allclose(embedder.embed_documents(["first", "second"]), expected,
                               atol=1e-6)


def test_model_hash_ignores_the_url_but_not_the_model():
    with FakeEmbeddingServer() as one, FakeEmbeddingServer() as two, \
            FakeEmbeddingServer(HashingEmbedder(dim=32)) as other:
        same_a = HttpEmbedder(url=one.url, model="fake-bow")
        same_b = HttpEmbedder(url=two.url + "/v1", model="fake-bow")
        renamed = HttpEmbedder(url=one.url, model="fake-bow-2")
        smaller = HttpEmbedder(url=other.url, model="fake-bow")
        assert same_a.model_hash == same_b.model_hash
        assert len({same_a.model_hash, renamed.model_hash, smaller.model_hash}) == 3
        assert same_a.fingerprint.precision == "remote"


def test_nothing_is_sent_until_first_use(server):
    HttpEmbedder(url=server.url, model="fake-bow")
    assert server.requests == []


@pytest.mark.parametrize(
    "url",
    ["http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/", "http://h:1/v1/embeddings"],
)
def test_endpoint_accepts_base_urls_with_or_without_v1(url):
    assert embeddings_endpoint(url) == "http://h:1/v1/embeddings"


@pytest.mark.parametrize(
    "kwargs",
    [{"url": "ftp://h"}, {"batch_size": 0}, {"timeout_s": 0}, {"max_retries": -1}],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(InvalidArgument):
        HttpEmbedder(**({"url": "http://127.0.0.1:9", "model": "m"} | kwargs))

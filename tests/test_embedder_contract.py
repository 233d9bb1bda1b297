"""One contract, every embedder: the fake, the real packaged model, and the HTTP embedder.

Also: which embedder a collection's spec names, and that a remote one is refused by default.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fakes import FakeEmbeddingServer, HashingEmbedder
from meshdex.index.embedder import Embedder
from meshdex.index.embedders import EmbedderSpec, default_embedder, embedder_from_spec
from meshdex.index.embedders_http import HttpEmbedder
from meshdex.index.errors import InvalidArgument, PermissionDenied

TEXTS = [
    "Python is an easy to learn, powerful programming language.",
    "A tuple is an immutable sequence.",
    "",
    "The with statement closes the file even if an exception is raised. " * 20,
]


@pytest.fixture(params=["fake", "local", "http"])
def embedder(request) -> Embedder:
    if request.param == "fake":
        return HashingEmbedder()
    if request.param == "local":
        return request.getfixturevalue("real_embedder")
    server = request.getfixturevalue("embedding_server")
    return HttpEmbedder(url=server.url, model="fake-bow", batch_size=2)


@pytest.fixture
def embedding_server():
    with FakeEmbeddingServer() as server:
        yield server


def test_documents_are_unit_float32_rows_of_dim(embedder):
    vectors = embedder.embed_documents(TEXTS)
    assert vectors.shape == (len(TEXTS), embedder.dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_query_is_a_unit_vector_equal_to_its_document_embedding(embedder):
    query = embedder.embed_query(TEXTS[1])
    assert query.shape == (embedder.dim,)
    assert query.dtype == np.float32
    assert np.linalg.norm(query) == pytest.approx(1.0, abs=1e-5)
    assert float(query @ embedder.embed_documents([TEXTS[1]])[0]) == pytest.approx(1.0, abs=1e-4)


def test_embedding_is_deterministic_and_distinguishes_texts(embedder):
    first, second = embedder.embed_documents(TEXTS), embedder.embed_documents(TEXTS)
    np.testing.assert_allclose(first, second, atol=1e-5)
    assert float(first[0] @ first[1]) < 0.99


def test_empty_input_gives_zero_rows(embedder):
    assert embedder.embed_documents([]).shape == (0, embedder.dim)


def test_identity_matches_the_fingerprint(embedder):
    fingerprint = embedder.fingerprint
    assert isinstance(embedder, Embedder)
    assert (fingerprint.model_id, fingerprint.model_hash, fingerprint.dim) == (
        embedder.model_id, embedder.model_hash, embedder.dim)
    assert re.fullmatch(r"[0-9a-f]{64}", embedder.model_hash)
    assert fingerprint.normalize and fingerprint.metric == "cosine"


def test_each_call_is_counted(embedder):
    assert embedder.dim > 0  # the HTTP embedder's one-time probe is a call of its own
    before = embedder.model_calls
    embedder.embed_query("one query")
    assert embedder.model_calls == before + 1


def test_concurrent_calls_give_the_sequential_results(embedder):
    expected = embedder.embed_documents(TEXTS)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: embedder.embed_documents(TEXTS), range(4)))
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-5)


@pytest.mark.parametrize("texts", ["a single string", ["fine", None]])
def test_non_text_input_is_invalid_argument(embedder, texts):
    with pytest.raises(InvalidArgument):
        embedder.embed_documents(texts)


# --- choosing an embedder from a collection's spec -------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        EmbedderSpec(),
        EmbedderSpec(precision="bf16"),
        EmbedderSpec(kind="http", model_id="nomic-embed-text", url="http://127.0.0.1:11434"),
        EmbedderSpec(kind="http", model_id="m", url="https://e.lan/v1", api_key_env="EMBED_KEY"),
    ],
)
def test_spec_round_trips_through_json(spec):
    assert EmbedderSpec.from_json(spec.to_json()) == spec
    assert EmbedderSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: EmbedderSpec(kind="cloud"), "kind"),
        (lambda: EmbedderSpec(precision="int8"), "precision"),
        (lambda: EmbedderSpec(model_id="other/model"), "only serves"),
        (lambda: EmbedderSpec(url="http://127.0.0.1:1"), "only apply"),
        (lambda: EmbedderSpec(kind="http", model_id="m"), "needs a url"),
        (lambda: EmbedderSpec(kind="http", model_id="m", url="ftp://x"), "needs a url"),
        (lambda: EmbedderSpec(kind="http", model_id="m", url="http://x", api_key_env="A B"),
         "api_key_env"),
        (lambda: EmbedderSpec.from_json("{not json"), "not valid JSON"),
        (lambda: EmbedderSpec.from_json('["local"]'), "must be an object"),
        (lambda: EmbedderSpec.from_json('{"kind": "local", "extra": 1}'), "unknown"),
        (lambda: EmbedderSpec.from_json('{"precision": 32}'), "must be a string"),
    ],
)
def test_bad_specs_are_refused_with_a_reason(make, message):
    with pytest.raises(InvalidArgument, match=message):
        make()


def test_local_spec_gives_the_shared_model(real_embedder, collection_embedder):
    """One loaded model per precision, whoever asks: a default spec gets the collection
    default's, an fp32 spec the fp32 one."""
    default = EmbedderSpec()
    assert embedder_from_spec(default) is collection_embedder is default_embedder(default.precision)
    assert embedder_from_spec(EmbedderSpec(precision="fp32")) is real_embedder


def test_remote_spec_is_refused_without_allow_remote(embedding_server):
    spec = EmbedderSpec(kind="http", model_id="fake-bow", url=embedding_server.url)
    with pytest.raises(PermissionDenied, match="remote embedder"):
        embedder_from_spec(spec)
    assert embedding_server.requests == []  # nothing left the process
    embedder = embedder_from_spec(spec, allow_remote=True)
    assert embedder.embed_query("hello").shape == (embedding_server.embedder.dim,)


def test_remote_spec_reads_its_api_key_from_the_named_variable(embedding_server, monkeypatch):
    spec = EmbedderSpec(kind="http", model_id="keyed", url=embedding_server.url,
                        api_key_env="MESHDEX_TEST_EMBED_KEY")
    monkeypatch.delenv("MESHDEX_TEST_EMBED_KEY", raising=False)
    with pytest.raises(InvalidArgument, match="MESHDEX_TEST_EMBED_KEY"):
        embedder_from_spec(spec, allow_remote=True)
    monkeypatch.setenv("MESHDEX_TEST_EMBED_KEY", "s3cret")
    embedder_from_spec(spec, allow_remote=True).embed_query("hello")
    assert embedding_server.headers[-1]["Authorization"] == "Bearer s3cret"
